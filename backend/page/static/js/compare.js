// The Compare card (GET /playground/activations/compare): two runs of one SAE side by side.
// Pick them with "Compare" on Recent Runs (with the open run, or two picks in a row) or from
// the run view; a steered pair opens directly. Shows the features that changed most as a
// diverging bar chart (click one to open its view), both texts aligned with the changed
// tokens marked (click one for its feature changes), and download links (export).
import { API, api, query } from "./api.js";
import { $, el } from "./dom.js";
import { showError } from "./error-banner.js";
import { openFeature } from "./feature-view.js";
import { displayToken, fmt } from "./format.js";
import { state } from "./state.js";

const CHART_FEATURES = 20;

let pending = null; // the first pick, waiting for the second
let current = null; // the comparison shown

function note(text) {
  const box = $("compare-note");
  box.textContent = text || "";
  box.hidden = !text;
  if (text) $("compare-card").hidden = false;
}

// Compare `requestId` with the first pick, else with the open run, else remember it.
export function pickForCompare(requestId) {
  const first = pending || (state.run && state.run.request_id);
  if (first && first !== requestId) {
    pending = null;
    openComparison(first, requestId);
    return;
  }
  pending = requestId;
  note(`Run ${requestId} picked: choose "Compare" on another run in Recent Runs.`);
  $("compare-card").scrollIntoView({ block: "nearest" });
}

export async function openComparison(a, b) {
  const card = $("compare-card");
  card.hidden = false;
  delete card.dataset.ready;
  note("");
  let body;
  try {
    body = await api(`${API}/compare${query({ a, b, limit: CHART_FEATURES })}`);
  } catch (err) {
    showError("Could not compare the runs", err);
    note(err.message);
    return;
  }
  current = body;
  renderHead(body);
  renderChart(body);
  renderAligned(body);
  renderPositionDetail(null);
  card.dataset.ready = "true";
  card.dataset.a = a;
  card.dataset.b = b;
  card.scrollIntoView({ block: "start" });
}

function download(href, text, kind) {
  return el("a", { class: "secondary download", href, download: "", dataset: { kind } }, text);
}

function renderHead(body) {
  const runLine = (side, run) =>
    el(
      "div",
      { class: "cmp-run" },
      el("span", { class: `cmp-side cmp-side-${side}` }, side.toUpperCase()),
      el("span", { class: "mono" }, run.request_id),
      el("span", { class: "cmp-prompt" }, run.prompt_preview),
    );
  $("compare-runs").replaceChildren(
    runLine("a", body.a),
    runLine("b", body.b),
    el("div", { class: "muted" }, `${body.sae_id} · layer ${body.sae_layer} · ${body.total_features} features fired in either run`),
  );
  const ids = { a: body.a.request_id, b: body.b.request_id };
  const exportOf = (id, format) => `${API}/${encodeURIComponent(id)}/export${query({ format })}`;
  $("compare-downloads").replaceChildren(
    download(`${API}/compare/export${query(ids)}`, "Comparison CSV", "compare-csv"),
    download(exportOf(ids.a, "csv"), "A: CSV", "a-csv"),
    download(exportOf(ids.a, "json"), "A: JSON", "a-json"),
    download(exportOf(ids.b, "csv"), "B: CSV", "b-csv"),
    download(exportOf(ids.b, "json"), "B: JSON", "b-json"),
  );
}

// One row per feature: its bar grows left (b lower) or right (b higher) from the middle.
function renderChart(body) {
  const features = body.features;
  const scale = Math.max(1e-9, ...features.map((f) => Math.abs(f.delta_max)));
  const rows = features.map((f) => {
    const width = `${(50 * Math.abs(f.delta_max)) / scale}%`;
    const bar = el("span", { class: `cmp-bar ${f.delta_max < 0 ? "down" : "up"}`, style: { width } });
    return el(
      "li",
      {},
      el(
        "button",
        { type: "button", class: "cmp-row", dataset: { feature: String(f.feature_id) }, title: "Open this feature" },
        el("span", { class: "cmp-name" }, el("span", { class: "fid" }, `#${f.feature_id}`), " ", el("span", { class: "label-text" }, f.label || "")),
        el("span", { class: "cmp-track" }, el("span", { class: "cmp-mid" }), bar),
        el("span", { class: "cmp-nums" }, `a ${fmt(f.a.max)} · b ${fmt(f.b.max)} · Δ ${f.delta_max >= 0 ? "+" : ""}${fmt(f.delta_max)}`),
      ),
    );
  });
  $("compare-chart").replaceChildren(...rows);
  $("compare-chart-empty").hidden = rows.length > 0;
}

// Per token: "diff" inside a non-equal opcode, "moved" at an aligned position whose features
// changed; position -> change for the detail.
function renderAligned(body) {
  const al = body.alignment;
  const changed = { a: new Map(), b: new Map() };
  for (const change of al.positions) {
    changed.a.set(change.a_position, change);
    changed.b.set(change.b_position, change);
  }
  const diff = { a: new Set(), b: new Set() };
  for (const op of al.opcodes) {
    if (op.tag === "equal") continue;
    for (let p = op.a_start; p < op.a_end; p++) diff.a.add(p);
    for (let p = op.b_start; p < op.b_end; p++) diff.b.add(p);
  }
  for (const side of ["a", "b"]) {
    const tokens = al[`${side}_tokens`];
    const outputStart = al[`${side}_output_start`];
    const nodes = [];
    tokens.forEach((token, position) => {
      if (position === outputStart) nodes.push(el("span", { class: "segment-break" }, "output ▸"));
      const classes = ["ctok", position < outputStart ? "prompt" : ""];
      if (diff[side].has(position)) classes.push("diff");
      if (changed[side].has(position)) classes.push("moved");
      nodes.push(
        el(
          "span",
          { class: classes.filter(Boolean).join(" "), dataset: { position: String(position), side }, tabindex: changed[side].has(position) ? "0" : null },
          displayToken(token),
        ),
      );
    });
    $(`compare-${side}`).replaceChildren(...nodes);
  }
  const marked = al.positions.length;
  $("compare-legend").textContent =
    `${marked} aligned token${marked === 1 ? "" : "s"} with feature changes (|Δ| > ${al.threshold})` +
    (al.truncated ? ", more not listed" : "") +
    (al.coarse ? "; the texts differ too much to align token by token" : "");
}

function changeList(title, items, text) {
  if (!items.length) return null;
  return el("div", {}, el("h4", {}, title), el("ul", { class: "cmp-changes" }, ...items.map((item) => el("li", {}, el("span", { class: "fid" }, `#${item.feature_id}`), " ", text(item)))));
}

function renderPositionDetail(change) {
  const box = $("compare-detail");
  for (const node of document.querySelectorAll("#compare-card .ctok.pinned")) node.classList.remove("pinned");
  if (!change) {
    box.replaceChildren(el("p", { class: "muted" }, "Click a marked token to see which features changed there."));
    return;
  }
  for (const [side, position] of [["a", change.a_position], ["b", change.b_position]]) {
    const node = document.querySelector(`#compare-${side} .ctok[data-position="${position}"]`);
    if (node) node.classList.add("pinned");
  }
  box.replaceChildren(
    el("p", {}, `Position ${change.a_position} in A, ${change.b_position} in B`),
    changeList("Appeared in B", change.appeared, (f) => fmt(f.activation)),
    changeList("Vanished from A", change.vanished, (f) => fmt(f.activation)),
    changeList("Changed", change.changed, (f) => `${fmt(f.a)} → ${fmt(f.b)}`),
  );
}

function showPosition(target) {
  const token = target.closest(".ctok.moved");
  if (!token || !current) return;
  const key = token.dataset.side === "a" ? "a_position" : "b_position";
  const position = Number(token.dataset.position);
  renderPositionDetail(current.alignment.positions.find((c) => c[key] === position) || null);
}

// The run view's actions: compare the open run with another, or with its steered pair.
export function renderRunActions(run) {
  const open = Boolean(run && run.status !== "failed" && run.preview);
  $("compare-open").hidden = !open;
  const pair = open && run.pair && run.pair.request_id ? run.pair : null;
  $("compare-pair").hidden = !pair;
  // pair.role is the open run's role; the button names the other run's.
  if (pair) $("compare-pair").textContent = `Compare with its ${pair.role === "steered" ? "default" : "steered"} run`;
}

export function wireCompare() {
  $("compare-open").addEventListener("click", () => {
    if (!state.run) return;
    pending = state.run.request_id;
    note(`Run ${pending} picked: choose "Compare" on another run in Recent Runs.`);
  });
  $("compare-pair").addEventListener("click", () => {
    const run = state.run;
    if (!run || !run.pair) return;
    // The default run is A, the steered one B.
    // A is the default run, B the steered one (pair.role is the open run's role).
    const [a, b] = run.pair.role === "steered" ? [run.pair.request_id, run.request_id] : [run.request_id, run.pair.request_id];
    openComparison(a, b);
  });
  $("compare-close").addEventListener("click", () => {
    pending = null;
    current = null;
    $("compare-card").hidden = true;
  });
  $("compare-chart").addEventListener("click", (event) => {
    const row = event.target.closest(".cmp-row");
    if (row && current) openFeature(current.sae_id, current.sae_layer, Number(row.dataset.feature));
  });
  for (const side of ["a", "b"]) {
    $(`compare-${side}`).addEventListener("click", (event) => showPosition(event.target));
    $(`compare-${side}`).addEventListener("keydown", (event) => {
      if (event.key === "Enter") showPosition(event.target);
    });
  }
}

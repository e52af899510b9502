// The Steered vs Default card: a steered run and its default (unsteered) answer side by side,
// each token shaded by its strongest feature, the positions where a steered feature fires
// marked in both, and the steering's read-back figures (GET run's `steering` and `pair`).
import { API, api } from "./api.js";
import { $, el } from "./dom.js";
import { displayToken, fmt } from "./format.js";
import { labelOf } from "./labels.js";
import { timeline } from "./state.js";

const known = new Map(); // request_id -> run answer (a pair's done answers, fetched partners)
let shownSeq = 0;

export function rememberRuns(...runs) {
  for (const run of runs) if (run && run.request_id) known.set(run.request_id, run);
}

export function hidePair() {
  shownSeq++;
  $("pair-card").hidden = true;
}

async function fetchRun(requestId) {
  if (known.has(requestId)) return known.get(requestId);
  try {
    const run = await api(`${API}/${encodeURIComponent(requestId)}`);
    rememberRuns(run);
    return run;
  } catch {
    return null; // deleted or pruned: its column says so
  }
}

// After a run opens: its pair beside it, or the card hidden for a run outside any pair.
// onOpen(requestId) opens a column's run in the page.
export async function showPairOf(run, onOpen) {
  if (!run || (!run.pair && !run.steering)) {
    hidePair();
    return;
  }
  const seq = ++shownSeq;
  rememberRuns(run);
  const partner = run.pair && run.pair.request_id ? await fetchRun(run.pair.request_id) : null;
  if (seq !== shownSeq) return;
  const isDefault = run.pair && run.pair.role === "default";
  renderPair({
    steered: isDefault ? partner : run,
    default: isDefault ? run : partner,
    steering: run.steering,
    current: run.request_id,
    onOpen,
  });
}

// While a pair streams: both runs as they grow (runs: {steered, default}).
export function renderLivePair(runs, steering) {
  shownSeq++;
  renderPair({ steered: runs.steered, default: runs.default, steering, live: true });
}

const steeredIds = (steering) => new Set(((steering && steering.features) || []).map((f) => f.feature_id));

function tokenSpans(run, marked) {
  const entries = timeline(run).filter((e) => e.segment === "output");
  const strongest = entries.map((e) => ((e.features || [])[0] ? e.features[0].activation : 0));
  const hi = Math.max(1e-9, ...strongest);
  return entries.map((entry, i) => {
    const hits = (entry.features || []).filter((f) => marked.has(f.feature_id));
    const title = hits.length
      ? hits.map((f) => `steered #${f.feature_id}: ${f.activation.toFixed(3)}`).join("\n")
      : `position ${entry.position}`;
    const span = el(
      "span",
      { class: `tok${entry.special ? " special" : ""}${hits.length ? " steer-hit" : ""}`, title, dataset: { position: String(entry.position) } },
      displayToken(entry.token),
    );
    span.style.setProperty("--strength", (strongest[i] / hi).toFixed(3));
    return span;
  });
}

function column(role, run, steering, { live, current, onOpen }) {
  const title = role === "steered" ? "Steered" : "Default";
  const head = el("div", { class: "pair-head" }, el("h3", {}, title));
  if (run && !live && run.request_id) {
    head.append(
      el(
        "button",
        { type: "button", class: "link-button pair-open", disabled: run.request_id === current, onclick: () => onOpen && onOpen(run.request_id) },
        run.request_id === current ? "open" : "Open",
      ),
    );
  }
  let body;
  if (!run) body = el("p", { class: "muted" }, live ? "Waiting…" : role === "default" ? "No default run (steered alone, or deleted)." : "The steered run is gone.");
  else if (run.status === "failed") body = el("p", { class: "run-error" }, `Failed: ${run.error ? run.error.message : ""}`);
  else body = el("div", { class: "tokens pair-tokens", "aria-label": `${title} answer tokens` }, tokenSpans(run, steeredIds(steering)));
  return el("div", { class: "pair-col", dataset: { role, requestId: run ? run.request_id : "" } }, head, body);
}

function figures(steering) {
  const rows = ((steering && steering.features) || []).map((f) => {
    const s = f.steered || {};
    const d = f.default || {};
    return el(
      "tr",
      { dataset: { feature: String(f.feature_id) } },
      el("td", {}, el("span", { class: "fid" }, `#${f.feature_id}`), " ", el("span", { class: "label-text" }, labelOf(f.feature_id))),
      el("td", { class: "num" }, fmt(f.strength)),
      el("td", { class: "num fig-steered-max" }, fmt(s.max)),
      el("td", { class: "num" }, fmt(s.mean)),
      el("td", { class: "num fig-default-max" }, fmt(d.max)),
      el("td", { class: "num" }, fmt(d.mean)),
    );
  });
  if (!rows.length) return el("p", { class: "muted" }, "Read-back figures follow when both runs are stored.");
  return el(
    "div",
    { class: "table-scroll" },
    el(
      "table",
      { class: "data pair-figures" },
      el("thead", {}, el("tr", {}, ["Feature", "Strength", "Steered max", "Steered mean", "Default max", "Default mean"].map((h, i) => el("th", { class: i ? "num" : null }, h)))),
      el("tbody", {}, rows),
    ),
  );
}

function renderPair({ steered, default: plain, steering, live = false, current = null, onOpen = null }) {
  const card = $("pair-card");
  const options = { live, current, onOpen };
  $("pair-columns").replaceChildren(column("steered", steered, steering, options), column("default", plain, steering, options));
  $("pair-figures").replaceChildren(live && !(steering && steering.features && steering.features[0] && steering.features[0].steered) ? el("p", { class: "muted" }, "Streaming: the read-back figures follow when both runs are stored.") : figures(steering));
  $("pair-seed").textContent = steering && steering.seed != null ? `seed ${steering.seed}` : "";
  card.dataset.live = live ? "true" : "false";
  card.hidden = false;
}

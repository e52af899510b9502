// The Feature card: label search (GET /playground/features/search) and one feature across the
// stored runs (GET /playground/features/{sae}/{layer}/{id}): label, density, histogram, top
// contexts shaded by the feature's activation, the SAE's own examples, links. Opened in place
// by any feature id on the page. Everything from the API is set as text.
import { api, query } from "./api.js";
import { $, el } from "./dom.js";
import { displayToken, fmt, formatTime } from "./format.js";
import { histogram } from "./histogram.js";
import { state } from "./state.js";
import { steerButton } from "./steer-button.js";

const FEATURES = "/playground/features";

let onOpenRun = () => {};
let requestSeq = 0; // answers of a superseded request are dropped

export function featurePath(saeId, layer, featureId) {
  return `${FEATURES}/${saeId.split("/").map(encodeURIComponent).join("/")}/${layer}/${featureId}`;
}

function percent(part, whole) {
  if (!whole) return "0%";
  const value = (100 * part) / whole;
  return `${value < 0.1 && value > 0 ? value.toPrecision(2) : value.toFixed(1)}%`;
}

function shadedTokens(tokens, activations, { peak, mark } = {}) {
  const top = Math.max(1e-9, peak ?? Math.max(0, ...activations.map((a) => a ?? 0)));
  return el(
    "div",
    { class: "tokens feature-context" },
    tokens.map((token, i) => {
      const act = activations[i];
      const span = el(
        "span",
        {
          class: `tok${i === mark ? " pinned" : ""}`,
          title: act === null || act === undefined ? "not in this position's top-k" : `activation ${fmt(act)}`,
        },
        displayToken(token),
      );
      span.style.setProperty("--strength", ((act ?? 0) / top).toFixed(3));
      return span;
    }),
  );
}

function topRun(run) {
  const current = state.run && state.run.request_id === run.request_id;
  const peak = Math.max(1e-9, ...run.window.map((w) => w.activation ?? 0));
  const mark = run.window.findIndex((w) => w.position === run.max_position);
  return el(
    "li",
    { class: `top-run${current ? " current" : ""}`, dataset: { run: run.request_id } },
    el(
      "div",
      { class: "top-run-head" },
      el("span", { class: "num" }, fmt(run.max_activation)),
      el("span", { class: "prompt-text" }, run.prompt_preview || run.request_id),
      el("span", { class: "muted" }, formatTime(run.created_at)),
      el("button", { type: "button", class: "link-button open-run", dataset: { run: run.request_id } }, current ? "open" : "open run"),
    ),
    shadedTokens(
      run.window.map((w) => w.token),
      run.window.map((w) => w.activation),
      { peak, mark },
    ),
  );
}

// The SAE's own examples: {tokens, activations} lists; anything else is shown as JSON text.
function example(item) {
  if (item && Array.isArray(item.tokens) && Array.isArray(item.activations) && item.tokens.length === item.activations.length) {
    return el("li", {}, shadedTokens(item.tokens.map(String), item.activations.map(Number)));
  }
  return el("li", {}, el("code", {}, JSON.stringify(item)));
}

function renderFeature(body) {
  const d = body.density;
  const links = [el("a", { href: body.links.runs, class: "link-button" }, "runs (API)")];
  if (body.links.neuronpedia) {
    links.push(el("a", { href: body.links.neuronpedia, target: "_blank", rel: "noopener noreferrer", class: "link-button" }, "Neuronpedia"));
  }
  $("feature-view").replaceChildren(
    el(
      "div",
      { class: "feature-head" },
      el("h3", {}, el("span", { class: "fid" }, `#${body.feature_id}`), " ", el("span", { class: "feature-label" }, body.label || "no label")),
      el("span", { class: "muted" }, `${body.sae_id} · layer ${body.layer} · d_sae ${body.d_sae}`),
      ...links,
      steerButton(body.feature_id, body.sae_id, body.layer),
    ),
    el(
      "p",
      { class: "density" },
      `Fired in ${d.runs_fired} of ${d.runs_total} runs (${percent(d.runs_fired, d.runs_total)}), at ${d.positions_fired} of ${d.positions_total} positions (${percent(d.positions_fired, d.positions_total)}).`,
      body.complete ? null : el("span", { class: "muted" }, " Some runs are still being indexed."),
    ),
    histogram(body.histogram),
    el("h4", {}, "Top contexts in stored runs"),
    body.top_runs.length
      ? el("ol", { class: "top-runs" }, body.top_runs.map(topRun))
      : el("p", { class: "muted" }, "No stored run fired it."),
    el("h4", {}, "The SAE's examples"),
    body.examples.length
      ? el("ol", { class: "examples" }, body.examples.map(example))
      : el("p", { class: "muted" }, "None in this SAE's folder."),
  );
  $("feature-view").hidden = false;
  $("feature-view").dataset.feature = String(body.feature_id);
}

export async function openFeature(saeId, layer, featureId) {
  const seq = ++requestSeq;
  $("feature-empty").hidden = true;
  const view = $("feature-view");
  view.hidden = false;
  view.dataset.feature = "";
  view.replaceChildren(el("p", { class: "muted" }, `Loading feature #${featureId}…`));
  let body;
  try {
    body = await api(featurePath(saeId, layer, featureId));
  } catch (err) {
    if (seq === requestSeq) view.replaceChildren(el("p", { class: "run-error" }, `Feature #${featureId}: ${err.message}`));
    return;
  }
  if (seq === requestSeq) renderFeature(body);
}

// The open run's SAE, else the page's SAE choice.
function currentSae() {
  const preview = state.run && state.run.preview;
  if (preview) return { saeId: preview.sae_id, layer: preview.sae_layer };
  const saeId = $("sae-id").value;
  const layer = $("sae-layer").value;
  return saeId && layer !== "" ? { saeId, layer: Number(layer) } : null;
}

export function openFeatureOfRun(featureId) {
  const sae = currentSae();
  if (sae) openFeature(sae.saeId, sae.layer, featureId);
}

async function search(event) {
  event.preventDefault();
  const q = $("feature-q").value.trim();
  const list = $("feature-results");
  if (!q) {
    list.replaceChildren();
    return;
  }
  const sae = currentSae();
  let body;
  try {
    body = await api(`${FEATURES}/search${query({ q, sae_id: sae && sae.saeId, layer: sae && sae.layer, limit: 20 })}`);
  } catch (err) {
    list.replaceChildren(el("li", { class: "run-error" }, err.message));
    return;
  }
  list.replaceChildren(
    ...(body.results.length
      ? body.results.map((r) =>
          el(
            "li",
            {},
            el(
              "button",
              { type: "button", class: "feature-result", dataset: { sae: r.sae_id, layer: String(r.layer), feature: String(r.feature_id) } },
              el("span", { class: "fid" }, `#${r.feature_id}`),
              " ",
              el("span", { class: "feature-label" }, r.label || "no label"),
              el("span", { class: "muted" }, ` · ${r.runs_fired} runs`),
            ),
            steerButton(r.feature_id, r.sae_id, r.layer),
          ),
        )
      : [el("li", { class: "muted" }, "No feature label matches.")]),
  );
}

// A feature named in the address bar: ?feature=<sae_id>/<layer>/<id>.
export function featureFromLocation() {
  const value = new URLSearchParams(window.location.search).get("feature");
  const match = value && /^(.+)\/(\d{1,3})\/(\d{1,10})$/.exec(value);
  return match ? { saeId: match[1], layer: Number(match[2]), featureId: Number(match[3]) } : null;
}

// onOpen(requestId) when a top context's "open run" is clicked.
export function wireFeatureView({ onOpen }) {
  onOpenRun = onOpen;
  $("feature-search").addEventListener("submit", search);
  $("feature-results").addEventListener("click", (event) => {
    const button = event.target.closest("button.feature-result");
    if (button) openFeature(button.dataset.sae, Number(button.dataset.layer), Number(button.dataset.feature));
  });
  $("feature-view").addEventListener("click", (event) => {
    const button = event.target.closest("button.open-run");
    if (button) onOpenRun(button.dataset.run);
  });
}

// After another run opens: mark it among the shown feature's top contexts.
export function markCurrentRun() {
  for (const li of document.querySelectorAll("#feature-view li.top-run")) {
    li.classList.toggle("current", Boolean(state.run) && li.dataset.run === state.run.request_id);
  }
}

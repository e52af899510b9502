// The Steer panel: features added from Top Features, the feature view or search (their
// "Steer" buttons, steer-button.js), each with a strength (slider and number); "Run steered"
// streams the steered answer and the default one side by side (pair-view.js) with the prompt
// and settings of the Prompt card, then opens the stored pair.
import { API } from "./api.js";
import { $, el } from "./dom.js";
import { clearError, showError } from "./error-banner.js";
import { loadLabels } from "./labels.js";
import { rememberOwner } from "./owners.js";
import { renderLivePair, rememberRuns } from "./pair-view.js";
import { streamPair } from "./pair-stream.js";
import { runRequest } from "./run-form.js";

const MAX_FEATURES = 8;
const DEFAULT_STRENGTH = 10;
const SLIDER_MAX = 100; // the number field goes further, up to the backend's cap

let items = []; // {featureId, saeId, layer, strength, label}
let running = null;

export async function addSteerFeature(featureId, saeId, layer) {
  const same = (it) => it.featureId === featureId && it.saeId === saeId && it.layer === layer;
  if (items.some(same)) return;
  if (items.length >= MAX_FEATURES) {
    $("steer-status").textContent = `At most ${MAX_FEATURES} features.`;
    return;
  }
  const item = { featureId, saeId, layer, strength: DEFAULT_STRENGTH, label: "" };
  items.push(item);
  renderSteer();
  if (saeId && layer !== null) {
    item.label = (await loadLabels(saeId, layer)).get(featureId) || "";
    renderSteer();
  }
}

function setStrength(index, value, from) {
  const number = Number(value);
  if (!Number.isFinite(number)) return;
  items[index].strength = number;
  const li = $("steer-list").children[index];
  if (!li) return;
  if (from !== "range") li.querySelector("input[type=range]").value = String(Math.max(-SLIDER_MAX, Math.min(SLIDER_MAX, number)));
  if (from !== "number") li.querySelector("input[type=number]").value = String(number);
}

function renderSteer() {
  const list = $("steer-list");
  list.replaceChildren(
    ...items.map((it, i) =>
      el(
        "li",
        { class: "steer-item", dataset: { feature: String(it.featureId) } },
        el(
          "div",
          { class: "steer-name" },
          el("span", { class: "fid" }, `#${it.featureId}`),
          " ",
          el("span", { class: "label-text" }, it.label || (it.saeId ? `${it.saeId} · layer ${it.layer}` : "")),
          el("button", { type: "button", class: "link-button steer-remove", title: "Remove", onclick: () => { items.splice(i, 1); renderSteer(); } }, "Remove"),
        ),
        el(
          "label",
          { class: "steer-strength" },
          "Strength",
          el("input", { type: "range", min: String(-SLIDER_MAX), max: String(SLIDER_MAX), step: "1", value: String(Math.max(-SLIDER_MAX, Math.min(SLIDER_MAX, it.strength))), "aria-label": `Strength of feature ${it.featureId} (slider)`, oninput: (e) => setStrength(i, e.target.value, "range") }),
          el("input", { type: "number", min: "-300", max: "300", step: "0.5", value: String(it.strength), "aria-label": `Strength of feature ${it.featureId}`, oninput: (e) => setStrength(i, e.target.value, "number") }),
        ),
      ),
    ),
  );
  $("steer-empty").hidden = items.length > 0;
  $("steer-run").disabled = items.length === 0 && !running;
}

const steerSpec = () => ({
  features: items.map((it) => ({ feature_id: it.featureId, strength: it.strength, steered: null, default: null })),
  seed: null,
});

async function runSteered({ onDone, onFailed }) {
  const button = $("steer-run");
  if (running) {
    running.abort();
    return;
  }
  if (!items.length) return;
  clearError();
  running = new AbortController();
  button.textContent = "Stop";
  const status = $("steer-status");
  status.textContent = "Running steered and default…";
  const started = performance.now();
  const body = {
    ...runRequest(),
    steer: items.map((it) => ({ feature_id: it.featureId, strength: it.strength, sae_id: it.saeId || undefined, layer: it.layer ?? undefined })),
    compare: true,
  };
  const spec = steerSpec();
  let frame = null;
  let latest = null;
  try {
    const done = await streamPair(`${API}/run`, {
      body,
      headers: { "Content-Type": "application/json" },
      signal: running.signal,
      onOwner: rememberOwner,
      onLive: (live) => {
        latest = live;
        document.body.dataset.steering = "true";
        if (frame === null) {
          frame = requestAnimationFrame(() => {
            frame = null;
            if (running) renderLivePair(latest, spec);
          });
        }
      },
    });
    for (const run of [done.steered, done.default]) if (run) rememberOwner(run.request_id, run.owner_token);
    rememberRuns(done.steered, done.default);
    status.textContent = `Done in ${((performance.now() - started) / 1000).toFixed(2)} s`;
    running = null;
    await onDone(done.steered);
  } catch (err) {
    if (err.name === "AbortError") status.textContent = "Stopped";
    else {
      status.textContent = "Failed";
      showError("The steered run failed", err);
    }
    onFailed();
  } finally {
    running = null;
    delete document.body.dataset.steering;
    button.textContent = "Run steered";
    renderSteer();
  }
}

// onDone(steeredRun) opens the stored steered run (its pair shows beside it); onFailed().
export function wireSteer(handlers) {
  // Capture: a Steer button inside a clickable row adds the feature, not opens the row.
  document.addEventListener(
    "click",
    (event) => {
      const button = event.target.closest && event.target.closest(".steer-add");
      if (!button) return;
      event.stopPropagation();
      event.preventDefault();
      const layer = button.dataset.steerLayer === "" ? null : Number(button.dataset.steerLayer);
      addSteerFeature(Number(button.dataset.steerFeature), button.dataset.steerSae || null, layer);
    },
    true,
  );
  $("steer-run").addEventListener("click", () => runSteered(handlers));
  renderSteer();
}

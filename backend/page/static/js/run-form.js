// Prompt, generation and SAE controls, and the Run button (POST /playground/activations/run,
// streamed: tokens appear as they are generated; the button is Stop meanwhile).
import { API, SAES_URL, api } from "./api.js";
import { $, el } from "./dom.js";
import { clearError, showError } from "./error-banner.js";
import { applyLimits, checkRun } from "./limits.js";
import { ownerToken, rememberOwner } from "./owners.js";
import { state } from "./state.js";
import { streamRun } from "./stream.js";

let running = null; // the AbortController of the run being streamed

export async function loadSaes() {
  const select = $("sae-id");
  try {
    const body = await api(SAES_URL);
    state.saes = Array.isArray(body.saes) ? body.saes : [];
    const fallback = body.default || {};
    select.replaceChildren();
    for (const sae of state.saes) {
      // A demo SAE with labels was trained (train-sae); one without is `up --tiny`'s random one.
      const kind = !sae.demo ? "" : sae.has_labels ? " (demo, labelled)" : " (demo, random weights)";
      select.append(el("option", { value: sae.sae_id, title: sae.description || "" }, `${sae.sae_id}${kind}`));
    }
    if (!state.saes.length) select.append(el("option", { value: "" }, "Backend default"));
    if (fallback.sae_id) select.value = fallback.sae_id;
    fillLayers(fallback.layer);
  } catch (err) {
    const note = $("sae-note");
    note.textContent = `SAE list unavailable (${err.message}); the backend default is used.`;
    note.hidden = false;
  }
}

function currentSae() {
  return state.saes.find((sae) => sae.sae_id === $("sae-id").value) || null;
}

function fillLayers(preferred) {
  const sae = currentSae();
  const select = $("sae-layer");
  select.replaceChildren();
  const layers = sae && Array.isArray(sae.layers) ? sae.layers : [];
  if (!layers.length) select.append(el("option", { value: "" }, "Default"));
  for (const layer of layers) select.append(el("option", { value: String(layer) }, String(layer)));
  if (preferred !== undefined && layers.includes(preferred)) select.value = String(preferred);
  const note = $("sae-note");
  if (sae && sae.demo && !sae.has_labels) {
    note.textContent = "Demo SAE: random weights, features carry no meaning.";
    note.hidden = false;
  } else if (sae) {
    note.textContent = sae.description || "";
    note.hidden = !sae.description;
  }
}

function numberField(id) {
  const raw = $(id).value.trim();
  return raw === "" ? null : Number(raw);
}

export function runRequest() {
  const body = {
    prompt: $("prompt").value,
    model_id: $("model-id").value.trim() || null,
    max_tokens: numberField("max-tokens"),
    temperature: numberField("temperature"),
    top_p: numberField("top-p"),
    top_k: numberField("top-k"),
    sae_id: $("sae-id").value || null,
    sae_layer: numberField("sae-layer"),
    sae_top_k: numberField("sae-top-k"),
  };
  // Leave out blanks so the backend applies its defaults.
  for (const key of Object.keys(body)) if (body[key] === null) delete body[key];
  return body;
}

const seconds = (ms) => `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;

function showIdle() {
  running = null;
  $("run-button").textContent = "Run";
  $("run-button").classList.remove("stop");
}

// onDone(run) shows the new run; onFailed() refreshes what lists runs (failures are recorded
// too); onLive(run) draws the run while it streams; onStopped(requestId) after Stop (the run
// is stored as stopped, with what it had).
async function submitRun(event, { onDone, onFailed, onLive, onStopped }) {
  event.preventDefault();
  const button = $("run-button");
  if (running) {
    running.abort(); // Stop
    return;
  }
  clearError();
  const body = runRequest();
  const problems = checkRun(body);
  if (problems.length) {
    const message = problems.length > 1 ? `${problems.length} problems:` : problems[0];
    showError("Check the run's settings", { message, code: "not_sent", details: problems });
    return;
  }
  running = new AbortController();
  let liveId = null;
  button.textContent = "Stop";
  button.classList.add("stop");
  const started = performance.now();
  const status = $("run-status");
  let firstToken = null;
  const show = () => {
    const ttft = firstToken === null ? "" : ` · first token ${seconds(firstToken)}`;
    status.textContent = `Running… ${((performance.now() - started) / 1000).toFixed(0)} s${ttft}`;
  };
  const tick = setInterval(show, 500);
  status.textContent = "Running…";
  try {
    const headers = { "Content-Type": "application/json" };
    const owner = body.request_id ? ownerToken(body.request_id) : null;
    if (owner) headers["X-Run-Owner"] = owner;
    const run = await streamRun(`${API}/run`, {
      body,
      headers,
      signal: running.signal,
      onOwner: rememberOwner,
      onLive: (live, timing) => {
        if (firstToken === null && timing.firstTokenMs !== null) {
          firstToken = timing.firstTokenMs;
          show();
        }
        liveId = live.request_id;
        onLive(live);
      },
    });
    rememberOwner(run.request_id, run.owner_token);
    clearInterval(tick);
    const ttft = firstToken === null ? "" : ` (first token ${seconds(firstToken)})`;
    status.textContent = `Done in ${seconds(performance.now() - started)}${ttft}`;
    showIdle(); // before the run opens: a click now starts a new run, not a dead Stop
    await onDone(run);
  } catch (err) {
    clearInterval(tick);
    showIdle();
    if (err.name === "AbortError") {
      status.textContent = "Stopped";
      if (liveId) {
        await onStopped(liveId);
        return;
      }
    } else {
      status.textContent = "Failed";
      showError("The run failed", err);
    }
    onFailed();
  } finally {
    clearInterval(tick);
  }
}

export function wireRunForm(handlers) {
  applyLimits();
  $("run-form").addEventListener("submit", (event) => submitRun(event, handlers));
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("run-form").requestSubmit();
  });
  $("sae-id").addEventListener("change", () => fillLayers());
}

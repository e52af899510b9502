// The /playground/activations page: plain DOM, no framework, no build step. This module opens
// runs and keeps the panels in step; each panel is its own module.
import { renderTrack, wireTrack } from "./activation-track.js";
import { API, api } from "./api.js";
import { pickForCompare, renderRunActions, wireCompare } from "./compare.js";
import { clearError, showError, wireErrorBanner } from "./error-banner.js";
import { featureFromLocation, markCurrentRun, openFeature, openFeatureOfRun, wireFeatureView } from "./feature-view.js";
import { startHealth } from "./health.js";
import { wireHelp } from "./help.js";
import { renderFeatureFocus, renderSummary, renderTokenDetail, renderTokens, wireOutput } from "./output.js";
import { runIdFromLocation, showRunInLocation } from "./permalink.js";
import { loadLabels } from "./labels.js";
import { loadRuns, markActiveRun, wireRecentRuns } from "./recent-runs.js";
import { clearRows, filterRowsToFeature, loadRows, wireRows } from "./rows.js";
import { loadSaes, wireRunForm } from "./run-form.js";
import { hidePair, showPairOf } from "./pair-view.js";
import { state, timeline } from "./state.js";
import { wireSteer } from "./steer.js";
import { clearTopFeatures, highlightTopRow, loadTopFeatures, wireTopFeatures } from "./top-features.js";

// runOrId: a run answer, or the id of a stored run to fetch.
let openSeq = 0; // a run opened later wins over one still loading

async function openRun(runOrId) {
  clearError();
  delete document.body.dataset.streaming;
  const seq = ++openSeq;
  let run = runOrId;
  // The address names the run at once, not after everything has loaded.
  showRunInLocation(typeof runOrId === "string" ? runOrId : runOrId.request_id);
  if (typeof runOrId === "string") {
    try {
      run = await api(`${API}/${encodeURIComponent(runOrId)}`);
    } catch (err) {
      if (seq === openSeq) showError("Could not open the run", err);
      return;
    }
  }
  const labels = run.preview ? await loadLabels(run.preview.sae_id, run.preview.sae_layer) : new Map();
  if (seq !== openSeq) return;
  state.run = run;
  state.selectedFeature = null;
  state.pinnedPosition = null;
  state.byPosition = new Map(timeline(run).map((entry) => [entry.position, entry]));
  state.labels = labels;
  renderSummary(run);
  showPairOf(run, openRun);
  renderRunActions(run);
  renderTokens();
  renderTrack();
  renderTokenDetail(null);
  renderFeatureFocus();
  markActiveRun();
  markCurrentRun();
  if (run.status === "failed" || !run.preview) {
    const message = run.status === "failed" ? "This run failed: nothing to show." : "This run has no SAE preview.";
    clearTopFeatures(message);
    clearRows(message);
    return;
  }
  await Promise.all([loadTopFeatures(), loadRows(true)]);
}

// A run while it streams: its tokens as they come, shaded as their features arrive; the
// tables wait for the stored run. Drawn at most once per frame.
let liveFrame = null;
function showLive(run) {
  state.run = run;
  if (liveFrame !== null) return;
  liveFrame = requestAnimationFrame(() => {
    liveFrame = null;
    const live = state.run;
    if (!live || !live.streaming) return;
    if (!document.body.dataset.streaming) {
      hidePair();
      state.selectedFeature = null;
      state.pinnedPosition = null;
      clearTopFeatures("Streaming: the table follows when the run is stored.");
      clearRows("Streaming: the rows follow when the run is stored.");
      renderTokenDetail(null);
      renderFeatureFocus();
    }
    document.body.dataset.streaming = "true";
    state.byPosition = new Map(timeline(live).map((entry) => [entry.position, entry]));
    renderSummary(live);
    renderTokens();
  });
}

// After Stop: the page keeps what streamed until the stored run (status stopped: the answer
// and features so far) replaces it; the backend stores it once it has seen the client go.
async function openStopped(requestId) {
  const seq = openSeq;
  for (let wait = 100; wait < 3000; wait *= 1.5) {
    await new Promise((resolve) => setTimeout(resolve, wait));
    if (seq !== openSeq) return; // another run was opened meanwhile
    let run;
    try {
      run = await api(`${API}/${encodeURIComponent(requestId)}`);
    } catch {
      continue; // not stored yet
    }
    await openRun(run);
    await loadRuns(true);
    return;
  }
  delete document.body.dataset.streaming;
  clearTopFeatures("Stopped: the run was not stored.");
  clearRows("Stopped: the run was not stored.");
}

// Shade the tokens by one feature (null: by each position's strongest) and mark it in the table.
function showFeature(featureId) {
  state.selectedFeature = featureId;
  renderTokens();
  renderTrack();
  renderFeatureFocus();
  highlightTopRow();
}

// A feature clicked anywhere: shown everywhere, the rows filtered to it, its view opened.
function selectFeature(featureId) {
  showFeature(featureId);
  renderTokenDetail(state.pinnedPosition);
  if (featureId !== null) {
    filterRowsToFeature(featureId);
    openFeatureOfRun(featureId);
  }
}

function wire() {
  wireErrorBanner();
  wireRunForm({
    onDone: async (run) => {
      await openRun(run);
      await loadRuns(true);
    },
    onFailed: () => {
      delete document.body.dataset.streaming;
      loadRuns(true);
    },
    onLive: showLive,
    onStopped: openStopped,
  });
  wireHelp();
  wireTrack({ onPick: selectFeature });
  wireOutput({
    onSelectFeature: selectFeature,
    onClearFeature: () => {
      selectFeature(null);
      filterRowsToFeature(null);
    },
  });
  wireTopFeatures({ onSelectFeature: selectFeature });
  wireRows({ onSelectFeature: selectFeature, onFilterFeature: showFeature });
  wireRecentRuns({ onOpen: openRun, onCompare: pickForCompare });
  wireCompare();
  wireSteer({
    onDone: async (run) => {
      await openRun(run);
      await loadRuns(true);
    },
    onFailed: () => loadRuns(true),
  });
  wireFeatureView({ onOpen: openRun });
}

async function start() {
  wire();
  startHealth();
  await Promise.all([loadSaes(), loadRuns(true)]);
  const requestId = runIdFromLocation();
  if (requestId) await openRun(requestId);
  const feature = featureFromLocation();
  if (feature) await openFeature(feature.saeId, feature.layer, feature.featureId);
  document.body.dataset.ready = "true";
}

start();

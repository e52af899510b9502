// The activation track: one feature across every token of the open run, each token shaded by
// that feature alone (its value on hover), the feature picked from the run's features or
// anywhere on the page.
import { $, el } from "./dom.js";
import { displayToken, fmt } from "./format.js";
import { labelOf } from "./labels.js";
import { state, timeline } from "./state.js";

const CHOICES = 50; // the run's strongest features offered in the picker

// The run's features, strongest (by max activation) first: [{id, max}].
function runFeatures(entries) {
  const peaks = new Map();
  for (const entry of entries) {
    for (const f of entry.features || []) {
      if (f.activation > (peaks.get(f.feature_id) ?? 0)) peaks.set(f.feature_id, f.activation);
    }
  }
  return [...peaks].map(([id, max]) => ({ id, max })).sort((a, b) => b.max - a.max || a.id - b.id);
}

function activationAt(entry, featureId) {
  const hit = (entry.features || []).find((f) => f.feature_id === featureId);
  return hit ? hit.activation : 0;
}

// featureId: the feature to show (null: the one picked on the page, else the run's strongest).
export function renderTrack(featureId = null) {
  const box = $("track");
  const run = state.run;
  const entries = timeline(run);
  const choices = run && !run.streaming ? runFeatures(entries) : [];
  if (!choices.length) {
    box.hidden = true;
    return;
  }
  const picked = featureId ?? state.selectedFeature ?? choices[0].id;
  const offered = choices.slice(0, CHOICES);
  if (!offered.some((c) => c.id === picked)) {
    offered.unshift(choices.find((c) => c.id === picked) || { id: picked, max: 0 });
  }
  const select = $("track-feature");
  select.replaceChildren(
    ...offered.map((c) => {
      const label = labelOf(c.id);
      return el("option", { value: String(c.id) }, `#${c.id}${label ? ` ${label}` : ""} (max ${fmt(c.max)})`);
    }),
  );
  select.value = String(picked);
  const showPrompt = $("show-prompt-tokens").checked;
  const shown = entries.filter((e) => showPrompt || e.segment !== "prompt");
  const values = shown.map((e) => activationAt(e, picked));
  const peak = Math.max(1e-9, ...values);
  $("track-tokens").replaceChildren(
    ...shown.map((entry, i) => {
      const value = values[i];
      const span = el(
        "span",
        {
          class: `track-tok${value > 0 ? "" : " zero"}`,
          dataset: { position: String(entry.position), activation: String(value) },
          title: `${displayToken(entry.token)} · position ${entry.position} · #${picked}: ${value > 0 ? fmt(value) : "0 (not among this token's features)"}`,
        },
        displayToken(entry.token),
      );
      span.style.setProperty("--strength", (value / peak).toFixed(3));
      return span;
    }),
  );
  box.dataset.feature = String(picked);
  box.hidden = false;
}

// onPick(featureId) when a feature is picked in the track's own list.
export function wireTrack({ onPick }) {
  $("track-feature").addEventListener("change", (event) => onPick(Number(event.target.value)));
  $("show-prompt-tokens").addEventListener("change", () => renderTrack(Number($("track").dataset.feature) || null));
}

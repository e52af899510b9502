// What more than one panel reads: the open run and the feature/position the user picked.
// Each panel keeps the rest (its page, its sort order) to itself.

export const state = {
  run: null, // the open run (ActivationRunResponse)
  saes: [], // from the SAE catalogue
  labels: new Map(), // feature id -> label, for the open run's SAE (labels.js)
  byPosition: new Map(), // position -> timeline entry of the open run
  selectedFeature: null,
  pinnedPosition: null,
};

export const timeline = (run) => (run && run.preview && run.preview.feature_timeline) || [];

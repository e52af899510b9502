// The small "Steer" button other panels put beside a feature (Top Features, the feature view,
// search results); steer.js listens for it on the whole page and adds the feature.
import { el } from "./dom.js";

export function steerButton(featureId, saeId, layer) {
  return el(
    "button",
    {
      type: "button",
      class: "link-button steer-add",
      dataset: { steerFeature: String(featureId), steerSae: saeId || "", steerLayer: layer == null ? "" : String(layer) },
      title: `Add feature #${featureId} to the Steer panel`,
    },
    "Steer",
  );
}

// Feature labels of the open run's SAE: one request per SAE and layer, answered from the
// backend's Postgres cache (GET /playground/features/{sae}/{layer}/labels: no GPU call).
import { api } from "./api.js";
import { state } from "./state.js";

const FEATURES_API = "/playground/features";
const cache = new Map(); // "sae/layer" -> Promise<Map<featureId, label>>

export function loadLabels(saeId, layer) {
  const key = `${saeId}/${layer}`;
  if (!cache.has(key)) {
    const url = `${FEATURES_API}/${encodeURIComponent(saeId)}/${layer}/labels`;
    const labels = api(url).then(
      (body) => new Map(Object.entries(body.labels || {}).map(([id, text]) => [Number(id), text])),
      () => {
        cache.delete(key); // unreachable or unknown: no labels now, asked again next time
        return new Map();
      },
    );
    cache.set(key, labels);
  }
  return cache.get(key);
}

// The open run's label for a feature; "" when it has none.
export const labelOf = (featureId) => state.labels.get(featureId) || "";

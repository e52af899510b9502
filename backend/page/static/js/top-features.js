// The Top Features card (GET /{id}/top-features): a sortable table with a sparkline per feature.
import { API, api, query } from "./api.js";
import { $, el } from "./dom.js";
import { showError } from "./error-banner.js";
import { fmt } from "./format.js";
import { labelOf } from "./labels.js";
import { sparkline } from "./sparkline.js";
import { steerButton } from "./steer-button.js";
import { state, timeline } from "./state.js";

const TOP_LIMIT = 50;

let features = []; // the open run's, each with apiOrder: its place in the API's answer
let sort = { key: "max_activation", dir: -1 };

export async function loadTopFeatures() {
  if (!state.run || !state.run.preview) return;
  const params = { limit: TOP_LIMIT, segment: $("top-segment").value };
  try {
    const body = await api(`${API}/${encodeURIComponent(state.run.request_id)}/top-features${query(params)}`);
    // Remember the API's order (max activation, then hits) to break sort ties with it.
    features = body.top_features.map((f, i) => ({ ...f, apiOrder: i }));
  } catch (err) {
    features = [];
    showError("Could not load top features", err);
  }
  renderTopFeatures();
}

// Empties the table, saying why (a failed run, no SAE preview).
export function clearTopFeatures(message) {
  features = [];
  renderTopFeatures();
  $("top-empty").textContent = message;
}

function sortedFeatures() {
  const { key, dir } = sort;
  return [...features].sort((a, b) => {
    const diff = (a[key] ?? -Infinity) - (b[key] ?? -Infinity);
    return diff !== 0 ? diff * dir : a.apiOrder - b.apiOrder;
  });
}

function renderTopFeatures() {
  const tbody = $("top-features").querySelector("tbody");
  const entries = timeline(state.run);
  const rows = sortedFeatures().map((f) =>
    el(
      "tr",
      { dataset: { feature: String(f.feature_id) }, class: state.selectedFeature === f.feature_id ? "selected" : null, title: "Show this feature across the run and the stored runs", tabindex: "0" },
      el("td", {}, el("span", { class: "fid" }, `#${f.feature_id}`)),
      el("td", { class: "label-text" }, labelOf(f.feature_id)),
      el("td", { class: "num" }, fmt(f.max_activation)),
      el("td", { class: "num" }, fmt(f.mean_activation)),
      el("td", { class: "num" }, f.hits ?? ""),
      el("td", { class: "num" }, f.max_position ?? ""),
      el("td", { class: "spark-cell" }, sparkline(entries, f.feature_id), steerButton(f.feature_id, state.run.preview.sae_id, state.run.preview.sae_layer)),
    ),
  );
  tbody.replaceChildren(...rows);
  $("top-empty").hidden = rows.length > 0;
  $("top-empty").textContent = state.run ? "No features for this segment." : "No run open.";
  for (const th of $("top-features").querySelectorAll("th[data-key]")) {
    const sorted = th.dataset.key === sort.key;
    th.classList.toggle("sorted-asc", sorted && sort.dir === 1);
    th.classList.toggle("sorted-desc", sorted && sort.dir === -1);
    th.setAttribute("aria-sort", sorted ? (sort.dir === 1 ? "ascending" : "descending") : "none");
  }
}

export function highlightTopRow() {
  for (const tr of $("top-features").querySelectorAll("tbody tr")) {
    tr.classList.toggle("selected", Number(tr.dataset.feature) === state.selectedFeature);
  }
}

// onSelectFeature(id) when a row is clicked.
export function wireTopFeatures({ onSelectFeature }) {
  const tbody = $("top-features").querySelector("tbody");
  tbody.addEventListener("click", (event) => {
    const row = event.target.closest("tr[data-feature]");
    if (row) onSelectFeature(Number(row.dataset.feature));
  });
  tbody.addEventListener("keydown", (event) => {
    const row = event.target.closest("tr[data-feature]");
    if (row && event.key === "Enter") onSelectFeature(Number(row.dataset.feature));
  });
  for (const th of $("top-features").querySelectorAll("th[data-key]")) {
    th.tabIndex = 0;
    const sortBy = () => {
      const key = th.dataset.key;
      sort = { key, dir: sort.key === key ? -sort.dir : -1 };
      renderTopFeatures();
    };
    th.addEventListener("click", sortBy);
    th.addEventListener("keydown", (event) => {
      if (event.key === "Enter") sortBy();
    });
  }
  $("top-segment").addEventListener("change", loadTopFeatures);
}

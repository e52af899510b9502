// The Activation Rows card (GET /{id}/rows): filters, the table, Previous/Next.
import { API, api, query } from "./api.js";
import { $, el } from "./dom.js";
import { clearError, showError } from "./error-banner.js";
import { displayToken, fmt } from "./format.js";
import { labelOf } from "./labels.js";
import { state } from "./state.js";

let offset = 0;
let total = 0;

function rowFilters() {
  const value = (id) => $(id).value.trim();
  return {
    feature_id: value("f-feature"),
    token_start: value("f-start"),
    token_end: value("f-end"),
    rank_max: value("f-rank"),
    segment: $("f-segment").value,
    limit: Number($("f-limit").value),
  };
}

function rowCells(r) {
  return el(
    "tr",
    { class: r.step === null || r.step === undefined ? "prompt-row" : null },
    el("td", { class: "num" }, r.token_position),
    el("td", { class: "num" }, r.step ?? "—"),
    el("td", {}, el("code", { class: "cell-token" }, displayToken(r.token))),
    el("td", { class: "num" }, el("button", { type: "button", class: "link-button fid", dataset: { feature: String(r.feature_id) } }, `#${r.feature_id}`)),
    el("td", { class: "label-text" }, labelOf(r.feature_id)),
    el("td", { class: "num" }, fmt(r.activation_value)),
    el("td", { class: "num" }, r.rank),
  );
}

// fromStart: back to the first page (a new run, new filters).
export async function loadRows(fromStart = false) {
  if (fromStart) offset = 0;
  if (!state.run || !state.run.preview) return;
  const params = { ...rowFilters(), offset };
  const tbody = $("rows").querySelector("tbody");
  try {
    const body = await api(`${API}/${encodeURIComponent(state.run.request_id)}/rows${query(params)}`);
    const rows = body.rows;
    total = body.total;
    tbody.replaceChildren(...rows.map(rowCells));
    const first = rows.length ? offset + 1 : 0;
    const last = offset + rows.length;
    $("rows-range").textContent = total ? `Rows ${first}–${last} of ${total}` : "No rows match these filters.";
    $("rows-prev").disabled = offset === 0;
    $("rows-next").disabled = last >= total;
  } catch (err) {
    clearRows("Rows unavailable.");
    showError("Could not load activation rows", err);
  }
}

// Empties the table, saying why.
export function clearRows(message) {
  $("rows").querySelector("tbody").replaceChildren();
  $("rows-range").textContent = message;
  $("rows-prev").disabled = true;
  $("rows-next").disabled = true;
}

// The rows follow the picked feature.
export function filterRowsToFeature(featureId) {
  $("f-feature").value = featureId === null ? "" : String(featureId);
  loadRows(true);
}

// onSelectFeature(id) when a row's feature is clicked (null: filters cleared);
// onFilterFeature(id or null) when the filters are applied.
export function wireRows({ onSelectFeature, onFilterFeature }) {
  $("rows-filters").addEventListener("submit", (event) => {
    event.preventDefault();
    clearError();
    const feature = $("f-feature").value.trim();
    onFilterFeature(feature === "" ? null : Number(feature));
    loadRows(true);
  });
  $("rows-clear").addEventListener("click", () => {
    $("rows-filters").reset();
    onSelectFeature(null);
    loadRows(true);
  });
  $("f-limit").addEventListener("change", () => loadRows(true));
  $("rows-prev").addEventListener("click", () => {
    offset = Math.max(0, offset - Number($("f-limit").value));
    loadRows();
  });
  $("rows-next").addEventListener("click", () => {
    offset += Number($("f-limit").value);
    loadRows();
  });
  $("rows").querySelector("tbody").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-feature]");
    if (button) onSelectFeature(Number(button.dataset.feature));
  });
}

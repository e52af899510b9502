// The Recent Runs card (GET /playground/activations/runs): newest first, "Load more" follows
// next_cursor; failed, stopped and pruned runs are flagged.
import { API, api, query } from "./api.js";
import { $, el } from "./dom.js";
import { showError } from "./error-banner.js";
import { formatTime } from "./format.js";
import { forgetOwner, ownerToken } from "./owners.js";
import { state } from "./state.js";

const RUNS_PAGE = 10;

let cursor = null;

// reset: from the newest run again (after a run, on Refresh).
export async function loadRuns(reset) {
  if (reset) cursor = null;
  const list = $("recent-runs");
  try {
    const body = await api(`${API}/runs${query({ limit: RUNS_PAGE, cursor })}`);
    const items = body.runs.map(runItem);
    if (reset) list.replaceChildren(...items);
    else list.append(...items);
    cursor = body.next_cursor || null;
    $("runs-more").hidden = !cursor;
    $("runs-empty").hidden = list.children.length > 0;
    markActiveRun();
  } catch (err) {
    showError("Could not load recent runs", err);
  }
}

function runItem(run) {
  const prompt = run.prompt_preview.trim();
  const flags = [run.status !== "ok" ? run.status : null, run.pruned ? "pruned" : null].filter(Boolean);
  // Runs made in this browser can be deleted from it (their owner token is kept here).
  const deletable = ownerToken(run.request_id)
    ? el("button", { type: "button", class: "link-button run-delete", dataset: { requestId: run.request_id }, title: "Delete this run (made in this browser)" }, "Delete")
    : null;
  const comparable = run.status !== "failed" && !run.pruned && run.has_preview;
  const compare = comparable
    ? el("button", { type: "button", class: "link-button run-compare", dataset: { requestId: run.request_id }, title: "Compare this run with the open one (or pick two)" }, "Compare")
    : null;
  return el(
    "li",
    {},
    el("span", { class: "run-actions-inline" }, compare, deletable),
    el(
      "button",
      { type: "button", class: `run-item${flags.length ? " run-flagged" : ""}`, dataset: { requestId: run.request_id }, title: prompt },
      el("span", { class: "run-prompt" }, prompt || "(empty prompt)"),
      el("span", { class: "run-meta" }, [formatTime(run.created_at), run.sae_id, run.model_id].filter(Boolean).join(" · ")),
      flags.length ? el("span", { class: `run-flags${run.status === "stopped" ? " stopped" : ""}` }, flags.join(" · ")) : null,
    ),
  );
}

export function markActiveRun() {
  const current = state.run ? state.run.request_id : null;
  for (const button of document.querySelectorAll("#recent-runs .run-item")) {
    button.classList.toggle("active", button.dataset.requestId === current);
  }
}

async function deleteRun(requestId) {
  try {
    await api(`${API}/${encodeURIComponent(requestId)}`, {
      method: "DELETE",
      headers: { "X-Run-Owner": ownerToken(requestId) },
    });
    forgetOwner(requestId);
  } catch (err) {
    if (err.status === 404) forgetOwner(requestId);
    else showError("Could not delete the run", err);
  }
  await loadRuns(true);
}

// onOpen(requestId) when a listed run is clicked; onCompare(requestId) on its "Compare".
export function wireRecentRuns({ onOpen, onCompare }) {
  $("recent-runs").addEventListener("click", (event) => {
    const compare = event.target.closest(".run-compare");
    if (compare) {
      onCompare(compare.dataset.requestId);
      return;
    }
    const remove = event.target.closest(".run-delete");
    if (remove) {
      deleteRun(remove.dataset.requestId);
      return;
    }
    const button = event.target.closest(".run-item");
    if (button) onOpen(button.dataset.requestId);
  });
  $("runs-more").addEventListener("click", () => loadRuns(false));
  $("runs-refresh").addEventListener("click", () => loadRuns(true));
}

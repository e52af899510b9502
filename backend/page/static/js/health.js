// The health badge: one pill per check of GET /playground/activations/health, which answers
// {status, postgres, engine, sae, error}, each check {ok, latency_ms, error}.
import { API, api } from "./api.js";

const HEALTH_EVERY_MS = 15000;

async function refreshHealth() {
  let health = null;
  let failure = null;
  try {
    health = await api(`${API}/health`);
  } catch (err) {
    // 503 still carries the checks (Postgres down); anything else: the backend is unreachable.
    if (err.body && err.body.postgres) health = err.body;
    else failure = err;
  }
  for (const pill of document.querySelectorAll("#health .pill")) {
    const check = health ? health[pill.dataset.service] : null;
    let cls = "pill-down";
    let title = failure ? `backend: ${failure.message}` : "not reported";
    if (check && check.ok) {
      cls = "pill-ok";
      title = check.latency_ms != null ? `ok, ${Math.round(check.latency_ms)} ms` : "ok";
    } else if (check) {
      title = check.error || "down";
    }
    pill.className = `pill ${cls}`;
    pill.title = `${pill.textContent}: ${title}`;
  }
}

// Polls only while the tab is visible: a hidden tab asks nothing (and the backend answers the
// GPU services' state from its cache, so even a visible one keeps no GPU awake).
export function startHealth() {
  refreshHealth();
  setInterval(() => {
    if (document.visibilityState === "visible") refreshHealth();
  }, HEALTH_EVERY_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refreshHealth();
  });
}

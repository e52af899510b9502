// The error banner: an ApiError's message, upstream, HTTP status and code, as text.
import { $, el } from "./dom.js";

// Plain words for the answers a stranger is most likely to meet.
function plainMessage(err) {
  if (err.status === 429) {
    const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : " Try again shortly.";
    return `Too many requests from this browser.${wait}`;
  }
  if (err.status === 503 && err.code === "overloaded") {
    const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : " Try again shortly.";
    return `The playground is busy right now.${wait}`;
  }
  if (err.status === 409 && err.code === "run_owned") {
    return "That run id belongs to someone else: only whoever made a run can re-run or delete it. Leave the id empty for a new run.";
  }
  return err.message || String(err);
}

// A problem: the page's own sentence, or a 422 detail ({loc, msg}).
function problemText(detail) {
  if (typeof detail === "string") return detail;
  const where = (detail.loc || []).filter((p) => !["body", "query", "path"].includes(p)).join(".");
  return where ? `${where}: ${detail.msg}` : String(detail.msg || "");
}

export function showError(title, err) {
  $("error-title").textContent = title;
  $("error-message").textContent = plainMessage(err);
  const meta = [];
  if (err.upstream) meta.push(`upstream: ${err.upstream}`);
  if (err.status) meta.push(`HTTP ${err.status}`);
  if (err.code) meta.push(err.code);
  // Every problem, when there is more than one (a 422 names each; so does the page's check).
  const details = Array.isArray(err.details) && err.details.length > 1 ? err.details : [];
  $("error-details").replaceChildren(...details.map((d) => el("li", {}, problemText(d))));
  $("error-details").hidden = !details.length;
  $("error-meta").textContent = meta.join(" · ");
  $("error").hidden = false;
}

export function clearError() {
  $("error").hidden = true;
}

export function wireErrorBanner() {
  $("error-close").addEventListener("click", clearError);
}

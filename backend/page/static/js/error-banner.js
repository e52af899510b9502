// The error banner: an ApiError's message, upstream, HTTP status and code, as text.
import { $ } from "./dom.js";

export function showError(title, err) {
  $("error-title").textContent = title;
  $("error-message").textContent = err.message || String(err);
  const meta = [];
  if (err.upstream) meta.push(`upstream: ${err.upstream}`);
  if (err.status) meta.push(`HTTP ${err.status}`);
  if (err.code) meta.push(err.code);
  if (Array.isArray(err.details) && err.details.length > 1) {
    meta.push(`${err.details.length} problems`);
  }
  $("error-meta").textContent = meta.join(" · ");
  $("error").hidden = false;
}

export function clearError() {
  $("error").hidden = true;
}

export function wireErrorBanner() {
  $("error-close").addEventListener("click", clearError);
}

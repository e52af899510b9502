// The backend's JSON API: one fetch wrapper that turns every failure into an ApiError carrying
// the one error shape ({error: {code, message, upstream}}), so panels only show err.message.

export const API = "/playground/activations";
export const SAES_URL = "/playground/features/saes";

export class ApiError extends Error {
  constructor({ code, message, upstream, details }, status, body = null, headers = null) {
    super(message || "request failed");
    // Seconds to wait before trying again (429 rate_limited, 503 overloaded), when told.
    const retry = headers ? Number(headers.get("Retry-After")) : NaN;
    this.retryAfter = Number.isFinite(retry) && retry > 0 ? retry : null;
    // A new run that failed still names its owner token (so its maker can retry or delete it).
    this.ownerToken = headers ? headers.get("X-Run-Owner") : null;
    this.body = body; // the parsed body, for answers that carry data with an error status
    this.code = code || "error";
    this.upstream = upstream || null;
    this.details = details || null;
    this.status = status;
  }
}

export async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, {
      ...options,
      headers: { Accept: "application/json", ...(options.headers || {}) },
    });
  } catch (err) {
    throw new ApiError(
      { code: "network_error", message: `Could not reach the backend (${err.message}).` },
      0,
    );
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    // Not our error shape (a proxy's page, say): keep its first words as the message.
    const error = body && body.error ? body.error : {
      code: `http_${response.status}`,
      message: (text || response.statusText || "request failed").slice(0, 300),
    };
    throw new ApiError(error, response.status, body, response.headers);
  }
  return body;
}

// "?a=1&b=2" from the params that have a value; "" when none has.
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

// A streamed steered pair (POST /playground/activations/run with steer, compare: true and
// Accept: text/event-stream): both runs' events arrive interleaved, each naming its `role`
// (steered | default); two `done` events end it (the default's, then the steered one's).
import { ApiError } from "./api.js";
import { liveRun, readEvents } from "./stream.js";

async function httpError(response) {
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  const error = parsed && parsed.error ? parsed.error : {
    code: `http_${response.status}`,
    message: (text || response.statusText || "request failed").slice(0, 300),
  };
  return new ApiError(error, response.status, parsed, response.headers);
}

// onLive({steered, default}) after each event that changed a run; onOwner(requestId, token)
// per started run. Resolves to {steered, default} (the done answers); rejects with an ApiError.
export async function streamPair(url, { body, headers, signal, onLive, onOwner }) {
  const response = await fetch(url, {
    method: "POST",
    headers: { ...headers, Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok || !type.startsWith("text/event-stream")) throw await httpError(response);
  const live = { steered: null, default: null };
  const done = { steered: null, default: null };
  let failure = null;
  await readEvents(response, (name, data) => {
    const role = data.role === "default" ? "default" : "steered";
    const run = live[role];
    if (name === "started") {
      live[role] = liveRun(body, data);
      if (data.owner_token) onOwner(data.request_id, data.owner_token);
    } else if (name === "token" && run) {
      run.preview.feature_timeline.push({
        position: data.position,
        token_id: data.token_id,
        token: data.text,
        segment: "output",
        special: false,
        features: [],
      });
    } else if (name === "features" && run) {
      for (const entry of data.entries) run.preview.feature_timeline[entry.position] = entry;
    } else if (name === "done") {
      done[role] = data;
      return;
    } else if (name === "error") {
      failure = new ApiError(data.error || {}, 200);
      return;
    } else {
      return;
    }
    onLive(live);
  });
  if (failure) throw failure;
  if (!done.steered) throw new ApiError({ code: "stream_ended", message: "The stream ended without an answer." }, 200);
  return done;
}

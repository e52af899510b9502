// A streamed run (POST /playground/activations/run with Accept: text/event-stream): reads the
// events (started, token, features, done, error) and keeps a provisional run that the page
// draws as it grows: tokens as they are generated, shaded once their features arrive.
import { ApiError } from "./api.js";

// Events of one response body: calls onEvent(name, data) per frame.
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

// The provisional run: the shape openRun draws (a timeline of entries by position).
export function liveRun(body, started) {
  const entries = started.prompt_tokens.map((t) => ({
    position: t.position,
    token_id: t.token_id,
    token: t.token,
    segment: "prompt",
    special: false,
    features: [],
  }));
  return {
    request_id: started.request_id,
    model_id: started.model_id,
    prompt: body.prompt,
    status: "ok",
    streaming: true,
    output: null,
    // The SAE asked for (the stored run names the one used).
    preview: { sae_id: body.sae_id || null, sae_layer: body.sae_layer ?? null, sae_top_k: body.sae_top_k ?? null, feature_timeline: entries },
    timings_ms: {},
  };
}

// Streams one run. onLive(run, {firstTokenMs}) after each event that changed the run;
// onOwner(requestId, token) as soon as `started` names a new run's owner token. Resolves to
// the `done` run (the blocking answer); rejects with an ApiError (plain HTTP errors and
// `error` events alike), or an AbortError when `signal` aborts.
export async function streamRun(url, { body, headers, signal, onLive, onOwner }) {
  const response = await fetch(url, {
    method: "POST",
    headers: { ...headers, Accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  const type = response.headers.get("Content-Type") || "";
  if (!response.ok || !type.startsWith("text/event-stream")) {
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = null;
    }
    if (response.ok && parsed) return parsed; // a server that answered the blocking way
    const error = parsed && parsed.error ? parsed.error : {
      code: `http_${response.status}`,
      message: (text || response.statusText || "request failed").slice(0, 300),
    };
    throw new ApiError(error, response.status, parsed, response.headers);
  }
  const clock = performance.now();
  let run = null;
  let done = null;
  let failure = null;
  let firstTokenMs = null;
  await readEvents(response, (name, data) => {
    if (name === "started") {
      run = liveRun(body, data);
      if (data.owner_token) onOwner(data.request_id, data.owner_token);
    } else if (name === "token" && run) {
      if (firstTokenMs === null) firstTokenMs = performance.now() - clock;
      run.preview.feature_timeline.push({
        position: data.position,
        token_id: data.token_id,
        token: data.text,
        segment: "output",
        special: false,
        features: [],
      });
    } else if (name === "features" && run) {
      const timeline = run.preview.feature_timeline;
      for (const entry of data.entries) timeline[entry.position] = entry;
    } else if (name === "done") {
      done = data;
      return;
    } else if (name === "error") {
      failure = new ApiError(data.error || {}, 200);
      return;
    } else {
      return;
    }
    if (run) onLive(run, { firstTokenMs });
  });
  if (failure) throw failure;
  if (!done) throw new ApiError({ code: "stream_ended", message: "The stream ended without an answer." }, 200);
  done.first_token_ms = firstTokenMs;
  return done;
}

// The run form's bounds, from the backend (the page's <meta name="run-limits">, rendered from
// backend/activations/limits.py): set on the fields and checked before a run is sent, with the
// same words and numbers as the API's 422.

// Form field id -> request field name.
const FIELDS = {
  prompt: "prompt",
  "max-tokens": "max_tokens",
  temperature: "temperature",
  "top-p": "top_p",
  "top-k": "top_k",
  "sae-top-k": "sae_top_k",
};

export function runLimits() {
  const meta = document.querySelector('meta[name="run-limits"]');
  try {
    return meta ? JSON.parse(meta.content) : {};
  } catch {
    return {};
  }
}

// Show the bounds on the fields (the browser's own hints and spinners follow them).
export function applyLimits(limits = runLimits()) {
  for (const [id, name] of Object.entries(FIELDS)) {
    const input = document.getElementById(id);
    const bound = limits[name];
    if (!input || !bound) continue;
    if (bound.max_length !== undefined) input.maxLength = bound.max_length;
    if (bound.min !== undefined && !bound.min_exclusive) input.min = String(bound.min);
    if (bound.max !== undefined) input.max = String(bound.max);
    const range = describe(bound);
    if (range) input.title = range;
  }
}

function describe(bound) {
  if (bound.max_length !== undefined) return `at most ${bound.max_length} characters`;
  const low = bound.min === undefined ? null : `${bound.min_exclusive ? "greater than" : "at least"} ${bound.min}`;
  const high = bound.max === undefined ? null : `at most ${bound.max}`;
  return [low, high].filter(Boolean).join(", ");
}

// Every problem of a run request body, as "field: what" sentences (empty when none).
export function checkRun(body, limits = runLimits()) {
  const problems = [];
  const prompt = typeof body.prompt === "string" ? body.prompt : "";
  if (!prompt.trim()) problems.push("prompt: write something to ask (it is empty or only spaces)");
  const promptMax = limits.prompt && limits.prompt.max_length;
  if (promptMax !== undefined && prompt.length > promptMax) {
    problems.push(`prompt: at most ${promptMax} characters (it has ${prompt.length})`);
  }
  for (const name of Object.values(FIELDS)) {
    if (name === "prompt" || !(name in body)) continue;
    const value = body[name];
    const bound = limits[name] || {};
    if (!Number.isFinite(value)) {
      problems.push(`${name}: must be a number`);
      continue;
    }
    if (bound.min !== undefined && (bound.min_exclusive ? value <= bound.min : value < bound.min)) {
      problems.push(`${name}: ${bound.min_exclusive ? "greater than" : "at least"} ${bound.min}`);
    } else if (bound.max !== undefined && value > bound.max) {
      problems.push(`${name}: at most ${bound.max}`);
    }
  }
  return problems;
}

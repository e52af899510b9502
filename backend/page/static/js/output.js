// The Output card: the run's summary, its tokens shaded by feature strength, the hovered or
// pinned token's features, and the "shaded by feature #N" note.
import { $, el } from "./dom.js";
import { displayToken, formatTime } from "./format.js";
import { labelOf } from "./labels.js";
import { state, timeline } from "./state.js";

// A prompt longer than this is shown cut, with "show all".
const PROMPT_PREVIEW_CHARS = 280;

// The run's prompt: whole when short, else its start and a "show all" toggle.
function promptView(prompt) {
  const text = el("span", { class: "v prompt-text" }, prompt);
  if (prompt.length <= PROMPT_PREVIEW_CHARS && prompt.split("\n").length <= 4) {
    return el("div", { class: "kv kv-prompt" }, el("span", { class: "k" }, "Prompt"), text);
  }
  const cut = prompt.slice(0, PROMPT_PREVIEW_CHARS).split("\n").slice(0, 4).join("\n");
  text.textContent = `${cut}…`;
  const toggle = el("button", { type: "button", class: "link-button prompt-toggle", "aria-expanded": "false" }, `show all (${prompt.length} characters)`);
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    text.textContent = open ? prompt : `${cut}…`;
    toggle.textContent = open ? "show less" : `show all (${prompt.length} characters)`;
    toggle.setAttribute("aria-expanded", String(open));
  });
  return el("div", { class: "kv kv-prompt" }, el("span", { class: "k" }, "Prompt"), text, toggle);
}

// The badge a demo SAE earns: only the random one (`up --tiny`) is meaningless.
export function saeBadge(sae) {
  if (!sae || !sae.demo) return null;
  return sae.has_labels
    ? el("span", { class: "badge badge-demo-trained", title: sae.description || "" }, "demo SAE: small, trained")
    : el("span", { class: "badge badge-demo" }, "demo SAE: random weights");
}

export function renderSummary(run) {
  const preview = run.preview || {};
  const output = run.output || {};
  const sae = state.saes.find((s) => s.sae_id === preview.sae_id);
  const timings = run.timings_ms || {};
  const items = [
    ["Run", run.request_id],
    ["Status", run.streaming ? "streaming" : run.status !== "ok" ? run.status : null],
    ["Model", run.model_id],
    ["Created", formatTime(run.created_at)],
    ["Finish", output.finish_reason],
    ["SAE", preview.sae_id ? [preview.sae_id, preview.sae_layer != null ? `layer ${preview.sae_layer}` : null, preview.sae_top_k != null ? `top ${preview.sae_top_k}` : null].filter(Boolean).join(" · ") : run.streaming ? "default" : "none"],
    ["Rows", preview.row_count],
    ["Time", timings.total != null ? `${Math.round(timings.total)} ms` : null],
  ];
  const summary = $("run-summary");
  summary.replaceChildren(
    ...items
      .filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([label, value]) => el("div", { class: "kv" }, el("span", { class: "k" }, label), el("span", { class: "v" }, String(value)))),
  );
  const badge = saeBadge(sae);
  if (badge) summary.append(badge);
  summary.append(promptView(run.prompt || ""));
  if (run.error && run.status === "stopped") {
    summary.append(el("div", { class: "run-stopped" }, `Stopped: ${run.error.message}`));
  } else if (run.error) {
    const where = run.error.upstream ? ` (upstream: ${run.error.upstream})` : "";
    summary.append(el("div", { class: "run-error" }, `Failed: ${run.error.message}${where}`));
  }
  $("output-empty").hidden = true;
  $("token-area").hidden = !run.preview;
}

function positionStrength(entry) {
  if (state.selectedFeature !== null) {
    const hit = (entry.features || []).find((f) => f.feature_id === state.selectedFeature);
    return hit ? hit.activation : 0;
  }
  const first = (entry.features || [])[0];
  return first ? first.activation : 0;
}

export function renderTokens() {
  const container = $("tokens");
  const showPrompt = $("show-prompt-tokens").checked;
  const entries = timeline(state.run).filter((e) => showPrompt || e.segment !== "prompt");
  // One feature: shade against its peak. Otherwise stretch the top activations' range, which
  // is narrow (every position has some strong feature), so differences stay visible.
  const values = entries.map(positionStrength);
  const hi = Math.max(1e-9, ...values);
  const lo = state.selectedFeature === null && values.length > 1 ? Math.min(...values) : 0;
  const shade = (v) => (lo > 0 ? 0.1 + (0.9 * (v - lo)) / Math.max(1e-9, hi - lo) : v / hi);
  const nodes = [];
  let segment = null;
  for (const entry of entries) {
    if (showPrompt && entry.segment !== segment && segment !== null) {
      nodes.push(el("span", { class: "segment-break" }, "output →"));
    }
    segment = entry.segment;
    const strength = shade(positionStrength(entry));
    const span = el(
      "span",
      {
        class: `tok${entry.special ? " special" : ""}${entry.segment === "prompt" ? " prompt" : ""}${state.pinnedPosition === entry.position ? " pinned" : ""}`,
        dataset: { position: String(entry.position) },
        tabindex: "0",
        title: `position ${entry.position}`,
      },
      displayToken(entry.token),
    );
    span.style.setProperty("--strength", strength.toFixed(3));
    nodes.push(span);
    if (entry.token && entry.token.includes("\n")) nodes.push(el("br"));
  }
  container.replaceChildren(...nodes);
}

export function renderTokenDetail(position) {
  const panel = $("token-detail");
  const entry = position === null ? null : state.byPosition.get(position);
  if (!entry) {
    panel.replaceChildren(el("p", { class: "muted" }, "Hover or click a token to see its features."));
    return;
  }
  const features = entry.features || [];
  const peak = Math.max(1e-9, ...features.map((f) => f.activation));
  const list = el(
    "ol",
    { class: "feature-list" },
    features.map((f) =>
      el(
        "li",
        {},
        el(
          "button",
          {
            type: "button",
            class: `feature-chip${state.selectedFeature === f.feature_id ? " selected" : ""}`,
            dataset: { feature: String(f.feature_id) },
            title: "Show this feature across the run",
          },
          el("span", { class: "fid" }, `#${f.feature_id}`),
          el("span", { class: "label-text" }, labelOf(f.feature_id)),
          el("span", { class: "bar" }, el("span", { class: "fill", style: { width: `${((f.activation / peak) * 100).toFixed(1)}%` } })),
          el("span", { class: "act" }, f.activation.toFixed(3)),
        ),
      ),
    ),
  );
  panel.replaceChildren(
    el(
      "div",
      { class: "detail-head" },
      el("code", { class: "detail-token" }, displayToken(entry.token)),
      el("span", { class: "muted" }, `position ${entry.position} · ${entry.segment}${entry.token_id != null ? ` · id ${entry.token_id}` : ""}${entry.special ? " · special" : ""}`),
    ),
    features.length ? list : el("p", { class: "muted" }, "No active features at this position."),
  );
}

export function renderFeatureFocus() {
  const box = $("feature-focus");
  if (state.selectedFeature === null) {
    box.hidden = true;
    return;
  }
  $("feature-focus-text").textContent =
    `Tokens shaded by feature #${state.selectedFeature}; rows filtered to it.`;
  box.hidden = false;
}

function positionOf(target) {
  const tok = target.closest(".tok");
  return tok ? Number(tok.dataset.position) : null;
}

// onSelectFeature(id) when a feature chip is clicked; onClearFeature() for the note's Clear.
export function wireOutput({ onSelectFeature, onClearFeature }) {
  $("show-prompt-tokens").addEventListener("change", renderTokens);
  const tokens = $("tokens");
  tokens.addEventListener("mouseover", (event) => {
    const position = positionOf(event.target);
    if (position !== null && state.pinnedPosition === null) renderTokenDetail(position);
  });
  tokens.addEventListener("click", (event) => {
    const position = positionOf(event.target);
    if (position === null) return;
    state.pinnedPosition = state.pinnedPosition === position ? null : position;
    renderTokens();
    renderTokenDetail(state.pinnedPosition ?? position);
  });
  tokens.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      event.target.click();
    }
  });
  $("token-detail").addEventListener("click", (event) => {
    const chip = event.target.closest(".feature-chip");
    if (chip) onSelectFeature(Number(chip.dataset.feature));
  });
  $("feature-focus-clear").addEventListener("click", onClearFeature);
}

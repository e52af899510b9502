// The /playground/activations page: plain DOM, no framework, no build step.
// Rule: user and model text only ever reaches the page through textContent (see el()).
"use strict";

(() => {
  const API = "/playground/activations";
  const SAES_URL = "/playground/features/saes";
  const HEALTH_EVERY_MS = 15000;
  const RUNS_PAGE = 10;
  const TOP_LIMIT = 50;

  const state = {
    run: null, // the open run (ActivationRunResponse)
    saes: [], // from the SAE catalogue
    byPosition: new Map(), // position -> timeline entry of the open run
    topFeatures: [],
    topSort: { key: "max_activation", dir: -1 },
    rowsOffset: 0,
    rowsTotal: 0,
    runsCursor: null,
    selectedFeature: null,
    pinnedPosition: null,
  };

  const $ = (id) => document.getElementById(id);

  // Builds an element; string children become text nodes, never markup.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      // CSSOM, not a style attribute: the page's CSP forbids inline style attributes.
      else if (key === "style") Object.assign(node.style, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ---- API -------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor({ code, message, upstream, details }, status, body = null) {
      super(message || "request failed");
      this.body = body;
      this.code = code || "error";
      this.upstream = upstream || null;
      this.details = details || null;
      this.status = status;
    }
  }

  async function api(path, options = {}) {
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
      const error = body && body.error ? body.error : {
        code: `http_${response.status}`,
        message: (text || response.statusText || "request failed").slice(0, 300),
      };
      throw new ApiError(error, response.status, body);
    }
    return body;
  }

  const query = (params) => {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
    }
    const text = search.toString();
    return text ? `?${text}` : "";
  };

  // ---- errors ----------------------------------------------------------------------------

  function showError(title, err) {
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

  function clearError() {
    $("error").hidden = true;
  }

  // ---- health ----------------------------------------------------------------------------

  async function refreshHealth() {
    const pills = document.querySelectorAll("#health .pill");
    let health = null;
    let failure = null;
    try {
      health = await api(`${API}/health`);
    } catch (err) {
      // 503 still carries the checks (Postgres down); anything else: the backend is unreachable.
      if (err.body && err.body.postgres) health = err.body;
      else failure = err;
    }
    for (const pill of pills) {
      const name = pill.dataset.service;
      const check = health ? findCheck(health, name) : null;
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

  // The health body names its checks; accept them at the top level or under "checks".
  function findCheck(health, name) {
    const pools = [health, health.checks || {}, health.services || {}];
    const aliases = {
      postgres: ["postgres", "database", "db"],
      engine: ["engine", "hf", "activations_hf", "inference"],
      sae: ["sae", "sae_service"],
    }[name];
    for (const pool of pools) {
      for (const alias of aliases) {
        if (pool[alias] && typeof pool[alias] === "object") return pool[alias];
      }
    }
    return null;
  }

  // ---- SAE catalogue ---------------------------------------------------------------------

  async function loadSaes() {
    const select = $("sae-id");
    try {
      const body = await api(SAES_URL);
      state.saes = Array.isArray(body.saes) ? body.saes : [];
      const fallback = body.default || {};
      select.replaceChildren();
      for (const sae of state.saes) {
        const label = sae.demo ? `${sae.sae_id} (demo, random weights)` : sae.sae_id;
        select.append(el("option", { value: sae.sae_id }, label));
      }
      if (!state.saes.length) select.append(el("option", { value: "" }, "Backend default"));
      if (fallback.sae_id) select.value = fallback.sae_id;
      fillLayers(fallback.layer);
    } catch (err) {
      const note = $("sae-note");
      note.textContent = `SAE list unavailable (${err.message}); the backend default is used.`;
      note.hidden = false;
    }
  }

  function currentSae() {
    return state.saes.find((sae) => sae.sae_id === $("sae-id").value) || null;
  }

  function fillLayers(preferred) {
    const sae = currentSae();
    const select = $("sae-layer");
    select.replaceChildren();
    const layers = sae && Array.isArray(sae.layers) ? sae.layers : [];
    if (!layers.length) select.append(el("option", { value: "" }, "Default"));
    for (const layer of layers) select.append(el("option", { value: String(layer) }, String(layer)));
    if (preferred !== undefined && layers.includes(preferred)) select.value = String(preferred);
    const note = $("sae-note");
    if (sae && sae.demo) {
      note.textContent = "Demo SAE: random weights, features carry no meaning.";
      note.hidden = false;
    } else if (sae) {
      note.textContent = sae.description || "";
      note.hidden = !sae.description;
    }
  }

  // ---- running a prompt ------------------------------------------------------------------

  function numberField(id) {
    const raw = $(id).value.trim();
    return raw === "" ? null : Number(raw);
  }

  function runRequest() {
    const body = {
      prompt: $("prompt").value,
      model_id: $("model-id").value.trim() || null,
      max_tokens: numberField("max-tokens"),
      temperature: numberField("temperature"),
      top_p: numberField("top-p"),
      top_k: numberField("top-k"),
      sae_id: $("sae-id").value || null,
      sae_layer: numberField("sae-layer"),
      sae_top_k: numberField("sae-top-k"),
    };
    // Leave out blanks so the backend applies its defaults.
    for (const key of Object.keys(body)) if (body[key] === null) delete body[key];
    return body;
  }

  async function submitRun(event) {
    event.preventDefault();
    const button = $("run-button");
    if (button.disabled) return;
    clearError();
    button.disabled = true;
    const started = performance.now();
    const status = $("run-status");
    const tick = setInterval(() => {
      status.textContent = `Running… ${((performance.now() - started) / 1000).toFixed(0)} s`;
    }, 500);
    status.textContent = "Running…";
    try {
      const run = await api(`${API}/run`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(runRequest()),
      });
      clearInterval(tick);
      status.textContent = `Done in ${((performance.now() - started) / 1000).toFixed(1)} s`;
      await openRun(run);
      await loadRuns(true);
    } catch (err) {
      clearInterval(tick);
      status.textContent = "Failed";
      showError("The run failed", err);
      loadRuns(true); // a failed run is recorded too
    } finally {
      clearInterval(tick);
      button.disabled = false;
    }
  }

  // ---- showing a run ---------------------------------------------------------------------

  async function openRun(runOrId) {
    clearError();
    let run = runOrId;
    if (typeof runOrId === "string") {
      try {
        run = await api(`${API}/${encodeURIComponent(runOrId)}`);
      } catch (err) {
        showError("Could not open the run", err);
        return;
      }
    }
    state.run = run;
    state.selectedFeature = null;
    state.pinnedPosition = null;
    state.byPosition = new Map(timeline(run).map((entry) => [entry.position, entry]));
    history.replaceState(null, "", `#run=${encodeURIComponent(run.request_id)}`);
    renderSummary(run);
    renderTokens();
    renderTokenDetail(null);
    renderFeatureFocus();
    markActiveRun();
    state.rowsOffset = 0;
    if (run.status === "failed" || !run.preview) {
      clearTables(run.status === "failed" ? "This run failed: nothing to show." : "This run has no SAE preview.");
      return;
    }
    await Promise.all([loadTopFeatures(), loadRows()]);
  }

  function clearTables(message) {
    state.topFeatures = [];
    renderTopFeatures();
    $("top-empty").textContent = message;
    $("rows").querySelector("tbody").replaceChildren();
    $("rows-range").textContent = message;
    $("rows-prev").disabled = true;
    $("rows-next").disabled = true;
  }

  const timeline = (run) => (run && run.preview && run.preview.feature_timeline) || [];

  function renderSummary(run) {
    const preview = run.preview || {};
    const output = run.output || {};
    const sae = state.saes.find((s) => s.sae_id === preview.sae_id);
    const timings = run.timings_ms || {};
    const items = [
      ["Run", run.request_id],
      ["Status", run.status === "failed" ? "failed" : null],
      ["Model", run.model_id],
      ["Created", formatTime(run.created_at)],
      ["Finish", output.finish_reason],
      ["SAE", preview.sae_id ? `${preview.sae_id} · layer ${preview.sae_layer} · top ${preview.sae_top_k}` : "none"],
      ["Rows", preview.row_count],
      ["Time", timings.total != null ? `${Math.round(timings.total)} ms` : null],
    ];
    const summary = $("run-summary");
    summary.replaceChildren(
      ...items
        .filter(([, value]) => value !== null && value !== undefined && value !== "")
        .map(([label, value]) => el("div", { class: "kv" }, el("span", { class: "k" }, label), el("span", { class: "v" }, String(value)))),
    );
    if (sae && sae.demo) summary.append(el("span", { class: "badge badge-demo" }, "demo SAE: random weights"));
    summary.append(el("div", { class: "kv kv-prompt" }, el("span", { class: "k" }, "Prompt"), el("span", { class: "v prompt-text" }, run.prompt || "")));
    if (run.error) {
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

  function renderTokens() {
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
      const text = displayToken(entry.token);
      const span = el(
        "span",
        {
          class: `tok${entry.special ? " special" : ""}${entry.segment === "prompt" ? " prompt" : ""}${state.pinnedPosition === entry.position ? " pinned" : ""}`,
          dataset: { position: String(entry.position) },
          tabindex: "0",
          title: `position ${entry.position}`,
        },
        text,
      );
      span.style.setProperty("--strength", strength.toFixed(3));
      nodes.push(span);
      if (entry.token && entry.token.includes("\n")) nodes.push(el("br"));
    }
    container.replaceChildren(...nodes);
  }

  // Make whitespace visible without changing the text itself.
  function displayToken(token) {
    if (token === null || token === undefined) return "∅";
    if (token === "") return "∅";
    return token.replace(/\n/g, "↵").replace(/\t/g, "⇥");
  }

  function renderTokenDetail(position) {
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

  function selectFeature(featureId) {
    state.selectedFeature = featureId;
    renderTokens();
    renderFeatureFocus();
    renderTokenDetail(state.pinnedPosition);
    highlightTopRow();
    if (featureId !== null) {
      $("f-feature").value = String(featureId);
      state.rowsOffset = 0;
      loadRows();
    }
  }

  function renderFeatureFocus() {
    const box = $("feature-focus");
    if (state.selectedFeature === null) {
      box.hidden = true;
      return;
    }
    $("feature-focus-text").textContent =
      `Tokens shaded by feature #${state.selectedFeature}; rows filtered to it.`;
    box.hidden = false;
  }

  // ---- top features ----------------------------------------------------------------------

  async function loadTopFeatures() {
    if (!state.run) return;
    if (!state.run.preview) return;
    const params = { limit: TOP_LIMIT, segment: $("top-segment").value };
    try {
      const body = await api(`${API}/${encodeURIComponent(state.run.request_id)}/top-features${query(params)}`);
      const list = Array.isArray(body) ? body : body.top_features || body.features || [];
      // Remember the API's order (max activation, then hits) to break sort ties with it.
      state.topFeatures = list.map((f, i) => ({ ...f, apiOrder: i }));
    } catch (err) {
      state.topFeatures = [];
      showError("Could not load top features", err);
    }
    renderTopFeatures();
  }

  function sortedTopFeatures() {
    const { key, dir } = state.topSort;
    return [...state.topFeatures].sort((a, b) => {
      const diff = (a[key] ?? -Infinity) - (b[key] ?? -Infinity);
      return diff !== 0 ? diff * dir : a.apiOrder - b.apiOrder;
    });
  }

  function renderTopFeatures() {
    const tbody = $("top-features").querySelector("tbody");
    const entries = timeline(state.run);
    const rows = sortedTopFeatures().map((f) =>
      el(
        "tr",
        { dataset: { feature: String(f.feature_id) }, class: state.selectedFeature === f.feature_id ? "selected" : null, title: "Show this feature across the run" },
        el("td", {}, el("span", { class: "fid" }, `#${f.feature_id}`)),
        el("td", { class: "num" }, fmt(f.max_activation)),
        el("td", { class: "num" }, fmt(f.mean_activation)),
        el("td", { class: "num" }, f.hits ?? ""),
        el("td", { class: "num" }, f.max_position ?? ""),
        el("td", {}, sparkline(entries, f.feature_id)),
      ),
    );
    tbody.replaceChildren(...rows);
    $("top-empty").hidden = rows.length > 0;
    $("top-empty").textContent = state.run ? "No features for this segment." : "No run open.";
    for (const th of $("top-features").querySelectorAll("th[data-key]")) {
      th.classList.toggle("sorted-asc", th.dataset.key === state.topSort.key && state.topSort.dir === 1);
      th.classList.toggle("sorted-desc", th.dataset.key === state.topSort.key && state.topSort.dir === -1);
      th.setAttribute("aria-sort", th.dataset.key === state.topSort.key ? (state.topSort.dir === 1 ? "ascending" : "descending") : "none");
    }
  }

  function highlightTopRow() {
    for (const tr of $("top-features").querySelectorAll("tbody tr")) {
      tr.classList.toggle("selected", Number(tr.dataset.feature) === state.selectedFeature);
    }
  }

  // One feature's activation at every stored position (0 where it is not in the top-k).
  function sparkline(entries, featureId) {
    const width = 140;
    const height = 26;
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("class", "spark");
    svg.setAttribute("role", "img");
    const values = entries.map((entry) => {
      const hit = (entry.features || []).find((f) => f.feature_id === featureId);
      return hit ? hit.activation : 0;
    });
    svg.setAttribute("aria-label", `feature ${featureId} over ${values.length} positions`);
    if (!values.length) return svg;
    const peak = Math.max(1e-9, ...values);
    const step = values.length > 1 ? (width - 2) / (values.length - 1) : 0;
    const points = values.map((v, i) => `${(1 + i * step).toFixed(1)},${(height - 2 - (v / peak) * (height - 4)).toFixed(1)}`);
    const area = document.createElementNS(svg.namespaceURI, "polygon");
    area.setAttribute("points", `1,${height - 2} ${points.join(" ")} ${(1 + (values.length - 1) * step).toFixed(1)},${height - 2}`);
    area.setAttribute("class", "spark-area");
    const line = document.createElementNS(svg.namespaceURI, "polyline");
    line.setAttribute("points", points.join(" "));
    line.setAttribute("class", "spark-line");
    svg.append(area, line);
    const outputStart = entries.findIndex((e) => e.segment === "output");
    if (outputStart > 0) {
      const mark = document.createElementNS(svg.namespaceURI, "line");
      const x = (1 + outputStart * step).toFixed(1);
      mark.setAttribute("x1", x);
      mark.setAttribute("x2", x);
      mark.setAttribute("y1", "0");
      mark.setAttribute("y2", String(height));
      mark.setAttribute("class", "spark-split");
      svg.append(mark);
    }
    return svg;
  }

  // ---- activation rows -------------------------------------------------------------------

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

  async function loadRows() {
    if (!state.run || !state.run.preview) return;
    const filters = rowFilters();
    const params = { ...filters, offset: state.rowsOffset };
    const tbody = $("rows").querySelector("tbody");
    try {
      const body = await api(`${API}/${encodeURIComponent(state.run.request_id)}/rows${query(params)}`);
      const rows = body.rows || [];
      state.rowsTotal = body.total ?? rows.length;
      tbody.replaceChildren(
        ...rows.map((r) =>
          el(
            "tr",
            { class: r.step === null || r.step === undefined ? "prompt-row" : null },
            el("td", { class: "num" }, r.token_position),
            el("td", { class: "num" }, r.step ?? "—"),
            el("td", {}, el("code", { class: "cell-token" }, displayToken(r.token))),
            el("td", { class: "num" }, el("button", { type: "button", class: "link-button fid", dataset: { feature: String(r.feature_id) } }, `#${r.feature_id}`)),
            el("td", { class: "num" }, fmt(r.activation_value)),
            el("td", { class: "num" }, r.rank),
          ),
        ),
      );
      const first = rows.length ? state.rowsOffset + 1 : 0;
      const last = state.rowsOffset + rows.length;
      $("rows-range").textContent = state.rowsTotal
        ? `Rows ${first}–${last} of ${state.rowsTotal}`
        : "No rows match these filters.";
      $("rows-prev").disabled = state.rowsOffset === 0;
      $("rows-next").disabled = last >= state.rowsTotal;
    } catch (err) {
      tbody.replaceChildren();
      $("rows-range").textContent = "Rows unavailable.";
      $("rows-prev").disabled = true;
      $("rows-next").disabled = true;
      showError("Could not load activation rows", err);
    }
  }

  // ---- recent runs -----------------------------------------------------------------------

  async function loadRuns(reset) {
    if (reset) state.runsCursor = null;
    const list = $("recent-runs");
    try {
      const body = await api(`${API}/runs${query({ limit: RUNS_PAGE, cursor: state.runsCursor })}`);
      const runs = Array.isArray(body) ? body : body.runs || body.items || [];
      const items = runs.map(runItem);
      if (reset) list.replaceChildren(...items);
      else list.append(...items);
      state.runsCursor = body.next_cursor || null;
      $("runs-more").hidden = !state.runsCursor;
      $("runs-empty").hidden = list.children.length > 0;
      markActiveRun();
    } catch (err) {
      showError("Could not load recent runs", err);
    }
  }

  function runItem(run) {
    const prompt = (run.prompt_preview || run.prompt || "").trim();
    const flags = [run.status === "failed" ? "failed" : null, run.pruned ? "pruned" : null].filter(Boolean);
    return el(
      "li",
      {},
      el(
        "button",
        { type: "button", class: `run-item${flags.length ? " run-flagged" : ""}`, dataset: { requestId: run.request_id }, title: prompt },
        el("span", { class: "run-prompt" }, prompt || "(empty prompt)"),
        el(
          "span",
          { class: "run-meta" },
          [formatTime(run.created_at), run.sae_id, run.model_id].filter(Boolean).join(" · "),
        ),
        flags.length ? el("span", { class: "run-flags" }, flags.join(" · ")) : null,
      ),
    );
  }

  function markActiveRun() {
    const current = state.run ? state.run.request_id : null;
    for (const button of document.querySelectorAll("#recent-runs .run-item")) {
      button.classList.toggle("active", button.dataset.requestId === current);
    }
  }

  // ---- small helpers ---------------------------------------------------------------------

  function fmt(value) {
    return typeof value === "number" ? value.toFixed(3) : value ?? "";
  }

  function formatTime(value) {
    if (!value) return "";
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
  }

  function positionOf(target) {
    const tok = target.closest(".tok");
    return tok ? Number(tok.dataset.position) : null;
  }

  // ---- wiring ----------------------------------------------------------------------------

  function wire() {
    $("run-form").addEventListener("submit", submitRun);
    $("prompt").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("run-form").requestSubmit();
    });
    $("error-close").addEventListener("click", clearError);
    $("sae-id").addEventListener("change", () => fillLayers());
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
      if (chip) selectFeature(Number(chip.dataset.feature));
    });
    $("feature-focus-clear").addEventListener("click", () => {
      $("f-feature").value = "";
      selectFeature(null);
      state.rowsOffset = 0;
      loadRows();
    });

    $("top-features").querySelector("tbody").addEventListener("click", (event) => {
      const row = event.target.closest("tr[data-feature]");
      if (row) selectFeature(Number(row.dataset.feature));
    });
    for (const th of $("top-features").querySelectorAll("th[data-key]")) {
      th.tabIndex = 0;
      const sort = () => {
        const key = th.dataset.key;
        state.topSort = { key, dir: state.topSort.key === key ? -state.topSort.dir : -1 };
        renderTopFeatures();
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (event) => {
        if (event.key === "Enter") sort();
      });
    }
    $("top-segment").addEventListener("change", loadTopFeatures);

    $("rows-filters").addEventListener("submit", (event) => {
      event.preventDefault();
      clearError();
      state.rowsOffset = 0;
      const feature = $("f-feature").value.trim();
      state.selectedFeature = feature === "" ? null : Number(feature);
      renderTokens();
      renderFeatureFocus();
      highlightTopRow();
      loadRows();
    });
    $("rows-clear").addEventListener("click", () => {
      $("rows-filters").reset();
      selectFeature(null);
      state.rowsOffset = 0;
      loadRows();
    });
    $("f-limit").addEventListener("change", () => {
      state.rowsOffset = 0;
      loadRows();
    });
    $("rows-prev").addEventListener("click", () => {
      state.rowsOffset = Math.max(0, state.rowsOffset - Number($("f-limit").value));
      loadRows();
    });
    $("rows-next").addEventListener("click", () => {
      state.rowsOffset += Number($("f-limit").value);
      loadRows();
    });
    $("rows").querySelector("tbody").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-feature]");
      if (button) selectFeature(Number(button.dataset.feature));
    });

    $("recent-runs").addEventListener("click", (event) => {
      const button = event.target.closest(".run-item");
      if (button) openRun(button.dataset.requestId);
    });
    $("runs-more").addEventListener("click", () => loadRuns(false));
    $("runs-refresh").addEventListener("click", () => loadRuns(true));
  }

  async function start() {
    wire();
    refreshHealth();
    setInterval(refreshHealth, HEALTH_EVERY_MS);
    await Promise.all([loadSaes(), loadRuns(true)]);
    const match = location.hash.match(/^#run=(.+)$/);
    if (match) await openRun(decodeURIComponent(match[1]));
    document.body.dataset.ready = "true";
  }

  document.addEventListener("DOMContentLoaded", start);
})();

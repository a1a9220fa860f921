/*
 * diffsight viewer: watch an image form over HTTP, then scrub its Trace and read its explanation.
 *
 * Plain browser JavaScript, no build step and no outside code. Everything it shows comes from the diffsight
 * HTTP API v1 of the server that served this page (same origin):
 *   GET  /v1/models                      -> the model, sampler and class choices
 *   POST /v1/generate/stream             -> Server-Sent Events: start, step (x0_hat preview), final, error
 *   GET  /v1/traces/{id}/frames          -> x, x0_hat and change map of every step, for the slider
 *   POST /v1/explain                     -> narrative, curves (drawn here as SVG) and maps (overlays)
 *   POST /v1/traces, GET /v1/traces/{id} -> open and download a Trace file
 * EventSource cannot send an Authorization header, so the stream is read with fetch() + ReadableStream and
 * the SSE framing (blank-line separated blocks of "event:" / "data:" lines) is parsed below.
 */
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "diffsight.apiKey";
  const TRACE_ID = /^[0-9a-f]{16}$/;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22"];
  const MAX_THUMBS = 100;
  // the curves a person reads first (the rest follow in the server's order)
  const CURVE_ORDER = ["commitment", "probes", "guidance", "filmstrip", "spectral", "likelihood"];

  const state = {
    models: [],
    controller: null, // AbortController of the running stream
    traceId: null,
    frames: null, // GET /v1/traces/{id}/frames
    explained: null, // POST /v1/explain
    frameCount: 0,
    numSteps: 0,
    plots: [], // {marker, sx, xmin, xmax} per drawn curve
  };

  // ---------------------------------------------------------------- errors and status

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.name = "ApiError";
      this.status = status;
    }
  }

  /** The readable text of an error body: {"detail": str} per the API, or FastAPI's list of field errors. */
  function detailText(body) {
    if (body === null || body === undefined) return "";
    const d = Object.prototype.hasOwnProperty.call(body, "detail") ? body.detail : body;
    if (typeof d === "string") return d;
    if (Array.isArray(d)) {
      return d
        .map((e) => (e && e.msg ? `${(e.loc || []).filter((p) => p !== "body").join(".")}: ${e.msg}` : JSON.stringify(e)))
        .join("; ");
    }
    return JSON.stringify(d);
  }

  async function errorOf(res) {
    let detail = "";
    try {
      const text = await res.text();
      try {
        detail = detailText(JSON.parse(text));
      } catch {
        detail = text.slice(0, 300);
      }
    } catch {
      detail = "";
    }
    if (!detail) detail = res.statusText || "no message from the server";
    let hint = "";
    if (res.status === 401) hint = " (enter the server's API key at the top and press Use key)";
    if (res.status === 503) {
      const after = res.headers.get("Retry-After");
      hint = after ? ` (the server is busy: try again in ${after} s)` : " (the server is busy: try again shortly)";
    }
    return new ApiError(res.status, `${res.status}: ${detail}${hint}`);
  }

  function messageOf(err) {
    if (err instanceof ApiError) return err.message;
    if (err instanceof TypeError) return `the server could not be reached (${err.message})`;
    return err && err.message ? err.message : String(err);
  }

  function showError(what, err) {
    $("error-text").textContent = err === undefined ? what : `${what}: ${messageOf(err)}`;
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const n = Number(v);
    if (n === 0) return "0";
    if (Math.abs(n) >= 1000 || Math.abs(n) < 0.001) return n.toExponential(2);
    return String(Number(n.toPrecision(3)));
  }

  // ---------------------------------------------------------------- HTTP

  function authHeaders() {
    const key = sessionStorage.getItem(KEY_STORE);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  /** fetch() on this server with the API key; a non-2xx answer throws an ApiError carrying its detail. */
  async function api(path, { method = "GET", json, body, headers = {}, signal, as = "json" } = {}) {
    const h = { ...authHeaders(), ...headers };
    let payload = body;
    if (json !== undefined) {
      h["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    }
    const res = await fetch(path, { method, headers: h, body: payload, signal, cache: "no-store" });
    if (!res.ok) throw await errorOf(res);
    if (as === "json") return res.json();
    if (as === "blob") return res.blob();
    return res;
  }

  /** One SSE block ("event: x\ndata: {...}") -> {event, data}; comments (":...") and empty blocks -> null. */
  function parseBlock(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line === "" || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "event") event = value;
      else if (field === "data") data.push(value);
    }
    return data.length ? { event, data: data.join("\n") } : null;
  }

  /** The events of a text/event-stream body, each as soon as its block is complete. */
  async function* sseEvents(stream) {
    const reader = stream.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        // CRLF and CR line ends become LF; a CR at the very end waits for the next chunk (it may be half a CRLF).
        buf = (buf + decoder.decode(value, { stream: true })).replace(/\r\n|\r(?!$)/g, "\n");
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const event = parseBlock(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
          if (event) yield event;
        }
      }
      buf = (buf + decoder.decode()).replace(/\r\n?/g, "\n");
      const last = parseBlock(buf);
      if (last) yield last;
    } finally {
      reader.releaseLock();
    }
  }

  // ---------------------------------------------------------------- models and the form

  async function loadModels() {
    try {
      const out = await api("/v1/models");
      state.models = out.models || [];
    } catch (err) {
      state.models = [];
      fillModels();
      showError("Could not list the models", err);
      return;
    }
    fillModels();
    if (!state.models.length) showError("The server has no models loaded: start it with `diffsight serve --model NAME`.");
    else setStatus("Choose a model and press Generate.");
  }

  function option(value, text) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = text;
    return o;
  }

  function fillModels() {
    const sel = $("model");
    const keep = sel.value;
    sel.replaceChildren(...state.models.map((m) => option(m.name, `${m.name} (${(m.event_shape || []).join("×")})`)));
    if (state.models.some((m) => m.name === keep)) sel.value = keep;
    onModelChange();
  }

  function currentModel() {
    return state.models.find((m) => m.name === $("model").value) || null;
  }

  function onModelChange() {
    const m = currentModel();
    const sampler = $("sampler");
    const label = $("label");
    if (!m) {
      sampler.replaceChildren();
      label.replaceChildren();
      return;
    }
    sampler.replaceChildren(...(m.samplers || []).map((s) => option(s, s)));
    if (m.default_sampler) sampler.value = m.default_sampler;
    const steps = $("steps");
    steps.max = String(m.max_steps || 1000);
    if (m.default_steps) steps.value = String(m.default_steps);
    const names = m.class_names || [];
    const classes = [];
    for (let i = 0; i < (m.num_classes || 0); i += 1) {
      if (i === m.null_class) continue;
      const name = names[i] === undefined || names[i] === String(i) ? String(i) : `${i}: ${names[i]}`;
      classes.push(option(String(i), name));
    }
    label.replaceChildren(option("", "none (unconditional)"), ...classes);
    const conditional = classes.length > 0;
    label.disabled = !conditional;
    $("guidance").disabled = !conditional;
    if (conditional) label.value = classes[0].value;
  }

  /** The generate body from the form, or null (with the reason shown) when a field is out of range. */
  function requestBody() {
    const m = currentModel();
    if (!m) {
      showError("No model to generate with: the model list is empty or could not be read.");
      return null;
    }
    const int = (id, lo, hi, what) => {
      const v = Number($(id).value);
      if (!Number.isInteger(v) || v < lo || v > hi) {
        showError(`${what} must be a whole number from ${lo} to ${hi}.`);
        $(id).focus();
        return null;
      }
      return v;
    };
    const seed = int("seed", 0, Number.MAX_SAFE_INTEGER, "Seed");
    if (seed === null) return null;
    const steps = int("steps", 1, m.max_steps || 1000, "Steps");
    if (steps === null) return null;
    const body = { model: m.name, seed, steps, sampler: $("sampler").value || m.default_sampler, n: 1 };
    const label = $("label").value;
    body.label = label === "" || $("label").disabled ? null : Number(label);
    if (body.label !== null) {
      const g = Number($("guidance").value);
      if (!Number.isFinite(g) || g < 0 || g > 20) {
        showError("Guidance must be a number from 0 to 20 (1 = the conditional model alone).");
        $("guidance").focus();
        return null;
      }
      body.guidance = g;
    }
    return body;
  }

  // ---------------------------------------------------------------- resetting the view

  function showImage(which, src) {
    const img = $(`img-${which}`);
    if (src) {
      img.src = src;
      img.hidden = false;
      $(`ph-${which}`).hidden = true;
    } else {
      img.hidden = true;
      img.removeAttribute("src");
      $(`ph-${which}`).hidden = false;
    }
  }

  function setFrameCount(n) {
    state.frameCount = n;
    const out = $("frame-count");
    out.textContent = state.numSteps ? `${n}/${state.numSteps}` : String(n);
    out.dataset.count = String(n);
  }

  function resetView(numSteps) {
    state.traceId = null;
    state.frames = null;
    state.explained = null;
    state.numSteps = numSteps || 0;
    state.plots = [];
    setFrameCount(0);
    $("filmstrip").replaceChildren();
    $("progress").max = Math.max(1, numSteps || 1);
    $("progress").value = 0;
    $("step-readout").textContent = "–";
    $("sigma-readout").textContent = "–";
    $("slider").disabled = true;
    $("slider").max = "0";
    $("slider").value = "0";
    $("slider-readout").textContent = "–";
    $("overlay-set").disabled = true;
    document.querySelector('input[name="overlay"][value="none"]').checked = true;
    for (const extra of document.querySelectorAll("#overlay-set .extra")) extra.remove();
    showImage("x0", null);
    showImage("x", null);
    updateOverlay();
    $("narrative").replaceChildren();
    $("curves").replaceChildren();
    $("summaries").replaceChildren();
    $("summaries-box").hidden = true;
    $("curves-hint").textContent = "The curves of the explanation appear here.";
    $("explain-status").textContent = "The explanation appears here once the run is explained.";
    $("trace-id").textContent = "No trace yet.";
    $("download").disabled = true;
    $("explain").disabled = true;
  }

  function setRunning(running) {
    $("generate").disabled = running;
    $("cancel").disabled = !running;
    $("trace-file").disabled = running;
    $("model").disabled = running;
    if (running) $("explain").disabled = true;
  }

  // ---------------------------------------------------------------- streaming generation

  function addThumb(step) {
    const every = Math.max(1, Math.ceil(state.numSteps / MAX_THUMBS));
    if (step.index % every !== 0 && step.index !== state.numSteps - 1) return;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "thumb";
    b.dataset.index = String(step.index);
    b.title = `step ${step.index}, σ ${fmt(step.sigma)}`;
    b.setAttribute("aria-label", `Show step ${step.index}`);
    const img = document.createElement("img");
    img.src = step.preview;
    img.alt = "";
    b.append(img);
    b.addEventListener("click", () => {
      if (!state.frames) return;
      const i = state.frames.steps.findIndex((s) => s.index === step.index);
      if (i >= 0) moveSlider(i);
    });
    $("filmstrip").append(b);
  }

  function onStart(d) {
    state.numSteps = d.steps;
    $("progress").max = Math.max(1, d.steps);
    const cls = d.label === null || d.label === undefined ? "unconditional" : `class ${d.label}`;
    setStatus(`Sampling ${d.model}: ${d.steps} steps of ${d.sampler}, seed ${d.seed}, ${cls}…`);
    setFrameCount(0);
  }

  function onStep(d) {
    if (d.num_steps && d.num_steps !== state.numSteps) {
      state.numSteps = d.num_steps;
      $("progress").max = d.num_steps;
    }
    showImage("x0", d.preview);
    $("step-readout").textContent = String(d.index);
    $("sigma-readout").textContent = `${fmt(d.sigma)} → ${fmt(d.sigma_next)}`;
    $("progress").value = d.index + 1;
    setFrameCount(state.frameCount + 1);
    addThumb(d);
  }

  function onFinal(d) {
    showImage("x0", d.image);
    $("progress").value = $("progress").max;
    const secs = typeof d.seconds === "number" ? ` in ${d.seconds.toFixed(2)} s` : "";
    setStatus(`Done${secs}. Loading the trace for the slider…`);
  }

  async function generate(ev) {
    ev.preventDefault();
    if (state.controller) return;
    clearError();
    const body = requestBody();
    if (body === null) return;
    resetView(body.steps);
    const controller = new AbortController();
    state.controller = controller;
    setRunning(true);
    setStatus("Starting…");
    let final = null;
    try {
      const res = await api("/v1/generate/stream", {
        method: "POST",
        json: body,
        headers: { Accept: "text/event-stream" },
        signal: controller.signal,
        as: "response",
      });
      for await (const e of sseEvents(res.body)) {
        const data = JSON.parse(e.data);
        if (e.event === "start") onStart(data);
        else if (e.event === "step") onStep(data);
        else if (e.event === "final") {
          final = data;
          onFinal(data);
        } else if (e.event === "error") {
          throw new ApiError(data.status, `${data.status}: ${data.detail}`);
        }
      }
      if (!final) throw new Error("the stream ended before its final event (the server stopped or timed out); try again");
    } catch (err) {
      if (err && err.name === "AbortError") setStatus(`Cancelled after ${state.frameCount} steps.`);
      else {
        setStatus("Generation failed.");
        showError("Generation failed", err);
      }
    } finally {
      controller.abort(); // closes the connection if the loop left early; a no-op after a complete stream
      state.controller = null;
      setRunning(false);
    }
    if (final) await loadTrace(final.trace_id, $("auto-explain").checked);
  }

  function cancel() {
    if (state.controller) state.controller.abort();
  }

  // ---------------------------------------------------------------- the trace: slider and overlays

  async function loadTrace(id, explain) {
    if (!TRACE_ID.test(id || "")) {
      showError(`The server returned an invalid trace id ${JSON.stringify(id)}.`);
      return;
    }
    state.traceId = id;
    $("download").disabled = false;
    $("trace-id").textContent = `Trace ${id}`;
    let frames;
    try {
      frames = await api(`/v1/traces/${id}/frames?sample=0`);
    } catch (err) {
      showError("Could not load the trace's frames", err);
      return;
    }
    if (state.traceId !== id) return; // a newer run took over
    if (!frames.steps || !frames.steps.length) {
      showError(`Trace ${id} has no recorded steps to show.`);
      return;
    }
    state.frames = frames;
    state.numSteps = frames.num_steps || frames.steps.length;
    const cls = frames.label === null || frames.label === undefined ? "unconditional" : `class ${frames.label}`;
    $("trace-id").textContent = `Trace ${id} · ${frames.model} · ${state.numSteps} steps · ${cls}`;
    if (!state.frameCount) {
      // an opened file: no stream ran, so the filmstrip comes from the frames
      setFrameCount(frames.steps.length);
      $("progress").max = 1;
      $("progress").value = 1;
      for (const s of frames.steps) addThumb({ index: s.index, sigma: s.sigma, preview: s.x0_hat });
    }
    const slider = $("slider");
    slider.max = String(frames.steps.length - 1);
    slider.disabled = false;
    $("overlay-set").disabled = false;
    refreshOverlayChoices();
    moveSlider(frames.steps.length - 1);
    setStatus(`Trace ready: scrub its ${frames.steps.length} steps with the slider (or the arrow keys).`);
    $("explain").disabled = false;
    if (explain) await runExplain();
  }

  function moveSlider(i) {
    $("slider").value = String(i);
    showStep(i);
  }

  function showStep(i) {
    if (!state.frames) return;
    const s = state.frames.steps[i];
    if (!s) return;
    showImage("x0", s.x0_hat);
    showImage("x", s.x);
    $("slider-readout").textContent = `${s.index} (σ ${fmt(s.sigma)})`;
    $("slider").setAttribute("aria-valuetext", `step ${s.index}, sigma ${fmt(s.sigma)}`);
    $("step-readout").textContent = String(s.index);
    $("sigma-readout").textContent = fmt(s.sigma);
    for (const t of document.querySelectorAll("#filmstrip .thumb")) {
      t.classList.toggle("current", Number(t.dataset.index) === s.index);
    }
    updateOverlay();
    updateMarkers();
  }

  function currentStepIndex() {
    if (!state.frames) return null;
    const s = state.frames.steps[Number($("slider").value)];
    return s ? s.index : null;
  }

  function mapsOf() {
    return (state.explained && state.explained.maps) || {};
  }

  /** Enable the overlay radios whose map exists; add a radio for any other map the server sent. */
  function refreshOverlayChoices() {
    const maps = mapsOf();
    for (const name of ["guidance", "attribution"]) {
      const radio = $(`ov-${name}`);
      const has = Boolean(maps[name] && maps[name].images && maps[name].images.length);
      radio.disabled = !has;
      radio.parentElement.title = has ? "" : "Explain the trace to get this map";
      radio.parentElement.classList.toggle("unavailable", !has);
    }
    const note = $("overlay-note");
    for (const name of Object.keys(maps)) {
      if (name === "guidance" || name === "attribution" || name === "change") continue;
      if (document.querySelector(`input[name="overlay"][value="${CSS.escape(name)}"]`)) continue;
      const label = document.createElement("label");
      label.className = "extra";
      const radio = document.createElement("input");
      radio.type = "radio";
      radio.name = "overlay";
      radio.value = name;
      label.append(radio, ` ${name}`);
      note.parentElement.querySelector(".opacity").before(label);
    }
  }

  function overlayKind() {
    const checked = document.querySelector('input[name="overlay"]:checked');
    return checked ? checked.value : "none";
  }

  /** The overlay image for the slider's step: the change map from the frames, or the map of the nearest step. */
  function overlaySource(kind) {
    if (!state.frames || kind === "none") return null;
    const s = state.frames.steps[Number($("slider").value)];
    if (!s) return null;
    if (kind === "change") return { src: s.change, note: `change map: |x̂₀ at step ${s.index} − x̂₀ one step before|` };
    const m = mapsOf()[kind];
    if (!m || !m.images || !m.images.length) return null;
    const steps = m.steps && m.steps.length === m.images.length ? m.steps : m.images.map((_, j) => j);
    let best = 0;
    for (let j = 1; j < steps.length; j += 1) {
      if (Math.abs(steps[j] - s.index) < Math.abs(steps[best] - s.index)) best = j;
    }
    let note = `${kind} map of step ${steps[best]}`;
    if (steps.length === 1) note = `${kind} map (computed for step ${steps[0]} only)`;
    else if (steps[best] !== s.index) note += ` (the nearest to step ${s.index} that was computed)`;
    return { src: m.images[best], note };
  }

  function updateOverlay() {
    const src = overlaySource(overlayKind());
    const opacity = String(Number($("opacity").value) / 100);
    for (const id of ["ov-x0", "ov-x"]) {
      const img = $(id);
      if (src && src.src) {
        img.src = src.src;
        img.style.opacity = opacity;
        img.hidden = false;
      } else {
        img.hidden = true;
        img.removeAttribute("src");
      }
    }
    $("overlay-note").textContent = src ? src.note : "";
  }

  // ---------------------------------------------------------------- explanation: narrative, curves, maps

  async function runExplain() {
    const id = state.traceId;
    if (!id) return;
    const k = Number($("k").value);
    if (!Number.isInteger(k) || k < 2 || k > 64) {
      showError("Continuations k must be a whole number from 2 to 64.");
      return;
    }
    $("explain").disabled = true;
    $("explain-status").textContent = `Explaining trace ${id} (k = ${k} continuations per step; this can take a while)…`;
    try {
      const out = await api("/v1/explain", {
        method: "POST",
        json: { trace_id: id, k, attribution: $("attribution").checked, sample: 0 },
      });
      if (state.traceId !== id) return;
      state.explained = out;
      renderExplanation(out);
    } catch (err) {
      if (state.traceId !== id) return;
      $("explain-status").textContent = "Explain failed.";
      showError("Explain failed", err);
    } finally {
      if (state.traceId === id) $("explain").disabled = false;
    }
  }

  function renderExplanation(out) {
    const secs = typeof out.seconds === "number" ? ` in ${out.seconds.toFixed(1)} s` : "";
    $("explain-status").textContent = `Explained${secs}.`;
    $("narrative").replaceChildren(
      ...(out.narrative || []).map((line) => {
        const li = document.createElement("li");
        li.textContent = line;
        return li;
      }),
    );
    state.plots = [];
    const figures = [];
    const curves = Object.entries(out.curves || {});
    const rank = (name) => (CURVE_ORDER.includes(name) ? CURVE_ORDER.indexOf(name) : CURVE_ORDER.length);
    curves.sort((a, b) => rank(a[0]) - rank(b[0]));
    for (const [name, curve] of curves) figures.push(drawCurve(name, curve));
    $("curves").replaceChildren(...figures);
    const dl = [];
    for (const [name, text] of Object.entries(out.summaries || {})) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = text;
      dl.push(dt, dd);
    }
    $("summaries").replaceChildren(...dl);
    $("summaries-box").hidden = dl.length === 0;
    $("curves-hint").textContent = figures.length
      ? "On curves over steps the dashed red line follows the slider."
      : "This explanation has no curves.";
    refreshOverlayChoices();
    updateOverlay();
    updateMarkers();
  }

  function svg(tag, attrs = {}, text) {
    const el = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  }

  /** One curve of /v1/explain as an inline SVG line chart with a legend and a marker line for the slider. */
  function drawCurve(name, curve) {
    const W = 340;
    const H = 150;
    const M = { l: 34, r: 10, t: 8, b: 30 };
    const xs = (curve.x || []).map(Number);
    const series = Object.entries(curve.series || {});
    const finite = (v) => typeof v === "number" && Number.isFinite(v);
    let xmin = Math.min(...xs);
    let xmax = Math.max(...xs);
    if (!Number.isFinite(xmin)) [xmin, xmax] = [0, 1];
    // a curve over sampler steps gets the slider's marker; others (likelihood against log-SNR) do not
    const overSteps = /step/i.test(curve.x_label || "step");
    if (overSteps && state.frames) {
      // the x axis spans the whole trace, like the slider, so the marker can stand at every step
      const idx = state.frames.steps.map((s) => s.index);
      xmin = Math.min(xmin, ...idx);
      xmax = Math.max(xmax, ...idx);
    }
    if (xmin === xmax) [xmin, xmax] = [xmin - 0.5, xmax + 0.5];
    const ys = series.flatMap(([, v]) => (v || []).filter(finite));
    let ymin = Math.min(...ys);
    let ymax = Math.max(...ys);
    if (!Number.isFinite(ymin)) [ymin, ymax] = [0, 1];
    if (ymin >= 0 && ymax <= 1) [ymin, ymax] = [0, 1]; // probabilities and agreements: the whole scale
    if (ymin === ymax) [ymin, ymax] = [ymin - 0.5, ymax + 0.5];
    const sx = (x) => M.l + ((x - xmin) / (xmax - xmin)) * (W - M.l - M.r);
    const sy = (y) => H - M.b - ((y - ymin) / (ymax - ymin)) * (H - M.t - M.b);

    const fig = document.createElement("figure");
    fig.className = "curve";
    fig.dataset.curve = name;
    const cap = document.createElement("figcaption");
    const strong = document.createElement("strong");
    strong.textContent = name;
    const unit = document.createElement("span");
    unit.className = "ylabel";
    unit.textContent = curve.y_label ? ` — ${curve.y_label}` : "";
    cap.append(strong, unit);
    const title = `${name}: ${curve.y_label || "value"} against ${curve.x_label || "step"}`;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart" });
    root.append(svg("title", {}, title));
    const plot = svg("g");
    // axes and ticks
    plot.append(svg("line", { x1: M.l, y1: H - M.b, x2: W - M.r, y2: H - M.b, class: "axis" }));
    plot.append(svg("line", { x1: M.l, y1: M.t, x2: M.l, y2: H - M.b, class: "axis" }));
    for (const y of [ymin, (ymin + ymax) / 2, ymax]) {
      plot.append(svg("line", { x1: M.l, y1: sy(y), x2: W - M.r, y2: sy(y), class: "grid" }));
      plot.append(svg("text", { x: M.l - 4, y: sy(y) + 3, class: "tick", "text-anchor": "end" }, fmt(y)));
    }
    const xt = [...new Set([xmin, Math.round((xmin + xmax) / 2), xmax].map((v) => Math.round(v)))];
    for (const x of xt) {
      if (x < xmin || x > xmax) continue;
      plot.append(svg("text", { x: sx(x), y: H - M.b + 12, class: "tick", "text-anchor": "middle" }, fmt(x)));
    }
    plot.append(svg("text", { x: (M.l + W - M.r) / 2, y: H - 4, class: "label", "text-anchor": "middle" },
      curve.x_label || "step"));
    // series: one polyline per run of finite values, dots where points are few
    const legend = document.createElement("ul");
    legend.className = "legend";
    let colour = PALETTE[0];
    let main = -1;
    series.forEach(([label, values]) => {
      // a confidence bound ("... 95% low/high") is drawn dashed in the colour of the series before it
      const band = /\b(95%|ci|low|high|lower|upper)\b/i.test(label) && main >= 0;
      if (!band) {
        main += 1;
        colour = PALETTE[main % PALETTE.length];
      }
      const g = svg("g", { class: band ? "series band" : "series", stroke: colour, fill: colour });
      g.append(svg("title", {}, label));
      let run = [];
      const flush = () => {
        if (run.length > 1) g.append(svg("polyline", { points: run.join(" "), fill: "none" }));
        run = [];
      };
      (values || []).forEach((v, i) => {
        if (!finite(v) || i >= xs.length) return flush();
        const p = `${sx(xs[i]).toFixed(1)},${sy(v).toFixed(1)}`;
        run.push(p);
        if (xs.length <= 40 && !band) g.append(svg("circle", { cx: sx(xs[i]).toFixed(1), cy: sy(v).toFixed(1), r: 2 }));
      });
      flush();
      plot.append(g);
      const li = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = band ? "swatch band" : "swatch";
      swatch.style.background = colour;
      li.append(swatch, label);
      legend.append(li);
    });
    const marker = svg("line", { x1: 0, y1: M.t, x2: 0, y2: H - M.b, class: "marker", visibility: "hidden" });
    plot.append(marker);
    root.append(plot);
    fig.append(cap, root, legend);
    if (overSteps) state.plots.push({ marker, sx, xmin, xmax });
    return fig;
  }

  function updateMarkers() {
    const step = currentStepIndex();
    for (const p of state.plots) {
      if (step === null || step < p.xmin || step > p.xmax) {
        p.marker.setAttribute("visibility", "hidden");
        continue;
      }
      const x = p.sx(step).toFixed(1);
      p.marker.setAttribute("x1", x);
      p.marker.setAttribute("x2", x);
      p.marker.setAttribute("visibility", "visible");
      p.marker.dataset.step = String(step);
    }
  }

  // ---------------------------------------------------------------- trace files

  async function openTraceFile() {
    const input = $("trace-file");
    const file = input.files && input.files[0];
    if (!file) return;
    cancel();
    clearError();
    resetView(0);
    setStatus(`Uploading ${file.name}…`);
    try {
      const bytes = await file.arrayBuffer();
      const out = await api("/v1/traces", {
        method: "POST",
        body: bytes,
        headers: { "Content-Type": "application/octet-stream" },
      });
      setStatus(`Opened ${file.name}.`);
      await loadTrace(out.trace_id, $("auto-explain").checked);
    } catch (err) {
      setStatus("Could not open the file.");
      showError(`Could not open ${file.name}`, err);
    } finally {
      input.value = "";
    }
  }

  async function downloadTrace() {
    const id = state.traceId;
    if (!id) return;
    try {
      const blob = await api(`/v1/traces/${id}`, { as: "blob" });
      const url = URL.createObjectURL(blob);
      const a = document.createElement("a");
      a.href = url;
      a.download = `${id}.trace.safetensors`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      showError("Could not download the trace", err);
    }
  }

  // ---------------------------------------------------------------- wiring

  function saveKey(ev) {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    else sessionStorage.removeItem(KEY_STORE);
    clearError();
    setStatus(key ? "API key set for this tab." : "API key cleared.");
    loadModels();
  }

  function init() {
    $("api-key").value = sessionStorage.getItem(KEY_STORE) || "";
    $("key-form").addEventListener("submit", saveKey);
    $("error-close").addEventListener("click", clearError);
    $("gen-form").addEventListener("submit", generate);
    $("cancel").addEventListener("click", cancel);
    $("model").addEventListener("change", onModelChange);
    $("slider").addEventListener("input", () => showStep(Number($("slider").value)));
    $("overlay-set").addEventListener("change", (ev) => {
      if (ev.target.name === "overlay") updateOverlay();
    });
    $("opacity").addEventListener("input", updateOverlay);
    $("explain").addEventListener("click", () => {
      clearError();
      runExplain();
    });
    $("trace-file").addEventListener("change", openTraceFile);
    $("download").addEventListener("click", downloadTrace);
    resetView(0);
    $("explain-status").textContent = "Generate or open a trace to explain it.";
    loadModels();
  }

  // The stream parser and the error formatter, for tests in the browser (tests/serve/test_viewer_browser.py).
  window.diffsightViewer = Object.freeze({ parseBlock, sseEvents, detailText });
  init();
})();

// webllm-py demo chat page: loads a bundle with the webllm-py npm package and chats with it
// through WebGPU, entirely in the browser.
//
// Every URL here is relative to the page, so the same files work in both layouts:
//   `webllm-py serve`   page at /, package at /webllm-py/, model index at /models/ (JSON)
//   `webllm-py publish` page at ./, package at ./webllm-py/, model index ./models.json, bundle ./model/
// The model index comes from <meta name="webllm-py-models"> (publish rewrites it);
// `?model=<bundle url>` overrides it and `?precision=f32|f16|auto` picks the kernels.

const $ = (/** @type {string} */ id) => /** @type {any} */ (document.getElementById(id));
const ui = {
  model: $("model"), progress: $("progress"), status: $("status"), error: $("error"),
  errorTitle: $("error-title"), errorMessage: $("error-message"), errorHint: $("error-hint"),
  log: $("log"), empty: $("empty"), form: $("composer"), prompt: $("prompt"), send: $("send"),
  stop: $("stop"), newChat: $("new-chat"), stats: $("stats"), maxTokens: $("max-tokens"),
  temperature: $("temperature"), system: $("system"), jsonMode: $("json-mode"),
};

const WEBGPU_HINT =
  "Use Chrome or Edge 113 or newer (or another browser with WebGPU turned on). " +
  "On Linux, start Chromium with <code>--enable-unsafe-webgpu --enable-features=Vulkan</code>. " +
  "Open the page from a secure context: <code>http://localhost</code>, <code>http://127.0.0.1</code> or " +
  "<code>https://</code> (not a LAN address over plain http, not a file:// URL).";

/** Page state; also on window.webllmDemo for debugging from the console. */
const state = {
  /** @type {any} */ lib: null,
  /** @type {any} */ engine: null,
  /** @type {{role: string, content: string}[]} */ messages: [],
  busy: false,
  /** @type {string|null} */ modelUrl: null,
};
/** @type {any} */ (window).webllmDemo = state;

// ---- small helpers ---------------------------------------------------------------------------

function fmtBytes(/** @type {number} */ n) {
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function fmtDuration(/** @type {number} */ s) {
  if (!Number.isFinite(s)) return "?";
  if (s < 60) return `${Math.max(1, Math.round(s))} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${Math.round(s % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function setStatus(/** @type {string} */ text) {
  ui.status.textContent = text;
}

/** Show the error panel. hintHtml is trusted markup written in this file, never model or server text. */
function showError(/** @type {string} */ title, /** @type {string} */ message, /** @type {string} */ hintHtml = "") {
  ui.errorTitle.textContent = title;
  ui.errorMessage.textContent = message;
  ui.errorHint.innerHTML = hintHtml;
  ui.errorHint.hidden = !hintHtml;
  ui.error.hidden = false;
}

function hideError() {
  ui.error.hidden = true;
}

function setBusy(/** @type {boolean} */ busy) {
  state.busy = busy;
  const ready = state.engine !== null;
  ui.send.disabled = !ready || busy;
  ui.stop.disabled = !busy;
  ui.newChat.disabled = !ready || busy;
  ui.prompt.disabled = !ready;
  ui.log.setAttribute("aria-busy", String(busy));
}

function scrollToEnd() {
  ui.log.scrollTop = ui.log.scrollHeight;
}

/** Append a chat message; returns the element that holds its text. */
function addMessage(/** @type {"user"|"assistant"} */ role, /** @type {string} */ text) {
  ui.empty.hidden = true;
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  // The role label is CSS (::before), so an answer element's text is the answer only.
  if (role === "assistant") div.dataset.testid = "answer";
  div.textContent = text; // never innerHTML: model output is untrusted text
  ui.log.append(div);
  scrollToEnd();
  return div;
}

function addNote(/** @type {HTMLElement} */ msg, /** @type {string} */ text) {
  const note = document.createElement("span");
  note.className = "note";
  note.textContent = text;
  msg.after(note);
}

const errorName = (/** @type {any} */ e) => (e && typeof e === "object" && e.name) || "Error";
const isAbort = (/** @type {any} */ e) => errorName(e) === "AbortError";

// ---- WebGPU and model discovery ------------------------------------------------------------------

/** null when WebGPU looks usable, else what is missing (checked before downloading anything). */
async function webgpuProblem() {
  if (!window.isSecureContext) return "This page is not a secure context, so the browser hides WebGPU from it.";
  const gpu = /** @type {any} */ (navigator).gpu;
  if (!gpu) return "This browser does not expose WebGPU (navigator.gpu is missing).";
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return "The browser has WebGPU but found no usable GPU adapter (WebGPU disabled, or the GPU or driver is blocklisted).";
  } catch (e) {
    return `Requesting a WebGPU adapter failed: ${e instanceof Error ? e.message : String(e)}`;
  }
  return null;
}

/** @typedef {{id: string, url: string}} ModelEntry */

/** The models of the page's index (absolute URLs); [] when there is none. @returns {Promise<ModelEntry[]>} */
async function indexedModels() {
  const meta = /** @type {HTMLMetaElement|null} */ (document.querySelector('meta[name="webllm-py-models"]'));
  const indexUrl = new URL(meta?.content || "models/", location.href);
  try {
    const r = await fetch(indexUrl, { headers: { Accept: "application/json" }, cache: "no-cache" });
    if (!r.ok) return [];
    const j = await r.json();
    if (!Array.isArray(j?.data)) return [];
    // URLs in the index are resolved against the index URL (serve lists root-relative models/<id>/ paths, publish model/).
    return j.data.map((/** @type {any} */ m) => ({ id: String(m.id), url: new URL(m.url, indexUrl).href }));
  } catch {
    return []; // not JSON (a static host's folder listing) or unreachable
  }
}

/** The models to offer and the one to load: ?model= first, else the index's first, else ./model/. */
async function findModels() {
  const models = await indexedModels();
  const explicit = new URLSearchParams(location.search).get("model");
  if (explicit) {
    const url = new URL(explicit, location.href).href;
    if (!models.some((m) => m.url === url)) {
      models.unshift({ id: explicit.replace(/\/+$/, "").split("/").pop() || explicit, url });
    }
    return { models, current: url };
  }
  if (!models.length) models.push({ id: "model", url: new URL("model/", location.href).href });
  return { models, current: models[0].url };
}

function fillModelSelect(/** @type {{id: string, url: string}[]} */ models, /** @type {string} */ current) {
  ui.model.replaceChildren(...models.map((m) => new Option(m.id, m.url, false, m.url === current)));
  ui.model.disabled = models.length < 2;
  ui.model.addEventListener("change", () => {
    // A fresh page per model: the previous engine's GPU memory goes with it.
    const q = new URLSearchParams(location.search);
    q.set("model", ui.model.value);
    location.search = q.toString();
  });
}

// ---- loading ------------------------------------------------------------------------------------

function onProgress(/** @type {any} */ r) {
  ui.progress.value = r.progress;
  ui.progress.setAttribute("aria-valuenow", String(Math.round(r.progress * 100)));
  const downloading = r.totalBytes > 0 && r.loadedBytes < r.totalBytes;
  if (downloading) {
    const rate = r.timeElapsed > 0 ? r.loadedBytes / r.timeElapsed : 0;
    const eta = rate > 0 && r.timeElapsed > 0.5 ? ` · about ${fmtDuration((r.totalBytes - r.loadedBytes) / rate)} left` : "";
    const speed = rate > 0 ? ` · ${fmtBytes(rate)}/s` : "";
    setStatus(`Downloading ${fmtBytes(r.loadedBytes)} of ${fmtBytes(r.totalBytes)} ` +
      `(${Math.floor((r.loadedBytes / r.totalBytes) * 100)}%)${speed}${eta}`);
  } else if (r.progress < 1) {
    setStatus(r.text);
  }
}

async function loadModel(/** @type {string} */ url) {
  state.modelUrl = url;
  const started = performance.now();
  const precision = new URLSearchParams(location.search).get("precision") || "auto";
  setStatus("Loading the model…");
  try {
    state.engine = await state.lib.CreateEngine(url, { initProgressCallback: onProgress, precision });
  } catch (/** @type {any} */ e) {
    ui.progress.value = 0;
    const lib = state.lib;
    if (lib.WebGPUNotAvailableError && e instanceof lib.WebGPUNotAvailableError) {
      showError("WebGPU is not available", e.message, WEBGPU_HINT);
    } else if (lib.FeatureSupportError && e instanceof lib.FeatureSupportError) {
      showError("This GPU cannot run the model", e.message, "Try <code>?precision=f32</code> in the address.");
    } else {
      showError("The model could not be loaded", `${errorName(e)}: ${e instanceof Error ? e.message : String(e)}`,
        "Check that the model URL points to a webllm-py bundle (a folder with <code>manifest.json</code>).");
    }
    setStatus("Not loaded.");
    return;
  }
  ui.progress.value = 1;
  ui.progress.setAttribute("aria-valuenow", "100");
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  const info = state.engine.manifest?.model?.id ?? "model";
  setStatus(`Ready: ${info} (loaded in ${secs} s). Everything runs on this device.`);
  setBusy(false);
  ui.prompt.focus();
}

// ---- chatting ---------------------------------------------------------------------------------

function requestParams() {
  const system = ui.system.value.trim();
  /** @type {Record<string, any>} */
  const params = {
    messages: [...(system ? [{ role: "system", content: system }] : []), ...state.messages],
    stream: true,
  };
  const maxTokens = Number.parseInt(ui.maxTokens.value, 10);
  if (Number.isFinite(maxTokens) && maxTokens > 0) params.max_tokens = maxTokens;
  if (ui.temperature.value.trim() !== "") {
    const t = Number(ui.temperature.value);
    if (Number.isFinite(t) && t >= 0) params.temperature = t;
  }
  // JSON mode: the reply is a JSON object (a grammar masks the tokens; the first use loads it)
  if (ui.jsonMode?.checked) params.response_format = { type: "json_object" };
  return params;
}

async function send(/** @type {string} */ text) {
  hideError();
  state.messages.push({ role: "user", content: text });
  addMessage("user", text);
  const answer = addMessage("assistant", "");
  answer.classList.add("pending");
  setBusy(true);
  let reply = "";
  /** @type {string|null} */
  let finish = null;
  let pieces = 0;
  /** @type {number|null} */
  let firstAt = null;
  try {
    const stream = await state.engine.chat.completions.create(requestParams());
    for await (const chunk of stream) {
      const choice = chunk.choices?.[0];
      const delta = choice?.delta?.content;
      if (delta) {
        firstAt ??= performance.now();
        pieces++;
        reply += delta;
        answer.textContent = reply;
        scrollToEnd();
        const secs = (performance.now() - firstAt) / 1000;
        if (secs > 0.2) ui.stats.textContent = `~${(pieces / secs).toFixed(1)} tokens/s`;
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
    }
  } catch (e) {
    const lib = state.lib;
    const ctx = lib.ContextWindowExceededError && e instanceof lib.ContextWindowExceededError;
    showError(ctx ? "The conversation is too long" : "Generation failed",
      e instanceof Error ? e.message : String(e), ctx ? "Press <strong>New chat</strong> to start over." : "");
    finish = "error";
  } finally {
    answer.classList.remove("pending");
    // Keep whatever was produced (also after Stop), so the next turn sees the same history as the screen.
    state.messages.push({ role: "assistant", content: reply });
    if (!reply) answer.classList.add("blank");
    if (finish === "abort") addNote(answer, "stopped");
    else if (finish === "length") addNote(answer, "cut at the max tokens limit");
    else if (!reply && finish !== "error") addNote(answer, "the model ended its answer without text");
    scrollToEnd();
    showStats();
    setBusy(false);
    ui.prompt.focus();
  }
}

function showStats() {
  try {
    const s = state.engine.runtimeStats();
    if (!s || !s.decode_tokens) return;
    ui.stats.textContent = `${s.decode_tokens_per_s.toFixed(1)} tokens/s decode · ` +
      `${s.prefill_tokens_per_s.toFixed(1)} tokens/s prefill · ${s.decode_tokens} tokens`;
  } catch {
    // Stats are a nicety: never let them break the chat.
  }
}

async function newChat() {
  if (!state.engine || state.busy) return;
  hideError();
  await state.engine.resetChat();
  state.messages = [];
  ui.log.querySelectorAll(".msg, .note").forEach((/** @type {Element} */ n) => n.remove());
  ui.empty.hidden = false;
  ui.stats.textContent = "";
  ui.prompt.focus();
}

// ---- wiring -----------------------------------------------------------------------------------

ui.form.addEventListener("submit", (/** @type {Event} */ ev) => {
  ev.preventDefault();
  const text = ui.prompt.value.trim();
  if (!text || state.busy || !state.engine) return;
  ui.prompt.value = "";
  send(text);
});
ui.prompt.addEventListener("keydown", (/** @type {KeyboardEvent} */ ev) => {
  if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    ui.form.requestSubmit();
  } else if (ev.key === "Escape" && state.busy) {
    state.engine?.interruptGenerate();
  }
});
ui.stop.addEventListener("click", () => state.engine?.interruptGenerate());
ui.newChat.addEventListener("click", () => newChat());

async function main() {
  setBusy(false);
  try {
    // Relative to this module, so it works under serve (/webllm-py/) and in a published site (./webllm-py/).
    state.lib = await import(new URL("./webllm-py/index.js", import.meta.url).href);
  } catch (e) {
    showError("The webllm-py package is missing",
      `Could not load ./webllm-py/index.js (${e instanceof Error ? e.message : String(e)}).`,
      "Build it with <code>cd web &amp;&amp; npm run build</code>, then reload.");
    setStatus("Not loaded.");
    return;
  }
  if (typeof state.lib.CreateEngine !== "function") {
    showError("This webllm-py build has no engine", "./webllm-py/index.js does not export CreateEngine.",
      "Rebuild the package with <code>cd web &amp;&amp; npm run build</code>.");
    setStatus("Not loaded.");
    return;
  }
  const { models, current } = await findModels();
  fillModelSelect(models, current);
  // Checked before downloading anything: no point fetching a model this browser cannot run.
  const problem = await webgpuProblem();
  if (problem) {
    showError("WebGPU is not available", problem, WEBGPU_HINT);
    setStatus("Not loaded: this page needs WebGPU.");
    return;
  }
  await loadModel(current);
}

main().catch((e) => {
  if (isAbort(e)) return;
  showError("Unexpected error", e instanceof Error ? `${e.name}: ${e.message}` : String(e));
});

// One benchmark run of one engine in a fresh browser (see ../browser_bench.py and ../README.md).
//
// config = {
//   engine: "webllm" | "wllama-wasm" | "wllama-wasm-mt" | "wllama-webgpu",
//   bundleUrl, ggufUrl, webllmUrl (web/dist/index.js), wllamaUrl (esm/index.js), wasmUrl,
//   prompt: the chat-formatted prompt text (same text for every engine),
//   decodeTokens, banIds (end-of-generation ids: suppressed so both engines decode exactly
//   decodeTokens tokens; wllama gets ignore_eos), threads (wllama), profileSteps (webllm only)
// }
//
// Both engines are measured the same way: one streamed raw completion of `prompt`
// (temperature 0, max_tokens decodeTokens, no prompt-cache reuse), after one short warm-up
// request. prefill / decode tok/s are what each engine reports for that request
// (webllm-py: runtimeStats(), wllama: llama-server's `timings`); TTFT and the wall-clock
// decode rate come from this page's clock around the stream.

const now = () => performance.now();
/** Warm-up request (not measured): several tokens, so both engines' prefill and decode paths run once. */
const WARMUP_PROMPT = "Hello, how are you today? Tell me a short story about a cat.";

/** Peak of performance.memory.usedJSHeapSize (this page's main-thread JS heap only). */
function heapSampler() {
  const read = () => (performance.memory ? performance.memory.usedJSHeapSize : null);
  let peak = read();
  const id = setInterval(() => {
    const v = read();
    if (v != null && (peak == null || v > peak)) peak = v;
  }, 20);
  return {
    stop() {
      clearInterval(id);
      const v = read();
      if (v != null && (peak == null || v > peak)) peak = v;
      return peak;
    },
  };
}

/** Drain a stream of completion chunks; returns text, timestamps and the last usage/timings. */
async function drain(stream, t0) {
  let text = "", tFirst = null, tLast = null, usage = null, timings = null, chunks = 0;
  for await (const c of stream) {
    const piece = c.choices?.[0]?.text ?? "";
    if (piece) {
      const t = now();
      if (tFirst == null) tFirst = t;
      tLast = t;
      text += piece;
      chunks++;
    }
    if (c.usage) usage = c.usage;
    if (c.timings) timings = c.timings;
  }
  return { text, ttft_s: (tFirst - t0) / 1000, stream_s: (tLast - tFirst) / 1000, chunks, usage, timings };
}

// ---- webllm-py ------------------------------------------------------------------------------

async function benchWebllm(cfg) {
  const webllm = await import(cfg.webllmUrl);
  const heap = heapSampler();
  const t0 = now();
  const engine = await webllm.CreateEngine(cfg.bundleUrl, { precision: "auto" });
  const load_s = (now() - t0) / 1000;
  const logit_bias = Object.fromEntries(cfg.banIds.map((i) => [String(i), -100]));
  const req = (prompt, max_tokens) => ({
    prompt, max_tokens, temperature: 0, logit_bias, stream: true, stream_options: { include_usage: true },
  });

  // warm-up (first dispatches of every pipeline), then forget its KV cache
  const tw = now();
  await drain(await engine.completions.create(req(WARMUP_PROMPT, 2)), tw);
  const warmup_s = (now() - tw) / 1000;
  await engine.resetChat();

  const t1 = now();
  const r = await drain(await engine.completions.create(req(cfg.prompt, cfg.decodeTokens)), t1);
  const total_s = (now() - t1) / 1000;
  const st = engine.runtimeStats();
  const out = {
    engine: cfg.engine,
    precision: engine.model.precision,
    adapter: engine.model.adapterInfo,
    load_s, warmup_s, total_s,
    prompt_tokens: st.prompt_tokens, cached_tokens: st.cached_tokens,
    prefill_tokens: st.prefill_tokens, prefill_s: st.prefill_seconds, prefill_tps: st.prefill_tokens_per_s,
    ttft_s: r.ttft_s,
    decode_tokens: st.decode_tokens, decode_s: st.decode_seconds, decode_tps: st.decode_tokens_per_s,
    completion_tokens: r.usage?.completion_tokens ?? null,
    decode_wall_tps: r.usage && r.stream_s > 0 ? (r.usage.completion_tokens - 1) / r.stream_s : null,
    text: r.text,
  };
  if (cfg.profileSteps > 0) out.profile = await profileWebllm(webllm, engine, cfg);
  out.peak_js_heap = heap.stop();
  await engine.unload();
  return out;
}

/**
 * Where a decode step's time goes, continuing from the measured request's KV cache:
 * forward_ms (one decode forward, as the engine runs it), of which encode_ms is the
 * synchronous JS part (write ids/step, record the dispatches, submit) and the rest waits for
 * SwiftShader + the logits readback; roundtrip_ms is an empty submit + onSubmittedWorkDone
 * (the fixed cost of one GPU round trip); sample_ms is the engine's temperature-0 sampling
 * (penalties pass + argmax over the vocabulary).
 */
async function profileWebllm(webllm, engine, cfg) {
  const m = engine.model;
  const n = cfg.profileSteps;
  let logits = null;
  let tok = cfg.banIds.length ? 198 : 0; // any ordinary token id to start from
  let encode = 0;
  let t = now();
  for (let i = 0; i < n && m.position < m.contextWindow; i++) {
    const ts = now();
    const p = m.forward([tok]); // runs synchronously up to its first await (mapAsync)
    encode += now() - ts;
    logits = await p;
    tok = webllm.argmax(logits);
  }
  const forward_ms = (now() - t) / n;
  const q = m.device.queue;
  t = now();
  for (let i = 0; i < n; i++) {
    q.submit([m.device.createCommandEncoder().finish()]);
    await q.onSubmittedWorkDone();
  }
  const roundtrip_ms = (now() - t) / n;
  // the same number of dispatches as a decode step, of a kernel that does nothing: the
  // driver's fixed per-dispatch cost (SwiftShader runs each dispatch as a separate job)
  const D = m.programs?.decode?.steps?.length ?? 0;
  let empty_dispatches_ms = null;
  if (D) {
    const dev = m.device;
    const pipeline = dev.createComputePipeline({
      layout: "auto",
      compute: { module: dev.createShaderModule({ code: "@compute @workgroup_size(64) fn main() {}" }), entryPoint: "main" },
    });
    const once = async () => {
      const enc = dev.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      for (let i = 0; i < D; i++) pass.dispatchWorkgroups(1);
      pass.end();
      q.submit([enc.finish()]);
      await q.onSubmittedWorkDone();
    };
    await once();
    t = now();
    for (let i = 0; i < n; i++) await once();
    empty_dispatches_ms = (now() - t) / n;
  }
  // each decode dispatch on its own (submit + wait), summed per kernel: which kernels the
  // ~forward_ms go to (each adds one empty round trip, ~roundtrip_ms)
  let kernels = null;
  const dec = m.programs?.decode;
  if (dec && m.manifest) {
    const names = webllm.compilePrograms(m.manifest, m.precision).decode.dispatches.map((d) => d.kernel);
    const p = m.position - 1; // the step buffers still hold the last decode step (n = 1, p)
    const per = {};
    const reps = 2;
    for (let r = 0; r < reps; r++) {
      for (let i = 0; i < dec.steps.length; i++) {
        const st = dec.steps[i];
        const enc = m.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(st.pipeline);
        pass.setBindGroup(0, st.bindGroup);
        pass.dispatchWorkgroups(st.workgroups[0](1, p), st.workgroups[1](1, p), st.workgroups[2](1, p));
        pass.end();
        const ts = now();
        q.submit([enc.finish()]);
        await q.onSubmittedWorkDone();
        const e = (per[names[i]] ??= { kernel: names[i], family: m.manifest.kernels[names[i]]?.key?.family ?? null, count: 0, ms: 0 });
        e.ms += (now() - ts) / reps;
        if (r === 0) e.count++;
      }
    }
    kernels = Object.values(per).sort((a, b) => b.ms - a.ms);
  }
  const params = { temperature: 0, logit_bias: new Map(cfg.banIds.map((i) => [i, -100])) };
  t = now();
  for (let i = 0; i < n; i++) webllm.sampleToken(logits, params);
  const sample_ms = (now() - t) / n;
  return {
    steps: n, forward_ms, encode_ms: encode / n, roundtrip_ms, empty_dispatches_ms, sample_ms,
    decode_dispatches: m.programs?.decode?.steps?.length ?? null,
    prefill_dispatches: m.programs?.prefill?.steps?.length ?? null,
    prefill_chunk: m.prefillChunk,
    kernels,
  };
}

// ---- wllama -----------------------------------------------------------------------------------

async function benchWllama(cfg) {
  const { Wllama } = await import(cfg.wllamaUrl);
  const heap = heapSampler();
  const webgpu = cfg.engine === "wllama-webgpu";
  const logs = [];
  const modelBuffers = [];
  const keep = (lvl) => (...a) => {
    const s = a.map(String).join(" ");
    if (/model buffer size/.test(s)) modelBuffers.push(s.trim());
    if (cfg.allLogs || /webgpu|gpu|thread|offload|backend|ggml_/i.test(s)) logs.push(`${lvl}: ${s}`.slice(0, 300));
  };
  const wllama = new Wllama({ default: cfg.wasmUrl }, {
    logger: { debug: keep("debug"), log: keep("log"), warn: keep("warn"), error: keep("error") },
  });
  const t0 = now();
  await wllama.loadModelFromUrl(cfg.ggufUrl, {
    n_ctx: 1024,
    n_threads: cfg.threads,
    n_gpu_layers: webgpu ? 99999 : 0,
    n_parallel: 1,
    ...(cfg.allLogs ? { log_level: 1 } : {}),
  });
  const load_s = (now() - t0) / 1000;
  const req = (prompt, max_tokens) => ({
    prompt, max_tokens, temperature: 0, ignore_eos: true, cache_prompt: false, stream: true,
  });
  const tw = now();
  await drain(await wllama.createCompletion(req(WARMUP_PROMPT, 2)), tw);
  const warmup_s = (now() - tw) / 1000;

  const t1 = now();
  const r = await drain(await wllama.createCompletion(req(cfg.prompt, cfg.decodeTokens)), t1);
  const total_s = (now() - t1) / 1000;
  const tm = r.timings ?? {};
  const out = {
    engine: cfg.engine,
    multithread: wllama.isMultithread(), threads: wllama.getNumThreads(),
    crossOriginIsolated: self.crossOriginIsolated, webgpu_available: wllama.isSupportWebGPU(),
    load_s, warmup_s, total_s,
    prompt_tokens: r.usage?.prompt_tokens ?? tm.prompt_n ?? null, cached_tokens: tm.cache_n ?? null,
    prefill_tokens: tm.prompt_n ?? null, prefill_s: tm.prompt_ms != null ? tm.prompt_ms / 1000 : null,
    prefill_tps: tm.prompt_per_second ?? null,
    ttft_s: r.ttft_s,
    decode_tokens: tm.predicted_n ?? null, decode_s: tm.predicted_ms != null ? tm.predicted_ms / 1000 : null,
    decode_tps: tm.predicted_per_second ?? null,
    completion_tokens: r.usage?.completion_tokens ?? tm.predicted_n ?? null,
    decode_wall_tps: null,
    text: r.text,
    logs: logs.slice(0, cfg.allLogs ? 5000 : 40),
    // "load_tensors: CPU model buffer size = ..." only: nothing was offloaded to WebGPU
    model_buffers: modelBuffers,
    offloaded: modelBuffers.some((l) => !/\bCPU\b/.test(l)),
    adapter_shader_f16: !!(await navigator.gpu?.requestAdapter())?.features.has("shader-f16"),
  };
  if (out.completion_tokens && r.stream_s > 0) out.decode_wall_tps = (out.completion_tokens - 1) / r.stream_s;
  out.peak_js_heap = heap.stop();
  await wllama.exit();
  return out;
}

export async function runBench(cfg) {
  return cfg.engine === "webllm" ? benchWebllm(cfg) : benchWllama(cfg);
}

// Runs in bench/browser/embed.html (see ../embed_browser_bench.py): load each engine once, one
// warm-up call per engine and workload, then `repeats` rounds of every engine in turn; returns
// the seconds of every call and the first text's embedding per engine (to check they agree).
import * as webllm from "/dist/index.js";

async function loadTransformersJs(cfg, device) {
  const tjs = await import("/bb/node_modules/@huggingface/transformers/dist/transformers.min.js");
  tjs.env.allowRemoteModels = false; // everything from this server
  tjs.env.allowLocalModels = true;
  tjs.env.localModelPath = "/tjs-models/";
  tjs.env.useBrowserCache = false;
  tjs.env.backends.onnx.wasm.wasmPaths = "/bb/node_modules/onnxruntime-web/dist/";
  const extractor = await tjs.pipeline("feature-extraction", cfg.tjsModel, { device, dtype: "fp32" });
  return async (texts) => {
    const out = await extractor(texts, { pooling: "mean", normalize: true });
    return out.tolist();
  };
}

async function loadWebllm(cfg, precision) {
  const engine = await webllm.CreateEngine(cfg.bundleUrl, { precision, cache: false });
  return async (texts) => (await engine.embeddings.create({ input: texts })).data.map((d) => d.embedding);
}

window.runBench = async (cfg) => {
  const engines = {};
  const loadSeconds = {};
  for (const name of cfg.engines) {
    const t0 = performance.now();
    if (name.startsWith("webllm-py ")) engines[name] = await loadWebllm(cfg, name.slice("webllm-py ".length));
    else if (name === "transformers.js webgpu") engines[name] = await loadTransformersJs(cfg, "webgpu");
    else if (name === "transformers.js wasm") engines[name] = await loadTransformersJs(cfg, "wasm");
    else throw new Error(`unknown engine ${name}`);
    loadSeconds[name] = (performance.now() - t0) / 1000;
  }
  const times = {}, first = {};
  for (const [wname, texts] of Object.entries(cfg.workloads)) {
    for (const [name, run] of Object.entries(engines)) first[`${name}|${wname}`] = (await run(texts))[0]; // warm-up
    for (let r = 0; r < cfg.repeats; r++) {
      for (const [name, run] of Object.entries(engines)) {
        const t0 = performance.now();
        await run(texts);
        (times[`${name}|${wname}`] ??= []).push((performance.now() - t0) / 1000);
      }
    }
  }
  return { times, first, loadSeconds };
};
window.benchReady = true;

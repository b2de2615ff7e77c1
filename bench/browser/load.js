// One repeat of the load benchmark in one fresh browser profile (see ../load_bench.py and
// ../README.md, "Load: cold / warm").
//
// config = {
//   webllmUrl (web/dist/index.js), bundleUrl (the bundle folder, ending in "/"),
//   concurrency (the loader's parallel downloads; loader.js default 4),
//   phases: the order to run them in, from
//     "raw"        every manifest file, `concurrency` at a time, fetch(url, {cache: "no-store"})
//                  + res.arrayBuffer(): no hashing, no caching
//     "raw_stream" the same, but each body read chunk by chunk into a preallocated
//                  Uint8Array(size) as loader.js's readBody does
//     "lb_nocache" loadBundle(url, {cache: false}): fetch + sha256, nothing cached
//     "lb_cold"    loadBundle(url, {cache: true}) with the default Cache Storage scope empty
//     "lb_warm"    the same again (every file in Cache Storage: read and sha256-verified)
//     "ce_cold"    CreateEngine(url, {cache: "loadbench-engine"}) until ready, that scope empty
//     "ce_warm"    the same again; the engine is unloaded after each
//     "parts"      where the time goes, over the bytes of the raw phase: SubtleCrypto sha256
//                  of every file one after the other (serial) and `concurrency` at a time
//                  (pool), Cache Storage put of every file and match + arrayBuffer of every
//                  file (both `concurrency` at a time, scratch scope deleted afterwards)
//     "gpu_parts"  a new adapter + device, and the weight shards written to GPU buffers
// }
// Times are seconds on the page's clock (performance.now()).

const now = () => performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const ENGINE_SCOPE = "loadbench-engine";
const SCRATCH_SCOPE = "loadbench-scratch";

/** Run fn over items, at most `limit` in flight (as loader.js's runPool). */
async function pool(items, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
}

/** Let the previous phase's garbage and background I/O settle before timing the next one. */
async function settle() {
  globalThis.gc?.(); // --js-flags=--expose-gc
  await sleep(300);
  globalThis.gc?.();
  await sleep(200);
}

const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");

async function fetchAll(ctx, stream) {
  const bufs = new Map();
  const t0 = now();
  await pool(ctx.files, ctx.concurrency, async (f) => {
    const res = await fetch(ctx.fileUrl(ctx.baseUrl, f.path), { cache: "no-store" });
    if (!res.ok) throw new Error(`${f.path}: HTTP ${res.status}`);
    let buf;
    if (!stream) buf = await res.arrayBuffer();
    else {
      const reader = res.body.getReader();
      const out = new Uint8Array(f.size);
      let n = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        out.set(value, n);
        n += value.byteLength;
      }
      buf = out.buffer;
      if (n !== f.size) throw new Error(`${f.path}: ${n} bytes, manifest says ${f.size}`);
    }
    if (buf.byteLength !== f.size) throw new Error(`${f.path}: ${buf.byteLength} bytes, manifest says ${f.size}`);
    bufs.set(f.path, buf);
  });
  return { s: (now() - t0) / 1000, bufs };
}

/**
 * loadBundle with a timeline: the Cache Storage backend (webllm's CacheStorageCache, the one
 * `cache: true` picks) is wrapped to time each put / match / cached-body read, and onProgress
 * tells when each file's last byte arrived (a fetched file's progress text names it) and when
 * a cached file was verified. Seconds from the call:
 *   first_byte_s / all_bytes_s  first and last downloaded byte (any file)
 *   last_put_start_s            the last put began (its file downloaded + sha256-verified)
 *   last_put_end_s              the last put resolved
 *   hash_gap_s                  per downloaded file, put start - its last byte (= its sha256),
 *                               the maximum over files
 *   all_read_s                  warm: the last cached body read; verified_s: the last file verified
 */
async function loadBundlePhase(ctx, cacheOn) {
  const ev = { firstByte: new Map(), put: new Map(), putEnd: new Map(), lastByte: new Map(), read: [], verified: [] };
  let firstByte = null, allBytes = null;
  let cache = false;
  if (cacheOn) {
    const inner = new ctx.webllm.CacheStorageCache();
    cache = {
      persistent: true,
      match: async (url) => {
        const res = await inner.match(url);
        if (res) {
          const ab = res.arrayBuffer.bind(res);
          res.arrayBuffer = async () => { const b = await ab(); ev.read.push(now()); return b; };
        }
        return res;
      },
      put: async (url, r) => { ev.put.set(url, now()); await inner.put(url, r); ev.putEnd.set(url, now()); },
      delete: (url) => inner.delete(url),
      keys: () => inner.keys(),
    };
  }
  const sizes = new Map(ctx.files.map((f) => [f.path, f.size]));
  const got = new Map();
  let prev = 0;
  const onProgress = (r) => {
    const t = now();
    const d = r.loadedBytes - prev;
    prev = r.loadedBytes;
    const m = /^Fetching (\S+) \[/.exec(r.text);
    if (m) {
      if (firstByte == null) firstByte = t;
      if (!ev.firstByte.has(m[1])) ev.firstByte.set(m[1], t);
      const n = (got.get(m[1]) ?? 0) + d;
      got.set(m[1], n);
      if (n >= sizes.get(m[1])) ev.lastByte.set(m[1], t);
      if (r.loadedBytes >= r.totalBytes) allBytes = t;
    } else if (r.text.startsWith("Loaded ") && r.text.includes(" from cache")) ev.verified.push(t);
  };
  const t0 = now();
  const b = await ctx.webllm.loadBundle(ctx.bundleUrl, { cache, concurrency: ctx.concurrency, onProgress });
  const t1 = now();
  const rel = (t) => (t == null ? null : (t - t0) / 1000);
  const max = (xs) => { const v = xs.filter((x) => x != null); return v.length ? Math.max(...v) : null; };
  const gaps = [];
  for (const [path, t] of ev.lastByte) {
    const p = ev.put.get(ctx.fileUrl(ctx.baseUrl, path));
    if (p != null) gaps.push((p - t) / 1000);
  }
  const puts = [...ev.put.entries()].filter(([u]) => !u.endsWith("manifest.json") && !u.includes("webllm-py-verified"));
  // per-file timeline of the weight shards (params/*): they are ~all the bytes
  const shards = ctx.files.filter((f) => f.path.startsWith("params/")).map((f) => {
    const u = ctx.fileUrl(ctx.baseUrl, f.path);
    return { path: f.path, first_byte_s: rel(ev.firstByte.get(f.path)), last_byte_s: rel(ev.lastByte.get(f.path)),
             put_start_s: rel(ev.put.get(u)), put_end_s: rel(ev.putEnd.get(u)) };
  });
  return {
    s: (t1 - t0) / 1000, stats: b.stats,
    first_byte_s: rel(firstByte), all_bytes_s: rel(allBytes),
    last_put_start_s: rel(max(puts.map(([, t]) => t))),
    last_put_end_s: rel(max(puts.map(([u]) => ev.putEnd.get(u)))),
    hash_gap_s: max(gaps),
    all_read_s: rel(max(ev.read)), verified_s: rel(max(ev.verified)),
    shards_all_bytes_s: max(shards.map((x) => x.last_byte_s)),
    shards_last_put_start_s: max(shards.map((x) => x.put_start_s)),
    shards_last_put_end_s: max(shards.map((x) => x.put_end_s)),
    shards,
  };
}

async function createEnginePhase(ctx) {
  let tBundle = null, tPipe = null;
  const t0 = now();
  const engine = await ctx.webllm.CreateEngine(ctx.bundleUrl, {
    cache: ENGINE_SCOPE, precision: "auto",
    initProgressCallback: (p) => {
      const t = now();
      if (tBundle == null && p.progress >= 0.9) tBundle = t; // loadBundle finished (LOAD_SHARE)
      if (tPipe == null && p.text.startsWith("Compiling")) tPipe = t; // first pipeline compiled
    },
  });
  const t1 = now();
  const out = {
    s: (t1 - t0) / 1000,
    bundle_s: tBundle == null ? null : (tBundle - t0) / 1000, // fetch/cache + sha256
    gpu_s: tBundle == null ? null : (t1 - tBundle) / 1000, // device + buffers/upload + pipelines
    to_first_pipeline_s: tBundle == null || tPipe == null ? null : (tPipe - tBundle) / 1000,
    precision: engine.model.precision,
    adapter: engine.model.adapterInfo,
  };
  await engine.unload();
  return out;
}

async function partsPhase(ctx, bufs) {
  const subtle = crypto.subtle;
  const out = {};
  // sha256, one file after the other (the sum of per-file digest times)
  let serial = 0;
  for (const f of ctx.files) {
    const t = now();
    const d = await subtle.digest("SHA-256", bufs.get(f.path));
    serial += now() - t;
    if (hex(d) !== f.sha256) throw new Error(`${f.path}: sha256 mismatch`);
  }
  out.sha256_serial_s = serial / 1000;
  await settle();
  // sha256 `concurrency` at a time (as the loader runs them)
  let t = now();
  await pool(ctx.files, ctx.concurrency, async (f) => { await subtle.digest("SHA-256", bufs.get(f.path)); });
  out.sha256_pool_s = (now() - t) / 1000;
  await settle();
  // Cache Storage put, as loader.js's putInCache
  await caches.delete(SCRATCH_SCOPE);
  const cache = await caches.open(SCRATCH_SCOPE);
  const url = (f) => ctx.fileUrl(ctx.baseUrl, f.path) + "?scratch";
  t = now();
  await pool(ctx.files, ctx.concurrency, async (f) => {
    const b = bufs.get(f.path);
    const headers = { "content-type": "application/octet-stream", "content-length": String(b.byteLength) };
    await cache.put(url(f), new Response(b, { headers }));
  });
  out.cache_put_s = (now() - t) / 1000;
  await settle();
  // Cache Storage read, as loader.js's readVerifiedFromCache minus the hash
  t = now();
  await pool(ctx.files, ctx.concurrency, async (f) => {
    const res = await cache.match(url(f));
    const b = await res.arrayBuffer();
    if (b.byteLength !== f.size) throw new Error(`${f.path}: cached ${b.byteLength} bytes`);
  });
  out.cache_read_s = (now() - t) / 1000;
  await caches.delete(SCRATCH_SCOPE);
  return out;
}

/**
 * The GPU side without the runtime: a fresh adapter + device, then one STORAGE buffer per
 * weight shard written with queue.writeBuffer until onSubmittedWorkDone (the weight upload;
 * the runtime writes per-tensor slices of the same bytes). CreateEngine's GPU part minus
 * these two is mostly pipeline creation.
 */
async function gpuPartsPhase(ctx, bufs) {
  let t = now();
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter.requestDevice();
  const device_s = (now() - t) / 1000;
  t = now();
  const made = [];
  for (const f of ctx.files.filter((x) => x.path.startsWith("params/"))) {
    const b = bufs.get(f.path);
    const size = Math.ceil(b.byteLength / 16) * 16;
    const g = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(g, 0, b, 0, b.byteLength - (b.byteLength % 4));
    made.push(g);
  }
  const write_s = (now() - t) / 1000;
  await device.queue.onSubmittedWorkDone();
  const upload_s = (now() - t) / 1000;
  for (const g of made) g.destroy();
  device.destroy();
  return { device_s, write_s, upload_s };
}

export async function runLoad(cfg) {
  const webllm = await import(cfg.webllmUrl);
  const { baseUrl, manifestUrl } = webllm.resolveBundleUrl(cfg.bundleUrl);
  const manifest = await (await fetch(manifestUrl, { cache: "no-store" })).json();
  const files = manifest.files;
  const ctx = { webllm, bundleUrl: cfg.bundleUrl, baseUrl, files, fileUrl: webllm.fileUrl, concurrency: cfg.concurrency };
  const out = { bytes: files.reduce((s, f) => s + f.size, 0), n_files: files.length, order: cfg.phases, phases: {} };
  if ((await caches.keys()).length) throw new Error(`Cache Storage is not empty: ${await caches.keys()}`);
  let rawBufs = null;
  for (const ph of cfg.phases) {
    await settle();
    let r;
    if (ph === "raw" || ph === "raw_stream") {
      const { s, bufs } = await fetchAll(ctx, ph === "raw_stream");
      r = { s };
      if (ph === "raw" || !rawBufs) rawBufs = bufs;
    } else if (ph === "lb_nocache") r = await loadBundlePhase(ctx, false);
    else if (ph === "lb_cold" || ph === "lb_warm") {
      r = await loadBundlePhase(ctx, true);
      const want = ph === "lb_cold" ? r.stats.fetchedFiles : r.stats.cachedFiles;
      if (want !== files.length) throw new Error(`${ph}: ${JSON.stringify(r.stats)}, expected all ${files.length} files ${ph === "lb_cold" ? "fetched" : "from the cache"}`);
    } else if (ph === "ce_cold" || ph === "ce_warm") {
      const cached = await webllm.hasModelInCache(cfg.bundleUrl, { cache: ENGINE_SCOPE });
      if (cached !== (ph === "ce_warm")) throw new Error(`${ph}: hasModelInCache is ${cached} before the load`);
      r = await createEnginePhase(ctx);
    } else if (ph === "parts") {
      if (!rawBufs) rawBufs = (await fetchAll(ctx, false)).bufs;
      r = await partsPhase(ctx, rawBufs);
    } else if (ph === "gpu_parts") {
      if (!rawBufs) rawBufs = (await fetchAll(ctx, false)).bufs;
      r = await gpuPartsPhase(ctx, rawBufs);
    } else throw new Error(`unknown phase ${ph}`);
    out.phases[ph] = r;
  }
  rawBufs = null;
  const est = await navigator.storage.estimate();
  out.storage_usage = est.usage ?? null;
  out.storage_quota = est.quota ?? null;
  return out;
}

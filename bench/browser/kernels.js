// Time one WGSL kernel variant at a time on this page's WebGPU device (see ../kernel_bench.py).
//
// variant = {
//   name, wgsl,
//   bindings: [[name, kind], ...]      kind "read" | "read_write" | "uniform"; binding = index
//   sizes: {name: bytes}               every binding's byte size (multiple of 16)
//   fill: {name: "f32" | "u32" | "scales"}   how to fill it (random f32 in [-1, 1), random u32
//                                      words, or f16 pairs of a small positive scale)
//   step: [n, p]                       the Step uniform
//   dispatch: [x, y, z]                workgroup counts
//   repeat: K (0: pick K so one submission takes ~targetMs), reps (median of), targetMs
//   copies: C (optional, default 1)    C copies of the weight bindings ("w", "scales"), the
//                                      dispatches rotating through them, so each dispatch reads its
//                                      weights from memory as in a model instead of from cache
// }
// Returns {us_wall, us_ts, repeat, compile_ms, samples_us, ts_samples_us}: µs per dispatch,
// from the wall clock around submit → onSubmittedWorkDone (us_wall) and, when the adapter has
// timestamp-query, from timestamps written at the start and end of the one compute pass (us_ts).

let device = null, hasTs = false, info = {};
// Buffers are created once per `v.bufKey` (one shape) and reused by all its variants.
let cacheKey = null, cache = new Map();

export async function initKernels() {
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter");
  hasTs = adapter.features.has("timestamp-query");
  const limits = {};
  for (const k of ["maxStorageBufferBindingSize", "maxBufferSize", "maxStorageBuffersPerShaderStage"])
    limits[k] = adapter.limits[k];
  device = await adapter.requestDevice({ requiredFeatures: hasTs ? ["timestamp-query"] : [], requiredLimits: limits });
  device.addEventListener("uncapturederror", (e) => console.error("uncaptured: " + e.error.message));
  const ai = adapter.info || {};
  info = { vendor: ai.vendor, architecture: ai.architecture, device: ai.device, description: ai.description,
           timestamp_query: hasTs, features: [...adapter.features], userAgent: navigator.userAgent,
           hardwareConcurrency: navigator.hardwareConcurrency };
  return info;
}

function fillBuffer(buf, bytes, how) {
  // write in chunks: writeBuffer of very large typed arrays is fine, but keep JS memory modest
  const chunk = 1 << 22;
  for (let off = 0; off < bytes; off += chunk) {
    const len = Math.min(chunk, bytes - off);
    const u = new Uint32Array(len / 4);
    if (how === "f32") {
      const f = new Float32Array(u.buffer);
      for (let i = 0; i < f.length; i++) f[i] = Math.random() * 2 - 1;
    } else if (how === "scales") {
      u.fill(0x20002000); // two f16 0.0078125 per word (q4a: scale, lo)
    } else {
      for (let i = 0; i < u.length; i++) u[i] = (Math.random() * 4294967296) >>> 0;
    }
    device.queue.writeBuffer(buf, off, u);
  }
}

const median = (a) => { const s = [...a].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };

export async function timeVariant(v) {
  if (!device) await initKernels();
  const buffers = []; // per-variant buffers, destroyed at the end
  if (v.bufKey !== cacheKey) {
    for (const b of cache.values()) b.destroy();
    cache = new Map();
    cacheKey = v.bufKey;
  }
  device.pushErrorScope("validation");
  device.pushErrorScope("out-of-memory");
  try {
    const entries = v.bindings.map(([name, kind], i) => {
      const size = v.sizes[name];
      const ck = `${name}:${kind}:${size}`;
      let buf = cache.get(ck);
      if (buf) return { binding: i, resource: { buffer: buf } };
      if (kind === "uniform") {
        buf = device.createBuffer({ size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
        const u = new Uint32Array(size / 4);
        u[0] = v.step[0]; u[1] = v.step[1];
        device.queue.writeBuffer(buf, 0, u);
      } else {
        buf = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
        fillBuffer(buf, size, v.fill[name] || "f32");
      }
      cache.set(ck, buf);
      return { binding: i, resource: { buffer: buf } };
    });
    const t0 = performance.now();
    const module = device.createShaderModule({ code: v.wgsl });
    const pipeline = await device.createComputePipelineAsync({ layout: "auto", compute: { module, entryPoint: "main" } });
    const compileMs = performance.now() - t0;
    const copies = Math.max(1, v.copies || 1);
    const bindGroups = [device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries })];
    for (let c = 1; c < copies; c++) {
      const own = entries.map((e) => {
        const [name, kind] = v.bindings[e.binding];
        if (name !== "w" && name !== "scales") return e;
        const buf = device.createBuffer({ size: v.sizes[name], usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
        fillBuffer(buf, v.sizes[name], v.fill[name] || "f32");
        buffers.push(buf);
        return { binding: e.binding, resource: { buffer: buf } };
      });
      bindGroups.push(device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: own }));
    }
    let qs = null, resolveBuf = null, readBuf = null;
    if (hasTs) {
      qs = device.createQuerySet({ type: "timestamp", count: 2 });
      resolveBuf = device.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      readBuf = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
      buffers.push(resolveBuf, readBuf);
    }
    const [x, y, z] = v.dispatch;
    // one submission of K back-to-back dispatches in one compute pass; returns [wall ms, ts ms|null]
    const run = async (K) => {
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass(qs ? { timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } } : {});
      pass.setPipeline(pipeline);
      for (let i = 0; i < K; i++) {
        if (i === 0 || copies > 1) pass.setBindGroup(0, bindGroups[i % copies]);
        pass.dispatchWorkgroups(x, y, z);
      }
      pass.end();
      if (qs) { enc.resolveQuerySet(qs, 0, 2, resolveBuf, 0); enc.copyBufferToBuffer(resolveBuf, 0, readBuf, 0, 16); }
      const cmd = enc.finish();
      const s = performance.now();
      device.queue.submit([cmd]);
      await device.queue.onSubmittedWorkDone();
      const wall = performance.now() - s;
      let ts = null;
      if (qs) {
        await readBuf.mapAsync(GPUMapMode.READ);
        const t = new BigUint64Array(readBuf.getMappedRange().slice(0));
        readBuf.unmap();
        ts = t[1] > t[0] ? Number(t[1] - t[0]) / 1e6 : null;
      }
      return [wall, ts];
    };
    const [w1] = await run(1); // warm-up (first run also pays any lazy JIT)
    const [w2] = await run(1);
    let K = v.repeat || Math.max(1, Math.min(64, Math.round((v.targetMs || 60) / Math.max(w2, 0.01))));
    const walls = [], tss = [];
    for (let r = 0; r < (v.reps || 5); r++) {
      const [w, t] = await run(K);
      walls.push(w * 1000 / K);
      if (t != null) tss.push(t * 1000 / K);
    }
    const err2 = await device.popErrorScope();
    const err1 = await device.popErrorScope();
    const err = err1 || err2;
    if (err) return { error: err.message };
    return { us_wall: median(walls), us_ts: tss.length ? median(tss) : null, repeat: K, compile_ms: compileMs,
             first_ms: w1, samples_us: walls, ts_samples_us: tss };
  } catch (e) {
    try { await device.popErrorScope(); await device.popErrorScope(); } catch (_) {}
    return { error: String(e && e.message || e) };
  } finally {
    for (const b of buffers) b.destroy();
  }
}

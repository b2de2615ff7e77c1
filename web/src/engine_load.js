// CreateEngine's load, overlapped (issue 15, item 4): the runtime begins (device, buffers) as
// soon as loadBundle has the manifest, each kernel compiles and each weight shard is written as
// soon as loadBundle has verified it (kernels come first: loader.js), while the other files are
// still being read and hashed. The model never runs on unverified bytes: only files that passed
// their sha256 are handed over, and the runtime is used only after ready(), once every file is in.
import { WebGPURuntime } from "./runtime.js";

/**
 * @typedef {import("./engine.js").EngineOptions} EngineOptions
 * @typedef {(progress: number, text: string) => void} Report
 */

export class OverlappedLoad {
  /**
   * @param {EngineOptions} options CreateEngine's
   * @param {Report} report the engine's progress report (monotonic: the download and compile shares add up)
   * @param {number} loadShare the share of the progress bar given to the files
   */
  constructor(options, report, loadShare) {
    this.options = options;
    this.report = report;
    this.loadShare = loadShare;
    this.downloaded = 0; // 0..1, loadBundle's progress
    this.compiled = 0; // 0..1, pipelines done
    /** @type {Promise<WebGPURuntime>|null} null for a bundle without a language model (embeddings) */
    this.runtime = null;
    /** @type {Promise<void>[]} each file's hand-over */
    this.adds = [];
    this.handedOver = false;
    // loadBundle's signal: the caller's, or the runtime's first failure (a missing feature, a
    // kernel that does not compile), which then stops the downloads at once
    this.ctl = new AbortController();
    const outer = options.signal;
    const onAbort = () => {
      this.ctl.abort(outer?.reason);
      if (!this.handedOver) this.runtime?.then((rt) => rt.destroy(), () => {});
    };
    if (outer?.aborted) onAbort();
    else outer?.addEventListener("abort", onAbort, { once: true });
    this.signal = this.ctl.signal;
    this.onManifest = this.onManifest.bind(this);
    this.onFile = this.onFile.bind(this);
  }

  /** The whole bar: files and pipelines. */
  progress() {
    return this.loadShare * this.downloaded + (1 - this.loadShare) * 0.99 * this.compiled;
  }

  /** @param {any} manifest */
  onManifest(manifest) {
    if (manifest.embedding) return; // an embedding bundle: its own runtime (embeddings.js)
    const o = this.options;
    this.runtime = WebGPURuntime.begin(manifest, {
      precision: o.precision ?? "auto",
      contextWindowSize: o.contextWindowSize,
      gpu: o.gpu,
      adapter: o.adapter,
      onPipeline: (done, total) => {
        this.compiled = done / total;
        this.report(this.progress(), `Compiling kernels ${done}/${total}`);
      },
    });
    this.runtime.catch((err) => this.ctl.abort(err));
  }

  /** @param {{path: string}} file @param {ArrayBuffer} buf verified bytes */
  onFile(file, buf) {
    if (!this.runtime) return;
    const add = this.runtime.then((rt) => rt.addFile(file.path, buf));
    add.catch((err) => this.ctl.abort(err)); // e.g. a weight past the end of its shard
    this.adds.push(add);
  }

  /** The runtime once every file is in and every pipeline compiled (null for an embedding bundle). */
  async ready() {
    if (!this.runtime) return null;
    const runtime = this.runtime;
    try {
      await Promise.all(this.adds);
      const rt = await runtime;
      await rt.ready();
      this.options.signal?.throwIfAborted();
      this.handedOver = true;
      return rt;
    } catch (err) {
      return this.fail(err);
    }
  }

  /** The load failed: destroy what was begun; rethrows `err`. @param {unknown} err @returns {Promise<never>} */
  async fail(err) {
    if (!this.handedOver) await this.runtime?.then((rt) => rt.destroy(), () => {});
    throw err;
  }
}

// One Error subclass per failure. Every message says what went wrong and what to do.
// Names mirror webllm_py/errors.py where both runtimes share a failure.

/** Base class of every webllm-py error; `instanceof WebLLMError` catches them all. */
export class WebLLMError extends Error {
  /** @param {string} message @param {{cause?: unknown}} [options] */
  constructor(message, options) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** `navigator.gpu` is missing or no adapter could be obtained. */
export class WebGPUNotAvailableError extends WebLLMError {
  /** @param {string} [detail] */
  constructor(detail) {
    super(
      `WebGPU is not available${detail ? ` (${detail})` : ""}. ` +
        "Use a recent Chrome/Edge (113+) or Safari 26+, serve the page over https:// or http://localhost " +
        "(WebGPU needs a secure context), and on Linux/Android Chrome enable chrome://flags/#enable-unsafe-webgpu " +
        "and chrome://flags/#enable-vulkan. Check chrome://gpu for 'WebGPU: Hardware accelerated'.",
    );
    this.detail = detail ?? null;
  }
}

/** The adapter lacks a feature or limit the bundle needs (e.g. "shader-f16"). */
export class FeatureSupportError extends WebLLMError {
  /** @param {string} feature @param {string} [hint] */
  constructor(feature, hint) {
    super(
      `This GPU/browser does not support the WebGPU feature or limit "${feature}" that this model needs. ` +
        (hint ?? "Try a bundle built without it (e.g. an f32 variant), or a newer browser/GPU driver."),
    );
    this.feature = feature;
  }
}

/** The GPUDevice was lost (driver reset, tab in background too long, out of GPU memory). */
export class DeviceLostError extends WebLLMError {
  /** @param {string} [reason] @param {string} [message] */
  constructor(reason, message) {
    super(
      `The WebGPU device was lost (${reason ?? "unknown"}${message ? `: ${message}` : ""}). ` +
        "Reload the engine; if it keeps happening, use a smaller model or close other GPU-heavy tabs.",
    );
    this.reason = reason ?? null;
  }
}

/** Prompt plus requested output do not fit the bundle's context window. */
export class ContextWindowExceededError extends WebLLMError {
  /**
   * @param {number} needed tokens needed @param {number} contextWindow tokens available
   * @param {string} [hint] what to do (default: shorten, lower max_tokens or rebuild; context_policy.js says more)
   */
  constructor(needed, contextWindow, hint) {
    super(
      `The request needs ${needed} tokens but the model's context window is ${contextWindow}. ` +
        (hint ?? "Shorten the conversation, lower max_tokens, or rebuild the bundle with a larger --context-window."),
    );
    this.needed = needed;
    this.contextWindow = contextWindow;
  }
}

/** A bundle is unreadable, incomplete, or not a webllm-py bundle. */
export class BundleError extends WebLLMError {
  /** @param {string} message @param {string|null} [url] @param {{cause?: unknown}} [options] */
  constructor(message, url, options) {
    super(url ? `${url}: ${message}` : message, options);
    this.url = url ?? null;
  }
}

/** The bundle's major format_version is not one this runtime knows. */
export class BundleVersionError extends BundleError {
  /** @param {string} version @param {number} knownMajor @param {string|null} [url] */
  constructor(version, knownMajor, url) {
    super(
      `bundle format version ${version} is not supported by this webllm-py (knows ${knownMajor}.x); ` +
        "rebuild the bundle with a matching webllm-py, or upgrade the webllm-py npm package",
      url,
    );
    this.version = version;
  }
}

/** A file's size or sha256 does not match the manifest, even after a refetch. */
export class IntegrityError extends BundleError {
  /** @param {string} path file path within the bundle @param {string} detail @param {string|null} [url] */
  constructor(path, detail, url) {
    super(
      `file "${path}" failed its integrity check (${detail}). The server or a proxy is serving a different ` +
        "or truncated file: re-upload the bundle, or purge the CDN cache for it.",
      url,
    );
    this.path = path;
  }
}

/** Not enough browser storage for the files still to download. */
export class QuotaExceededError extends WebLLMError {
  /**
   * @param {number} neededBytes
   * @param {number|null} availableBytes null when the browser refused a write
   * @param {{cause?: unknown}} [options]
   */
  constructor(neededBytes, availableBytes, options) {
    const mib = (/** @type {number} */ n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    const have = availableBytes == null ? "the browser refused to store more" : `only ${mib(availableBytes)} is available`;
    super(
      `Not enough browser storage: the model needs ${mib(neededBytes)} more but ${have}. ` +
        "Free space (deleteModelFromCache, or clear site data), use a smaller model, " +
        "or load with { cache: false }.",
      options,
    );
    this.neededBytes = neededBytes;
    this.availableBytes = availableBytes;
  }
}

/** A fetch failed (offline, CORS, HTTP error) after all retries. */
export class NetworkError extends WebLLMError {
  /** @param {string} url @param {string} detail @param {{cause?: unknown, status?: number}} [options] */
  constructor(url, detail, options) {
    super(
      `Could not fetch ${url}: ${detail}. Check the URL, your connection, and that the server sends ` +
        "Access-Control-Allow-Origin for cross-origin bundles.",
      options,
    );
    this.url = url;
    this.status = options?.status ?? null;
  }
}

/** A chat template failed to render (it called raise_exception, or uses unsupported Jinja). */
export class ChatTemplateError extends WebLLMError {
  /** @param {string} detail @param {{cause?: unknown}} [options] */
  constructor(detail, options) {
    super(
      `The model's chat template failed: ${detail}. Check the message roles and order the template expects ` +
        "(e.g. alternating user/assistant, system first).",
      options,
    );
  }
}

// Byte-level load progress as one phase over all bytes: monotonic, ends at exactly 1.

/**
 * @typedef {{progress: number, loadedBytes: number, totalBytes: number, text: string,
 *            timeElapsed: number}} ProgressReport  timeElapsed in seconds
 */

export class ProgressTracker {
  /** @param {number} totalBytes @param {((r: ProgressReport) => void)|undefined} callback */
  constructor(totalBytes, callback) {
    this.totalBytes = totalBytes;
    this.loadedBytes = 0;
    this.callback = callback;
    this.start = Date.now();
  }
  /** Count `n` more bytes (never more than the total). @param {number} n @param {string} text */
  add(n, text) {
    if (n <= 0) return;
    this.loadedBytes = Math.min(this.totalBytes, this.loadedBytes + n);
    // Only finish() reports 1, so that 1 always means "done and verified".
    const p = this.totalBytes ? Math.min(this.loadedBytes / this.totalBytes, 0.9999) : 0;
    this.emit(p, text);
  }
  /** @param {string} text */
  finish(text) {
    this.loadedBytes = this.totalBytes;
    this.emit(1, text);
  }
  /** @param {number} progress @param {string} text */
  emit(progress, text) {
    if (!this.callback) return;
    const mib = (/** @type {number} */ b) => (b / 2 ** 20).toFixed(1);
    this.callback({
      progress,
      loadedBytes: this.loadedBytes,
      totalBytes: this.totalBytes,
      text: `${text} [${mib(this.loadedBytes)}/${mib(this.totalBytes)} MiB]`,
      timeElapsed: (Date.now() - this.start) / 1000,
    });
  }
}

// Encode ahead (webllm_py/runtime/encode_ahead.py's twin): the next decode step's command buffer
// recorded while the GPU runs this one. A program's dispatch list depends on (n, p) only, never
// on the token ids (those are in the ids buffer and the step uniform, written with
// queue.writeBuffer, which is ordered before the next submit). So right after submitting a step
// at (n, p) the runtime records the likely next one - a decode at (1, p + n) in the same
// readback mode - and the next step submits it when its key matches; a miss records afresh.
// The GPU runs the same commands either way, so the logits are bit-identical.

/** One command buffer recorded ahead, keyed by what it was recorded for. */
export class EncodeAhead {
  /** @param {(key: string) => any} encode records the command buffer of a key */
  constructor(encode) {
    this._encode = encode;
    /** @type {string|null} */
    this._key = null;
    /** @type {any} */
    this._buffer = null;
    this.hits = 0; // steps that submitted a buffer recorded ahead
    this.misses = 0; // steps that had to record theirs
  }

  /** The command buffer for `key`: the one recorded ahead if it matches, else a fresh one. @param {string} key */
  take(key) {
    let buf;
    if (this._buffer !== null && this._key === key) {
      buf = this._buffer;
      this.hits++;
    } else {
      buf = this._encode(key);
      this.misses++;
    }
    this._key = this._buffer = null; // command buffers are single-use
    return buf;
  }

  /** Record the buffer for `key` now (right after a submit, before waiting on it). @param {string} key */
  prepare(key) {
    this._key = key;
    this._buffer = this._encode(key);
  }

  clear() {
    this._key = this._buffer = null;
  }
}

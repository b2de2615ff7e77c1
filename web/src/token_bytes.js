// The raw bytes a token stands for, for logprobs (`bytes`, `token`): the same rules as
// webllm_py/runtime/tokenizer.py token_bytes — added tokens: their content; byte-level BPE:
// GPT-2's char→byte map; SentencePiece "<0xNN>" byte fallback: one byte; else "▁" → space.

/** GPT-2's bytes_to_unicode, inverted: char → byte. */
function unicodeToByte() {
  const bs = [];
  for (let b = 33; b <= 126; b++) bs.push(b);
  for (let b = 161; b <= 172; b++) bs.push(b);
  for (let b = 174; b <= 255; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  /** @type {Map<string, number>} */
  const m = new Map();
  bs.forEach((b, i) => m.set(String.fromCodePoint(cs[i]), b));
  return m;
}

/** @param {any} decoder */
function usesByteLevel(decoder) {
  if (!decoder || typeof decoder !== "object") return false;
  if (decoder.type === "ByteLevel") return true;
  return decoder.type === "Sequence" && (decoder.decoders ?? []).some(usesByteLevel);
}

export class TokenBytes {
  /**
   * @param {any} tokenizerJson parsed tokenizer.json
   * @param {(id: number) => string|undefined|null} idToToken
   */
  constructor(tokenizerJson, idToToken) {
    this.idToToken = idToToken;
    this.byteLevel = usesByteLevel(tokenizerJson?.decoder);
    this.map = this.byteLevel ? unicodeToByte() : new Map();
    /** @type {Map<number, string>} */
    this.added = new Map((tokenizerJson?.added_tokens ?? []).map((/** @type {any} */ t) => [Number(t.id), String(t.content)]));
    /** @type {Map<number, Uint8Array>} */
    this.cache = new Map();
  }

  /** @param {number} id @returns {Uint8Array} */
  bytes(id) {
    let b = this.cache.get(id);
    if (b) return b;
    const enc = new TextEncoder();
    const added = this.added.get(id);
    if (added != null) b = enc.encode(added);
    else {
      const piece = this.idToToken(id);
      const chars = piece == null ? [] : [...piece];
      let m;
      if (piece == null) b = new Uint8Array(0);
      else if (this.byteLevel && chars.every((c) => this.map.has(c))) b = Uint8Array.from(chars, (c) => /** @type {number} */ (this.map.get(c)));
      else if ((m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece))) b = Uint8Array.of(parseInt(m[1], 16));
      else b = enc.encode(piece.replaceAll("\u2581", " "));
    }
    this.cache.set(id, b);
    return b;
  }

  /** The token's text (partial UTF-8 shown as U+FFFD). @param {number} id */
  text(id) {
    return new TextDecoder().decode(this.bytes(id));
  }
}

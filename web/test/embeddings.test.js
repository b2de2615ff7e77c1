// embeddings.js without a GPU: packing, batching, truncation, request checks and the response
// shape over a fake encoder (the GPU path is tests/test_browser_embeddings.py, in Chromium).
import { test } from "node:test";
import assert from "node:assert/strict";
import { Embeddings, ModelKindError, batches, compileEncoderDim, packRows, parseInput, truncateIds } from "../src/embeddings.js";
import { InvalidRequestError } from "../src/request.js";

test("packRows lays rows back to back with their offsets", () => {
  const p = packRows([[5, 6], [7], [8, 9, 10]]);
  assert.deepEqual([...p.ids], [5, 6, 7, 8, 9, 10]);
  assert.deepEqual([...p.rows], [0, 0, 1, 2, 2, 2]);
  assert.deepEqual([...p.offsets], [0, 2, 3, 6]);
});

test("batches split at the token and row limits, in order (as runtime/embedder.py)", () => {
  const rows = [3, 17, 48, 40, 30, 2, 1, 5, 9].map((n) => new Array(n).fill(1));
  assert.deepEqual(batches(rows, 96, 4), [[0, 3], [3, 7], [7, 9]]);
  assert.deepEqual(batches([], 96, 4), []);
});

test("encoder workgroup expressions take b; p is refused", () => {
  assert.equal(compileEncoderDim("b")(100, 7), 7);
  assert.equal(compileEncoderDim("(n + 3) // 4")(10, 7), 3);
  assert.throws(() => compileEncoderDim("p + 1"), /uses p/);
});

test("truncateIds keeps the special tokens around the cut text", () => {
  assert.deepEqual(truncateIds([101, 1, 2, 3, 4, 102], [1, 2, 3, 4], 4), [101, 1, 2, 102]); // [CLS] $A [SEP]
  assert.deepEqual(truncateIds([1, 2, 3, 9], [1, 2, 3], 3), [1, 2, 9]); // $A </s>
  assert.deepEqual(truncateIds([101, 1, 102], [1], 8), [101, 1, 102]); // short: unchanged
});

test("parseInput accepts OpenAI's four forms and names what is wrong", () => {
  assert.deepEqual(parseInput("a"), { texts: ["a"] });
  assert.deepEqual(parseInput([1, 2]), { tokenRows: [[1, 2]] });
  assert.deepEqual(parseInput([[1], [2, 3]]), { tokenRows: [[1], [2, 3]] });
  for (const [bad, msg] of [[[], /non-empty/], [[""], /input\[0\] is an empty string/], [["a", 1], /one kind/],
    [[[1], []], /input\[1\] must be a non-empty list/], [{}, /non-empty/]]) {
    assert.throws(() => parseInput(bad), (e) => e instanceof InvalidRequestError && msg.test(e.message));
  }
});

const fakeEncoder = { dimensions: 4, maxSeqLength: 8, encode: async (rows) => rows.map((r) => Float32Array.from([r.length, 0, 0, 0])) };
const fakeTokenizer = { encode: (t) => ({ ids: [...t].map((c) => c.charCodeAt(0) % 50) }) };
const manifest = { embedding: { normalize: true, lowercase: false, prompts: {}, default_prompt_name: null } };

test("create: OpenAI's response shape, base64 and dimensions", async () => {
  const e = new Embeddings(/** @type {any} */ (fakeEncoder), fakeTokenizer, manifest, "m");
  const r = await e.create({ input: ["ab", "abc"] });
  assert.deepEqual(r.data.map((d) => [d.object, d.index, d.embedding]), [["embedding", 0, [2, 0, 0, 0]], ["embedding", 1, [3, 0, 0, 0]]]);
  assert.deepEqual(r.usage, { prompt_tokens: 5, total_tokens: 5 });
  assert.equal(r.model, "m");
  const b = await e.create({ input: "ab", encoding_format: "base64", dimensions: 2 });
  const bytes = Uint8Array.from(Buffer.from(b.data[0].embedding, "base64")); // little-endian f32
  assert.deepEqual([...new Float32Array(bytes.buffer)], [1, 0]); // cut to 2 and renormalized
});

test("create refuses unknown fields and bad values; a language model refuses to embed", async () => {
  const e = new Embeddings(/** @type {any} */ (fakeEncoder), fakeTokenizer, manifest, "m");
  for (const [bad, msg] of [[{ input: "a", temperature: 1 }, /unknown field temperature/], [{}, /input is required/],
    [{ input: "a", dimensions: 5 }, /dimensions must be an integer in 1..4/], [{ input: "a", encoding_format: "int8" }, /encoding_format/],
    [{ input: "a", user: 3 }, /user must be a string/]]) {
    await assert.rejects(e.create(bad), (err) => err instanceof InvalidRequestError && msg.test(err.message));
  }
  await assert.rejects(new Embeddings(null, null, null, "chat").create({ input: "a" }),
    (err) => err instanceof ModelKindError && /is a language model, not an embedding model/.test(err.message));
});

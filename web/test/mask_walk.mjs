// Replays grammar walks written by tests/test_structured_web.py through src/grammar.js and prints
// the sha256 of every token bitmask, for the Python test to compare with xgrammar's native masks.
//   node web/test/mask_walk.mjs walks.json   (without an argument, as node --test runs it: nothing)
import "./xgrammar_node.js";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { Grammars, vocabFromTokenizerJson } from "../src/grammar.js";

const file = process.argv[2];
if (file) {
  const job = JSON.parse(readFileSync(file, "utf8"));
  const tj = JSON.parse(readFileSync(job.tokenizer, "utf8"));
  const grammars = await Grammars.create(vocabFromTokenizerJson(tj), tj, job.vocab_size, job.stop_ids);
  const out = [];
  for (const w of job.walks) {
    const guide = await grammars.guide(await grammars.compile(w.spec));
    const hashes = [];
    for (let i = 0; i <= w.tokens.length; i++) {
      const m = await guide.mask();
      hashes.push(createHash("sha256").update(Buffer.from(m.buffer, m.byteOffset, m.byteLength)).digest("hex"));
      if (i < w.tokens.length) await guide.advance(w.tokens[i]);
    }
    out.push(hashes);
  }
  process.stdout.write(JSON.stringify(out));
}

// Bundle src/index.js and its dependencies into an ES module, dist/index.js (plus chunks it imports
// itself, e.g. the grammar engine on first use), that a
// page can import straight from a static server (no bundler, no import map), and write
// dist/worker.js: a module worker running WorkerEngineHandler from the sibling index.js.
import { build } from "esbuild";
import { copyFileSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { basename } from "node:path";

const result = await build({
  entryPoints: { index: "src/index.js" },
  outdir: "dist",
  bundle: true,
  format: "esm",
  // dynamic imports get chunks of their own: @mlc-ai/web-xgrammar (~2.3 MB with its wasm) is
  // fetched on the first structured request only (src/grammar.js), not with every page
  splitting: true,
  chunkNames: "[name]-[hash]",
  // web-xgrammar's emscripten loader has node-only branches (require("url"), import("module"))
  // that browsers never run: leave them unresolved
  external: ["url", "module"],
  platform: "browser",
  target: ["es2022"],
  sourcemap: true,
  legalComments: "linked",
  logLevel: "info",
  metafile: true,
});
// Chunk names carry content hashes: drop the chunks of earlier builds (they would ship in wheels).
const made = new Set(Object.keys(result.metafile.outputs).map((f) => basename(f)));
for (const f of readdirSync("dist")) if (f !== "worker.js" && !made.has(f)) rmSync(`dist/${f}`);
// Not bundled: it must share dist/index.js rather than carry a second copy of it.
mkdirSync("dist", { recursive: true });
copyFileSync("src/worker_entry.js", "dist/worker.js");

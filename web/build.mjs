// Bundle src/index.js and its dependencies into one ES module, dist/index.js, that a
// page can import straight from a static server (no bundler, no import map), and write
// dist/worker.js: a module worker running WorkerEngineHandler from the sibling index.js.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

// The grammar engine (@mlc-ai/web-xgrammar, ~1.1 MB with its wasm) is its own file, dist/xgrammar.js,
// that src/grammar.js imports on the first structured request only: index.js stays one file with no
// static imports (pages import it from any static host) and refers to it by a relative URL.
const xgrammarFile = {
  name: "xgrammar-file",
  setup(b) {
    b.onResolve({ filter: /^@mlc-ai\/web-xgrammar$/ }, () => ({ path: "./xgrammar.js", external: true }));
  },
};
await build({
  entryPoints: { index: "src/index.js" },
  outdir: "dist",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  sourcemap: true,
  legalComments: "linked",
  logLevel: "info",
  plugins: [xgrammarFile],
});
await build({
  entryPoints: { xgrammar: "node_modules/@mlc-ai/web-xgrammar/lib/index.js" },
  outdir: "dist",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  // its emscripten loader has node-only branches (require("url"), import("module")) browsers never run
  external: ["url", "module"],
  logLevel: "info",
});
// Not bundled: it must share dist/index.js rather than carry a second copy of it.
mkdirSync("dist", { recursive: true });
copyFileSync("src/worker_entry.js", "dist/worker.js");

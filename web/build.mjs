// Bundle src/index.js and its dependencies into one ES module, dist/index.js, that a
// page can import straight from a static server (no bundler, no import map), and write
// dist/worker.js: a module worker running WorkerEngineHandler from the sibling index.js.
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";

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
});
// Not bundled: it must share dist/index.js rather than carry a second copy of it.
mkdirSync("dist", { recursive: true });
copyFileSync("src/worker_entry.js", "dist/worker.js");

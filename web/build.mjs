// Bundle src/index.js and its dependencies into one ES module, dist/index.js, that a
// page can import straight from a static server (no bundler, no import map).
import { build } from "esbuild";

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

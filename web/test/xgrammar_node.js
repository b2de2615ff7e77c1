// Lets node load @mlc-ai/web-xgrammar (a UMD build that, run as an ES module, calls require() and
// reads __filename to locate itself); browsers and bundles need nothing. Import it before grammar.js.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
/** @type {any} */
const g = globalThis;
g.require ??= require;
g.__filename ??= require.resolve("@mlc-ai/web-xgrammar");

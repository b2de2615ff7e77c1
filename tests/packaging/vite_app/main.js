// The package imported by name, as web/README.md shows: the engine on the page and, through the
// package's worker file, in a module worker.
import { CreateEngine, CreateWorkerEngine } from "webllm-py";
import { complete } from "./complete.js";

window.complete = (bundleUrl) => complete(CreateEngine, CreateWorkerEngine,
  () => new Worker(new URL("webllm-py/dist/worker.js", import.meta.url), { type: "module" }), bundleUrl);
window.appReady = true;

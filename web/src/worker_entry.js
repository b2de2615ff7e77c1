// dist/worker.js: a ready-made module worker for CreateWorkerEngine. It imports the sibling
// dist/index.js, so the package's code is downloaded once for page and worker.
import { WorkerEngineHandler } from "./index.js";

new WorkerEngineHandler();

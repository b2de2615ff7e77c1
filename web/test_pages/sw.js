// The test site's service worker (tests/test_lifecycle_browser.py): the engine of every page
// under /test_pages/, as a site's own sw.js would be.
import { ServiceWorkerEngineHandler } from "/dist/index.js";

self.handler = new ServiceWorkerEngineHandler();

// What both test pages (the Vite app and static.html) do with the package: one greedy chat
// completion on the main thread and the same one in a worker. f32 programs, so the Python side
// can compare text for text (see tests/test_packaging.py).
export async function complete(CreateEngine, CreateWorkerEngine, makeWorker, bundleUrl) {
  const request = { messages: [{ role: "user", content: "hello" }], max_tokens: 8, temperature: 0 };
  const options = { precision: "f32", cache: false };
  const engine = await CreateEngine(bundleUrl, options);
  const main = (await engine.chat.completions.create(request)).choices[0].message.content;
  await engine.unload();
  const worker = makeWorker();
  const workerEngine = await CreateWorkerEngine(worker, bundleUrl, options);
  const inWorker = (await workerEngine.chat.completions.create(request)).choices[0].message.content;
  await workerEngine.unload();
  worker.terminate();
  return { main, worker: inWorker };
}

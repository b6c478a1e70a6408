// Shared by the Node runner (node_runner.mjs) and the browser runner (runner.html): run an ONNX
// model over a block of images in batches with onnxruntime (its Node or Web build, passed in as
// `ort`), and time session.run with performance.now() inside the JS process.

// images: a Uint8Array or Float32Array holding `shape` ([N, ...per-image dims]) row-major.
function* batches(images, shape, batch) {
  const per = shape.slice(1).reduce((a, b) => a * b, 1);
  for (let start = 0; start < shape[0]; start += batch) {
    const n = Math.min(batch, shape[0] - start);
    yield { start, n, data: images.subarray(start * per, (start + n) * per), dims: [n, ...shape.slice(1)] };
  }
}

function dtypeOf(images) {
  if (images instanceof Uint8Array) return "uint8";
  if (images instanceof Float32Array) return "float32";
  throw new Error(`unsupported input array ${images.constructor.name}`);
}

// Every output of every batch, concatenated along the batch dimension: {name: {dtype, dims, data}}.
// int64 outputs (the uint8 model's `label`) arrive as BigInt64Array; they are returned as
// Float64Array of the same values so the caller need not handle BigInt.
export async function runAll(ort, session, images, shape, batch) {
  const dtype = dtypeOf(images);
  const parts = {};
  for (const b of batches(images, shape, batch)) {
    const feeds = { [session.inputNames[0]]: new ort.Tensor(dtype, b.data, b.dims) };
    const results = await session.run(feeds);
    for (const name of session.outputNames) {
      const t = results[name];
      const data = t.type === "int64" ? Float64Array.from(t.data, Number) : Float32Array.from(t.data);
      (parts[name] ??= { dims: t.dims.slice(1), chunks: [] }).chunks.push(data);
    }
  }
  const out = {};
  for (const [name, { dims, chunks }] of Object.entries(parts)) {
    const total = chunks.reduce((a, c) => a + c.length, 0);
    const data = new (chunks[0].constructor)(total);
    let at = 0;
    for (const c of chunks) { data.set(c, at); at += c.length; }
    out[name] = { dtype: data instanceof Float64Array ? "float64" : "float32", dims: [shape[0], ...dims], data };
  }
  return out;
}

// Whole-model timings: `batch` images per call (the first `batch` of `images`), calls for
// `warmupMs` untimed, then timed calls until `seconds` have passed (at least `minCalls`; with
// `seconds` 0, exactly `minCalls`). Returns the per-call milliseconds, each performance.now()
// around one awaited session.run.
export async function timeRuns(ort, session, images, shape, batch, seconds, warmupMs = 5, minCalls = 3) {
  const b = batches(images, shape, batch).next().value;
  if (b.n !== batch) throw new Error(`${shape[0]} images given, ${batch} needed for one batch`);
  const feeds = { [session.inputNames[0]]: new ort.Tensor(dtypeOf(images), b.data, b.dims) };
  const warmEnd = performance.now() + warmupMs;
  do { await session.run(feeds); } while (performance.now() < warmEnd);
  const samples = [];
  const end = performance.now() + seconds * 1000;
  while (samples.length < minCalls || (seconds > 0 && performance.now() < end)) {
    const t0 = performance.now();
    await session.run(feeds);
    samples.push(performance.now() - t0);
  }
  return samples;
}

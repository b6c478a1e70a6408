// Runs an ONNX model with onnxruntime-node for Python (bench/runtimes/js_host.py): one JSON request per
// line on stdin, one JSON answer per line on stdout; a failure is an answer {"error": ...}.
//   {"cmd": "load", "model": PATH, "threads": N}
//        -> {"version", "inputs", "outputs", "load_ms", "start_ms"} (start_ms: this process's start
//           to onnxruntime-node required, performance.now() since Node's time origin)
//   {"cmd": "run", "input": PATH, "dtype", "shape", "batch", "out": PREFIX}
//        -> every output written raw to PREFIX<name>.bin (float32, int64 as float64): {"outputs"}
//   {"cmd": "time", "input": PATH, "dtype", "shape", "batch", "seconds", "warmup_ms", "calls"}
//        -> {"samples_ms"}: timed inside Node (performance.now() around each session.run)
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { runAll, timeRuns } from "./core.mjs";

const require = createRequire(import.meta.url);
const ort = require("onnxruntime-node");
const version = require("onnxruntime-node/package.json").version;
const startMs = performance.now(); // Node up and the runtime required
let session = null;

function readInput(req) {
  const bytes = readFileSync(req.input);
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  return req.dtype === "uint8" ? new Uint8Array(buffer) : new Float32Array(buffer);
}

async function handle(req) {
  if (req.cmd === "load") {
    const t0 = performance.now();
    session = await ort.InferenceSession.create(req.model, {
      executionProviders: ["cpu"],
      intraOpNumThreads: req.threads || 0,
      interOpNumThreads: 1,
      logSeverityLevel: 3,
    });
    return { version, inputs: session.inputNames, outputs: session.outputNames, load_ms: performance.now() - t0, start_ms: startMs };
  }
  if (!session) throw new Error("no model loaded");
  if (req.cmd === "run") {
    const out = await runAll(ort, session, readInput(req), req.shape, req.batch);
    const outputs = {};
    for (const [name, o] of Object.entries(out)) {
      writeFileSync(`${req.out}${name}.bin`, Buffer.from(o.data.buffer, o.data.byteOffset, o.data.byteLength));
      outputs[name] = { dtype: o.dtype, dims: o.dims };
    }
    return { outputs };
  }
  if (req.cmd === "time") {
    return { samples_ms: await timeRuns(ort, session, readInput(req), req.shape, req.batch, req.seconds, req.warmup_ms, req.calls ?? 3) };
  }
  throw new Error(`unknown command ${req.cmd}`);
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    answer = await handle(JSON.parse(line));
  } catch (e) {
    answer = { error: String(e && e.message ? e.message : e).split("\n")[0] };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}

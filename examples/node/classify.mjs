// Classify the MNIST test set with deep_mnist_uint8.onnx in onnxruntime-node, print the accuracy.
//   node examples/node/classify.mjs [EXPORT_DIR] [MNIST_DIR]
// defaults: artifacts/export and artifacts/data/mnist (made by `deepmnist export`).
// The model is found through manifest.json, its SHA-256 checked before loading; the manifest's
// `metadata` (the file's own metadata_props, as JSON values) gives its recorded test accuracy,
// which onnxruntime's JS API cannot read from the .onnx file.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const ort = require("onnxruntime-node");

const exportDir = process.argv[2] ?? "artifacts/export";
const mnistDir = process.argv[3] ?? "artifacts/data/mnist";

function fail(message) {
  console.error(`classify: error: ${message}`);
  process.exit(2);
}

// IDX: big-endian magic (0x0803 images, 0x0801 labels), counts, then uint8 data. Raw files only.
function readIdx(path, magic) {
  if (!existsSync(path)) fail(`${path}: missing (run \`deepmnist data\`)`);
  const bytes = readFileSync(path);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0) !== magic) fail(`${path}: not an IDX file of the expected kind`);
  const dims = Array.from({ length: magic & 0xff }, (_, i) => view.getUint32(4 + 4 * i));
  const offset = 4 + 4 * dims.length;
  const data = bytes.subarray(offset);
  if (data.length !== dims.reduce((a, b) => a * b, 1)) fail(`${path}: size does not match its header`);
  return { dims, data };
}

const manifestPath = join(exportDir, "manifest.json");
if (!existsSync(manifestPath)) fail(`${manifestPath}: missing (run \`deepmnist export\`)`);
const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
const artifact = manifest.artifacts.find((a) => a.target === "model_uint8" && a.format === "onnx");
if (!artifact) fail(`${manifestPath}: lists no model_uint8 onnx artifact`);
const modelPath = join(exportDir, artifact.file);
const modelBytes = readFileSync(modelPath);
if (createHash("sha256").update(modelBytes).digest("hex") !== artifact.sha256)
  fail(`${modelPath}: SHA-256 does not match the manifest`);

const images = readIdx(join(mnistDir, "t10k-images-idx3-ubyte"), 0x0803);
const labels = readIdx(join(mnistDir, "t10k-labels-idx1-ubyte"), 0x0801);
const count = images.dims[0];

const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ["cpu"] });
const BATCH = 500;
let correct = 0;
const start = performance.now();
for (let i = 0; i < count; i += BATCH) {
  const n = Math.min(BATCH, count - i);
  const pixels = new ort.Tensor("uint8", images.data.subarray(i * 784, (i + n) * 784), [n, 28, 28]);
  const { label } = await session.run({ pixels });
  // `label` is int64: its data is a BigInt64Array, so compare as BigInt (or convert with Number())
  for (let k = 0; k < n; k++) if (label.data[k] === BigInt(labels.data[i + k])) correct++;
}
const ms = performance.now() - start;
const recorded = artifact.metadata?.test_accuracy;
console.log(`${artifact.file}: onnxruntime-node ${require("onnxruntime-node/package.json").version}`);
console.log(`accuracy: ${(correct / count).toFixed(4)} (${correct} of ${count} test images, ${ms.toFixed(0)} ms)`);
if (recorded != null) console.log(`recorded at export (manifest metadata): ${recorded}`);

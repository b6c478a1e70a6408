// Draw a digit; deep_mnist_uint8.onnx classifies it with onnxruntime-web (wasm) in this page.
// Served by `deepmnist demo`: /ort/ is onnxruntime-web's dist folder from the npm package (no CDN),
// /models/ the export folder. The model takes uint8 pixels (1, 28, 28), white digit on black as in
// MNIST, and returns probabilities float32 (1, 10) and label int64 (1,) (a BigInt in JS).
import * as ort from "/ort/ort.wasm.min.mjs";

ort.env.wasm.wasmPaths = new URL("/ort/", location.href).href; // absolute; unset or "/ort/" work too
ort.env.wasm.numThreads = 1;
const MODEL_URL = "/models/deep_mnist_uint8.onnx";
const BRUSH = 22; // pen width in pad pixels: a 280x280 pad is 10x MNIST's 28x28, strokes ~2 px there

const pad = document.getElementById("pad");
const ctx = pad.getContext("2d", { willReadFrequently: true });
const preview = document.getElementById("input28").getContext("2d");
const bars = document.getElementById("bars");
const answer = document.getElementById("answer");
const status = document.getElementById("status");

// ---------------------------------------------------------------- drawing (mouse, pen, touch)
let last = null; // the previous point of the stroke being drawn, in pad pixels

function clearPad() {
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, pad.width, pad.height);
}

function point(event) {
  const r = pad.getBoundingClientRect();
  return { x: ((event.clientX - r.left) * pad.width) / r.width, y: ((event.clientY - r.top) * pad.height) / r.height };
}

function segment(from, to) {
  if (from.x === to.x && from.y === to.y) {
    // a dot: Chromium draws nothing for a zero-length line, round caps or not
    ctx.fillStyle = "#fff";
    ctx.beginPath();
    ctx.arc(from.x, from.y, BRUSH / 2, 0, 2 * Math.PI);
    ctx.fill();
    return;
  }
  ctx.strokeStyle = "#fff";
  ctx.lineWidth = BRUSH;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  ctx.beginPath();
  ctx.moveTo(from.x, from.y);
  ctx.lineTo(to.x, to.y);
  ctx.stroke();
}

pad.addEventListener("pointerdown", (e) => {
  e.preventDefault();
  pad.setPointerCapture(e.pointerId);
  last = point(e);
  segment(last, last); // a dot
});
pad.addEventListener("pointermove", (e) => {
  if (!last) return;
  const p = point(e);
  segment(last, p);
  last = p;
});
function endStroke() {
  if (!last) return;
  last = null;
  classify();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

// ---------------------------------------------------------------- MNIST-style 28x28
// As MNIST was made: crop to the ink, scale so the longer side is 20 px, paste into 28x28 with the
// centre of mass at (14, 14). Returns a Uint8Array(784), or null when nothing is drawn.
function toPixels() {
  const { data, width, height } = ctx.getImageData(0, 0, pad.width, pad.height);
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++)
      if (data[(y * width + x) * 4] >= 64) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
  if (x1 < 0) return null;
  const w = x1 - x0 + 1, h = y1 - y0 + 1;
  const scale = 20 / Math.max(w, h);
  const sw = Math.max(1, Math.round(w * scale)), sh = Math.max(1, Math.round(h * scale));
  const small = new OffscreenCanvas(sw, sh).getContext("2d", { willReadFrequently: true });
  small.imageSmoothingEnabled = true;
  small.imageSmoothingQuality = "high";
  small.drawImage(pad, x0, y0, w, h, 0, 0, sw, sh);
  const s = small.getImageData(0, 0, sw, sh).data;
  let mass = 0, cx = 0, cy = 0;
  for (let y = 0; y < sh; y++)
    for (let x = 0; x < sw; x++) {
      const v = s[(y * sw + x) * 4];
      mass += v; cx += v * x; cy += v * y;
    }
  const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
  const ox = clamp(Math.round(14 - (mass ? cx / mass : sw / 2)), 28 - sw);
  const oy = clamp(Math.round(14 - (mass ? cy / mass : sh / 2)), 28 - sh);
  const pixels = new Uint8Array(28 * 28);
  for (let y = 0; y < sh; y++)
    for (let x = 0; x < sw; x++) pixels[(y + oy) * 28 + (x + ox)] = s[(y * sw + x) * 4];
  return pixels;
}

function showInput(pixels) {
  const img = preview.createImageData(28, 28);
  for (let i = 0; i < 784; i++) img.data.set([pixels[i], pixels[i], pixels[i], 255], i * 4);
  preview.putImageData(img, 0, 0);
}

// ---------------------------------------------------------------- the model
const sessionReady = ort.InferenceSession.create(MODEL_URL, { executionProviders: ["wasm"] });

function showBars(probabilities, label) {
  bars.replaceChildren(
    ...Array.from(probabilities, (p, digit) => {
      const li = document.createElement("li");
      li.className = digit === label ? "top" : "";
      li.dataset.probability = String(p); // the exact float32 value, for tests and tools
      li.innerHTML = `<span>${digit}</span><div class="bar"><div style="width:${(p * 100).toFixed(2)}%"></div></div>` +
        `<span class="p">${(p * 100).toFixed(2)}%</span>`;
      return li;
    }),
  );
  answer.textContent = String(label);
}

let queue = Promise.resolve(null);

// Classify what is on the pad; resolves to {label, probabilities, pixels} (null when empty).
function classify() {
  queue = queue.then(async () => {
    const pixels = toPixels();
    if (!pixels) return null;
    showInput(pixels);
    const session = await sessionReady;
    const out = await session.run({ pixels: new ort.Tensor("uint8", pixels, [1, 28, 28]) });
    const probabilities = Array.from(out.probabilities.data);
    const label = Number(out.label.data[0]); // int64 arrives as a BigInt
    showBars(probabilities, label);
    return { label, probabilities, pixels: Array.from(pixels) };
  });
  return queue;
}

document.getElementById("clear").addEventListener("click", () => {
  clearPad();
  preview.clearRect(0, 0, 28, 28);
  answer.textContent = "…";
  showBars(new Array(10).fill(0), -1);
});

clearPad();
showBars(new Array(10).fill(0), -1);
sessionReady.then(
  () => { status.textContent = `ready: onnxruntime-web ${ort.env.versions.web}, wasm`; window.demoReady = true; },
  (e) => { status.textContent = `could not load ${MODEL_URL}: ${e.message}`; },
);
window.demo = { classify, clear: () => document.getElementById("clear").click() }; // for tests and the console

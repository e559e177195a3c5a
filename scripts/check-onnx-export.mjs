// Runs an exported model with ONNX Runtime for Node.js on the examples `export-onnx --examples` wrote (the pixels
// the .NET model resized each image to, and the probabilities it gave) and checks the same top class on every image
// and every probability within the tolerance. Usage: node check-onnx-export.mjs model.onnx model.examples
// Exit code 0 when it agrees, 1 when not, 2 on bad arguments.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';

const [onnxPath, examples] = process.argv.slice(2);
if (!onnxPath || !examples) {
  console.error('usage: node check-onnx-export.mjs <model.onnx> <examples folder>');
  process.exit(2);
}

// onnxruntime-node is installed by npm into a scratch folder (ORT_NODE_PREFIX), never into the repository.
const require = createRequire(join(process.env.ORT_NODE_PREFIX ?? process.cwd(), 'noop.js'));
const ort = require('onnxruntime-node');

const expected = JSON.parse(readFileSync(join(examples, 'expected.json'), 'utf8'));
const raw = readFileSync(join(examples, 'pixels.f32'));
const pixels = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
const perImage = 3 * expected.imageSize * expected.imageSize;
const count = expected.images.length;
if (pixels.length !== count * perImage) {
  console.error(`error: pixels.f32 holds ${pixels.length} floats, expected ${count} x ${perImage}`);
  process.exit(2);
}

const session = await ort.InferenceSession.create(onnxPath);
const classes = expected.classes;
const argmax = (values) => values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
let same = 0;
let largest = 0;
const mismatches = [];
const started = process.hrtime.bigint();
const batch = 16;
for (let start = 0; start < count; start += batch) {
  const n = Math.min(batch, count - start);
  const input = new ort.Tensor('float32', pixels.subarray(start * perImage, (start + n) * perImage), [n, 3, expected.imageSize, expected.imageSize]);
  const { probabilities } = await session.run({ pixels: input });
  const k = probabilities.dims[1];
  for (let i = 0; i < n; i++) {
    const row = Array.from(probabilities.data.subarray(i * k, (i + 1) * k));
    const want = expected.images[start + i].probabilities;
    row.forEach((p, j) => { largest = Math.max(largest, Math.abs(p - want[j])); });
    if (argmax(row) === argmax(want)) {
      same++;
    } else {
      mismatches.push(`${expected.images[start + i].path}: node ${classes[argmax(row)]}, .NET ${classes[argmax(want)]}`);
    }
  }
}
const seconds = Number(process.hrtime.bigint() - started) / 1e9;

console.log(`onnxruntime-node ${ort.env.versions?.common ?? ''}: ${count} images, input [N,3,${expected.imageSize},${expected.imageSize}], ${classes.length} classes, ${seconds.toFixed(1)} s`);
console.log(`same top class: ${same}/${count}; largest probability difference: ${largest.toExponential(2)} (tolerance ${expected.tolerance})`);
mismatches.slice(0, 10).forEach((m) => console.log(`  differs: ${m}`));
const passed = same === count && largest <= expected.tolerance;
console.log(passed ? 'PASS' : 'FAIL');
process.exit(passed ? 0 : 1);

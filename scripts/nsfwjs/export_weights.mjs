// Step 1 of the built-in weights' conversion (scripts/setup.sh runs it; step 2
// is convert_weights.py). Loads one of nsfwjs's bundled Keras models with
// nsfwjs's own loader (nsfwjs_load.mjs: tfjs dequantizes the uint8 weights as
// q * scale + min) and writes
//   <out>/<model>.json  {"package", "model", "size", "layers": [{name, class_name,
//                        config, inbound, weights: [{name, shape, offset}]}]}
//   <out>/<model>.bin   every weight, float32 little-endian, in TF's layout
// Usage: node export_weights.mjs inception_v3|mobilenet_v2 <out dir>
import fs from "node:fs";
import path from "node:path";

import { MODELS, loadNsfwjs, nsfwjsVersion } from "./nsfwjs_load.mjs";

const [which, out] = process.argv.slice(2);
if (!MODELS[which] || !out) {
  console.error("usage: node export_weights.mjs inception_v3|mobilenet_v2 <out dir>");
  process.exit(2);
}
const { net, size } = await loadNsfwjs(which);
const layers = [];
const chunks = [];
let offset = 0;
for (const layer of net.model.layers) {
  const weights = [];
  for (const w of layer.weights) {
    const values = await w.read().data(); // Float32Array, dequantized
    weights.push({ name: w.originalName || w.name, shape: w.shape, offset });
    chunks.push(Buffer.from(new Uint8Array(values.buffer, values.byteOffset, values.byteLength)));
    offset += values.byteLength;
  }
  const inbound = [];
  for (const node of layer.inboundNodes) for (const l of node.inboundLayers) inbound.push(l.name);
  layers.push({ name: layer.name, class_name: layer.getClassName(), config: layer.getConfig(), inbound, weights });
}
fs.mkdirSync(out, { recursive: true });
const base = path.join(out, which);
fs.writeFileSync(base + ".bin", Buffer.concat(chunks));
const meta = { package: `nsfwjs@${nsfwjsVersion()}`, model: which, size, layers };
fs.writeFileSync(base + ".json", JSON.stringify(meta, null, 1) + "\n");
console.log(`export_weights: ${which}: ${layers.length} layers, ${offset / 4} floats -> ${base}.{json,bin}`);

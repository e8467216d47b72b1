// The parity test's reference: runs nsfwjs itself (its infer(): RGB / 255,
// tf.image.resizeBilinear with alignCorners = true to the model size, no crop)
// on raw RGB pixels and prints the 5 class probabilities and the pooled
// features (the input of the dense head, layer flatten_1) as JSON.
// Usage: node reference.mjs inception_v3|mobilenet_v2 <pixels.rgb> <height> <width>
//   pixels.rgb: height * width * 3 bytes, RGB, row-major (what an image decoder gives)
import fs from "node:fs";

import { loadNsfwjs, nsfwjsVersion } from "./nsfwjs_load.mjs";

const [which, file, h, w] = process.argv.slice(2);
const height = Number(h), width = Number(w);
const bytes = fs.readFileSync(file);
if (!(height > 0 && width > 0) || bytes.length !== height * width * 3) {
  console.error("usage: node reference.mjs inception_v3|mobilenet_v2 <pixels.rgb> <height> <width>");
  process.exit(2);
}
const { tf, net } = await loadNsfwjs(which);
// One forward pass for both outputs: nsfwjs's infer() runs whatever net.model is.
const classifier = net.model;
const pooled = classifier.getLayer("flatten_1");
net.model = tf.model({ inputs: classifier.inputs, outputs: [pooled.output, classifier.outputs[0]] });
const img = tf.tensor3d(new Int32Array(bytes), [height, width, 3], "int32");
const t0 = Date.now();
const [features, probs] = net.infer(img);
const out = {
  package: `nsfwjs@${nsfwjsVersion()}`,
  model: which,
  backend: tf.getBackend(),
  probabilities: Array.from(await probs.data()),
  features: Array.from(await features.data()),
  forward_ms: Date.now() - t0,
};
process.stdout.write(JSON.stringify(out) + "\n");

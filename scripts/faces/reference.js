#!/usr/bin/env node
// face-api itself (@vladmandic/face-api on the pure-JS TF.js cpu backend) on
// one image, for the parity tests:
//
//   node scripts/faces/reference.js <image.rgb> <width> <height> [min_confidence]
//
// <image.rgb> holds width*height*3 bytes of RGB, row-major (the tests write
// the pixels OpenCV decoded, so both sides see the same image). Prints
// {"faces": [{"box": [x, y, w, h], "score", "landmarks": [[x, y] x 68],
// "embedding": [128 floats]}]} -- detectAllFaces(SSD MobileNetV1)
// .withFaceLandmarks().withFaceDescriptors() on a tf.Tensor3D input.
'use strict';

const fs = require('fs');
const path = require('path');

const root = path.join(__dirname, '..', '..', 'third_party', 'face-api');

async function main() {
  const [file, w, h, minConf] = process.argv.slice(2);
  const width = Number(w);
  const height = Number(h);
  // tfjs prints a hint about tfjs-node (console.log/warn) on first use: keep
  // both quiet; the answer goes to stdout directly.
  console.log = () => {};
  console.warn = () => {};
  const tf = require(require.resolve('@tensorflow/tfjs', { paths: [root] }));
  const faceapi = require(require.resolve('@vladmandic/face-api/dist/face-api.node-wasm.js', { paths: [root] }));
  await faceapi.tf.setBackend('cpu'); // pure JS; the wasm backend is never used
  await faceapi.tf.ready();
  const modelDir = path.join(path.dirname(require.resolve('@vladmandic/face-api/package.json', { paths: [root] })), 'model');
  await faceapi.nets.ssdMobilenetv1.loadFromDisk(modelDir);
  await faceapi.nets.faceLandmark68Net.loadFromDisk(modelDir);
  await faceapi.nets.faceRecognitionNet.loadFromDisk(modelDir);

  const rgb = fs.readFileSync(file);
  if (rgb.length !== width * height * 3) throw new Error(`expected ${width * height * 3} bytes, got ${rgb.length}`);
  const input = faceapi.tf.tensor3d(Int32Array.from(rgb), [height, width, 3], 'int32');
  const options = new faceapi.SsdMobilenetv1Options({ minConfidence: minConf ? Number(minConf) : 0.5 });
  const results = await faceapi.detectAllFaces(input, options).withFaceLandmarks().withFaceDescriptors();
  const faces = results.map((r) => ({
    box: [r.detection.box.x, r.detection.box.y, r.detection.box.width, r.detection.box.height],
    score: r.detection.score,
    landmarks: r.landmarks.positions.map((p) => [p.x, p.y]),
    embedding: Array.from(r.descriptor),
  }));
  input.dispose();
  process.stdout.write(`${JSON.stringify({ backend: faceapi.tf.getBackend(), tf: tf.version_core, faces })}\n`);
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});

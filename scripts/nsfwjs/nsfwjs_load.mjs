// Loads one of nsfwjs's bundled models with nsfwjs's own load() on the pure-JS
// CPU backend of @tensorflow/tfjs (no tfjs-node add-on).
//
// Two things differ from a plain `await nsfwjs.load(name)`, neither of which
// changes a single output value:
//  - the ESM build is used: the CommonJS build's __importStar copies every
//    character of each 5.6 MB weight string into an object (15 s a shard);
//  - nsfwjs's warm-up forward pass on zeros (it primes WebGL shaders) is
//    skipped: on the CPU backend it costs a full InceptionV3 forward pass
//    (15-40 s in pure JS) and leaves no state behind.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

import * as tf from "@tensorflow/tfjs";
import * as nsfwjs from "nsfwjs";

export const MODELS = {
  inception_v3: { name: "InceptionV3", size: 299 },
  mobilenet_v2: { name: "MobileNetV2", size: 224 },
};

export function nsfwjsVersion() {
  const require = createRequire(import.meta.url);
  // nsfwjs's "exports" hide its package.json from require(): read the file.
  const main = require.resolve("nsfwjs");
  const pkg = JSON.parse(fs.readFileSync(path.join(path.dirname(main), "..", "..", "package.json"), "utf8"));
  return pkg.version;
}

export async function loadNsfwjs(which) {
  const m = MODELS[which];
  if (!m) throw new Error(`unknown model '${which}' (expected ${Object.keys(MODELS).join(" or ")})`);
  await tf.setBackend("cpu");
  const proto = tf.LayersModel.prototype;
  const predict = proto.predict;
  proto.predict = function (x) {
    return tf.zeros([x.shape[0], 1]); // the warm-up's result is read and thrown away
  };
  let net;
  const info = console.info;
  console.info = () => {}; // "You're using the model: ..."
  try {
    net = await nsfwjs.load(m.name);
  } finally {
    proto.predict = predict;
    console.info = info;
  }
  return { tf, net, size: net.options.size };
}

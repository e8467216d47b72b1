#!/usr/bin/env node
// Converts face-api's TF.js weights (weight manifests + binary shards, uint8-
// quantized) into Rookery's tensor-weights files (.rktw), one per network.
//
//   node scripts/faces/convert.js <face-api model dir> <output dir> <face-api version>
//
// Dequantization is TF.js's own (tf.io.decodeWeights: v * scale + min, in
// doubles, stored as float32), so Rookery computes with exactly the floats
// face-api computes with. Idempotent: a network whose .rktw is newer than its
// manifest and shards is skipped. Files are written to a temporary name and
// renamed, so a reader never sees half a file.
//
// .rktw format (little-endian):
//   "RKTW0001"                      8 bytes magic
//   u32 count                       number of tensors
//   count times:
//     u32 name_len, name bytes      TF.js weight name, e.g. "dense0/conv0/filters"
//     u32 ndim, ndim x u32 dims     TF.js shape (filters HWIO, depthwise HWC1)
//     prod(dims) x f32              values, row-major
// meta.json next to them records the package, version, licence and files.
'use strict';

const fs = require('fs');
const path = require('path');

const NETS = ['ssd_mobilenetv1_model', 'face_landmark_68_model', 'face_recognition_model'];

function newer(out, inputs) {
  if (!fs.existsSync(out)) return false;
  const t = fs.statSync(out).mtimeMs;
  return inputs.every((f) => fs.statSync(f).mtimeMs <= t);
}

function main() {
  const [modelDir, outDir, version] = process.argv.slice(2);
  if (!modelDir || !outDir || !version) {
    console.error('usage: convert.js <face-api model dir> <output dir> <face-api version>');
    process.exit(2);
  }
  fs.mkdirSync(outDir, { recursive: true });
  let tf = null;
  const files = {};
  for (const net of NETS) {
    const manifestPath = path.join(modelDir, `${net}-weights_manifest.json`);
    const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
    const shards = manifest.flatMap((g) => g.paths.map((p) => path.join(modelDir, p)));
    const out = path.join(outDir, `${net}.rktw`);
    files[net] = path.basename(out);
    if (newer(out, [manifestPath, ...shards, __filename])) continue;
    if (!tf) {
      // Pure-JS tfjs (cpu backend). Its hint about tfjs-node comes on first
      // use, through console.log/warn: keep them quiet (progress goes to stdout).
      console.log = () => {};
      console.warn = () => {};
      tf = require(require.resolve('@tensorflow/tfjs', { paths: [modelDir] }));
    }
    const specs = manifest.flatMap((g) => g.weights);
    const data = Buffer.concat(shards.map((s) => fs.readFileSync(s)));
    const ab = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
    const map = tf.io.decodeWeights(ab, specs);
    const parts = [];
    const header = Buffer.alloc(12);
    header.write('RKTW0001', 0, 'latin1');
    header.writeUInt32LE(specs.length, 8);
    parts.push(header);
    for (const spec of specs) {
      const t = map[spec.name];
      const values = Float32Array.from(t.dataSync()); // int32 tensors too, as floats
      const name = Buffer.from(spec.name, 'utf8');
      const h = Buffer.alloc(8 + name.length + 4 * t.shape.length);
      h.writeUInt32LE(name.length, 0);
      name.copy(h, 4);
      h.writeUInt32LE(t.shape.length, 4 + name.length);
      t.shape.forEach((d, i) => h.writeUInt32LE(d, 8 + name.length + 4 * i));
      parts.push(h, Buffer.from(values.buffer, values.byteOffset, values.byteLength));
      t.dispose();
    }
    const tmp = `${out}.tmp${process.pid}`;
    fs.writeFileSync(tmp, Buffer.concat(parts));
    fs.renameSync(tmp, out);
    process.stdout.write(`faces: converted ${net} (${specs.length} tensors) -> ${out}\n`);
  }
  const meta = {
    package: '@vladmandic/face-api',
    version,
    license: 'MIT',
    source: 'model/ folder of the npm package (TF.js weight manifests and shards)',
    files,
  };
  const metaPath = path.join(outDir, 'meta.json');
  const text = `${JSON.stringify(meta, null, 2)}\n`;
  if (!fs.existsSync(metaPath) || fs.readFileSync(metaPath, 'utf8') !== text) {
    fs.writeFileSync(`${metaPath}.tmp${process.pid}`, text);
    fs.renameSync(`${metaPath}.tmp${process.pid}`, metaPath);
  }
}

main();

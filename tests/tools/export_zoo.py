#!/usr/bin/python3
"""Reference outputs of torchvision classification models for the C++ zoo tests.

Usage: /usr/bin/python3 export_zoo.py OUT_DIR SPEC_JSON

SPEC_JSON is a file holding a list of jobs, each
  {"name": "resnet18",          torchvision.models builder name
   "tag": "resnet18",           sub-directory of OUT_DIR (default: name)
   "size": 64,                  input height = width
   "batch": 2,
   "seed": 0,                   torch.manual_seed before building the model
   "kwargs": {...},             extra builder kwargs (weights=None always)
   "mode": "full" | "params"}   "params": only meta (parameter count)

For a "full" job OUT_DIR/TAG/ receives
  weights.pth     torch.save(model.state_dict()) after randomising every
                  BatchNorm (weight, bias, running_mean, running_var) and every
                  bias, so that no parameter keeps a trivial init (a swapped
                  or mis-named tensor changes the outputs)
  input.bin       fixed random input (batch, 3, size, size)
  logits.bin      model(input) in eval mode
  features.bin    pre-logits features: the input of the model's LAST
                  nn.Linear (replaced by Identity), or for SqueezeNet (no
                  Linear) the global average of model.features(input) -- the
                  definition of ZooModelImpl::forward_features()
  conv1_in1.bin,  (resnet* only) the first conv adapted to 1 and 4 input
  conv1_in4.bin   channels as timm does: summed over RGB, tiled and x 3/4
and OUT_DIR/meta.json maps each tag to {"name", "size", "batch",
"num_params", "num_features", "num_classes", "tensors": {file: shape},
"seconds"}. All .bin files are raw little-endian float32, C-contiguous.
"""
import json
import math
import os
import sys
import time
import warnings

import torch
import torchvision


def write(out_dir, meta, name, t):
    t = t.detach().to(torch.float32).contiguous()
    with open(os.path.join(out_dir, name + ".bin"), "wb") as f:
        f.write(t.numpy().astype("<f4").tobytes())
    meta["tensors"][name] = list(t.shape)


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                if m.weight is not None:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                    m.num_batches_tracked.fill_(3)
            elif isinstance(m, torch.nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        for name, p in model.named_parameters():
            if name.endswith("bias") and p.dim() == 1 and float(p.abs().max()) == 0.0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def last_linear(model):
    found = None
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            found = name
    return found


def set_module(model, dotted, new):
    parent = model
    parts = dotted.split(".")
    for p in parts[:-1]:
        parent = getattr(parent, p) if not p.isdigit() else parent[int(p)]
    if parts[-1].isdigit():
        parent[int(parts[-1])] = new
    else:
        setattr(parent, parts[-1], new)


def get_module(model, dotted):
    m = model
    for p in dotted.split("."):
        m = m[int(p)] if p.isdigit() else getattr(m, p)
    return m


def export(out_root, job, meta_all):
    name = job["name"]
    tag = job.get("tag", name)
    size = int(job.get("size", 224))
    batch = int(job.get("batch", 2))
    seed = int(job.get("seed", 0))
    kwargs = dict(job.get("kwargs", {}))
    mode = job.get("mode", "full")
    t0 = time.time()
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = getattr(torchvision.models, name)(weights=None, **kwargs)
    meta = {"name": name, "size": size, "batch": batch, "tensors": {},
            "num_params": sum(p.numel() for p in model.parameters()),
            "num_state": len(model.state_dict())}
    if mode == "params":
        meta["seconds"] = round(time.time() - t0, 3)
        meta_all[tag] = meta
        return
    out_dir = os.path.join(out_root, tag)
    os.makedirs(out_dir, exist_ok=True)
    randomise(model, seed)
    model.eval()
    torch.save(model.state_dict(), os.path.join(out_dir, "weights.pth"))
    g = torch.Generator().manual_seed(1234 + seed)
    x = torch.randn(batch, 3, size, size, generator=g)
    with torch.no_grad():
        write(out_dir, meta, "input", x)
        logits = model(x)
        write(out_dir, meta, "logits", logits)
        meta["num_classes"] = int(logits.shape[1])
        lin = last_linear(model)
        if lin is not None:
            head = get_module(model, lin)
            set_module(model, lin, torch.nn.Identity())
            feats = model(x)
            set_module(model, lin, head)
        else:  # SqueezeNet: the head is a 1x1 conv; pre-logits = pooled features
            feats = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(model.features(x), 1), 1)
        write(out_dir, meta, "features", feats)
        meta["num_features"] = int(feats.shape[1])
        if name.startswith("resnet"):
            w = model.conv1.weight
            write(out_dir, meta, "conv1_in1", w.sum(dim=1, keepdim=True))
            reps = math.ceil(4 / 3)
            write(out_dir, meta, "conv1_in4", w.repeat(1, reps, 1, 1)[:, :4] * (3.0 / 4.0))
    meta["seconds"] = round(time.time() - t0, 3)
    meta_all[tag] = meta


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    out_root = sys.argv[1]
    with open(sys.argv[2]) as f:
        jobs = json.load(f)
    os.makedirs(out_root, exist_ok=True)
    # One thread: OpenMP teams spin badly on a loaded 2-core machine.
    torch.set_num_threads(1)
    meta_all = {"torch": torch.__version__, "torchvision": torchvision.__version__}
    failures = 0
    for job in jobs:
        try:
            export(out_root, job, meta_all)
        except Exception as e:  # keep going: the C++ side reports the missing model
            failures += 1
            meta_all[job.get("tag", job["name"])] = {"error": "%s: %s" % (type(e).__name__, e)}
            print("export_zoo: %s failed: %s" % (job["name"], e), file=sys.stderr)
    with open(os.path.join(out_root, "meta.json"), "w") as f:
        json.dump(meta_all, f, indent=1)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

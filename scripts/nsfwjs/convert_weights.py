#!/usr/bin/python3
"""Step 2 of the built-in weights' conversion (scripts/setup.sh runs it after
export_weights.mjs): turns nsfwjs's Keras layers, exported as float32 in TF's
layout, into a PyTorch state_dict with the module names of Rookery's zoo
models keras_inception_v3 / keras_mobilenet_v2 (models/zoo/keras_*.cpp), and
installs it in Rookery's model-repository layout:

    <builtin dir>/nsfwjs_<model>/1/{config.json, model.pth}

Layouts: Conv2D kernels HWIO -> OIHW, DepthwiseConv2D [kh, kw, C, 1] ->
[C, 1, kh, kw], Dense [in, out] -> [out, in]; BatchNormalization gamma, beta,
moving_mean, moving_variance -> weight, bias, running_mean, running_var (a
Keras BN with scale=False, as InceptionV3's, gets weight = 1).

Usage: convert_weights.py <export dir> <builtin dir> inception_v3|mobilenet_v2 ...
Needs Debian's python3-torch (run with /usr/bin/python3).
"""
import json
import os
import re
import shutil
import sys
from collections import OrderedDict

import numpy as np
import torch

CLASSES = ["Drawing", "Hentai", "Neutral", "Porn", "Sexy"]


def inception_v3_units():
    """Rookery's names of InceptionV3's conv+BN units in the order Keras
    creates them, which is the order of its auto-names conv2d_<k> /
    batch_normalization_<k> (k = 1..94)."""
    units = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
    a = ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2",
         "branch3x3dbl_3", "branch_pool"]
    b = ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]
    c = ["branch1x1", "branch7x7_1", "branch7x7_2", "branch7x7_3", "branch7x7dbl_1",
         "branch7x7dbl_2", "branch7x7dbl_3", "branch7x7dbl_4", "branch7x7dbl_5", "branch_pool"]
    d = ["branch3x3_1", "branch3x3_2", "branch7x7x3_1", "branch7x7x3_2", "branch7x7x3_3",
         "branch7x7x3_4"]
    e = ["branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1",
         "branch3x3dbl_2", "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"]
    for block, branches in [("Mixed_5b", a), ("Mixed_5c", a), ("Mixed_5d", a), ("Mixed_6a", b),
                            ("Mixed_6b", c), ("Mixed_6c", c), ("Mixed_6d", c), ("Mixed_6e", c),
                            ("Mixed_7a", d), ("Mixed_7b", e), ("Mixed_7c", e)]:
        units += [block + "." + br for br in branches]
    return units


def name_inception_v3(layer):
    """Keras layer name -> Rookery module name (None: a layer without weights)."""
    m = re.fullmatch(r"(conv2d|batch_normalization)_(\d+)", layer)
    if m:
        units = inception_v3_units()
        k = int(m.group(2))
        if not 1 <= k <= len(units):
            raise ValueError("unexpected layer " + layer)
        return units[k - 1] + (".conv" if m.group(1) == "conv2d" else ".bn")
    return None


def name_mobilenet_v2(layer):
    fixed = {"Conv1": "stem.conv", "bn_Conv1": "stem.bn", "Conv_1": "head_conv.conv",
             "Conv_1_bn": "head_conv.bn"}
    if layer in fixed:
        return fixed[layer]
    m = re.fullmatch(r"(?:expanded_conv|block_(\d+))_(expand|depthwise|project)(_BN)?", layer)
    if m:
        return "blocks.%d.%s.%s" % (int(m.group(1) or 0), m.group(2), "bn" if m.group(3) else "conv")
    return None


DENSE = {"dense_1": "classifier.0", "dense_2": "classifier.3", "dense_3": "classifier.6"}

MODELS = {
    "inception_v3": {"arch": "keras_inception_v3", "dim": 2048, "name": name_inception_v3},
    "mobilenet_v2": {"arch": "keras_mobilenet_v2", "dim": 1280, "name": name_mobilenet_v2},
}


def convert(export_dir, which):
    spec = MODELS[which]
    meta = json.load(open(os.path.join(export_dir, which + ".json")))
    flat = np.fromfile(os.path.join(export_dir, which + ".bin"), dtype="<f4")
    by_name = {l["name"]: l for l in meta["layers"]}

    def tensor(w):
        n = int(np.prod(w["shape"])) if w["shape"] else 1
        start = w["offset"] // 4
        if start + n > flat.size:
            raise ValueError("weight %s runs past the end of the export" % w["name"])
        return torch.from_numpy(flat[start:start + n].reshape(w["shape"]).copy())

    sd = OrderedDict()
    for layer in meta["layers"]:
        kind, lname = layer["class_name"], layer["name"]
        ws = {w["name"].split("/")[-1]: tensor(w) for w in layer["weights"]}
        if not ws:
            continue
        target = DENSE.get(lname) or spec["name"](lname)
        if target is None:
            raise ValueError("no Rookery name for %s layer %s" % (kind, lname))
        if kind == "Conv2D":
            if layer["config"].get("useBias"):
                raise ValueError(lname + ": convolutions with a bias are not expected")
            sd[target + ".weight"] = ws["kernel"].permute(3, 2, 0, 1)  # HWIO -> OIHW
        elif kind == "DepthwiseConv2D":
            sd[target + ".weight"] = ws["depthwise_kernel"].permute(2, 3, 0, 1)  # [kh,kw,C,1] -> [C,1,kh,kw]
        elif kind == "Dense":
            sd[target + ".weight"] = ws["kernel"].t()
            sd[target + ".bias"] = ws["bias"]
        elif kind == "BatchNormalization":
            cfg = layer["config"]
            if abs(cfg["epsilon"] - 1e-3) > 1e-12 or not cfg["center"]:
                raise ValueError(lname + ": the zoo model assumes epsilon 1e-3 and center=True")
            # The conv before it must be the unit's own conv (guards the name mapping).
            conv = DENSE.get(layer["inbound"][0]) or spec["name"](layer["inbound"][0])
            if conv is None or conv.rsplit(".", 1)[0] != target.rsplit(".", 1)[0]:
                raise ValueError("%s follows %s, not its own convolution" % (lname, layer["inbound"]))
            beta = ws["beta"]
            sd[target + ".weight"] = ws["gamma"] if cfg["scale"] else torch.ones_like(beta)
            sd[target + ".bias"] = beta
            sd[target + ".running_mean"] = ws["moving_mean"]
            sd[target + ".running_var"] = ws["moving_variance"]
            sd[target + ".num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        else:
            raise ValueError("unexpected %s layer %s with weights" % (kind, lname))
    for k in sd:
        sd[k] = sd[k].contiguous()
    # The head the zoo model builds: dense_1 -> ReLU -> dropout -> dense_2 -> ReLU -> dropout -> dense_3.
    head = [by_name.get(n) for n in ("dense_1", "dense_2", "dense_3")]
    if any(h is None for h in head) or head[2]["config"]["activation"] != "softmax":
        raise ValueError("the model's head is not nsfwjs's three dense layers")
    if list(sd["classifier.6.weight"].shape) != [len(CLASSES), 128]:
        raise ValueError("the head does not have %d classes" % len(CLASSES))
    return meta, sd


def install(builtin_dir, which, meta, sd):
    spec = MODELS[which]
    name = "nsfwjs_" + which
    root = os.path.join(builtin_dir, name)
    staging = os.path.join(root, ".staging-1")
    final = os.path.join(root, "1")
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    torch.save(sd, os.path.join(staging, "model.pth"))
    size = int(meta["size"])
    config = OrderedDict([
        ("arch", spec["arch"]),
        ("format", "state_dict"),
        ("weights", "model.pth"),
        ("dim", spec["dim"]),
        ("options", {"num_classes": len(CLASSES)}),
        # nsfwjs's infer(): RGB / 255, tf.image.resizeBilinear(alignCorners = true) to size x size.
        ("preprocess", OrderedDict([("resize_mode", "tf_bilinear"), ("align_corners", True),
                                    ("resize", size), ("crop", 0),
                                    ("mean", [0.0, 0.0, 0.0]), ("std", [1.0, 1.0, 1.0])])),
        ("output", "softmax"),
        ("classes", CLASSES),
        ("provenance", "%s %s" % (meta["package"], which)),
        ("license", "MIT (nsfwjs, https://github.com/infinitered/nsfwjs)"),
        ("description", "nsfwjs's %s: a Keras ImageNet network fine-tuned as a 5-class content "
                        "classifier, converted by scripts/nsfwjs/convert_weights.py" % which),
    ])
    with open(os.path.join(staging, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    for p in ("model.pth", "config.json"):
        os.chmod(os.path.join(staging, p), 0o444)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.rename(staging, final)
    return final


def main(argv):
    if len(argv) < 4 or any(m not in MODELS for m in argv[3:]):
        sys.stderr.write(__doc__)
        return 2
    export_dir, builtin_dir = argv[1], argv[2]
    for which in argv[3:]:
        meta, sd = convert(export_dir, which)
        path = install(builtin_dir, which, meta, sd)
        n = sum(t.numel() for k, t in sd.items() if not k.endswith("num_batches_tracked"))
        print("convert_weights: %s: %d tensors, %d values -> %s" % (which, len(sd), n, path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

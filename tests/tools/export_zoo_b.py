#!/usr/bin/python3
"""Reference outputs of torchvision's EfficientNet / RegNet / ConvNeXt / ViT /
Swin / MaxViT models for the C++ parity tests (tests/unit/zoo_b_test.cpp).

Usage: /usr/bin/python3 export_zoo_b.py OUT_DIR NAME [NAME ...]
       /usr/bin/python3 export_zoo_b.py --list
       /usr/bin/python3 export_zoo_b.py --regnet-params OUT.json
       /usr/bin/python3 export_zoo_b.py --state-keys NAME OUT.json

NAME is a torchvision builder name (efficientnet_b0, regnet_y_400mf, vit_b_32,
swin_v2_t, maxvit_t, ...), built with weights=None and the SPECS kwargs below
(a small image_size for ViT), all in this one process; NAME@HxW (not for ViT
or MaxViT, which are tied to their input size) uses an H x W input instead of
the SPECS size. maxvit_mini is torchvision's MaxVit class with the reduced
MAXVIT_MINI configuration (tests/unit/zoo_b_test.cpp builds the same one). For each NAME, OUT_DIR/NAME/ gets:
  weights.pth    torch.save(model.state_dict()) after
                   - torch.manual_seed(0) and construction,
                   - N(0, 0.1) noise added to every parameter whose init is a
                     constant (BatchNorm / LayerNorm affine, biases, ConvNeXt's
                     layer_scale, ViT's zero head and class token, Swin V2's
                     logit_scale, ...), so that no branch is trivially dead,
                   - BatchNorm running stats from 2 training batches
                     (cumulative average), then eval();
  input.bin      (2, 3, H, W) from torch.Generator().manual_seed(1234)
  logits.bin     model(input)
  features.bin   the input of the last Linear (everything but the classifier)
  stage<i>.bin   the multi-scale feature maps (NCHW) of the C++ forward_stages()
--state-keys writes {key: shape} of NAME's state_dict (nothing is run).
--regnet-params writes {name: {"depths", "widths", "group_widths", "se_ratio"}}
of torchvision's BlockParams for every RegNet builder (no model is built).
And OUT_DIR/meta.json: {"models": {NAME: {"size", "image_size", "tensors": {name: shape}}}}.
All .bin files are raw little-endian float32, C-contiguous.
"""
import json
import os
import sys

import torch
import torchvision
from torchvision import models as M

# name -> (builder kwargs, input size)
SPECS = {}
for n in ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "v2_s", "v2_m", "v2_l"]:
    SPECS["efficientnet_" + n] = ({}, 64)
for n in ["400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf", "128gf"]:
    SPECS["regnet_y_" + n] = ({}, 64)
for n in ["400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf"]:
    SPECS["regnet_x_" + n] = ({}, 64)
for n in ["tiny", "small", "base", "large"]:
    SPECS["convnext_" + n] = ({}, 64)
for n in ["vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32"]:
    SPECS[n] = ({"image_size": 64}, 64)
SPECS["vit_h_14"] = ({"image_size": 56}, 56)
for n in ["swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b"]:
    SPECS[n] = ({}, 96)
# MaxViT's grid attention is built for one input size, and partition size 7
# in all four blocks needs 221..224 (or 445..448, ...).
SPECS["maxvit_t"] = ({"input_size": (224, 224)}, 224)
# Every MaxViT code path at a small cost: 128 px -> blocks of 32, 16, 8, 4
# (partition 4: window and grid partitions differ in blocks 0-2; block 3 has
# a single window), a stride-1 layer after the stride-2 one in blocks 0 and 2.
MAXVIT_MINI = dict(input_size=(128, 128), stem_channels=16, partition_size=4,
                   block_channels=[16, 32, 48, 64], block_layers=[2, 1, 2, 1], head_dim=8,
                   stochastic_depth_prob=0.2)
SPECS["maxvit_mini"] = ({}, 128)


def family(name):
    for f in ["efficientnet", "regnet", "convnext", "vit", "swin", "maxvit"]:
        if name.startswith(f):
            return f
    raise ValueError(name)


def last_linear(model, fam):
    if fam == "efficientnet":
        return model.classifier[1]
    if fam == "regnet":
        return model.fc
    if fam == "convnext":
        return model.classifier[2]
    if fam == "vit":
        return model.heads.head
    if fam == "maxvit":
        return model.classifier[5]
    return model.head


def stages(model, fam, x):
    """The feature maps that the C++ forward_stages() returns."""
    out = []
    if fam == "efficientnet":
        # The last block of each resolution (the 1x1 head conv excluded).
        feats = list(model.features)
        ys = []
        for m in feats[:-1]:
            x = m(x)
            ys.append(x)
        for i in range(1, len(ys)):
            if i == len(ys) - 1 or ys[i + 1].shape[-2:] != ys[i].shape[-2:]:
                out.append(ys[i])
    elif fam == "regnet":
        x = model.stem(x)
        out.append(x)
        for m in model.trunk_output:
            x = m(x)
            out.append(x)
    elif fam == "convnext":
        for i, m in enumerate(model.features):
            x = m(x)
            if i % 2 == 1:
                out.append(x)
    elif fam == "swin":
        for i, m in enumerate(model.features):
            x = m(x)
            if i % 2 == 1:
                out.append(x.permute(0, 3, 1, 2))
    elif fam == "maxvit":
        x = model.stem(x)
        for b in model.blocks:
            x = b(x)
            out.append(x)
    elif fam == "vit":
        n = x.shape[0]
        t = model._process_input(x)
        t = torch.cat([model.class_token.expand(n, -1, -1), t], dim=1)
        t = t + model.encoder.pos_embedding
        g = model.image_size // model.patch_size
        for layer in model.encoder.layers:
            t = layer(t)
            out.append(t[:, 1:].permute(0, 2, 1).reshape(n, -1, g, g))
    return out


def write(d, tensors, name, t):
    t = t.detach().to(torch.float32).contiguous()
    with open(os.path.join(d, name + ".bin"), "wb") as f:
        f.write(t.numpy().astype("<f4").tobytes())
    tensors[name] = list(t.shape)


def parse(name):
    """builder name, kwargs, (H, W) of NAME or NAME@HxW."""
    base, _, hw = name.partition("@")
    kwargs, size = SPECS[base]
    if hw:
        h, w = (int(v) for v in hw.split("x"))
        if family(base) in ("vit", "maxvit") or h <= 0 or w <= 0:
            raise ValueError(name)
        return base, kwargs, (h, w)
    return base, kwargs, (size, size)


def export(out_dir, name):
    base, kwargs, (h, w) = parse(name)
    fam = family(base)
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    model = build(base, kwargs)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() == 1 or bool((p == p.flatten()[0]).all()):
                p.add_(torch.randn_like(p) * 0.1)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:
        saved = [m.momentum for m in bns]
        for m in bns:
            m.momentum = None
        model.train()
        with torch.no_grad():
            for _ in range(2):
                model(torch.randn(4, 3, h, w))
        for m, mo in zip(bns, saved):
            m.momentum = mo
    model.eval()
    torch.save(model.state_dict(), os.path.join(d, "weights.pth"))

    feats = {}
    hook = last_linear(model, fam).register_forward_pre_hook(lambda m, inp: feats.update(f=inp[0]))
    x = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1234))
    tensors = {}
    with torch.no_grad():
        logits = model(x)
        hook.remove()
        write(d, tensors, "input", x)
        write(d, tensors, "logits", logits)
        write(d, tensors, "features", feats["f"])
        for i, s in enumerate(stages(model, fam, x)):
            write(d, tensors, "stage%d" % i, s)
    image_size = kwargs.get("image_size", 0)
    if fam == "maxvit":
        image_size = h
    return {"size": [h, w], "image_size": image_size, "tensors": tensors}


def build(base, kwargs):
    if base == "maxvit_mini":
        from torchvision.models.maxvit import MaxVit

        return MaxVit(**MAXVIT_MINI)
    return getattr(M, base)(weights=None, **kwargs)


def state_keys(name, path):
    torch.manual_seed(0)
    model = build(name, SPECS[name][0])
    with open(path, "w") as f:
        json.dump({k: list(v.shape) for k, v in model.state_dict().items()}, f, indent=0)
    return 0


def regnet_params(path):
    from torchvision.models import regnet

    captured = {}
    real = regnet._regnet

    def fake(params, weights, progress, **kwargs):
        captured["p"] = params
        return None

    regnet._regnet = fake
    try:
        out = {}
        for n in SPECS:
            if not n.startswith("regnet"):
                continue
            getattr(regnet, n)(weights=None)
            p = captured["p"]
            out[n] = {"depths": list(p.depths), "widths": list(p.widths),
                      "group_widths": list(p.group_widths), "se_ratio": p.se_ratio or 0.0}
    finally:
        regnet._regnet = real
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    return 0


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--list":
        print("\n".join(SPECS))
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "--state-keys":
        if sys.argv[2] not in SPECS:
            print("unknown model " + sys.argv[2], file=sys.stderr)
            return 2
        return state_keys(sys.argv[2], sys.argv[3])
    if len(sys.argv) == 3 and sys.argv[1] == "--regnet-params":
        return regnet_params(sys.argv[2])
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    names = sys.argv[2:]
    for n in names:
        try:
            parse(n)
        except (KeyError, ValueError):
            print("unknown model " + n, file=sys.stderr)
            return 2
    os.makedirs(out_dir, exist_ok=True)
    # One thread: the models are small at these sizes, and two threads spin
    # against each other (and the build) on a busy 2-core machine.
    torch.set_num_threads(1)
    meta = {"torch": torch.__version__, "torchvision": torchvision.__version__, "models": {}}
    for n in names:
        meta["models"][n] = export(out_dir, n)
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

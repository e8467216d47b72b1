#!/usr/bin/python3
"""Reference outputs of a torchvision ResNet for the C++ parity tests.

Usage: /usr/bin/python3 export_resnet.py OUT_DIR [ARCH] [IMAGE ...]

Writes into OUT_DIR (created if needed):
  weights.pth        torch.save(model.state_dict()) of torchvision.models.ARCH()
                     (random init, torch.manual_seed(0), no download)
  model.ts           torch.jit.script of the feature model (fc = Identity)
  input.bin          fixed random input, (2, 3, 224, 224)
  logits.bin         model(input)
  features.bin       feature_model(input)            (penultimate, not normalised)
  image<i>.bin       torchvision preprocessing of IMAGE i:
                     PIL open -> RGB -> Resize(256) -> CenterCrop(224) -> ToTensor
                     -> Normalize(ImageNet), (1, 3, 224, 224)
  image<i>_emb.bin   L2-normalised features of image<i>
  mismatch.pth       weights.pth with one key dropped, one added, one reshaped
  linear_*.pth       state_dict of a torch.nn.Linear(3, 2) saved as an
                     OrderedDict / plain dict / pickle protocol 4 / nested
                     {"state_dict": ...} checkpoint; linear.bin = weight ++ bias
  meta.json          {"arch", "tensors": {name: shape}, "images": [...]}
All .bin files are raw little-endian float32, C-contiguous.
"""
import collections
import copy
import json
import os
import sys

import torch
import torchvision
from PIL import Image
from torchvision import transforms


def write(out_dir, meta, name, t):
    t = t.detach().to(torch.float32).contiguous()
    with open(os.path.join(out_dir, name + ".bin"), "wb") as f:
        f.write(t.numpy().astype("<f4").tobytes())
    meta["tensors"][name] = list(t.shape)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out_dir = sys.argv[1]
    arch = sys.argv[2] if len(sys.argv) > 2 else "resnet18"
    images = sys.argv[3:]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    meta = {"arch": arch, "tensors": {}, "images": images,
            "torch": torch.__version__, "torchvision": torchvision.__version__}

    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None)
    # Make BatchNorm non-trivial (random init has mean 0 / var 1): run a few
    # training-mode batches so running stats differ per channel.
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(4, 3, 64, 64))
    model.eval()
    torch.save(model.state_dict(), os.path.join(out_dir, "weights.pth"))

    features = copy.deepcopy(model)
    features.fc = torch.nn.Identity()
    features.eval()
    torch.jit.script(features).save(os.path.join(out_dir, "model.ts"))

    g = torch.Generator().manual_seed(1234)
    x = torch.randn(2, 3, 224, 224, generator=g)
    with torch.no_grad():
        write(out_dir, meta, "input", x)
        write(out_dir, meta, "logits", model(x))
        write(out_dir, meta, "features", features(x))

        tf = transforms.Compose([
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ])
        for i, path in enumerate(images):
            img = Image.open(path).convert("RGB")
            t = tf(img).unsqueeze(0)
            write(out_dir, meta, "image%d" % i, t)
            emb = torch.nn.functional.normalize(features(t), p=2, dim=1)
            write(out_dir, meta, "image%d_emb" % i, emb)

    sd = model.state_dict()
    bad = collections.OrderedDict(sd)
    del bad["layer1.0.conv1.weight"]
    bad["extra.weight"] = torch.zeros(3)
    bad["fc.weight"] = torch.zeros(10, bad["fc.weight"].shape[1])
    torch.save(bad, os.path.join(out_dir, "mismatch.pth"))

    torch.manual_seed(1)
    lin = torch.nn.Linear(3, 2)
    lsd = lin.state_dict()
    torch.save(lsd, os.path.join(out_dir, "linear_ordered.pth"))
    torch.save(dict(lsd), os.path.join(out_dir, "linear_plain.pth"))
    torch.save(lsd, os.path.join(out_dir, "linear_proto4.pth"), pickle_protocol=4)
    torch.save({"epoch": 3, "state_dict": lsd, "lr": 0.1},
               os.path.join(out_dir, "linear_nested.pth"))
    torch.save({"weight": lsd["weight"]}, os.path.join(out_dir, "linear_single.pth"))
    write(out_dir, meta, "linear", torch.cat([lsd["weight"].flatten(), lsd["bias"]]))

    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

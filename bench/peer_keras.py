"""Python peer for bench/pretrained_bench.sh: the embedding server a PyTorch user would
write by hand for nsfwjs's Keras InceptionV3 / MobileNetV2, on Rookery's converted weights.

Like ../shared/bench/peer_fastapi.py (FastAPI + uvicorn, one request = one forward), but the
networks are Keras-flavoured PyTorch modules whose state_dict keys are exactly those of
Rookery's zoo models keras_inception_v3 / keras_mobilenet_v2 (models/zoo/keras_*.cpp), so the
model.pth that scripts/nsfwjs/convert_weights.py wrote loads with strict=True. What Keras
computes, unlike torchvision: BatchNormalization epsilon 1e-3; TF 'same' padding (asymmetric
when it is uneven); InceptionV3's stride-2 layers 'valid' and its 3x3 average pools not
counting the padding; MobileNetV2's explicit ZeroPadding2D((0, 1), (0, 1)) before every
stride-2 conv and ReLU6. Preprocessing is nsfwjs's (the model's config.json "preprocess"):
PIL decode, RGB, values / 255, the whole picture stretched to size x size by bilinear
interpolation with align_corners=True (tf.image.resizeBilinear(alignCorners=true): the
same maths), no crop, no mean/std. The answer is the pooled features, L2-normalised, as
Rookery's pipelines give them.

Uses only Debian packages: python3-torch python3-fastapi python3-uvicorn python3-pil python3-numpy.

    /usr/bin/python3 peer_keras.py --model inception_v3|mobilenet_v2 --weights model.pth \\
        [--threads 2] [--port 8900] [--size N]
    /usr/bin/python3 peer_keras.py --model ... --weights ... --embed a.png b.jpg   # JSON lines, no server

POST /embed with the raw image bytes as the body -> {"dim": D, "embedding": [...]}.
"""
import argparse
import io
import json
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


def same_padding(size, kernel, stride):
    """TF's 'same' padding of one dimension: (before, after), the smaller half first."""
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class ConvBn(nn.Module):
    """Keras Conv2D / DepthwiseConv2D (no bias) -> BatchNormalization(eps 1e-3) -> activation,
    as "conv" and "bn" (models/zoo/keras_layers.hpp's KerasConvBn)."""

    def __init__(self, cin, cout, kernel, stride=1, pad="same", zero_pad=None, depthwise=False,
                 act="relu"):
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.kh, self.kw, self.stride, self.pad, self.act = kh, kw, stride, pad, act
        self.zero_pad = zero_pad  # F.pad order: (left, right, top, bottom)
        # 'same' at stride 1 with odd kernels is symmetric: the conv pads by itself.
        self.symmetric = pad == "valid" or (stride == 1 and kh % 2 == 1 and kw % 2 == 1)
        padding = (kh // 2, kw // 2) if pad == "same" and self.symmetric else 0
        self.conv = nn.Conv2d(cin, cout, (kh, kw), stride=stride, padding=padding, bias=False,
                              groups=cin if depthwise else 1)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x):
        if self.zero_pad is not None:
            x = F.pad(x, self.zero_pad)
        if not self.symmetric:
            top, bottom = same_padding(x.shape[2], self.kh, self.stride)
            left, right = same_padding(x.shape[3], self.kw, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        x = self.bn(self.conv(x))
        if self.act == "relu":
            return F.relu(x, inplace=True)
        if self.act == "relu6":
            return F.relu6(x, inplace=True)
        return x


def keras_head(features, num_classes):
    """nsfwjs's dense head, keys classifier.0 / .3 / .6 (not used for the embedding)."""
    return nn.Sequential(nn.Linear(features, 256), nn.ReLU(inplace=True), nn.Dropout(0.5),
                         nn.Linear(256, 128), nn.ReLU(inplace=True), nn.Dropout(0.25),
                         nn.Linear(128, num_classes))


# --- InceptionV3 (keras.applications; torchvision's module names) ----------------------------

def iu(cin, cout, kernel, stride=1, pad="same"):
    return ConvBn(cin, cout, kernel, stride, pad, act="relu")


def avg3_same(x):  # AveragePooling2D((3, 3), strides=(1, 1), padding='same')
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def max3s2(x):  # MaxPooling2D((3, 3), strides=(2, 2)), 'valid'
    return F.max_pool2d(x, 3, 2)


class InceptionA(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = iu(cin, 64, 1)
        self.branch5x5_1 = iu(cin, 48, 1)
        self.branch5x5_2 = iu(48, 64, 5)
        self.branch3x3dbl_1 = iu(cin, 64, 1)
        self.branch3x3dbl_2 = iu(64, 96, 3)
        self.branch3x3dbl_3 = iu(96, 96, 3)
        self.branch_pool = iu(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(avg3_same(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = iu(cin, 384, 3, 2, "valid")
        self.branch3x3dbl_1 = iu(cin, 64, 1)
        self.branch3x3dbl_2 = iu(64, 96, 3)
        self.branch3x3dbl_3 = iu(96, 96, 3, 2, "valid")

    def forward(self, x):
        return torch.cat([self.branch3x3(x),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          max3s2(x)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = iu(cin, 192, 1)
        self.branch7x7_1 = iu(cin, c7, 1)
        self.branch7x7_2 = iu(c7, c7, (1, 7))
        self.branch7x7_3 = iu(c7, 192, (7, 1))
        self.branch7x7dbl_1 = iu(cin, c7, 1)
        self.branch7x7dbl_2 = iu(c7, c7, (7, 1))
        self.branch7x7dbl_3 = iu(c7, c7, (1, 7))
        self.branch7x7dbl_4 = iu(c7, c7, (7, 1))
        self.branch7x7dbl_5 = iu(c7, 192, (1, 7))
        self.branch_pool = iu(cin, 192, 1)

    def forward(self, x):
        a = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b = self.branch7x7dbl_1(x)
        for m in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            b = m(b)
        return torch.cat([self.branch1x1(x), a, b, self.branch_pool(avg3_same(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = iu(cin, 192, 1)
        self.branch3x3_2 = iu(192, 320, 3, 2, "valid")
        self.branch7x7x3_1 = iu(cin, 192, 1)
        self.branch7x7x3_2 = iu(192, 192, (1, 7))
        self.branch7x7x3_3 = iu(192, 192, (7, 1))
        self.branch7x7x3_4 = iu(192, 192, 3, 2, "valid")

    def forward(self, x):
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, max3s2(x)], 1)


class InceptionE(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch1x1 = iu(cin, 320, 1)
        self.branch3x3_1 = iu(cin, 384, 1)
        self.branch3x3_2a = iu(384, 384, (1, 3))
        self.branch3x3_2b = iu(384, 384, (3, 1))
        self.branch3x3dbl_1 = iu(cin, 448, 1)
        self.branch3x3dbl_2 = iu(448, 384, 3)
        self.branch3x3dbl_3a = iu(384, 384, (1, 3))
        self.branch3x3dbl_3b = iu(384, 384, (3, 1))
        self.branch_pool = iu(cin, 192, 1)

    def forward(self, x):
        a = self.branch3x3_1(x)
        a = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1)
        b = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b = torch.cat([self.branch3x3dbl_3a(b), self.branch3x3dbl_3b(b)], 1)
        return torch.cat([self.branch1x1(x), a, b, self.branch_pool(avg3_same(x))], 1)


class KerasInceptionV3(nn.Module):
    size = 299
    dim = 2048

    def __init__(self, num_classes=5):
        super().__init__()
        self.Conv2d_1a_3x3 = iu(3, 32, 3, 2, "valid")
        self.Conv2d_2a_3x3 = iu(32, 32, 3, 1, "valid")
        self.Conv2d_2b_3x3 = iu(32, 64, 3)
        self.Conv2d_3b_1x1 = iu(64, 80, 1, 1, "valid")
        self.Conv2d_4a_3x3 = iu(80, 192, 3, 1, "valid")
        self.Mixed_5b = InceptionA(192, 32)
        self.Mixed_5c = InceptionA(256, 64)
        self.Mixed_5d = InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, 128)
        self.Mixed_6c = InceptionC(768, 160)
        self.Mixed_6d = InceptionC(768, 160)
        self.Mixed_6e = InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280)
        self.Mixed_7c = InceptionE(2048)
        self.classifier = keras_head(2048, num_classes)

    def forward_features(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = max3s2(x)
        x = max3s2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        for m in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                  self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                  self.Mixed_7c):
            x = m(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)


# --- MobileNetV2 (keras.applications, alpha 1.0) ---------------------------------------------

def mu(cin, cout, kernel, stride, depthwise, act):
    if stride > 1:  # ZeroPadding2D(correct_pad) at an even input size: bottom/right only
        return ConvBn(cin, cout, kernel, stride, "valid", zero_pad=(0, 1, 0, 1),
                      depthwise=depthwise, act=act)
    return ConvBn(cin, cout, kernel, 1, "same", depthwise=depthwise, act=act)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expansion):
        super().__init__()
        hidden = cin * expansion
        self.expand = mu(cin, hidden, 1, 1, False, "relu6") if expansion != 1 else None
        self.depthwise = mu(hidden, hidden, 3, stride, True, "relu6")
        self.project = mu(hidden, cout, 1, 1, False, None)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class KerasMobileNetV2(nn.Module):
    size = 224
    dim = 1280

    def __init__(self, num_classes=5):
        super().__init__()
        cin = 32
        self.stem = mu(3, cin, 3, 2, False, "relu6")
        blocks = []
        for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
            for r in range(n):
                blocks.append(InvertedResidual(cin, c, s if r == 0 else 1, t))
                cin = c
        self.blocks = nn.ModuleList(blocks)
        self.head_conv = mu(cin, 1280, 1, 1, False, "relu6")
        self.classifier = keras_head(1280, num_classes)

    def forward_features(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return torch.flatten(F.adaptive_avg_pool2d(self.head_conv(x), 1), 1)


MODELS = {"inception_v3": KerasInceptionV3, "mobilenet_v2": KerasMobileNetV2}


def load_model(name, weights):
    model = MODELS[name]()
    state = torch.load(weights, map_location="cpu")
    model.load_state_dict(state, strict=True)  # every key and shape, as Rookery's own check
    model.eval()
    return model


def preprocess(body, size):
    """nsfwjs: RGB / 255, the whole picture resized to size x size, bilinear, align_corners."""
    image = Image.open(io.BytesIO(body)).convert("RGB")
    x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    x = x.permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 255.0
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--weights", required=True, help="Rookery's model.pth (a state_dict)")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=0, help="input side (default: the model's)")
    parser.add_argument("--embed", metavar="IMAGE", nargs="+",
                        help="no server: print one JSON line per IMAGE, {image, dim, embedding,"
                             " features (the pooled features before the L2 norm)}, and exit")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = load_model(args.model, args.weights)
    size = args.size or model.size

    if args.embed:
        for path in args.embed:
            with open(path, "rb") as f:
                x = preprocess(f.read(), size)
            with torch.inference_mode():
                features = model.forward_features(x)[0]
            v = F.normalize(features, dim=0)
            json.dump({"image": path, "dim": v.numel(), "embedding": v.tolist(),
                       "features": features.tolist()}, sys.stdout)
            print()
        return

    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.post("/embed")
    async def embed_route(request: Request):
        body = await request.body()
        try:
            x = preprocess(body, size)
        except Exception as exc:  # bad input gets a clear 400, as in any decent server
            return JSONResponse({"error": str(exc)}, status_code=400)
        with torch.inference_mode():
            vector = F.normalize(model.forward_features(x)[0], dim=0)
        return {"dim": vector.numel(), "embedding": vector.tolist()}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

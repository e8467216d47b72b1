"""The Python twin of Rookery's small_cnn classifier run, for the training
benchmark (bench/train_bench.sh): the same model, augmentation, batch order
scheme, optimizer and batch size in python3-torch, timed per epoch on the same
Fashion-MNIST files with the same number of threads.

usage: train_speed.py THREADS EPOCHS BATCH LR [LIMIT]
prints one JSON line per epoch: {"epoch", "seconds", "train_loss", "val_acc"}
"""
import gzip, json, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

FMNIST = "/usr/share/datasets/fashion-mnist"


def idx(name):
    with gzip.open(f"{FMNIST}/{name}.gz", "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def block(cin, cout):
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2))


class SmallCnn(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.block1, self.block2, self.block3 = block(1, 32), block(32, 64), block(64, 128)
        self.pre_logits = nn.Linear(128, 256)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(256, classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(x))).mean((2, 3))
        return self.fc(self.drop(F.relu(self.pre_logits(x))))


def augment(x, gen, pad=2):
    b = x.shape[0]
    flip = (torch.rand(b, generator=gen) < 0.5).view(b, 1, 1, 1)
    x = torch.where(flip, x.flip(3), x)
    padded = F.pad(x, (pad, pad, pad, pad))
    offs = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen)
    h, w = x.shape[2], x.shape[3]
    return torch.stack([padded[i, :, o[0]:o[0] + h, o[1]:o[1] + w] for i, o in enumerate(offs.tolist())])


def main():
    threads, epochs, batch, lr = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    limit = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    torch.set_num_threads(threads)
    torch.manual_seed(42)
    xtr = torch.from_numpy(idx("train-images-idx3-ubyte").copy()).unsqueeze(1)
    ytr = torch.from_numpy(idx("train-labels-idx1-ubyte").astype(np.int64))
    xte = torch.from_numpy(idx("t10k-images-idx3-ubyte").copy()).unsqueeze(1)
    yte = torch.from_numpy(idx("t10k-labels-idx1-ubyte").astype(np.int64))
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]
    f = xtr.float() / 255
    mean, std = f.mean().item(), f.std().item()
    model = SmallCnn()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = xtr.shape[0]
    steps = n // batch + (1 if n % batch >= 2 else 0)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(42 * 1000003 + epoch + 1))
        t0 = time.perf_counter()
        total = 0.0
        for i in range(steps):
            idx_ = perm[i * batch:(i + 1) * batch]
            x = xtr[idx_].float() / 255
            x = augment(x, torch.Generator().manual_seed(42 * 7919 + epoch * 1000003 + i + 17))
            x = (x - mean) / std
            opt.zero_grad()
            loss = F.cross_entropy(model(x), ytr[idx_])
            loss.backward()
            opt.step()
            total += loss.item()
        seconds = time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, xte.shape[0], 500):
                x = (xte[i:i + 500].float() / 255 - mean) / std
                correct += (model(x).argmax(1) == yte[i:i + 500]).sum().item()
        print(json.dumps({"epoch": epoch + 1, "seconds": seconds, "train_loss": total / steps,
                          "val_acc": correct / xte.shape[0]}), flush=True)


if __name__ == "__main__":
    main()

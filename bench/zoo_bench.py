#!/usr/bin/python3
"""torchvision side of bench/zoo_bench.sh: same models, sizes and method as
bench/zoo_bench.cpp. Usage: zoo_bench.py THREADS NAME:SIZE ..."""
import sys
import time

import torch
import torchvision

torch.set_num_threads(int(sys.argv[1]))


def median_ms(model, x):
    for _ in range(2):
        model(x)
    ms = []
    start = time.perf_counter()
    while len(ms) < 3 or time.perf_counter() - start < 1.0:
        t0 = time.perf_counter()
        model(x)
        ms.append((time.perf_counter() - t0) * 1000)
        if len(ms) >= 50:
            break
    ms.sort()
    return ms[len(ms) // 2]


with torch.no_grad():
    for spec in sys.argv[2:]:
        name, size = spec.split(":")
        size = int(size)
        kwargs = {"weights": None}
        if name in ("googlenet", "inception_v3"):
            kwargs.update(aux_logits=True, init_weights=False)
        model = getattr(torchvision.models, name)(**kwargs).eval()
        b1 = median_ms(model, torch.randn(1, 3, size, size))
        b8 = median_ms(model, torch.randn(8, 3, size, size))
        print(f"{name} {size} {b1:.3f} {b8:.3f}", flush=True)

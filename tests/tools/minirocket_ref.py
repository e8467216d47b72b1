"""NumPy reference for Rookery's MiniRocket (models/minirocket.cpp), written from
the algorithm of Dempster, Schmidt and Webb (KDD 2021) and its published
reference code's structure: the same dilations, the same bias quantiles, and
the transform's PPV features, computed with NumPy's own array operations.

    /usr/bin/python3 minirocket_ref.py case.json

case.json (written by tests/unit/minirocket_test.cpp): {"num_features", "train",
"picked", "params": {"fit_length", "dilations", "features_per_dilation",
"biases"}, "series": [...], "features": [[...]]}. Prints one JSON line of
differences; exit 1 if any is over tolerance.
"""
import itertools
import json
import sys

import numpy as np


def fit_dilations(length, num_features, max_dilations_per_kernel=32):
    num_kernels = 84
    per_kernel = num_features // num_kernels
    true_max = min(per_kernel, max_dilations_per_kernel)
    multiplier = per_kernel / true_max
    max_exponent = np.log2((length - 1) / (9 - 1))
    dilations, counts = np.unique(
        np.logspace(0, max_exponent, true_max, base=2).astype(np.int32), return_counts=True)
    counts = (counts * multiplier).astype(np.int32)
    remainder = per_kernel - np.sum(counts)
    i = 0
    while remainder > 0:
        counts[i] += 1
        remainder -= 1
        i = (i + 1) % len(counts)
    return dilations, counts


def quantiles(n):
    phi = (np.sqrt(5.0) + 1.0) / 2.0
    return np.array([(i * phi) % 1 for i in range(1, n + 1)], dtype=np.float64)


KERNELS = np.array(list(itertools.combinations(np.arange(9), 3)), dtype=np.int64)


def convolutions(x, dilation):
    """C_alpha and C_gamma as the reference code builds them (float64)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    padding = ((9 - 1) * dilation) // 2
    a = -x
    g = x + x + x
    c_alpha = a.copy()
    c_gamma = np.zeros((9, n))
    c_gamma[9 // 2] = g
    start, end = dilation, n - padding
    for gi in range(9 // 2):
        if end > 0:
            c_alpha[-end:] = c_alpha[-end:] + a[:end]
            c_gamma[gi, -end:] = g[:end]
        end += dilation
    for gi in range(9 // 2 + 1, 9):
        if start < n:
            c_alpha[:-start] = c_alpha[:-start] + a[start:]
            c_gamma[gi, :-start] = g[start:]
        start += dilation
    return c_alpha, c_gamma


def kernel_output(c_alpha, c_gamma, k):
    i0, i1, i2 = KERNELS[k]
    return c_alpha + c_gamma[i0] + c_gamma[i1] + c_gamma[i2]


def fit_biases(train, dilations, counts, picked):
    q = quantiles(84 * int(np.sum(counts)))
    biases = []
    p = 0
    for d, dilation in enumerate(dilations):
        for k in range(84):
            ca, cg = convolutions(train[picked[p]], int(dilation))
            p += 1
            c = kernel_output(ca, cg, k)
            lo = len(biases)
            biases.extend(np.quantile(c, q[lo:lo + counts[d]]))
    return np.array(biases)


def transform(x, dilations, counts, biases):
    n = len(x)
    out = []
    b = 0
    for d, dilation in enumerate(dilations):
        padding = ((9 - 1) * int(dilation)) // 2
        ca, cg = convolutions(x, int(dilation))
        for k in range(84):
            c = kernel_output(ca, cg, k)
            if (d + k) % 2 == 1 and n > 2 * padding:
                c = c[padding:-padding]
            for _ in range(counts[d]):
                out.append(float((c > biases[b]).mean()))
                b += 1
    return np.array(out)


def main():
    case = json.load(open(sys.argv[1]))
    p = case["params"]
    train = [np.array(s, dtype=np.float64) for s in case["train"]]
    dil, counts = fit_dilations(p["fit_length"], case["num_features"])
    same_dilations = dil.tolist() == p["dilations"] and counts.tolist() == p["features_per_dilation"]
    biases = fit_biases(train, dil, counts, case["picked"])
    theirs = np.array(p["biases"])
    bias_diff = float(np.max(np.abs(biases - theirs))) if len(biases) == len(theirs) else float("inf")
    # Features from Rookery's biases (the transform alone) and from NumPy's own fit.
    feat_diff, own_diff = 0.0, 0.0
    for s, f in zip(case["series"], case["features"]):
        s = np.array(s, dtype=np.float64)
        feat_diff = max(feat_diff, float(np.max(np.abs(transform(s, dil, counts, theirs) - np.array(f)))))
        own_diff = max(own_diff, float(np.max(np.abs(transform(s, dil, counts, biases) - np.array(f)))))
    report = {"dilations_equal": same_dilations, "dilations": dil.tolist(),
              "bias_max_abs_diff": bias_diff, "feature_max_abs_diff": feat_diff,
              "feature_max_abs_diff_own_fit": own_diff, "num_features": len(theirs)}
    print(json.dumps(report))
    ok = same_dilations and bias_diff <= 1e-6 and feat_diff <= 1e-4
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

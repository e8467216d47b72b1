#!/usr/bin/python3
"""Writes a UCR-format (.tsv, label first, tab-separated) classification set
built from real series that python3-statsmodels ships: windows of LENGTH
points cut from four series (1 elnino sea surface temperature, monthly;
2 co2 at Mauna Loa, weekly, first-differenced so the trend does not give the
class away; 3 elec-equip orders, monthly; 4 sunspots, yearly), every window
standardised on its own. The task is to tell which series a window comes
from by its shape (seasonality, noise, cycles) alone.

usage: make_ucr_statsmodels.py OUT.tsv [LENGTH=48] [STRIDE=6]
"""
import csv
import os
import sys

import numpy as np

ROOT = os.environ.get("ROOKERY_STATSMODELS_DIR", "/usr/lib/python3/dist-packages/statsmodels/datasets")


def column(path, name=None, index=None):
    with open(os.path.join(ROOT, path)) as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    i = head.index(name) if name else index
    vals = [float(r[i]) if r[i] not in ("", "NA") else np.nan for r in body]
    v = np.array(vals)
    idx = np.arange(len(v))
    ok = ~np.isnan(v)
    return np.interp(idx, idx[ok], v[ok])


def elnino():
    with open(os.path.join(ROOT, "elnino/elnino.csv")) as f:
        rows = list(csv.reader(f))[1:]
    return np.array([float(x) for r in rows for x in r[1:]])


def main():
    out = sys.argv[1]
    length = int(sys.argv[2]) if len(sys.argv) > 2 else 48
    stride = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    series = {
        1: elnino(),
        2: np.diff(column("co2/co2.csv", "co2")),
        3: column("elec_equip/elec_equip.csv", index=1),
        4: column("sunspots/sunspots.csv", "SUNACTIVITY"),
    }
    lines = []
    for label, s in series.items():
        # Sunspots are short: overlap its windows more so the classes are closer in size.
        step = max(1, stride // 3) if label == 4 else stride
        if label == 2:
            step = stride * 4
        for start in range(0, len(s) - length + 1, step):
            w = s[start:start + length]
            w = (w - w.mean()) / (w.std() + 1e-9)
            lines.append(str(label) + "\t" + "\t".join(f"{x:.5f}" for x in w))
    # Interleave classes so the per-class hold-out takes each class's last windows.
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    counts = {k: sum(1 for l in lines if l.startswith(f"{k}\t")) for k in series}
    print(f"wrote {len(lines)} windows of {length} points to {out}: per class {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()

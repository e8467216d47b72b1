#!/usr/bin/python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run from fuzz/ with
Debian's python3, which has python3-torch). The seeds are committed; this is
how they were made."""
import collections, gzip, io, json, os, pickle, struct, tarfile, zipfile, zlib

import torch

os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus"))
for d in ("fuzz_pickle", "fuzz_multipart", "fuzz_idx", "fuzz_csv", "fuzz_archive", "fuzz_json"):
    os.makedirs(d, exist_ok=True)


def put(path, data):
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# --- pickles: data.pkl of torch.save archives, and plain pickles
def data_pkl(obj):
    b = io.BytesIO()
    torch.save(obj, b)
    z = zipfile.ZipFile(io.BytesIO(b.getvalue()))
    return z.read([n for n in z.namelist() if n.endswith("data.pkl")][0])


torch.manual_seed(0)
lin = torch.nn.Linear(2, 2)
put("fuzz_pickle/linear_state_dict.pkl", data_pkl(lin.state_dict()))
put("fuzz_pickle/batchnorm_state_dict.pkl", data_pkl(torch.nn.BatchNorm2d(2).state_dict()))
opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
lin(torch.ones(1, 2)).sum().backward()
opt.step()
put("fuzz_pickle/checkpoint.pkl", data_pkl({"model_state_dict": lin.state_dict(), "optimizer": opt.state_dict(),
                                            "epoch": 3, "loss": 0.25}))
p = torch.nn.Parameter(torch.arange(6.0).reshape(2, 3))
put("fuzz_pickle/parameter_view.pkl", data_pkl(collections.OrderedDict(
    w=p, v=p.detach()[1:], h=torch.zeros(2, dtype=torch.float16), i=torch.tensor([1, 2]))))
put("fuzz_pickle/protocol4_dict.pkl", pickle.dumps({"a": [1, 2.5, (3, None, True)], "b": {"c": b"xy", "d": "é"}},
                                                   protocol=4))
put("fuzz_pickle/protocol2_list.pkl", pickle.dumps([[[]], {}, (1,), (1, 2), (1, 2, 3), -1, 2**40], protocol=2))


# --- multipart: first line the Content-Type, then the body
def form(b, fields):
    s = b""
    for k, v, extra in fields:
        s += b"--" + b + b"\r\nContent-Disposition: form-data; name=\"" + k + b"\"" + extra + b"\r\n\r\n" + v + b"\r\n"
    return s + b"--" + b + b"--\r\n"


put("fuzz_multipart/upload", b"multipart/form-data; boundary=xYzZy\n" + form(b"xYzZy", [
    (b"name", b"r18", b""), (b"arch", b"resnet18", b""),
    (b"weights", b"PK\x03\x04..", b"; filename=\"w.pth\"\r\nContent-Type: application/octet-stream")]))
put("fuzz_multipart/quoted_boundary", b"Multipart/Form-Data; charset=utf-8; boundary=\"a b'c\"\n"
    + form(b"a b'c", [(b"file", b"hello", b"; filename=\"x.png\"")]))
put("fuzz_multipart/no_headers", b"multipart/form-data; boundary=q\n--q\r\n\r\nbody\r\n--q--\r\n")
put("fuzz_multipart/preamble", b"multipart/form-data; boundary=-\npreamble\r\n---\r\nContent-Disposition: form-data; "
    b"name=\"n\"\r\nX-A: b\r\n\r\n\r\n---\r\n\r\nv\r\n-----\r\n")


# --- IDX
def idx(dims, data):
    return bytes([0, 0, 8, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(data)


put("fuzz_idx/images-idx3-ubyte", idx([2, 3, 4], [i * 10 % 256 for i in range(24)]))
put("fuzz_idx/labels-idx1-ubyte", idx([5], [0, 1, 2, 3, 4]))
put("fuzz_idx/images-idx3-ubyte.gz", gzip.compress(idx([2, 3, 4], list(range(24)))))
put("fuzz_idx/empty-idx2-ubyte", idx([0, 7], []))

# --- CSV
put("fuzz_csv/good.csv", b"x, y,label\n1,2.5,0\n-3,4e2,1\r\n\n0.5,0,1\n")
put("fuzz_csv/bom_quoted.csv", b"\xef\xbb\xbf\"a\",\"b\"\n\"1\",\"2\"\n")
put("fuzz_csv/utf8_names.csv", "température,durée\n1.5,-2\n")
put("fuzz_csv/ragged.csv", b"a,b\n1,2\n3\n")


# --- archives of class folders (and a CSV)
def png(w, h, v, color=False):
    ch = 3 if color else 1
    raw = b"".join(b"\x00" + bytes([v] * (w * ch)) for _ in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2 if color else 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def bmp(w, h, v):
    row = (bytes([v, v, v]) * w).ljust((w * 3 + 3) // 4 * 4, b"\0")
    pix = row * h
    return (b"BM" + struct.pack("<IHHI", 54 + len(pix), 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(pix), 0, 0, 0, 0) + pix)


def tar(members, mode="w"):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode=mode, format=tarfile.USTAR_FORMAT) as t:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return b.getvalue()


m = [("cat/0.png", png(4, 4, 10)), ("cat/1.png", png(4, 4, 20)), ("dog/0.png", png(4, 4, 200)),
     ("dog/1.bmp", bmp(4, 4, 90))]
put("fuzz_archive/classes.tar", tar(m))
put("fuzz_archive/wrapped.tar.gz", tar([("set/" + n, d) for n, d in m] + [("set/README.txt", b"hi")], "w:gz"))
zb = io.BytesIO()
with zipfile.ZipFile(zb, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("a/x.png", png(3, 5, 1, True))
    z.writestr("b/y.png", png(3, 5, 99, True))
    z.writestr("__MACOSX/a/._x.png", b"junk")
put("fuzz_archive/colour.zip", zb.getvalue())
put("fuzz_archive/table.csv", b"f1,f2,label\n0.1,0.2,0\n0.3,0.4,1\n")

# --- JSON request bodies and options
docs = {
    "model_options": {"num_classes": 10, "in_channels": 1, "dropout": 0.2, "drop_path": 0.1, "width": 0.5},
    "preprocess": {"resize": 28, "crop": 28, "channels": 1, "mean": [0.286], "std": [0.353]},
    "train_spec": {"trainer": "classifier", "dataset": "fashion-mnist", "model": "small_cnn",
                   "hyper": {"epochs": 3, "batch_size": 64, "lr": 0.003, "schedule": "onecycle",
                             "optimizer": "adamw", "weight_decay": 0.01, "clip_grad_norm": 1.0,
                             "early_stopping_patience": 2, "monitor": "val_acc", "monitor_mode": "max",
                             "seed": 7, "max_steps": 100}, "register": "fm"},
    "user": {"username": "ada", "password": "a long password"},
    "key": {"name": "ci", "scopes": ["embed", "train"], "expires_in_s": 3600},
    "nested": [[[{"a": [1, -2.5e300, "\u00e9\U0001F600", None, True]}]]],
}
for k, v in docs.items():
    put("fuzz_json/" + k + ".json", json.dumps(v, ensure_ascii=False))

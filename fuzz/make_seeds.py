#!/usr/bin/env python3
"""Writes the committed seed corpus under fuzz/seeds/<target>/: tiny files
in each reader's real format (real headers, a few samples). Run from fuzz/."""
import bz2, collections, gzip, io, json, os, pickle, struct, sys, types, zipfile

def put(target, name, data):
    d = os.path.join("seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# idx: 3 images 28x28 and 3 labels, plain and gzip.
pixels = bytes((i * 37) % 256 for i in range(3 * 784))
images = struct.pack(">IIII", 0x803, 3, 28, 28) + pixels
labels = struct.pack(">II", 0x801, 3) + bytes([7, 2, 1])
put("idx", "images", images)
put("idx", "labels", labels)
put("idx", "images.gz", gzip.compress(images, mtime=0))
put("idx", "huge-count", struct.pack(">IIII", 0x803, 0xFFFFFFFF, 28, 28))

# USPS libsvm: label, then 256 index:value pairs in [-1, 1].
lines = []
for k, digit in enumerate([6, 5]):
    vals = " ".join(f"{i + 1}:{((i * 7 + k) % 200) / 100 - 1:.6f}" for i in range(256))
    lines.append(f"{digit} {vals}")
usps = ("\n".join(lines) + "\n").encode()
put("usps", "usps", usps)
put("usps", "usps.bz2", bz2.compress(usps))

# MATLAB v5, uncompressed doubles: fts (n x d) and labels (n x 1).
def mat_v5(variables):
    out = bytearray(b"MATLAB 5.0 MAT-file, written by ebda fuzz seeds".ljust(116))
    out += b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    def pad(b):
        return b + b"\0" * ((8 - len(b) % 8) % 8)
    for name, rows, cols, values in variables:
        body = struct.pack("<II", 6, 8) + struct.pack("<II", 6, 0)  # flags: double class
        body += struct.pack("<II", 5, 8) + struct.pack("<ii", rows, cols)
        nm = name.encode()
        body += struct.pack("<II", 1, len(nm)) + pad(nm)
        data = struct.pack(f"<{len(values)}d", *values)
        body += struct.pack("<II", 9, len(data)) + pad(data)
        out += struct.pack("<II", 14, len(body)) + body
    return bytes(out)
fts = [((i * 13) % 17) / 17 for i in range(4 * 3)]  # column-major 4 x 3
put("mat", "features.mat", mat_v5([("fts", 4, 3, fts), ("labels", 4, 1, [1, 2, 3, 1])]))
put("mat", "svhn.mat", mat_v5([("X", 2, 2, [0, 1, 2, 3]), ("y", 2, 1, [10, 3])]))

# MNIST-M labels and image lists.
put("mnist_m_labels", "labels.txt", "00000000.png 5\n00000001.png 0\n")
put("image_list", "list.txt", "a/x.jpg 0\na/x.jpg 3\n")

# safetensors: features [2, 3] f32 and labels [2] i64.
def safetensors(tensors):
    header, data = {}, b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + data
st = safetensors([
    ("features", "F32", [2, 3], struct.pack("<6f", 0.5, 1, 2, 3, 4, 5)),
    ("labels", "I64", [2], struct.pack("<2q", 0, 1)),
])
put("safetensors_features", "features.safetensors", st)
put("pth_weights", "weights.safetensors", safetensors([("conv1.weight", "F32", [1, 1, 1, 2], struct.pack("<2f", 1, 2))]))

# A PyTorch zip checkpoint (format of torch.save since 1.6): archive/data.pkl
# with tensors rebuilt by torch._utils._rebuild_tensor_v2 from persistent
# storages archive/data/<key>. Written without torch through stand-in names.
torch = types.ModuleType("torch")
utils = types.ModuleType("torch._utils")
class FloatStorage: pass
FloatStorage.__module__ = "torch"
def _rebuild_tensor_v2(*args): pass
_rebuild_tensor_v2.__module__ = "torch._utils"
torch.FloatStorage, utils._rebuild_tensor_v2, torch._utils = FloatStorage, _rebuild_tensor_v2, utils
sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
class Storage:
    def __init__(self, key, n): self.key, self.n = key, n
class Tensor:
    def __init__(self, key, shape):
        self.key, self.shape = key, shape
    def __reduce__(self):
        n = 1
        for s in self.shape: n *= s
        stride, acc = [], 1
        for s in reversed(self.shape):
            stride.insert(0, acc); acc *= s
        return (_rebuild_tensor_v2, (Storage(self.key, n), 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))
class P(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.n)
        return None
state = collections.OrderedDict([("conv1.weight", Tensor("0", [2, 1, 1, 1])), ("fc.bias", Tensor("1", [3]))])
buf = io.BytesIO(); P(buf, protocol=2).dump(state)
zbuf = io.BytesIO()
with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_STORED) as z:
    z.writestr("archive/data.pkl", buf.getvalue())
    z.writestr("archive/data/0", struct.pack("<2f", 1.0, -1.0))
    z.writestr("archive/data/1", struct.pack("<3f", 0.1, 0.2, 0.3))
    z.writestr("archive/version", "3\n")
put("pth_weights", "weights.pth", zbuf.getvalue())

# Configs: the digits config with two overrides (after a NUL byte).
cfg = open("../experiments/digits/M2U-5k.json").read()
put("config", "m2u", cfg + "\0seed=1\nmethod=dann\n")
put("config", "minimal", '{"task": "t"}\0method.ebda.critic.margin=2\n')

# Checkpoint: latest.json NUL state.json NUL checksums.json of a real run's
# checkpoints directory, given as the first argument (e.g. one written by
# tests/faults.rs); without it the committed seed is kept.
if len(sys.argv) > 1:
    d = sys.argv[1]
    latest = open(os.path.join(d, "latest.json"), "rb").read()
    name = json.loads(latest)["dir"]
    parts = [latest] + [open(os.path.join(d, name, f), "rb").read() for f in ("state.json", "checksums.json")]
    put("checkpoint", "ckpt", b"\0".join(parts))

# metrics.jsonl: the first lines of a committed run.
src = "../experiments/digits/results/M2U-ebda-seed0/metrics.jsonl"
put("metrics", "metrics.jsonl", "".join(open(src).readlines()[:2]))

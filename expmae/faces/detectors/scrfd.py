"""SCRFD from a local insightface model pack (registered as "insightface").

The model is read from `faces.insightface_root`/`faces.insightface_pack`/ (e.g.
~/.insightface/models/buffalo_l/det_10g.onnx). Nothing is ever downloaded: a missing
folder or file raises ModelNotFoundError naming the config keys.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .registry import Detections, register

# Detector files of the public insightface packs (buffalo_l/m/s/sc, antelopev2).
DETECTOR_GLOBS = ("det_*.onnx", "scrfd*.onnx")
EXPECTED = "det_10g.onnx (buffalo_l), det_2.5g.onnx (buffalo_m), det_500m.onnx (buffalo_s/sc) or scrfd_*.onnx (antelopev2)"


class ModelNotFoundError(FileNotFoundError):
    pass


def find_model(params: dict) -> Path:
    root, pack = params.get("insightface_root", ""), params.get("insightface_pack", "")
    hint = (f"set config faces.insightface_root to a folder holding <pack>/<detector>.onnx, "
            f"with faces.insightface_pack naming the pack folder; expected detector file: {EXPECTED}. "
            f"Models are never downloaded; copy the pack there, or use faces.backend: yunet.")
    if not root:
        raise ModelNotFoundError(f"faces.backend is 'insightface' but faces.insightface_root is empty: {hint}")
    folder = Path(root).expanduser() / pack
    if folder.is_file() and folder.suffix == ".onnx":  # pack given as a file name
        return folder
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"faces.insightface_root={root!r} / faces.insightface_pack={pack!r}: folder {folder} does not exist; {hint}")
    found = sorted({p for g in DETECTOR_GLOBS for p in folder.glob(g)})
    if not found:
        raise ModelNotFoundError(
            f"faces.insightface_root={root!r} / faces.insightface_pack={pack!r}: no SCRFD detector in {folder}; {hint}")
    return found[0]


@register("insightface")
class SCRFDDetector:
    check = staticmethod(find_model)

    def __init__(self, params: dict) -> None:
        path = find_model(params)
        import onnxruntime as ort
        from insightface.model_zoo.scrfd import SCRFD

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # one worker process per core already
        opts.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        # static_shape_sessions=False: reuse this one session instead of building one per size.
        self.model = SCRFD(model_file=str(path), session=session, static_shape_sessions=False)
        side = -(-int(params["det_size"]) // 32) * 32  # SCRFD strides go up to 32
        self.input_size = (side, side)
        self.model.prepare(ctx_id=-1, input_size=self.input_size, det_thresh=float(params["min_score"]))

    def detect(self, img_bgr: np.ndarray) -> Detections:
        det, kps = self.model.detect(img_bgr, input_size=self.input_size)  # [N, 5] x1 y1 x2 y2 s, [N, 5, 2]
        if det is None or len(det) == 0:
            return Detections.empty()
        det = np.asarray(det, np.float32)
        boxes = np.stack([det[:, 0], det[:, 1], det[:, 2] - det[:, 0], det[:, 3] - det[:, 1]], 1)
        if kps is None:
            lms = np.full((len(det), 10), np.nan, np.float32)
        else:
            lms = np.asarray(kps, np.float32).reshape(-1, 10)
        return Detections(boxes, det[:, 4].copy(), lms)

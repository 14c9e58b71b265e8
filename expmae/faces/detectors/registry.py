"""The detector registry (a leaf module: backends import it, it imports no backend)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np


@dataclass
class Detections:
    """Faces found in one image; coordinates in pixels of the image given to detect().

    Landmark order (x, y pairs): eye on the image's left (the subject's right eye),
    eye on the image's right, nose tip, mouth corner on the image's left, mouth corner
    on the image's right -- the order of the ArcFace template in expmae/faces/align.py.
    """

    boxes: np.ndarray      # [N, 4] float32 x, y, w, h
    scores: np.ndarray     # [N] float32 in [0, 1]
    landmarks: np.ndarray  # [N, 10] float32; NaN where the backend gives none
    # The backend's own points when `landmarks` were refined (worker.detect_frame): main-face
    # selection judges frontality on them, since O-Net draws a plausible face on anything.
    det_landmarks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                          np.zeros((0, 10), np.float32))

    def scaled(self, fx: float, fy: float | None = None) -> "Detections":
        """x coordinates multiplied by fx, y by fy (default fx): detector image -> frame."""
        f = np.array([fx, fx if fy is None else fy], np.float32)
        return Detections(self.boxes * np.tile(f, 2), self.scores, self.landmarks * np.tile(f, 5))

    def top(self, k: int) -> "Detections":
        """Keep the k detections with the largest score * sqrt(area) (crowd scenes)."""
        if len(self) <= k:
            return self
        value = self.scores * np.sqrt(np.maximum(self.boxes[:, 2] * self.boxes[:, 3], 0))
        keep = np.sort(np.argsort(-value, kind="stable")[:k])
        return Detections(self.boxes[keep], self.scores[keep], self.landmarks[keep])


class Detector(Protocol):
    def detect(self, img_bgr: np.ndarray) -> Detections: ...


_REGISTRY: dict[str, Callable[[dict], Any]] = {}


def register(name: str) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        _REGISTRY[name] = cls
        return cls
    return deco


def backends() -> list[str]:
    return sorted(_REGISTRY)


def _lookup(params: dict) -> Any:
    name = params["backend"]
    if name not in _REGISTRY:
        raise ValueError(f"config faces.backend={name!r} is unknown; choose one of {backends()}")
    return _REGISTRY[name]


def check_backend(params: dict) -> None:
    """Fail fast (in the parent process) on a bad backend name or a missing model."""
    cls = _lookup(params)
    check = getattr(cls, "check", None)
    if check is not None:
        check(params)
    if use_onet(params):
        from ..landmarks import weights_path

        weights_path(params.get("onet_weights", ""))


def create_detector(params: dict) -> Detector:
    return _lookup(params)(params)


def use_onet(params: dict) -> bool:
    """Does faces.landmarks (auto | onet | detector) ask for O-Net landmark refinement?"""
    mode = params.get("landmarks", "auto")
    return mode == "onet" or (mode == "auto" and bool(getattr(_lookup(params), "rough_landmarks", False)))

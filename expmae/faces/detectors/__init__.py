"""Face detector backends behind one small interface.

A backend is a class registered by name with `@register("name")`:
    __init__(self, params: dict)             load the model once (params = resolved faces config)
    detect(self, img_bgr) -> Detections      one uint8 BGR image [H, W, 3]
    check(params) (classmethod, optional)    cheap validation run in the parent before any
                                             worker starts, e.g. "is the model file there?"
    rough_landmarks (class attribute)        True when its 5 points do not follow head roll:
                                             faces.landmarks: auto then refines them with O-Net
Adding a backend = one module here plus one import line below (registry.py holds the registry).
Heavy libraries are imported inside __init__, so listing backends costs nothing.
"""
from __future__ import annotations

# Backends register themselves on import; the registry itself is a leaf module.
from . import scrfd, yunet  # noqa: F401
from .registry import Detections, Detector, backends, check_backend, create_detector, register, use_onet

__all__ = ["Detections", "Detector", "backends", "check_backend", "create_detector", "register", "use_onet"]

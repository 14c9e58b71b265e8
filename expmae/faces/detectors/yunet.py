"""YuNet (libfacedetection) through the `yuface` wheel; weights are compiled into it.

The wheel's own binding (yuface.detect) holds the GIL for the whole ~10-35 ms forward
pass, so a decode thread beside it (worker.process_stream) could not run. We call the
same exported C function, facedetect_cnn, through ctypes instead: ctypes drops the GIL
during the call. Its output is the binding's, number for number (tests/test_faces.py);
the binding stays the fallback for a build without that symbol.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np

from .registry import Detections, register

_BUFFER = 0x9000      # DETECT_BUFFER_SIZE of libfacedetection: int count, then 16 int16 per face
_SYMBOL = "_Z14facedetect_cnnPhS_iii"  # facedetect_cnn(unsigned char*, unsigned char*, int, int, int)


def _c_detect() -> ctypes._CFuncPtr | None:
    import yuface  # imported here: it loads OpenMP, whose thread count is set per worker

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(yuface.__file__), "libfacedetection.so"))
        fn = getattr(lib, _SYMBOL)
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return fn


@register("yunet")
class YuNet:
    # Its landmarks barely follow in-plane roll (20 degrees of head tilt -> 0-3 degrees of
    # eye line at det_size 320): faces.landmarks: auto refines them with O-Net.
    rough_landmarks = True

    def __init__(self, params: dict, release_gil: bool = True) -> None:
        import yuface

        self._binding = yuface.yuface.detect
        self._fn = _c_detect() if release_gil else None
        self._buf = np.zeros(_BUFFER, np.uint8)  # one per detector: call it from one thread at a time
        self.min_score = float(params["min_score"])

    def _raw(self, img: np.ndarray) -> np.ndarray:
        """[N, 15] int16: confidence 0-100, box x y w h, 5 landmark (x, y)."""
        if self._fn is None:
            return np.asarray(self._binding(img))[:, :15]
        h, w = img.shape[:2]
        self._fn(self._buf.ctypes.data, img.ctypes.data, w, h, int(img.strides[0]))
        n = int(self._buf[:4].view(np.int32)[0])
        return self._buf[4:4 + 32 * n].view(np.int16).reshape(n, 16)[:, :15].copy()

    def detect(self, img_bgr: np.ndarray) -> Detections:
        img = np.ascontiguousarray(img_bgr, dtype=np.uint8)
        raw = self._raw(img)
        raw = raw[raw[:, 0] > self.min_score * 100]  # as yuface.detect(conf=): strictly above
        if len(raw) == 0:
            return Detections.empty()
        # The library's values are int16: faces cut by the border have negative x/y, which
        # a uint16 cast would turn into 65xxx. Keep the sign.
        return Detections(
            boxes=raw[:, 1:5].astype(np.float32).reshape(-1, 4),
            scores=raw[:, 0].astype(np.float32) / 100.0,  # 0-100 -> 0-1
            landmarks=raw[:, 5:15].astype(np.float32).reshape(-1, 10),
        )

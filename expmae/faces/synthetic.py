"""Small real test videos made from a real face photograph (for tests and benchmarks).

The faces come from photographs that installed packages ship: scikit-image's astronaut
(Eileen Collins, public domain) and insightface's Tom_Hanks_54745.png. Videos are
encoded with PyAV, optionally with an AAC audio track, a display rotation, or variable
frame timing.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

# Head region of skimage.data.astronaut() (512x512): face box is about (178, 63, 89, 112).
ASTRONAUT_HEAD = (130, 20, 230, 230)  # x, y, w, h


def face_photo(which: str = "astronaut") -> np.ndarray:
    """RGB uint8 head-and-shoulders image with one frontal face."""
    if which == "astronaut":
        from skimage.data import astronaut

        x, y, w, h = ASTRONAUT_HEAD
        return np.ascontiguousarray(astronaut()[y:y + h, x:x + w])
    if which == "tom_hanks":
        import insightface

        path = Path(insightface.__file__).parent / "data" / "images" / "Tom_Hanks_54745.png"
        img = cv2.imread(str(path))
        img = cv2.copyMakeBorder(img, 24, 24, 24, 24, cv2.BORDER_REPLICATE)  # the PNG is cropped tight
        return np.ascontiguousarray(img[:, :, ::-1])
    raise ValueError(which)


def paste(canvas: np.ndarray, face: np.ndarray, cx: float, cy: float, side: int, angle: float = 0.0) -> None:
    """Draw `face` scaled to `side` px (longest side), rotated by `angle` degrees, centred at (cx, cy)."""
    s = side / max(face.shape[:2])
    m = cv2.getRotationMatrix2D((face.shape[1] / 2, face.shape[0] / 2), angle, s)
    m[:, 2] += (cx - face.shape[1] / 2, cy - face.shape[0] / 2)
    mask = cv2.warpAffine(np.full(face.shape[:2], 255, np.uint8), m, canvas.shape[1::-1])
    warped = cv2.warpAffine(face, m, canvas.shape[1::-1])
    canvas[mask > 127] = warped[mask > 127]


def face_frames(n: int, width: int = 320, height: int = 240, side: int | None = None, angle: float = 0.0,
                second_face: Sequence[bool] | None = None, seed: int = 0) -> list[np.ndarray]:
    """n RGB frames: the astronaut centre-left, drifting a few pixels per frame; where
    second_face[i] is true, a smaller Tom Hanks face appears on the right."""
    rng = np.random.default_rng(seed)
    main, other = face_photo("astronaut"), None
    side = side or int(0.8 * height)
    frames = []
    for i in range(n):
        canvas = np.full((height, width, 3), 90, np.uint8)
        canvas[:] = np.linspace(60, 140, width, dtype=np.uint8)[None, :, None]
        dx, dy = rng.integers(-3, 4, size=2)
        paste(canvas, main, 0.38 * width + dx + 0.5 * i, 0.5 * height + dy, side, angle)
        if second_face is not None and second_face[i]:
            other = other if other is not None else face_photo("tom_hanks")
            paste(canvas, other, 0.82 * width, 0.35 * height, int(side * 0.4))
        frames.append(canvas)
    return frames


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = 25, audio: bool = False,
                rotation: int = 0, times_s: Sequence[float] | None = None, codec: str = "libx264",
                faststart: bool = False) -> Path:
    """Encode RGB frames (all the same size, even sides) to `path` with PyAV.

    rotation: display rotation (counter-clockwise degrees) written as container metadata,
    like a phone does; times_s: per-frame presentation times (variable frame rate)."""
    import av

    path = Path(path)
    h, w = frames[0].shape[:2]
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        if times_s is not None:
            vs.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            vs.set_display_rotation(rotation)
        aus = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            if times_s is not None:
                frame.pts, frame.time_base = int(round(times_s[i] * 1000)), Fraction(1, 1000)
            out.mux(vs.encode(frame))
        out.mux(vs.encode())
        if aus is not None:
            dur = (times_s[-1] if times_s is not None else len(frames) / fps) + 0.1
            t = np.arange(int(dur * 16000)) / 16000
            pcm = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            for k in range(0, len(pcm), 1024):
                chunk = pcm[k:k + 1024][None, :]
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, k
                out.mux(aus.encode(af))
            out.mux(aus.encode())
    return path

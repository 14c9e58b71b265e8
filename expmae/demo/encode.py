"""Writing demo files: h264 + AAC mp4 and CSVs, atomically and readable by others."""
from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pandas as pd

from expmae.io import atomic_path

from .spec import FPS, SIZE, SR

def _readable(tmp: Path) -> None:
    """mkstemp creates 0600 files; a dataset should be readable by others (cluster jobs, containers)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)


def write_mp4(path: Path, frames: list[np.ndarray], audio: np.ndarray) -> None:
    """h264 (yuv420p) + AAC mono mp4, written to a temp file and renamed."""
    from fractions import Fraction

    with atomic_path(path, suffix=".mp4") as tmp:
        with av.open(str(tmp), "w", format="mp4") as box:
            vs = box.add_stream("libx264", rate=FPS)
            vs.width = vs.height = SIZE
            vs.pix_fmt = "yuv420p"
            vs.options = {"preset": "veryfast", "crf": "23", "threads": "1"}
            aus = box.add_stream("aac", rate=SR, layout="mono")
            for i, img in enumerate(frames):  # interleave: one frame, then its span of audio
                vf = av.VideoFrame.from_ndarray(img, format="bgr24")
                vf.pts = i
                box.mux(vs.encode(vf))
                a, b = round(i * SR / FPS), round((i + 1) * SR / FPS)
                if i == len(frames) - 1:
                    b = len(audio)
                if b > a:
                    af = av.AudioFrame.from_ndarray(audio[None, a:b], format="fltp", layout="mono")
                    af.sample_rate, af.pts, af.time_base = SR, a, Fraction(1, SR)
                    box.mux(aus.encode(af))
            box.mux(vs.encode(None))
            box.mux(aus.encode(None))
        _readable(tmp)


def write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n", float_format="%.2f", encoding="utf-8")
        _readable(tmp)


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
        _readable(tmp)


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path, suffix=path.suffix) as tmp:
        tmp.write_bytes(data)
        _readable(tmp)

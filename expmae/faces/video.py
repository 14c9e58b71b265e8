"""Probe a video, choose the sampled frames, decode only those.

probe() opens the file with PyAV and decodes its first frame: that settles "is this a
video at all" cheaply and in a well-behaved library before decord sees the file.
Sampled frames are decoded with decord's get_batch (in chunks bounded by memory, so an
8K video cannot blow up a worker); if decord fails on a file that PyAV can read (a
truncated file, an odd codec), PyAV decodes sequentially instead and keeps what it got.
Frames come out RGB, upright (display rotation applied), at full resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

CHUNK_BYTES = 256 * 2**20  # decoded full-resolution frames held at once


class ProbeError(Exception):
    """The file is not a readable video; the message is the short QC reason."""


@dataclass
class Probe:
    width: int          # displayed (after rotation)
    height: int
    fps: float
    duration_s: float
    n_frames: int       # from the container; 0 when unknown
    has_audio: bool
    rotation: int       # counter-clockwise degrees the decoded picture must be turned


def short_error(e: BaseException) -> str:
    """One-line error without the file path (PyAV appends it)."""
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    msg = msg.splitlines()[0] if msg else type(e).__name__
    return f"{type(e).__name__}: {msg}"[:160]


def probe(path: str) -> Probe:
    import av

    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception as e:  # av.error.InvalidDataError, PermissionError, ...
        raise ProbeError(short_error(e)) from e
    with container:
        if not container.streams.video:
            raise ProbeError("no video stream")
        vs = container.streams.video[0]
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = float(rate) if rate else 0.0
        if vs.duration is not None and vs.time_base is not None:
            duration = float(vs.duration * vs.time_base)
        elif container.duration is not None:
            duration = container.duration / 1e6
        else:
            duration = 0.0
        try:
            first = next(container.decode(vs), None)
        except Exception as e:
            raise ProbeError(short_error(e)) from e
        if first is None:
            raise ProbeError("no frames")
        rotation = int(round((getattr(first, "rotation", 0) or 0) / 90.0)) * 90 % 360
        w, h = first.width, first.height
        if rotation in (90, 270):
            w, h = h, w
        return Probe(width=w, height=h, fps=fps, duration_s=max(duration, 0.0), n_frames=int(vs.frames or 0),
                     has_audio=bool(container.streams.audio), rotation=rotation)


def sample_indices(starts: np.ndarray, end_s: float, fps: float, max_frames: int) -> np.ndarray:
    """Frames shown at evenly spread times: `fps` per second, at most `max_frames`.

    starts: [N] presentation time of each frame (seconds, sorted). Works on time, not on
    frame index, so variable-frame-rate videos are sampled evenly in time too."""
    n_total = len(starts)
    if n_total == 0:
        return np.zeros(0, np.int64)
    t0 = float(starts[0])
    dur = max(float(end_s) - t0, 0.0)
    n = int(np.clip(round(dur * fps), 1, min(max_frames, n_total)))
    targets = t0 + (np.arange(n) + 0.5) * dur / n
    idx = np.searchsorted(starts, targets, side="right") - 1  # frame on screen at each target
    return np.unique(np.clip(idx, 0, n_total - 1))


def decode_decord(path: str, fps: float, max_frames: int,
                  frame_bytes: int) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, time s, RGB frame [H, W, 3]) for the sampled frames, via decord.get_batch."""
    import cv2  # noqa: F401  — load before decord: decord's bundled zlib breaks cv2's PNG codec otherwise
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    n = len(vr)
    if n == 0:
        return
    ts = np.asarray(vr.get_frame_timestamp(np.arange(n)), np.float64).reshape(n, 2)
    starts, end = ts[:, 0], float(ts[-1, 1])
    if n > 1 and (np.any(np.diff(starts) < 0) or starts[-1] <= starts[0]):
        rate = vr.get_avg_fps() or 25.0  # broken timestamps: assume constant rate
        starts, end = np.arange(n) / rate, n / rate
    idx = sample_indices(starts, end, fps, max_frames)
    per_chunk = max(1, CHUNK_BYTES // max(1, frame_bytes))
    for c in range(0, len(idx), per_chunk):
        chunk = idx[c:c + per_chunk]
        frames = vr.get_batch([int(i) for i in chunk]).asnumpy()  # [k, H, W, 3] uint8 RGB
        for i, frame in zip(chunk, frames):
            yield int(i), float(starts[i]), frame


def decode_pyav(path: str, fps: float, max_frames: int, duration_s: float,
                rotation: int) -> Iterator[tuple[int, float, np.ndarray]]:
    """Sequential PyAV decode of the sampled frames; stops quietly at a decoding error
    (a truncated file yields the frames before the damage)."""
    import av

    with av.open(path, metadata_errors="ignore") as container:
        vs = container.streams.video[0]
        rate = float(vs.average_rate or vs.guessed_rate or 0) or 25.0
        dur = duration_s if duration_s > 0 else max_frames / fps
        n = int(np.clip(round(dur * fps), 1, max_frames))
        targets = list((np.arange(n) + 0.5) * dur / n)
        prev: tuple[int, float, object] | None = None
        k = -1
        try:
            for frame in container.decode(vs):
                k += 1
                t = float(frame.time) if frame.time is not None else k / rate
                if k == 0:
                    targets = [t + x for x in targets]  # streams may start at t > 0
                # frame k-1 was on screen until t: it serves every target before t
                if prev is not None and targets and targets[0] < t:
                    yield prev[0], prev[1], _to_rgb(prev[2], rotation)
                    while targets and targets[0] < t:
                        targets.pop(0)
                prev = (k, t, frame)
                if not targets:
                    break
        except Exception:
            pass  # damaged stream: keep what was decoded
        if prev is not None and targets:
            yield prev[0], prev[1], _to_rgb(prev[2], rotation)


def _to_rgb(frame, rotation: int) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation else rgb

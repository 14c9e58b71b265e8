"""Probe a video, choose the sampled frames, decode only those.

probe() opens the file with PyAV and decodes its first frame: that settles "is this a
video at all" cheaply and in a well-behaved library before decord sees the file.
Sampled frames are decoded with PyAV (packet index -> seek to the GOPs that hold sampled
frames -> decode forward, convert only sampled frames); decord's get_batch (in chunks
bounded by memory, so an 8K video cannot blow up a worker) is the fallback for files PyAV
cannot decode. Frames come out RGB, upright (display rotation applied), at full resolution.
"""
from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

CHUNK_BYTES = 256 * 2**20  # decoded full-resolution frames held at once (decord)
LARGE_SIDE = 2560  # a longer side than this is noted in QC ("large WxH"): slow to decode


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
    pts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # [N] video packet pts, sorted
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [K] keyframe pts, sorted
    time_base: float = 0.0
    # probe(keep_open=True): the open PyAV container, reused by decode_pyav (an av.open costs
    # ~10-25 ms on real clips: it probes the streams). Its owner closes it (close()).
    container: object = field(default=None, repr=False, compare=False)

    def close(self) -> None:
        if self.container is not None:
            self.container.close()
            self.container = None


def short_error(e: BaseException) -> str:
    """One-line error without the file path (PyAV appends it) or decord's clock time
    ("[14:13:17] /github/...": the same file gave a different QC reason on every run)."""
    msg = getattr(e, "strerror", None) or str(e) or type(e).__name__
    msg = msg.splitlines()[0] if msg else type(e).__name__
    msg = re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", msg)
    return f"{type(e).__name__}: {msg}"[:160]


def probe(path: str, keep_open: bool = False) -> Probe:
    """One pass over the file: container metadata, the packet index (pts and keyframes, for
    decode_pyav's sampling and seeking), and the first frame (is it decodable at all, and
    its display rotation). Demuxing costs ~1% of decoding; a damaged file keeps the packets
    before the damage. keep_open: the Probe keeps the container for decode_pyav."""
    import av

    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception as e:  # av.error.InvalidDataError, PermissionError, ...
        raise ProbeError(short_error(e)) from e
    try:
        pr = _probe(container)
    except BaseException:
        container.close()
        raise
    if keep_open:
        pr.container = container
    else:
        container.close()
    return pr


def _probe(container: "av.container.InputContainer") -> Probe:  # noqa: F821
    """The probe of an open container (see probe)."""
    if not container.streams.video:
        raise ProbeError("no video stream")
    vs = container.streams.video[0]
    vs.codec_context.thread_count = 1
    rate = vs.average_rate or vs.guessed_rate or vs.base_rate
    fps = float(rate) if rate else 0.0
    if vs.duration is not None and vs.time_base is not None:
        duration = float(vs.duration * vs.time_base)
    elif container.duration is not None:
        duration = container.duration / 1e6
    else:
        duration = 0.0
    pts, keys, first, error = [], [], None, None
    try:
        for pkt in container.demux(vs):
            if first is None and error is None:  # decode only until the first frame appears
                try:
                    out = pkt.decode()
                    first = out[0] if out else None
                except Exception as e:
                    error = e
            if pkt.pts is None or pkt.size == 0 or pkt.is_discard:  # flush packet / edit-list leftovers
                continue
            pts.append(pkt.pts)
            if pkt.is_keyframe:
                keys.append(pkt.pts)
    except Exception as e:
        error = error or e
    if first is None:
        if error is not None:
            raise ProbeError(short_error(error)) from error
        raise ProbeError("no frames")
    rotation = int(round((getattr(first, "rotation", 0) or 0) / 90.0)) * 90 % 360
    w, h = first.width, first.height
    if rotation in (90, 270):
        w, h = h, w
    return Probe(width=w, height=h, fps=fps, duration_s=max(duration, 0.0), n_frames=int(vs.frames or 0),
                 has_audio=bool(container.streams.audio), rotation=rotation,
                 pts=np.unique(np.asarray(pts, np.int64)), keys=np.unique(np.asarray(keys, np.int64)),
                 time_base=float(vs.time_base) if vs.time_base else 0.0)


def notes(pr: Probe) -> list[str]:
    """Peculiarities of a readable video, for the QC `notes` column (not failures)."""
    out = []
    if not pr.has_audio:
        out.append("no audio")
    if pr.rotation:
        out.append(f"rotated {pr.rotation}")
    if len(pr.pts) == 1:
        out.append("1 frame")
    if len(pr.pts) > 3:
        gaps = np.diff(pr.pts)[:-1]  # the last interval is often odd
        if gaps.min() > 0 and gaps.max() > 1.5 * gaps.min():
            out.append("variable frame rate")
    if max(pr.width, pr.height) > LARGE_SIDE:
        out.append(f"large {pr.width}x{pr.height}")
    return out


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


def decode_decord(path: str, fps: float, max_frames: int, frame_bytes: int,
                  rotation: int = 0) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, time s, RGB frame [H, W, 3]) for the sampled frames, via decord.get_batch.
    decord ignores the display matrix: `rotation` (from probe) turns frames upright."""
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
            yield int(i), float(starts[i]), (np.ascontiguousarray(np.rot90(frame, rotation // 90)) if rotation
                                              else frame)


def decode_pyav(path: str, pr: Probe, fps: float, max_frames: int, skip_nonref: bool = True,
                status: dict | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, time s, RGB frame [H, W, 3] upright) for the sampled frames, via PyAV.

    Why not decord alone: on the real clips decord's get_batch decoded ~2-3x slower than
    this (benchmarks/bench_faces.py), and it ignores the display matrix. The probe's packet
    index gives exact frame times (VFR-safe sampling, as decode_decord) and the keyframes:
    each target in a later GOP is reached by a seek, so GOPs holding no sampled frame are
    never decoded; inside a GOP we decode forward and convert only sampled frames to RGB.
    skip_nonref: the decoder drops non-reference (B) frames, ~30% of the decoding on real
    clips; a target that falls on one is served by the next decoded frame (1-2 frames,
    <= 80 ms, later; its true index and time are reported). A stream that then yields
    nothing (all frames non-reference) is decoded again without skipping.
    A decoding error ends the video quietly (a truncated file yields the frames before the
    damage; status["error"] gets the message); an error before any frame raises."""
    import av

    pts, keys = pr.pts, pr.keys
    if len(pts) == 0:
        return
    starts = pts * (pr.time_base or 1.0 / 90000)
    step = float(np.median(np.diff(starts))) if len(starts) > 1 else 1.0 / max(fps, 1.0)
    idx = sample_indices(starts, float(starts[-1]) + step, fps, max_frames)
    targets = pts[idx]
    if len(keys) == 0 or keys[0] > pts[0]:
        keys = np.r_[pts[0], keys]  # decoding starts at the first packet whatever its flag
    gop = keys[np.searchsorted(keys, targets, side="right") - 1]  # keyframe each target decodes from

    yielded = 0
    own = pr.container is None
    container = av.open(path, metadata_errors="ignore") if own else pr.container
    with contextlib.ExitStack() as stack:
        if own:
            stack.enter_context(container)
        vs = container.streams.video[0]
        if own:  # probe set it on a kept container (it cannot change once the codec is open)
            vs.codec_context.thread_count = 1  # one worker process per core already
        vs.codec_context.skip_frame = "NONREF" if skip_nonref else "DEFAULT"
        ti, last = 0, None  # next target; pts of the last decoded frame (the first step seeks)
        try:
            while ti < len(targets):
                if last is None or gop[ti] > last:  # target lies in a later GOP: jump there
                    container.seek(int(gop[ti]), stream=vs, backward=True, any_frame=False)
                found = False
                for frame in container.decode(vs):
                    if frame.pts is None:
                        continue
                    last = frame.pts
                    if frame.pts < targets[ti]:
                        continue  # before the target: decoded (needed as reference), not converted
                    rgb = _to_rgb(frame, pr.rotation)
                    i = int(np.searchsorted(pts, frame.pts).clip(0, len(pts) - 1))
                    while ti < len(targets) and targets[ti] <= frame.pts:  # one frame serves a lost target too
                        ti += 1
                    yield i, float(starts[i]), rgb
                    yielded += 1
                    found = True
                    if ti >= len(targets) or gop[ti] > last:
                        break  # next target needs a seek (or we are done)
                if not found:
                    break  # stream ended before the target
        except Exception as e:
            if yielded == 0:
                raise
            if status is not None:
                status["error"] = short_error(e)
            return  # damaged stream: keep what was decoded
    if yielded == 0 and skip_nonref:
        yield from decode_pyav(path, pr, fps, max_frames, skip_nonref=False, status=status)


def _to_rgb(frame: "av.VideoFrame", rotation: int) -> np.ndarray:  # noqa: F821
    rgb = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation else rgb

"""Per-video work, run inside a pool worker: probe -> decode sampled frames -> detect on
a downscaled copy -> (O-Net landmarks, see landmarks.py) -> align every candidate face
from the full-resolution frame -> link tracks -> keep the main face's crops.

Two halves: decode_events (probe, decode, the detector's downscaled BGR copy) and collect
(detect, O-Net, align, track, QC row). process_video runs them one after the other;
process_stream, the face stage's path, runs decode_events in a thread (pipeline.Prefetch)
so clip i+1 is decoded while clip i is detected. Both give the same rows and crops.
Candidates are aligned as they are detected (a few per frame, ~0.1 ms each) so no
full-resolution frame outlives the queue; only the main track's crops are kept.
"""
from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

import cv2
import numpy as np

from . import track
from .align import align_face
from .detectors import Detections, create_detector, use_onet
from .pipeline import Prefetch
from .pool import Failure
from .video import ProbeError, decode_decord, decode_pyav, notes, probe, short_error

MAX_FACES = 8  # candidates per frame (crowd scenes); by score * sqrt(area)
# frames decoded ahead of detection (a 1080p RGB frame is 6 MB): enough to ride out a slow
# detection or a seek, small enough that a worker stays well under 100 MB
QUEUE_FRAMES = 6


def init_worker(params: dict) -> tuple[Any, dict]:
    cv2.setNumThreads(1)
    onet = None
    if use_onet(params):
        from .landmarks import ONet

        onet = ONet(params["onet_weights"])
    return (create_detector(params), onet), params


STILL_IMAGE = "still image (1 frame, no audio)"


def qc_row(name: str, reason: str = "", **kw: Any) -> dict:
    row = dict(name=name, ok=False, reason=reason, frames_decoded=0, frames_with_face=0, n_crops=0,
               mean_score=float("nan"), width=0, height=0, fps=float("nan"), duration_s=float("nan"),
               has_audio=False, decoder="", seconds=0.0, notes="")
    row.update(kw)
    return row


def downscale(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Shrink to `size` (w, h) with area averaging, cheaply.

    cv2's INTER_AREA over a whole 1080p frame costs ~3 ms, about as much as YuNet itself at
    320 px; a bilinear step to twice the target followed by INTER_AREA on that gives the
    same picture (mean |diff| 0.26 grey levels on real clips) in ~0.5 ms."""
    w, h = size
    if frame.shape[1] > 2 * w and frame.shape[0] > 2 * h:
        frame = cv2.resize(frame, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def detector_input(frame: np.ndarray, det_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The detector's copy of a frame: longest side det_size, BGR -> (image, (w, h)).
    Done in the decode thread (cv2 drops the GIL), off the detection thread."""
    h, w = frame.shape[:2]
    s = det_size / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = downscale(frame, size) if s < 1 else cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(small, cv2.COLOR_RGB2BGR), size


def detect_frame(detector: Any, frame: np.ndarray, det_size: int, onet: Any = None,
                 max_faces: int = MAX_FACES, small: tuple[np.ndarray, tuple[int, int]] | None = None) -> Detections:
    """Detect on a copy resized so the longest side is det_size; coordinates in frame pixels.

    small: detector_input(frame, det_size) when already made (by the decode thread).
    With `onet` (landmarks.ONet) the landmarks are re-predicted from the full-resolution
    frame inside each box; a refinement that lands far from the detector's points (a
    confused patch) keeps the detector's points instead."""
    h, w = frame.shape[:2]
    img, size = small if small is not None else detector_input(frame, det_size)
    det = detector.detect(img)
    if not len(det):
        return det
    det = det.scaled(w / size[0], h / size[1]).top(max_faces)  # exact per-axis factors (size was rounded)
    if onet is not None:
        refined = onet.refine(frame, det.boxes)
        old, new = det.landmarks.reshape(-1, 5, 2), refined.reshape(-1, 5, 2)
        shift = np.linalg.norm(new - old, axis=2).max(1)  # [N] worst point, frame pixels
        ok = ~np.all(np.isfinite(old), axis=(1, 2)) | (shift < 0.35 * np.maximum(det.boxes[:, 2], det.boxes[:, 3]))
        det.det_landmarks = det.landmarks
        det.landmarks = np.where(ok[:, None], refined, det.landmarks).astype(np.float32)
    return det


def decode_events(p: dict, task: dict) -> Iterator[tuple]:
    """Probe and decode one video -> events for collect():
    ("early", qc row)                          settled without frames (unreadable, still image)
    ("info", t_start, info, probe)             then
    ("frame", index, t, frame, small)          per sampled frame (small = detector_input)
    ("restart", error)                         PyAV failed mid-way: frames so far are void, decord follows
    ("fail", reason, decoder) | ("done", decoder, errors, status)"""
    t_start = time.perf_counter()
    name, path = task["name"], task["path"]
    try:
        pr = probe(path, keep_open=True)  # decode_pyav reuses its container: one av.open per video
    except ProbeError as e:
        # an audio-only file (a .mp4 holding only sound) is readable, just not a video: say so
        reason = str(e) if str(e) in ("no frames", "no video stream") else f"undecodable: {e}"
        yield ("early", qc_row(name, reason, seconds=time.perf_counter() - t_start))
        return
    try:
        info = dict(width=pr.width, height=pr.height, fps=pr.fps, duration_s=pr.duration_s, has_audio=pr.has_audio)
        if len(pr.pts) == 1 and not pr.has_audio:
            # a picture renamed .mp4: no expression dynamics, no audio; not ok, so every modality is masked
            # and it never joins the pseudo-label pool as a confident "video"
            yield ("early", qc_row(name, STILL_IMAGE, seconds=time.perf_counter() - t_start, **info))
            return
        yield ("info", t_start, info, pr)
        status: dict = {}
        errors: list[str] = []
        for decoder in ("pyav", "decord"):
            if decoder == "pyav":
                frames = decode_pyav(path, pr, p["fps"], p["max_frames"], status=status)
            else:
                frames = decode_decord(path, p["fps"], p["max_frames"], pr.width * pr.height * 3, pr.rotation)
            try:
                for index, t, frame in frames:
                    yield ("frame", index, t, frame, detector_input(frame, p["det_size"]))
            except Exception as e:  # PyAV opened it but cannot decode a frame: give decord a try
                errors.append(short_error(e))
                if decoder == "pyav":
                    yield ("restart", errors[-1])
                    continue
                yield ("fail", ("undecodable: " + "; ".join(errors))[:300], decoder)
                return
            yield ("done", decoder, errors, status)
            return
    finally:
        pr.close()


def collect(state: tuple[Any, dict], task: dict, events: Iterable[tuple]) -> dict:
    """Events of one video (decode_events) -> {qc: row, frames: [rows without crop_row],
    crops: [n, S, S, 3] uint8}."""
    (detector, onet), p = state
    name, S = task["name"], p["crop_size"]
    empty = np.zeros((0, S, S, 3), np.uint8)
    per_frame: list[tuple[int, float, Detections, list]] = []
    t_start, info, pr, decoder, errors, status = time.perf_counter(), {}, None, "pyav", [], {}
    for ev in events:
        kind = ev[0]
        if kind == "early":
            return {"qc": ev[1], "frames": [], "crops": empty}
        if kind == "info":
            _, t_start, info, pr = ev
        elif kind == "frame":
            _, index, t, frame, small = ev
            det = detect_frame(detector, frame, p["det_size"], onet, small=small)
            crops = [align_face(frame, det.landmarks[j], det.boxes[j], S, p["margin"]) for j in range(len(det))]
            per_frame.append((index, t, det, crops))
        elif kind == "restart":
            per_frame, decoder = [], "decord"
        elif kind == "fail":
            return {"qc": qc_row(name, ev[1], decoder=ev[2], seconds=time.perf_counter() - t_start, **info),
                    "frames": [], "crops": empty}
        elif kind == "done":
            _, decoder, errors, status = ev
    info["notes"] = ", ".join(notes(pr) + ([f"partly decoded ({status['error']})"] if "error" in status else [])
                              + ([f"decord fallback ({errors[0]})"] if errors else []))[:300]
    if not per_frame:
        return {"qc": qc_row(name, "no frames", decoder=decoder, seconds=time.perf_counter() - t_start, **info),
                "frames": [], "crops": empty}
    return _main_face(name, per_frame, S, empty, dict(decoder=decoder, **info), t_start)


def _main_face(name: str, per_frame: list, S: int, empty: np.ndarray, info: dict, t_start: float) -> dict:
    dets = [d for _, _, d, _ in per_frame]
    ids = track.link_tracks([d.boxes for d in dets])
    main = track.main_track([d.boxes for d in dets], [d.scores for d in dets],
                            [d.landmarks if d.det_landmarks is None else d.det_landmarks for d in dets], ids)
    rows, crops = [], []
    for (index, t, det, cands), fid in zip(per_frame, ids):
        for j in np.flatnonzero(fid == main) if main is not None else []:
            crop, aligned = cands[j]
            rows.append(dict(name=name, frame_index=index, time_s=t, box=det.boxes[j].tolist(),
                             landmarks=det.landmarks[j].tolist(), score=float(det.scores[j]),
                             track_id=int(main), aligned=bool(aligned)))
            crops.append(crop)
    with_face = sum(1 for d in dets if len(d))  # any face, main or not
    qc = qc_row(name, "" if rows else "no face", ok=bool(rows), frames_decoded=len(per_frame),
                frames_with_face=with_face, n_crops=len(rows),
                mean_score=float(np.mean([r["score"] for r in rows])) if rows else float("nan"),
                seconds=time.perf_counter() - t_start, **info)
    return {"qc": qc, "frames": rows, "crops": np.stack(crops) if crops else empty}


def process_video(state: tuple[Any, dict], task: dict) -> dict:
    """task {name, path} -> collect()'s result, decoding and detecting in turn (no thread)."""
    return collect(state, task, decode_events(state[1], task))


def process_stream(state: tuple[Any, dict], items: Iterable[tuple[int, dict]],
                   queue_frames: int = QUEUE_FRAMES) -> Iterator[tuple[int, dict | Failure]]:
    """(index, task) pairs -> (index, result or Failure) in the same order, decoding the next
    video in a thread while this one is detected. A video whose detection raises is a
    Failure; the thread skips the rest of it and goes on."""
    with Prefetch(lambda task: decode_events(state[1], task), items, maxsize=queue_frames) as pf:
        for i, task, events in pf:
            try:
                yield i, collect(state, task, events)
            except Exception as e:
                yield i, Failure(f"{type(e).__name__}: {e}"[:300])

"""Per-video work, run inside a pool worker: probe -> decode sampled frames -> detect on
a downscaled copy -> (O-Net landmarks, see landmarks.py) -> align every candidate face
from the full-resolution frame -> link tracks -> keep the main face's crops.

Candidates are aligned as they are detected (a few per frame, ~0.1 ms each) so no
full-resolution frame outlives its decode chunk; only the main track's crops are kept.
"""
from __future__ import annotations

import time
from typing import Any

import cv2
import numpy as np

from . import track
from .align import align_face
from .detectors import Detections, create_detector, use_onet
from .video import ProbeError, decode_decord, decode_pyav, notes, probe, short_error

MAX_FACES = 8  # candidates per frame (crowd scenes); by score * sqrt(area)


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


def detect_frame(detector: Any, frame: np.ndarray, det_size: int, onet: Any = None,
                 max_faces: int = MAX_FACES) -> Detections:
    """Detect on a copy resized so the longest side is det_size; coordinates in frame pixels.

    With `onet` (landmarks.ONet) the landmarks are re-predicted from the full-resolution
    frame inside each box; a refinement that lands far from the detector's points (a
    confused patch) keeps the detector's points instead."""
    h, w = frame.shape[:2]
    s = det_size / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small = downscale(frame, size) if s < 1 else cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)
    det = detector.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
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


def process_video(state: tuple[Any, dict], task: dict) -> dict:
    """task {name, path} -> {qc: row, frames: [rows without crop_row], crops: [n, S, S, 3] uint8}."""
    (detector, onet), p = state
    t_start = time.perf_counter()
    name, path = task["name"], task["path"]
    S = p["crop_size"]
    empty = np.zeros((0, S, S, 3), np.uint8)
    try:
        pr = probe(path)
    except ProbeError as e:
        # an audio-only file (a .mp4 holding only sound) is readable, just not a video: say so
        reason = str(e) if str(e) in ("no frames", "no video stream") else f"undecodable: {e}"
        return {"qc": qc_row(name, reason, seconds=time.perf_counter() - t_start), "frames": [], "crops": empty}
    info = dict(width=pr.width, height=pr.height, fps=pr.fps, duration_s=pr.duration_s, has_audio=pr.has_audio)
    if len(pr.pts) == 1 and not pr.has_audio:
        # a picture renamed .mp4: no expression dynamics, no audio; not ok, so every modality is masked
        # and it never joins the pseudo-label pool as a confident "video"
        return {"qc": qc_row(name, STILL_IMAGE, seconds=time.perf_counter() - t_start, **info),
                "frames": [], "crops": empty}
    status: dict = {}

    def run(decoder: str) -> list[tuple[int, float, Detections, list]]:
        if decoder == "pyav":
            frames = decode_pyav(path, pr, p["fps"], p["max_frames"], status=status)
        else:
            frames = decode_decord(path, p["fps"], p["max_frames"], pr.width * pr.height * 3, pr.rotation)
        out = []
        for index, t, frame in frames:
            det = detect_frame(detector, frame, p["det_size"], onet)
            crops = [align_face(frame, det.landmarks[j], det.boxes[j], S, p["margin"]) for j in range(len(det))]
            out.append((index, t, det, crops))
        return out

    decoder, errors = "pyav", []
    try:
        per_frame = run("pyav")
    except Exception as e:  # PyAV opened it but cannot decode a frame: give decord a try
        errors.append(short_error(e))
        decoder = "decord"
        try:
            per_frame = run("decord")
        except Exception as e2:
            errors.append(short_error(e2))
            reason = "undecodable: " + "; ".join(errors)
            return {"qc": qc_row(name, reason[:300], decoder=decoder, seconds=time.perf_counter() - t_start, **info),
                    "frames": [], "crops": empty}
    info["notes"] = ", ".join(notes(pr) + ([f"partly decoded ({status['error']})"] if "error" in status else [])
                              + ([f"decord fallback ({errors[0]})"] if errors else []))[:300]
    if not per_frame:
        return {"qc": qc_row(name, "no frames", decoder=decoder, seconds=time.perf_counter() - t_start, **info),
                "frames": [], "crops": empty}

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
                decoder=decoder, seconds=time.perf_counter() - t_start, **info)
    return {"qc": qc, "frames": rows, "crops": np.stack(crops) if crops else empty}

"""Link detections over the sampled frames and pick the video's main face.

Frames are sampled sparsely (~0.25 s apart), so linking is greedy on box overlap with a
centre-distance fallback for faces that moved more than their IoU allows. The main track
maximises sum(score * sqrt(area)) over its detections: longer, larger and more confident
tracks all win, and a small face in the background cannot outrank the speaker just by
being present in one more frame. Each detection is also weighted by how frontal it looks
(eye distance / box width: ~0.45 frontal, < 0.25 profile or the back of a head, which
YuNet sometimes scores 0.8): the expression we want is on the face turned to the camera.
"""
from __future__ import annotations

import numpy as np

IOU_MIN = 0.2        # link when the boxes overlap at least this much...
CENTRE_MAX = 0.6     # ...or centres are closer than this * face size
AREA_RATIO = 2.5     # ...and the sizes are within this factor
MAX_GAP = 3          # a track survives this many sampled frames without a detection
FRONTAL_EYES = 0.35  # eye distance / box width at and above which a face counts as frontal


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xywh boxes: a [N, 4], b [M, 4] -> [N, M]."""
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    ih = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def affinity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] link score in [0, 1]; 0 = may not link."""
    ov = iou(a, b)
    area_a, area_b = a[:, 2:3] * a[:, 3:4], b[:, 2] * b[:, 3]
    ratio = np.maximum(area_a, area_b) / np.maximum(np.minimum(area_a, area_b), 1e-9)
    size = 0.5 * (np.sqrt(area_a) + np.sqrt(area_b))
    ca, cb = a[:, :2] + a[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2
    dist = np.sqrt(((ca[:, None, :] - cb[None, :, :]) ** 2).sum(-1)) / np.maximum(size, 1e-9)
    near = np.where(dist < CENTRE_MAX, IOU_MIN * (1 - dist / CENTRE_MAX), 0.0)
    score = np.where(ov >= IOU_MIN, ov, near)
    return np.where(ratio <= AREA_RATIO, score, 0.0)


def link_tracks(boxes_per_frame: list[np.ndarray]) -> list[np.ndarray]:
    """Greedy frame-to-frame linking -> per frame, an int track id for each detection."""
    next_id = 0
    active: dict[int, tuple[np.ndarray, int]] = {}  # id -> (last box [4], last frame)
    out: list[np.ndarray] = []
    for t, boxes in enumerate(boxes_per_frame):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = np.full(len(boxes), -1, np.int64)
        live = [k for k, (_, last) in active.items() if t - last <= MAX_GAP + 1]
        if live and len(boxes):
            prev = np.stack([active[k][0] for k in live])
            aff = affinity(prev, boxes)                     # [tracks, detections]
            for flat in np.argsort(-aff, axis=None, kind="stable"):
                i, j = divmod(int(flat), aff.shape[1])
                if aff[i, j] <= 0:
                    break
                if ids[j] < 0 and live[i] not in ids:
                    ids[j] = live[i]
        for j in range(len(boxes)):
            if ids[j] < 0:
                ids[j], next_id = next_id, next_id + 1
            active[int(ids[j])] = (boxes[j], t)
        out.append(ids)
    return out


def frontal_weight(boxes: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """[N] in [0.1, 1]: 1 for frontal faces, less for profiles; 1 when landmarks are unknown."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    lm = np.asarray(landmarks, np.float64).reshape(-1, 10)
    eyes = np.hypot(lm[:, 2] - lm[:, 0], lm[:, 3] - lm[:, 1]) / np.maximum(boxes[:, 2], 1e-9)
    w = np.clip(eyes / FRONTAL_EYES, 0.1, 1.0)
    return np.where(np.isfinite(w), w, 1.0)


def main_track(boxes_per_frame: list[np.ndarray], scores_per_frame: list[np.ndarray],
               landmarks_per_frame: list[np.ndarray], ids_per_frame: list[np.ndarray]) -> int | None:
    """Track id with the largest sum of score * sqrt(area) * frontal; None when there is no face."""
    value: dict[int, float] = {}
    for boxes, scores, lms, ids in zip(boxes_per_frame, scores_per_frame, landmarks_per_frame, ids_per_frame):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        weight = np.asarray(scores, np.float64) * np.sqrt(np.maximum(boxes[:, 2] * boxes[:, 3], 0.0))
        weight = weight * frontal_weight(boxes, lms)
        for k, v in zip(ids, weight):
            value[int(k)] = value.get(int(k), 0.0) + float(v)
    if not value:
        return None
    return max(value, key=lambda k: (value[k], -k))

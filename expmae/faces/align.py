"""Aligned face crops: 5-point similarity transform to the ArcFace template.

The template is the canonical 112x112 ArcFace/insightface one, scaled to `crop_size`;
`margin` shrinks it about the crop centre so more context fits (margin 0.25 -> the face
is 1/1.25 as large). The transform is a closed-form Umeyama fit (deterministic, no
RANSAC). When landmarks are missing or degenerate we fall back to a padded square box
crop. Crops are cut from the full-resolution frame, not the detector's downscaled copy.
"""
from __future__ import annotations

import cv2
import numpy as np

# (x, y) in a 112x112 crop: eye (image left), eye (image right), nose, mouth corners.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    np.float64,
)
BOX_PAD = 1.3        # square side = BOX_PAD * max(w, h) for the box fallback
MAX_RESIDUAL = 0.5   # landmark fit rms error, fraction of the template eye distance


def template(crop_size: int, margin: float = 0.0) -> np.ndarray:
    """[5, 2] landmark targets in a crop_size x crop_size crop."""
    t = ARCFACE_112 * (crop_size / 112.0)
    c = crop_size / 2.0
    return c + (t - c) / (1.0 + margin)


def umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift; no reflection) src -> dst, [2, 3]."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc ** 2).sum(1).mean()
    cov = dc.T @ sc / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ np.diag(d) @ vt
    scale = (s * d).sum() / max(var_s, 1e-12)
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]])


def apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map [N, 2] points with a [2, 3] affine matrix."""
    return pts @ m[:, :2].T + m[:, 2]


def landmark_matrix(landmarks: np.ndarray, box: np.ndarray, crop_size: int, margin: float) -> np.ndarray | None:
    """Similarity from 10 landmark values to the template, or None when they are unusable."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    if not np.all(np.isfinite(lm)):
        return None
    eye_dist = np.linalg.norm(lm[1] - lm[0])
    if eye_dist < max(1.0, 0.1 * float(box[2])):  # collapsed points
        return None
    dst = template(crop_size, margin)
    m = umeyama(lm, dst)
    rms = np.sqrt(((apply(m, lm) - dst) ** 2).sum(1).mean())
    if rms > MAX_RESIDUAL * np.linalg.norm(dst[1] - dst[0]):  # mirrored / scrambled points
        return None
    return m


def box_matrix(box: np.ndarray, crop_size: int, margin: float) -> np.ndarray:
    """Padded square around the box centre -> crop (no rotation)."""
    x, y, w, h = (float(v) for v in box)
    side = max(w, h, 1.0) * BOX_PAD * (1.0 + margin)
    s = crop_size / side
    cx, cy = x + w / 2.0, y + h / 2.0
    return np.array([[s, 0.0, crop_size / 2.0 - s * cx], [0.0, s, crop_size / 2.0 - s * cy]])


def warp(frame: np.ndarray, m: np.ndarray, crop_size: int) -> np.ndarray:
    """warpAffine to [S, S, 3]; a strong downscale first shrinks the face region with
    INTER_AREA, since bilinear warping from, e.g., a 4K frame to 112 px would alias."""
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        inv = cv2.invertAffineTransform(m)
        corners = apply(inv, np.array([[0, 0], [crop_size, 0], [0, crop_size], [crop_size, crop_size]], np.float64))
        h, w = frame.shape[:2]
        x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [w, h])
        x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 0, [w, h])
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            f = 2.0 * scale  # leaves a x0.5 step for the bilinear warp
            roi = frame[y0:y1, x0:x1]
            small = cv2.resize(roi, (max(1, round(roi.shape[1] * f)), max(1, round(roi.shape[0] * f))),
                               interpolation=cv2.INTER_AREA)
            fx, fy = small.shape[1] / roi.shape[1], small.shape[0] / roi.shape[0]
            # cv2.resize maps pixel centres: p = (p_small + 0.5) / f - 0.5 + [x0, y0]; m' = m(p(p_small))
            a = m[:, :2] @ np.diag([1.0 / fx, 1.0 / fy])
            origin = np.array([x0 + 0.5 / fx - 0.5, y0 + 0.5 / fy - 0.5])
            m = np.hstack([a, (m[:, :2] @ origin + m[:, 2])[:, None]])
            frame = small
    return cv2.warpAffine(frame, m, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def align_face(frame: np.ndarray, landmarks: np.ndarray, box: np.ndarray, crop_size: int,
               margin: float = 0.0) -> tuple[np.ndarray, bool]:
    """Crop one face from a full-resolution frame [H, W, 3] -> ([S, S, 3] uint8, aligned?)."""
    m = landmark_matrix(landmarks, box, crop_size, margin)
    aligned = m is not None
    if m is None:
        m = box_matrix(box, crop_size, margin)
    return warp(frame, m, crop_size), aligned

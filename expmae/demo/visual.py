"""Demo frames: real face photographs shipped by installed packages, drawn over with the cue class's
mouth, brows and tint, lit, pasted on a blurred texture and moved per frame; and face-less frames."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .spec import CLASSES, FPS, SIZE

def _site(pkg: str) -> Path:
    """Install folder of a package without importing it (importing insightface alone takes ~0.6 s)."""
    import importlib.util

    spec = importlib.util.find_spec(pkg)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"demo: the package {pkg!r} (source of bundled images) is not installed")
    return Path(spec.origin).parent


def _imread(path: Path) -> np.ndarray:
    """BGR uint8 via Pillow: cv2.imread fails on PNGs when decord was imported first (zlib clash)."""
    from PIL import Image

    return np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1])


def _detect(img: np.ndarray) -> np.ndarray | None:
    """Landmarks [5, 2] (eye l, eye r, nose, mouth l, mouth r) of the most confident face, or None."""
    import yuface

    confs, _, lms = yuface.detect(np.ascontiguousarray(img), conf=0.5)
    if len(confs) == 0:
        return None
    return lms[int(np.argmax(confs))].reshape(5, 2).astype(np.float32)


def _square_crop(img: np.ndarray, cx: float, cy: float, side: float, out: int = 192) -> np.ndarray:
    s = out / side
    m = np.float32([[s, 0, out / 2 - s * cx], [0, s, out / 2 - s * cy]])
    return cv2.warpAffine(img, m, (out, out), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


@functools.lru_cache(maxsize=1)
def identities() -> list[tuple[np.ndarray, np.ndarray]]:
    """Face crops [192, 192, 3] BGR uint8 with landmarks [5, 2], each original and mirrored."""
    import yuface
    from skimage import data as skdata

    img_dir = _site("insightface") / "data" / "images"
    group = _imread(img_dir / "t1.jpg")
    small = cv2.resize(group, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # YuNet prefers < 1000 px
    _, boxes, _ = yuface.detect(small, conf=0.5)
    sources = [(group, (x + w / 2) * 2, (y + h / 2) * 2, max(w, h) * 2 * 1.8) for x, y, w, h in boxes.astype(float)]
    astro = np.ascontiguousarray(skdata.astronaut()[:, :, ::-1])
    sources.append((astro, 178 + 44, 63 + 62, 112 * 1.8))
    hanks = _imread(img_dir / "Tom_Hanks_54745.png")  # already a tight 112 crop: widen by padding
    sources.append((hanks, 56, 60, 112 * 1.35))
    out = []
    for img, cx, cy, side in sorted(sources, key=lambda s: (s[1], s[2])):  # stable order
        crop = _square_crop(img, cx, cy, side)
        for im in (crop, np.ascontiguousarray(crop[:, ::-1])):
            lm = _detect(im)
            if lm is not None:
                out.append((im, lm))
    assert len(out) >= 4, "demo: too few faces detected in the bundled images"
    return out


@functools.lru_cache(maxsize=1)
def backgrounds() -> list[np.ndarray]:
    """Texture / scene images [320, 320, 3] BGR uint8 from skimage and sklearn sample data."""
    from skimage import data as skdata

    imgs = [skdata.brick(), skdata.grass(), skdata.gravel(), skdata.coffee(), skdata.rocket(),
            skdata.hubble_deep_field(), skdata.retina()]  # no chelsea: a cat face
    skl = _site("sklearn") / "datasets" / "images"
    imgs += [_imread(p)[:, :, ::-1] for p in sorted(skl.glob("*.jpg"))]
    out = []
    for im in imgs:
        im = cv2.cvtColor(im, cv2.COLOR_GRAY2RGB) if im.ndim == 2 else im[:, :, :3]
        out.append(cv2.resize(np.ascontiguousarray(im[:, :, ::-1]), (320, 320), interpolation=cv2.INTER_AREA))
    return out


def draw_visual_cue(face: np.ndarray, lm: np.ndarray, cue: int, rng: np.random.Generator) -> np.ndarray:
    """Draw the cue class's mouth, brows and lower-face tint at the landmarks (face is 192x192 BGR)."""
    img = face.astype(np.float32)
    el, er, nose, ml, mr = lm
    d = float(np.linalg.norm(er - el))  # inter-ocular distance sets the scale of every mark
    # tint below the nose (soft ellipse); worried darkens: a green tint made YuNet miss ~20 % of frames
    tint = {0: (0, 0, 0), 1: (-35, -35, 65), 2: (-45, 45, 50), 3: (65, -15, -35),
            4: (-40, -40, -40), 5: (60, -35, 60)}[cue]
    yy, xx = np.mgrid[0:192, 0:192].astype(np.float32)
    mc = (ml + mr) / 2
    w = np.exp(-(((xx - mc[0]) / (1.1 * d)) ** 2 + ((yy - mc[1] + 0.15 * d) / (0.8 * d)) ** 2))
    img += w[..., None] * np.float32(tint) * rng.uniform(0.8, 1.2)
    img = np.clip(img, 0, 255).astype(np.uint8)

    t = max(2, int(round(0.12 * d)))
    lip = tuple(int(c) for c in rng.integers([20, 20, 90], [50, 45, 140]))
    hw = 0.65 * float(np.linalg.norm(mr - ml)) + 0.12 * d
    xs = np.linspace(-hw, hw, 24)
    u = xs / hw
    curve = {0: 0 * xs, 2: 0.32 * hw * (1 - u**2) - 0.12 * hw,  # smile: centre low, corners up
             3: -0.3 * hw * (1 - u**2) + 0.12 * hw, 4: 0.12 * hw * np.sin(u * 3 * np.pi)}  # frown, wavy
    if cue in curve:
        pts = np.stack([mc[0] + xs, mc[1] + curve[cue]], 1).round().astype(np.int32)
        cv2.polylines(img, [pts], False, lip, t, cv2.LINE_AA)
    elif cue == 1:  # angry: bared teeth bar
        p0 = (int(mc[0] - hw), int(mc[1] - 0.16 * d))
        p1 = (int(mc[0] + hw), int(mc[1] + 0.16 * d))
        cv2.rectangle(img, p0, p1, (235, 240, 240), -1, cv2.LINE_AA)
        cv2.rectangle(img, p0, p1, lip, t, cv2.LINE_AA)
        cv2.line(img, (p0[0], int(mc[1])), (p1[0], int(mc[1])), (90, 90, 90), 1, cv2.LINE_AA)
    else:  # surprise: open mouth
        cen = (int(mc[0]), int(mc[1] + 0.1 * d))
        cv2.ellipse(img, cen, (int(0.45 * hw), int(0.32 * d)), 0, 0, 360, (25, 20, 50), -1, cv2.LINE_AA)
        cv2.ellipse(img, cen, (int(0.45 * hw), int(0.32 * d)), 0, 0, 360, lip, t, cv2.LINE_AA)

    # brows: (inner dy, outer dy, arch) in units of d, relative to a line 0.33 d above each eye
    inner, outer, arch = {0: (0, 0, 0), 1: (0.14, -0.08, 0), 2: (-0.06, -0.06, 0.08), 3: (-0.14, 0.06, 0),
                          4: (-0.2, -0.04, -0.04), 5: (-0.22, -0.22, 0.14)}[cue]
    brow = tuple(int(c) for c in rng.integers([15, 20, 30], [45, 50, 70]))
    for eye, side in ((el, 1.0), (er, -1.0)):  # side: direction towards the nose
        u = np.linspace(0, 1, 12)  # 0 = outer end, 1 = inner end
        x = eye[0] + side * (-0.28 + 0.5 * u) * d
        y = eye[1] - 0.33 * d + ((1 - u) * outer + u * inner) * d - arch * d * 4 * u * (1 - u)
        pts = np.stack([x, y], 1).round().astype(np.int32)
        cv2.polylines(img, [pts], False, brow, max(2, int(round(0.11 * d))), cv2.LINE_AA)
    return img


@functools.lru_cache(maxsize=1)
def _matte() -> np.ndarray:
    """Soft super-ellipse alpha [192, 192] float32: head and shoulders in, crop corners out."""
    yy, xx = np.mgrid[0:192, 0:192].astype(np.float32)
    r = ((xx - 96) / 90) ** 4 + ((yy - 100) / 94) ** 4
    return cv2.GaussianBlur(np.clip((1 - r) * 3, 0, 1), (0, 0), 4)


def _background(rng: np.random.Generator) -> np.ndarray:
    bank = backgrounds()
    bg = bank[rng.integers(len(bank))].astype(np.float32)
    if rng.random() < 0.5:
        bg = bg[:, ::-1]
    bg = bg * rng.uniform(0.55, 1.05) * rng.uniform(0.85, 1.15, 3) + rng.uniform(-20, 20)
    bg = cv2.GaussianBlur(bg, (0, 0), rng.uniform(0.5, 2.5))  # out of focus, less like a face
    return np.clip(bg, 0, 255).astype(np.float32)


def face_frames(row: dict[str, Any], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """n BGR frames [SIZE, SIZE, 3] uint8 of one identity showing the clip's visual cue."""
    face, lm = identities()[row["identity"] % len(identities())]
    face = draw_visual_cue(face, lm, CLASSES.index(row["visual_cue"]), rng).astype(np.float32)
    # per-clip lighting: gain, colour cast, side light, gamma
    xs = np.linspace(-1, 1, 192, dtype=np.float32)[None, :, None]
    light = rng.uniform(0.7, 1.2) * rng.uniform(0.88, 1.12, 3).astype(np.float32) * (1 + rng.uniform(-0.3, 0.3) * xs)
    face = 255 * (np.clip(face * light, 0, 255) / 255) ** rng.uniform(0.8, 1.25)
    bg, alpha = _background(rng), _matte()
    scale = rng.uniform(125, 175) / 192
    cx, cy = SIZE / 2 + rng.uniform(-28, 28), SIZE / 2 + rng.uniform(-18, 24)
    amp, f, ph = rng.uniform(3, 10, 2), rng.uniform(0.2, 0.7, 3), rng.uniform(0, 2 * np.pi, 3)
    tilt, pan = rng.uniform(-6, 6), rng.uniform(-8, 8, 2)
    frames = []
    for i in range(n):
        t = i / FPS
        dx = amp[0] * np.sin(2 * np.pi * f[0] * t + ph[0]) + rng.normal(0, 1.0)  # drift + shake
        dy = amp[1] * np.sin(2 * np.pi * f[1] * t + ph[1]) + rng.normal(0, 1.0)
        ang = tilt + 3 * np.sin(2 * np.pi * f[2] * t + ph[2])
        m = cv2.getRotationMatrix2D((96, 96), ang, scale * (1 + 0.04 * np.sin(2 * np.pi * f[1] * t)))
        m[:, 2] += (cx + dx - 96, cy + dy - 96)
        fw = cv2.warpAffine(face, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR)
        aw = cv2.warpAffine(alpha, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR)[..., None]
        ox, oy = (32 + pan * t / 3).astype(int)  # slow background pan inside the 320 px texture
        b = bg[oy:oy + SIZE, ox:ox + SIZE]
        frames.append(np.clip(b + aw * (fw - b), 0, 255).astype(np.uint8))
    return frames


def noface_frames(n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Textured background with drifting coloured shapes: valid video, no face."""
    bg = _background(rng)[32:32 + SIZE, 32:32 + SIZE].astype(np.uint8)
    shapes = [(rng.uniform(20, 236, 2), rng.uniform(-30, 30, 2), int(rng.integers(8, 30)),
               tuple(int(c) for c in rng.integers(0, 255, 3))) for _ in range(5)]
    frames = []
    for i in range(n):
        img = bg.copy()
        for k, (p, v, r, col) in enumerate(shapes):
            x, y = (p + v * i / FPS).astype(int) % SIZE
            if k % 2:
                cv2.rectangle(img, (x - r, y - r), (x + r, y + r), col, -1)
            else:
                cv2.circle(img, (x, y), r, col, -1)
        frames.append(img)
    return frames

"""Seeded demo dataset in MER 2023 layout: real faces, synthetic emotion cues in all three modalities.

    python -m expmae.demo --out data/demo [--preset default|tiny] [--seed 0] [--force]
    python -m expmae.demo --out data/demo --add-unlabeled 12 --seed 7

Layout: videos/<name>.mp4 (all splits mixed), labels.csv (name,discrete,valence; labeled split),
transcripts.csv (name,english), test.csv (name), test_labels.csv, README.txt, and cues.csv (the hidden
truth of every video: split, class and the cue each modality shows; the pipeline never reads it).

How a clip is made. Each video has a true class (balanced per split, six MER classes) and a valence drawn
around a class mean (N(mean, 1), clipped to [-5, 5]). Each modality then *independently* shows the cue of
the true class with probability P_CUE = 0.75, otherwise the cue of one of the five other classes (uniform).
So a perfect single-modality reader is at most ~75 % accurate, while a vote of the three cues is ~89 %
right (ties broken at random); pseudo-labels kept at high fused confidence are mostly right. The demo
rewards fusion and pseudo-labelling, not one modality. Measured on the default preset (seed 0) with plain
logistic-regression probes, 5-fold CV over the 337 decodable clips: readability of each cue (trained on the
cue class) eGeMAPS 0.98, MiniLM text 0.92, raw 28x28 aligned-face pixels 0.93; trained on the true class:
audio 0.73, text 0.64, visual 0.62, late fusion (sum of log-probs) 0.77. Raise P_CUE for an easier demo.

- visual: one real face photograph shipped by installed packages (six faces cropped from insightface's
  t1.jpg, Tom_Hanks_54745.png, skimage's astronaut; each also mirrored = 16 identities, independent of the
  class), drawn over at its YuNet landmarks with the cue class's mouth (flat line / teeth bar / smile arc /
  frown arc / wavy line / open ellipse), eyebrows (flat / V / raised / inner-up / inner-up high / high arch)
  and a tint of the lower face (none / red / yellow / blue / darker / magenta). Per clip the face is scaled
  (~125-175 px), placed, lit (gain, colour cast, side light, gamma) and pasted with a soft matte on a blurred
  textured background (skimage / sklearn sample images); per frame it drifts, tilts, zooms and shakes.
  YuNet finds a face in ~99 % of frames (a few closed-eye identities under harsh light are the misses).
- audio: a voice-like source (glottal pulse train at a time-varying F0, spectral tilt, vowel formant
  resonators, syllable amplitude envelope, consonant noise bursts, breath and room noise), 16 kHz mono AAC.
  The cue class sets F0 level (x a random speaker baseline of 105-185 Hz), F0 contour (flat / falling /
  bouncy / slow fall / tremolo / rising), loudness (+-2.5 dB per clip), speaking rate, spectral tilt and
  breathiness: what eGeMAPS functionals measure. See VOICE.
- text: one English phrase from the cue class's bank (8 per class), often with neutral filler words or a
  neutral sentence; 15 % also carry a phrase of another class (ambiguous).

Bad and odd inputs in the unlabeled pool (on top of n_unlabeled): corrupt_0001.mp4 (random bytes),
empty_0001.mp4 (0 bytes), noface_0001.mp4 (valid video + audio, textures only), `clip (1) é.mp4` (normal
video, odd name). corrupt/noface have transcripts, empty_0001 none, one normal unlabeled video an empty one.
CSVs are byte-identical for a given seed; each video is rendered from its own RNG seeded by (seed, name)
with a single-threaded encoder, so its bytes depend neither on order nor on --workers.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pandas as pd

from expmae.io import atomic_path

CLASSES = ("neutral", "angry", "happy", "sad", "worried", "surprise")
PRESETS = {"default": (96, 192, 48), "tiny": (24, 24, 12)}  # labeled, unlabeled, test
P_CUE = 0.75
P_MIXED_TEXT = 0.15
SIZE, FPS, SR = 256, 12, 16000
VALENCE_MEAN = {"neutral": 0.0, "angry": -3.0, "happy": 3.0, "sad": -3.5, "worried": -2.0, "surprise": 1.0}
ODD_NAME = "clip (1) \u00e9"  # space, parentheses, non-ASCII (NFC)
CUE_COLS = ["name", "split", "kind", "discrete", "valence", "visual_cue", "audio_cue", "text_cue", "identity"]

# ---------------------------------------------------------------- text
PHRASES = {
    "neutral": ["the meeting was moved to three o'clock", "I picked up the groceries on the way home",
                "we will take the train tomorrow morning", "the report is on your desk",
                "the store closes at nine on weekdays", "let me check the schedule first",
                "the package arrived this afternoon", "she works on the second floor"],
    "angry": ["this is completely unacceptable", "I am sick and tired of your excuses", "how dare you lie to me",
              "get out of my way right now", "you ruined everything again", "I told you a hundred times to stop",
              "I am furious about what you did", "don't you ever touch my things again"],
    "happy": ["this is the best day of my life", "I am so glad you came", "we won, we actually won",
              "I love it, thank you so much", "that's wonderful news", "that was so much fun",
              "I'm so happy for both of you", "I'm delighted, everything went perfectly"],
    "sad": ["I miss her so much", "nobody came to say goodbye", "I lost my job today",
            "it's over, there's nothing left", "I feel so lonely these days", "he passed away last night",
            "I cried all night", "everything I loved is gone"],
    "worried": ["what if they don't come back in time?", "I'm afraid something bad will happen",
                "I'm not sure we can pay the rent", "are you sure it's safe?", "I keep thinking about the test results",
                "I'm nervous about tomorrow", "what if he finds out?", "I hope nothing went wrong"],
    "surprise": ["wow, I didn't expect that at all", "what? you're kidding me!", "no way, is that really you?",
                 "oh my god, when did this happen?", "really? I had no idea", "I can't believe my eyes",
                 "whoa, that came out of nowhere", "wait, you did all this?"],
}
FILLER_START = ["well,", "you know,", "so,", "listen,", "honestly,", "I mean,", "okay,", "look,", "um,"]
FILLER_SENT = ["I was just talking to my brother.", "It was after lunch.", "Anyway, that's what happened.",
               "We were in the kitchen.", "It's been a long week.", "I saw it on the way here.", "Right."]


def make_transcript(cue: int, rng: np.random.Generator) -> str:
    parts = [PHRASES[CLASSES[cue]][rng.integers(8)]]
    if rng.random() < P_MIXED_TEXT:  # ambiguous: a second class's phrase too
        other = CLASSES[(cue + 1 + rng.integers(5)) % 6]
        parts.insert(rng.integers(2), PHRASES[other][rng.integers(8)])
    s = " ".join(p[0].upper() + p[1:] + ("" if p[-1] in "?!." else ".") for p in parts)
    if rng.random() < 0.6:
        head = s if s.startswith(("I ", "I'")) else s[0].lower() + s[1:]
        s = f"{FILLER_START[rng.integers(len(FILLER_START))].capitalize()} {head}"
    if rng.random() < 0.4:
        s = f"{s} {FILLER_SENT[rng.integers(len(FILLER_SENT))]}"
    return s


# ---------------------------------------------------------------- plan (labels, cues, transcripts)
def _draw_cue(true: int, rng: np.random.Generator) -> int:
    return true if rng.random() < P_CUE else int((true + 1 + rng.integers(5)) % 6)


def plan_clips(names: list[str], split: str, rng: np.random.Generator, n_ident: int) -> list[dict[str, Any]]:
    """One row per clip: balanced true classes, independent per-modality cues, valence, transcript."""
    classes = rng.permutation(np.resize(np.arange(6), len(names)))
    rows = []
    for name, c in zip(names, classes):
        c = int(c)
        v, a, t = (_draw_cue(c, rng) for _ in range(3))
        val = float(np.clip(VALENCE_MEAN[CLASSES[c]] + rng.normal(0, 1.0), -5, 5))
        rows.append(dict(name=name, split=split, kind="normal", discrete=CLASSES[c], valence=round(val, 2),
                         visual_cue=CLASSES[v], audio_cue=CLASSES[a], text_cue=CLASSES[t],
                         identity=int(rng.integers(n_ident)), english=make_transcript(t, rng)))
    return rows


# ---------------------------------------------------------------- faces and backgrounds
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


# ---------------------------------------------------------------- audio
# cue class -> F0 multiplier, contour, loudness dBFS, syllables/s, tilt (one-pole a), breath noise
VOICE = {"neutral": (1.0, "flat", -23, 4.0, 0.55, 0.02), "angry": (1.3, "fall", -12, 5.8, 0.2, 0.03),
         "happy": (1.35, "bounce", -16, 5.0, 0.4, 0.02), "sad": (0.8, "slowfall", -30, 2.6, 0.85, 0.08),
         "worried": (1.15, "tremolo", -23, 4.5, 0.6, 0.12), "surprise": (1.6, "rise", -14, 3.2, 0.35, 0.03)}
VOWELS = [(730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (570, 840, 2410), (300, 870, 2240),
          (660, 1720, 2410), (440, 1020, 2240)]


def _resonate(x: np.ndarray, freqs: tuple[int, ...]) -> np.ndarray:
    from scipy.signal import lfilter

    for k, f in enumerate(freqs):  # cascade of 2-pole resonators = vowel formants
        r = np.exp(-np.pi * (80 + 40 * k) / SR)
        x = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / SR), r * r], x)
    return x / (np.sqrt(np.mean(x**2)) + 1e-9)


def synth_voice(cue: int, dur: float, rng: np.random.Generator) -> np.ndarray:
    """Voice-like mono float32 [dur * SR] in [-1, 1] whose prosody carries the cue class."""
    from scipy.signal import lfilter

    mult, contour, db, rate, tilt, breath = VOICE[CLASSES[cue]]
    n = int(dur * SR)
    t = np.arange(n) / SR
    tau = t / dur
    shape = {"flat": 1 + 0.03 * np.sin(2 * np.pi * 0.7 * t), "fall": 1.15 - 0.3 * tau,
             "bounce": 1 + 0.12 * np.sin(2 * np.pi * rate / 2 * t) + 0.05 * tau, "slowfall": 1.0 - 0.15 * tau,
             "tremolo": 1 + 0.07 * np.sin(2 * np.pi * 6 * t), "rise": 0.85 + 0.55 * tau**1.5}[contour]
    wander = np.cumsum(rng.normal(0, 1, n // 160 + 1))[np.arange(n) // 160] * 0.002  # slow F0 jitter
    f0 = rng.uniform(105, 185) * mult * shape * (1 + wander)
    phase = np.cumsum(f0) / SR
    src = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)  # glottal pulse train, flat spectrum
    for a in (0.5, tilt):  # two one-pole low-passes: a glottal roll-off, then the class's spectral tilt
        src = lfilter([1 - a], [1, -a], src)
    src -= src.mean()

    # syllables: onsets at ~rate/s with jitter and occasional pauses; each a vowel and a smooth bump
    env, vowel_of = np.zeros(n), np.full(n, -1)
    onset = rng.uniform(0.08, 0.2)
    while onset < dur - 0.15:
        length = min(0.8 / rate * rng.uniform(0.8, 1.2), dur - onset)
        a, b = int(onset * SR), int((onset + length) * SR)
        env[a:b] += np.sin(np.linspace(0, np.pi, b - a)) ** 1.5
        vowel_of[a:b] = rng.integers(len(VOWELS))
        noise = rng.normal(0, 1, min(int(0.03 * SR), b - a))  # consonant burst at the onset
        env_c = np.linspace(1, 0, len(noise))
        src[a:a + len(noise)] += np.diff(noise, prepend=0) * env_c * 0.5
        onset += 1 / rate * rng.uniform(0.75, 1.25) + (rng.uniform(0.2, 0.4) if rng.random() < 0.12 else 0)
    voiced = np.zeros(n)
    for v in np.unique(vowel_of[vowel_of >= 0]):
        voiced += np.where(vowel_of == v, _resonate(src, VOWELS[v]), 0)
    voiced += breath * 8 * rng.normal(0, 1, n) * (vowel_of >= 0)
    y = voiced * env
    on = env > 0.5
    y *= 10 ** ((db + rng.uniform(-2.5, 2.5)) / 20) / (np.sqrt(np.mean(y[on] ** 2)) + 1e-9)
    y += rng.normal(0, 10 ** (rng.uniform(-55, -45) / 20), n)  # room noise
    return np.tanh(y).astype(np.float32)


# ---------------------------------------------------------------- encoding
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


# ---------------------------------------------------------------- dataset
def render_clip(row: dict[str, Any], seed: int, videos: Path) -> None:
    """Write videos/<name>.mp4 for one planned row, from an RNG seeded by (seed, name)."""
    rng = np.random.default_rng([seed, zlib.crc32(row["name"].encode("utf-8"))])
    path = videos / f"{row['name']}.mp4"
    if row["kind"] in ("empty", "corrupt"):
        with atomic_path(path, suffix=".mp4") as tmp:
            tmp.write_bytes(b"" if row["kind"] == "empty" else rng.bytes(48_000))
            _readable(tmp)
        return
    dur = rng.uniform(2.0, 3.0)
    audio = synth_voice(CLASSES.index(row["audio_cue"]), dur, rng)
    n = int(round(dur * FPS))
    frames = noface_frames(n, rng) if row["kind"] == "noface" else face_frames(row, n, rng)
    write_mp4(path, frames, audio)


def _render_all(rows: list[dict[str, Any]], seed: int, videos: Path, workers: int) -> None:
    videos.mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        for r in rows:
            render_clip(r, seed, videos)
        return
    import multiprocessing as mp

    # spawn, not fork: a forked child inherits OpenCV's thread pool mid-state and can deadlock
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
        list(pool.map(render_clip, rows, [seed] * len(rows), [videos] * len(rows), chunksize=4))


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n", float_format="%.2f", encoding="utf-8")
        _readable(tmp)


def _read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def _readme(cues: pd.DataFrame, history: list[str]) -> str:
    counts = cues.groupby("split").size().to_dict()
    kinds = cues[cues.kind != "normal"].name.tolist()
    return "\n".join([
        "expmae demo dataset (synthetic cues on real face photographs; see expmae/demo.py docstring)",
        *history,
        f"videos: {len(cues)} = labeled {counts.get('labeled', 0)}, unlabeled {counts.get('unlabeled', 0)}"
        f" (incl. bad/odd inputs), test {counts.get('test', 0)}",
        f"bad/odd inputs: {', '.join(kinds) or 'none'}",
        f"classes: {', '.join(CLASSES)}; each modality shows the true class's cue with p={P_CUE},",
        "otherwise another class's cue (uniform), independently per modality.",
        "files: videos/*.mp4, labels.csv, transcripts.csv, test.csv, test_labels.csv,",
        "       cues.csv (hidden truth incl. per-modality cue classes; not read by the pipeline)",
    ]) + "\n"


def _finish(out: Path, cues: pd.DataFrame, history: list[str]) -> None:
    _write_csv(out / "cues.csv", cues[CUE_COLS])
    with atomic_path(out / "README.txt") as tmp:
        tmp.write_text(_readme(cues, history), encoding="utf-8")
        _readable(tmp)


def make_dataset(out: str | os.PathLike, preset: str = "default", seed: int = 0, n_labeled: int | None = None,
                 n_unlabeled: int | None = None, n_test: int | None = None, force: bool = False,
                 bad_inputs: bool = True, workers: int = 1) -> pd.DataFrame:
    """Write a fresh demo dataset into `out`; returns the cues table (one row per video)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} is not empty (use --force to overwrite)")
        import shutil

        shutil.rmtree(out / "videos", ignore_errors=True)
        for f in ("labels.csv", "transcripts.csv", "test.csv", "test_labels.csv", "cues.csv", "README.txt"):
            (out / f).unlink(missing_ok=True)
    nl, nu, nt = PRESETS[preset]
    nl, nu, nt = (d if v is None else v for v, d in ((n_labeled, nl), (n_unlabeled, nu), (n_test, nt)))
    rng = np.random.default_rng(seed)
    n_ident = len(identities())
    order = rng.permutation(nl + nu + nt)  # names do not reveal the split
    names = [f"demo_{i:05d}" for i in order]
    rows = (plan_clips(sorted(names[:nl]), "labeled", rng, n_ident)
            + plan_clips(sorted(names[nl:nl + nu]), "unlabeled", rng, n_ident)
            + plan_clips(sorted(names[nl + nu:]), "test", rng, n_ident))
    if bad_inputs:
        odd = plan_clips([ODD_NAME, "corrupt_0001", "empty_0001", "noface_0001"], "unlabeled", rng, n_ident)
        for r, kind in zip(odd, ("odd_name", "corrupt", "empty", "noface")):
            r["kind"] = kind
        odd[2]["english"] = None  # the empty file has no transcript row
        unl = [r for r in rows if r["split"] == "unlabeled"]
        if unl:
            unl[0]["english"] = ""  # a normal video whose transcript is empty
        rows += odd
    _render_all(rows, seed, out / "videos", workers)

    df = pd.DataFrame(rows)
    lab = df[df.split == "labeled"].sort_values("name")
    test = df[df.split == "test"].sort_values("name")
    _write_csv(out / "labels.csv", lab[["name", "discrete", "valence"]])
    _write_csv(out / "transcripts.csv", df[df.english.notna()].sort_values("name")[["name", "english"]])
    _write_csv(out / "test.csv", test[["name"]])
    _write_csv(out / "test_labels.csv", test[["name", "discrete", "valence"]])
    _finish(out, df, [f"made with seed={seed}, preset={preset}"])
    return df[CUE_COLS]


def add_unlabeled(out: str | os.PathLike, n: int, seed: int, workers: int = 1) -> list[str]:
    """Add n NEW unlabeled videos (fresh names) to an existing demo folder; returns their names."""
    out = Path(out)
    videos = out / "videos"
    if not videos.is_dir() or not (out / "transcripts.csv").exists():
        raise FileNotFoundError(f"{out} is not a demo dataset (run make_dataset first)")
    taken = [int(p.stem[5:]) for p in videos.glob("demo_*.mp4") if p.stem[5:].isdigit()]
    start = max(taken, default=-1) + 1
    names = [f"demo_{i:05d}" for i in range(start, start + n)]
    assert not any((videos / f"{nm}.mp4").exists() for nm in names)
    rng = np.random.default_rng([seed, start])
    rows = plan_clips(names, "unlabeled", rng, len(identities()))
    _render_all(rows, seed, videos, workers)

    new = pd.DataFrame(rows)
    tr = pd.concat([_read_csv(out / "transcripts.csv"), new[["name", "english"]]], ignore_index=True)
    _write_csv(out / "transcripts.csv", tr)
    cues_path = out / "cues.csv"
    old = _read_csv(cues_path) if cues_path.exists() else pd.DataFrame(columns=CUE_COLS)
    history = [ln for ln in (out / "README.txt").read_text("utf-8").splitlines()
               if ln.startswith(("made with", "added"))] if (out / "README.txt").exists() else []
    new["valence"] = new.valence.map("{:.2f}".format)  # as _write_csv formats floats
    cues = pd.concat([old, new[CUE_COLS].astype(str)], ignore_index=True)
    _finish(out, cues, history + [f"added {n} unlabeled ({names[0]}..{names[-1]}) with seed={seed}"])
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m expmae.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/demo")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-labeled", type=int)
    ap.add_argument("--n-unlabeled", type=int)
    ap.add_argument("--n-test", type=int)
    ap.add_argument("--add-unlabeled", type=int, metavar="N", help="add N new unlabeled videos to --out")
    ap.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    ap.add_argument("--workers", type=int, default=1, help="processes used to render videos")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if a.add_unlabeled is not None:
            names = add_unlabeled(a.out, a.add_unlabeled, a.seed, workers=a.workers)
            msg = f"added {len(names)} unlabeled videos to {a.out}"
        else:
            df = make_dataset(a.out, a.preset, a.seed, a.n_labeled, a.n_unlabeled, a.n_test,
                              force=a.force, workers=a.workers)
            msg = f"wrote {len(df)} videos to {a.out}"
    except (FileExistsError, FileNotFoundError) as e:
        print(f"expmae.demo: {e}", file=sys.stderr)
        return 1
    print(f"{msg} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

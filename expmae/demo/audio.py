"""Demo voices: a voice-like source whose prosody (F0 level and contour, loudness, rate, tilt, breath)
carries the cue class, i.e. what eGeMAPS functionals measure."""
from __future__ import annotations

import numpy as np

from .spec import CLASSES, SR

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

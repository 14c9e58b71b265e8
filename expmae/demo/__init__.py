"""Seeded demo dataset in MER 2023 layout: real faces, synthetic emotion cues in all three modalities.

    python -m expmae.demo --out data/demo [--preset default|tiny] [--seed 0] [--force]
    python -m expmae.demo --out data/demo --add-unlabeled 12 --seed 7

Modules: spec (constants), text, visual, audio (one per modality), encode (files), dataset
(plan + render + CSVs), __main__ (CLI).

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

from .dataset import add_unlabeled, make_dataset
from .spec import CLASSES, FPS, ODD_NAME, SIZE

__all__ = ["CLASSES", "FPS", "ODD_NAME", "SIZE", "add_unlabeled", "make_dataset"]

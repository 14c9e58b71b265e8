"""What the demo draws from: classes, presets, cue probabilities, clip format (a leaf module)."""
from __future__ import annotations

CLASSES = ("neutral", "angry", "happy", "sad", "worried", "surprise")
PRESETS = {"default": (96, 192, 48), "tiny": (24, 24, 12)}  # labeled, unlabeled, test
P_CUE = 0.75          # each modality shows the true class's cue with this probability
P_MIXED_TEXT = 0.15   # share of transcripts that also carry another class's phrase
SIZE, FPS, SR = 256, 12, 16000  # frame side (px), frames/s, audio sample rate (Hz)
VALENCE_MEAN = {"neutral": 0.0, "angry": -3.0, "happy": 3.0, "sad": -3.5, "worried": -2.0, "surprise": 1.0}
# Test-split class priors the generator can draw (``--test-prior``); balanced when absent. mer2023 is
# MER 2023 test3's labeled counts (sad 31%, worried 5%; train has sad 11%, worried 14%), the prior shift
# the MER-SEMI score met (../shared/reference/mer.md, MERTools label-6way.npz).
TEST_PRIORS = {"balanced": (1, 1, 1, 1, 1, 1), "mer2023": (166, 183, 169, 257, 45, 14)}
ODD_NAME = "clip (1) \u00e9"  # space, parentheses, non-ASCII (NFC)
CUE_COLS = ["name", "split", "kind", "discrete", "valence", "visual_cue", "audio_cue", "text_cue", "identity"]

"""Moved: audio decoding lives in expmae.features.media, openSMILE in expmae.features.smile
(run any extractor with `python -m expmae.features extract`). Kept as a thin import shim."""
from expmae.features.media import AudioProblem, audio_reason, load_audio  # noqa: F401

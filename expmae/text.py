"""Moved: transcripts live in expmae.features.media, text encoders in expmae.features.hf_text
(run any extractor with `python -m expmae.features extract`). Kept as a thin import shim."""
from expmae.features.media import read_transcripts, shard_hashes  # noqa: F401

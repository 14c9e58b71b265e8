"""Run one extractor instance over one shard: read the modality's inputs, batch across videos,
pool per video, write results/features/<name>/<shard>.parquet (+ QC / frame-level npy).

Visual extractors come in two kinds, told apart by their `units` hook, not by name: per-crop
encoders (clip_image, timm, expmae_image) encode every crop and average per video; clip
encoders (expmae_video) encode one T-frame clip per video. Frame-level features are float16
.npy for every visual extractor: they are F ~ 16 x videos rows, so half the bytes matters, and
they are an analysis/side output (the per-video means in the Parquet table, which training
reads, are computed from the float32 features and stay float32). A clip encoder has no
frame-level features: its .npy holds [0, D].

One row per manifest video, in manifest order. A video whose modality is missing (no audio
stream, empty transcript, no face) or whose input fails to decode gets a zero vector and
mask False — never a dropped row, never a failed job. The model is loaded once per job.
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from expmae import weights
from expmae.io import config_hash, write_features, write_npy, write_table

from . import media
from .registry import Extractor, create

log = logging.getLogger("expmae.features")


def _progress(total: int, desc: str):
    from tqdm import tqdm

    # To the job log: a line every few seconds, not a carriage-return storm.
    return tqdm(total=total, desc=desc, unit="video", file=sys.stderr, mininterval=5, disable=total == 0)


def batch_size(ext: Extractor) -> int:
    """Items per encode call: `batch_size`, or on CPU `cpu_batch_size` when the extractor sets one.

    On an idle 2-core CPU big batches are slower, not faster (benchmarks/bench_extractors.py:
    wav2vec2 6.6 clips/s at 1 per call vs 4.5 at 8; timm 114 crops/s at 8 vs 74 at 128): the
    matmuls are already efficient and a batch only adds padding and cache misses. Batching is
    what a GPU needs, so `batch_size` stays the GPU setting."""
    if ext.device == "cpu" and ext.p.get("cpu_batch_size"):
        return max(1, int(ext.p["cpu_batch_size"]))
    return max(1, int(ext.p["batch_size"]))


def _encode_batches(ext: Extractor, items: list[Any], order: Sequence[int], on_error: Callable[[int, str], None],
                    bar: Any) -> dict[int, np.ndarray]:
    """Encode items in batches of ext.p['batch_size'] following `order` (similar lengths together).
    A failing batch is retried one item at a time, so one bad input costs only its own row."""
    bs = batch_size(ext)
    out: dict[int, np.ndarray] = {}
    for s in range(0, len(order), bs):
        idx = list(order[s:s + bs])
        try:
            z = ext.encode([items[i] for i in idx])                      # [b, D]
            out.update(zip(idx, z))
        except Exception as err:  # noqa: BLE001
            log.warning("batch failed (%s); retrying one at a time", err)
            for i in idx:
                try:
                    out[i] = ext.encode([items[i]])[0]
                except Exception as e1:  # noqa: BLE001
                    on_error(i, f"encoder failed: {str(e1)[:160]}")
        bar.update(len(idx))
    return out


def _encode_chunk(ext: Extractor, wavs: dict[int, np.ndarray], X: np.ndarray, reason: list[str], bar: Any) -> None:
    """Encode the decoded wavs into their rows of X (an encoder failure is the row's reason), then empty wavs."""
    order = sorted(wavs, key=lambda j: -len(wavs[j]))                # longest first: little padding
    for j, z in _encode_batches(ext, wavs, order, lambda j, r: reason.__setitem__(j, r), bar).items():
        X[j] = z
    wavs.clear()


def run_audio(ext: Extractor, manifest: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """-> X [N, D], mask [N], qc (name, ok, reason, seconds). Decodes in chunks (bounded memory)."""
    names, paths = manifest["name"].tolist(), manifest["path"].tolist()
    sr, max_s = int(ext.p.get("sample_rate", 16000)), float(ext.p.get("max_seconds", 0) or 0)
    min_s = float(ext.p.get("min_seconds", 0.1))
    X = np.zeros((len(names), ext.dim), np.float32)
    reason = [""] * len(names)
    secs = [0.0] * len(names)
    chunk = max(64, 8 * int(ext.p["batch_size"]))
    # every decode in one guarded worker with a per-video time limit (a stuck decode is a QC row)
    timeout = float(ext.p.get("timeout_s", media.DECODE_TIMEOUT_S))
    with _progress(len(names), ext.key) as bar:
        wavs: dict[int, np.ndarray] = {}
        for i, w in media.decode_all(paths, sr, max_s, timeout):
            if isinstance(w, str):  # any decode failure is a QC row, not a crash
                reason[i] = w
            elif len(w) / sr < min_s:
                secs[i], reason[i] = len(w) / sr, f"audio shorter than {min_s} s"
            else:
                secs[i], wavs[i] = len(w) / sr, w
            if reason[i]:
                log.warning("%s: %s", names[i], reason[i])
                bar.update(1)
            if len(wavs) >= chunk:  # bounded memory: encode a chunk at a time
                _encode_chunk(ext, wavs, X, reason, bar)
        _encode_chunk(ext, wavs, X, reason, bar)
    mask = np.array([not r for r in reason], bool)
    qc = pd.DataFrame({"name": names, "ok": mask, "reason": reason, "seconds": secs})
    return X, mask, qc


def run_text(ext: Extractor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """texts [N] ("" = missing) -> X [N, D], mask [N]."""
    X = np.zeros((len(texts), ext.dim), np.float32)
    mask = np.array([bool(t) for t in texts], bool)
    order = sorted(np.flatnonzero(mask).tolist(), key=lambda i: -len(texts[i]))
    with _progress(int(mask.sum()), ext.key) as bar:
        got = _encode_batches(ext, texts, order, lambda i, r: mask.__setitem__(i, False), bar)
    for i, z in got.items():
        X[i] = z
    return X, mask


def run_visual(ext: Extractor, names: Sequence[str], faces_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face crops of the shard -> frame-level features [F, D] (frames.parquet row order; [0, D]
    for a clip encoder) and the per-video mean of the item features X [N, D], mask [N].
    Items (crops or clips, ext.units) of all videos are batched together; a missing or
    unreadable faces cache is a shard without faces (mask False everywhere)."""
    from expmae.faces.store import load_face_shard, video_means

    crops, frames = load_face_shard(faces_dir)                                 # [F0, S, S, 3] memmap, frames
    item_names, rows = ext.units(frames)                                       # [I], rows [I] or [I, T]
    F = np.zeros((len(rows), ext.dim), np.float32)
    bs = max(1, batch_size(ext) // ext.crops_per_item)                         # batch_size counts crops
    with _progress(len(rows), ext.key) as bar:
        bar.unit = "crop" if rows.ndim == 1 else "clip"
        for s in range(0, len(rows), bs):
            r = rows[s:s + bs]                                                 # read one batch from the memmap
            F[s:s + len(r)] = ext.encode(np.asarray(crops[r.reshape(-1)]).reshape(*r.shape, *crops.shape[1:]))
            bar.update(len(r))
    X, mask = video_means(list(names), np.asarray(item_names), F)
    return (F if rows.ndim == 1 else np.zeros((0, ext.dim), np.float32)), X, mask


def extract(name: str, params: dict[str, Any], manifest_path: str, out: str, *, faces: str | None = None,
            transcripts: str | None = None, asr: Sequence[str] = (), encoding: str = "", qc_out: str | None = None,
            frames_out: str | None = None, encoder: str | None = None, rebuild_encoder: bool = True) -> dict[str, Any]:
    """Run instance `name` (params = its config entry + device/column) on one shard; returns the meta written.
    `encoder`: the encoder file of an extractor with an encoder_section (expmae_image / expmae_video), checked
    against its recorded sha256 first; a corrupt one is removed when `rebuild_encoder` (the workflow's: the
    pretraining rule rebuilds it), else refused (a bundle's).

    Always computes: whether a job's output is stale is Snakemake's decision alone (it removes a job's
    outputs before running it), so there is no second, in-job cache check here."""
    t0 = time.time()
    params = dict(params)
    reg_name = params.pop("extractor")
    device_spec = str(params.pop("device", "auto"))
    column = str(params.pop("column", "english"))
    key = f"features.{name}"
    manifest = pd.read_parquet(manifest_path)
    names = manifest["name"].astype(str).tolist()
    from .registry import spec

    cls, _ = spec(reg_name, f"{key}.extractor")
    texts = source = None
    if cls.modality == "text":
        csv, warns = media.read_transcripts(transcripts, column, encoding)
        for w in warns:
            log.warning(w)
        texts, source = media.shard_texts(names, csv, media.read_asr(list(asr)))
    if cls.modality == "visual" and not faces:
        raise SystemExit(f"{key}: a visual extractor needs --faces (the shard's faces folder)")
    if cls.encoder_section and not encoder:
        raise SystemExit(f"{key}: extractor {reg_name} needs --encoder "
                         f"(results/{cls.encoder_section}/encoder.safetensors)")

    # verified once, before any weight is read: its sha256 goes into the table's metadata
    encoder_sha = weights.verified(encoder, rebuild_encoder, "MAE encoder") if encoder else ""
    chash = config_hash({"extractor": reg_name, "version": cls.version,
                         **{k: v for k, v in params.items() if k not in cls.hash_ignore}})
    qc_out = qc_out or out.replace(".parquet", ".qc.parquet")

    if cls.gpu:
        from expmae.device import device_name  # imports torch only when a GPU may be used

        device = device_name(device_spec)
    else:
        device = "cpu"  # CPU-only extractors (openSMILE) never import torch: 1-2 s less per job
    ext = create(reg_name, params, key, device, inputs={"faces": faces, "encoder": encoder, "encoder_sha256": encoder_sha})
    try:
        ext.load()
    except Exception as err:  # noqa: BLE001 — a weights file that cannot be read: one line naming the key and file
        src = next((f"{key}.{k} ({params[k]})" for k in ("pretrained", "model") if params.get(k)), key)
        why = str(err).splitlines()[0][:200] if str(err) else ""
        raise SystemExit(f"config key {src}: its weights cannot be loaded ({type(err).__name__}: {why})") from None
    meta: dict[str, Any] = {"extractor": name, "registry_name": reg_name, "model_id": ext.model_id,
                            "modality": cls.modality, "config_hash": chash,
                            "params": {**params, "device": device_spec}, "version": cls.version,
                            "backend": getattr(ext, "backend", "torch" if cls.gpu else "native"), **ext.info()}
    if getattr(cls, "precomputed", False):  # vectors computed elsewhere (expmae.features.folder): read, not encoded
        X, mask, qc, provenance = ext.read(names)
        write_table(qc_out, qc)
        meta.update(provenance)
    elif cls.modality == "audio":
        X, mask, qc = run_audio(ext, manifest)
        write_table(qc_out, qc)
        if hasattr(ext, "feature_names"):
            meta["feature_names"] = ext.feature_names
    elif cls.modality == "text":
        X, mask = run_text(ext, texts)
        meta["missing"] = [n for n, m in zip(names, mask) if not m]
        meta["text_source"] = {s: source.count(s) for s in ("csv", "asr", "none")}
    else:
        Fr, X, mask = run_visual(ext, names, faces)
        meta.update(n_frames=int(len(Fr)), n_videos=len(names), n_with_faces=int(mask.sum()), shard=Path(faces).name)
        meta.setdefault("level", "video (mean of frame features)")
        if frames_out:
            write_npy(frames_out, Fr.astype(np.float16))  # [F, D], rows as in frames.parquet (module doc: why float16)
    write_features(out, names, X, mask, meta)
    log.info("%s: %d/%d videos with %s, dim %d, %.1fs", name, mask.sum(), len(mask), cls.modality, X.shape[1],
             time.time() - t0)
    return {**meta, "dim": int(X.shape[1])}

"""Per-shard expMAE features: encode every face crop, average per video (image MAE), or encode
one T-frame face clip per video (video MAE, feature set `expmae_video`).

    python -m expmae.mae.features --faces results/faces/s00003 --manifest results/ingest/s00003.parquet \
        --encoder results/mae/encoder.safetensors --out results/features/expmae/s00003.parquet \
        [--frames-out results/features/expmae/s00003.frames.npy] --params '{"device": "auto", "batch_size": 256}'

The encoder file's metadata says which kind it is. One row per manifest video, in manifest
order; videos without crops get mask False and a zero vector. The table's metadata names the
encoder file's sha256 and its training metadata, so every feature table says which checkpoint
produced it. Clips shorter than T frames are resampled as in clips.clip_rows (frames repeat).
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from expmae.device import device_name
from expmae.faces.store import load_face_shard, video_means
from expmae.io import config_hash, file_sha256, write_features, write_npy
from expmae.npnet import MAEImageEncoder, read_encoder_info

log = logging.getLogger("expmae.mae.features")
# torch and the torch models are imported inside the functions that need them: on CPU the
# image encoder runs on numpy (npnet.MAEImageEncoder) and the job never imports torch.


def encode_crops(model: Any, crops: np.ndarray, rows: np.ndarray | None = None, batch_size: int = 256) -> np.ndarray:
    """uint8 crops [F0, S, S, 3] (memmap ok), rows [F] -> float32 [F, D] (bf16 autocast on GPU).

    `model`: a torch MAE, or an npnet.MAEImageEncoder (crops already at its img_size).
    Reads one batch at a time so a large shard's crops never sit in memory all at once.
    """
    rows = np.arange(len(crops)) if rows is None else np.asarray(rows, np.int64)
    if isinstance(model, MAEImageEncoder):
        out = np.zeros((len(rows), model.dim), np.float32)
        for i in range(0, len(rows), batch_size):
            out[i : i + batch_size] = model.encode(np.ascontiguousarray(crops[rows[i : i + batch_size]]))
        return out
    import torch

    from .data import normalize

    device = next(model.parameters()).device
    out = np.zeros((len(rows), model.cfg.embed_dim), np.float32)
    with torch.inference_mode():
        for i in range(0, len(rows), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(crops[rows[i : i + batch_size]])).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                z = model.encode(normalize(x, model.cfg.img_size))  # [b, D]
            out[i : i + len(z)] = z.float().cpu().numpy()
    return out


def encode_clips(model: Any, crops: np.ndarray, clip_rows: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """uint8 crops [F0, S, S, 3] (memmap ok), crop rows [V, T] -> float32 [V, D], one clip per row (VideoMAE)."""
    import torch

    from .clips import clip_tensor

    device = next(model.parameters()).device
    out = np.zeros((len(clip_rows), model.cfg.embed_dim), np.float32)
    with torch.inference_mode():
        for i in range(0, len(clip_rows), batch_size):
            rows = clip_rows[i : i + batch_size]  # [b, T]
            x = clip_tensor(np.asarray(crops[rows.reshape(-1)]).reshape(*rows.shape, *crops.shape[1:]),
                            model.cfg.img_size).to(device)  # [b, 3, T, H, W]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out[i : i + len(rows)] = model.encode(x).float().cpu().numpy()
    return out


def shard_video_features(model: Any, faces: str | Path, names: Sequence[str],
                         batch_size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode one face shard -> (X [N, D] per video in `names` order, mask [N], frame features [F, D]).

    Image MAE (torch MAE or npnet.MAEImageEncoder): every crop is encoded, X is the per-video
    mean (frame features [F, D] in frames.parquet order). Video MAE: one clip per video, no
    frame features ([0, D]).
    """
    D = model.dim if isinstance(model, MAEImageEncoder) else model.cfg.embed_dim
    crops, frames = load_face_shard(faces)
    if crops is None or not len(frames):
        return np.zeros((len(names), D), np.float32), np.zeros(len(names), bool), np.zeros((0, D), np.float32)
    if hasattr(model, "cfg") and hasattr(model.cfg, "num_frames"):  # VideoMAE
        from .clips import video_clips

        vnames, rows = video_clips(frames, model.cfg.num_frames)
        feats = encode_clips(model, crops, rows, max(1, batch_size // model.cfg.num_frames))  # [V, D]
        X, mask = video_means(names, np.asarray(vnames), feats)  # one clip each: the "mean" is the clip
        return X, mask, np.zeros((0, D), np.float32)
    rows_ = frames["crop_row"].to_numpy(np.int64)  # row i of frames.parquet -> its crop
    feats = encode_crops(model, crops, rows_, batch_size)  # [F, D]
    X, mask = video_means(names, frames["name"].astype(str).to_numpy(), feats)
    return X, mask, feats


def _crop_size(faces: str | Path) -> int | None:
    """Side of the shard's face crops, from crops.npy's header (None: no readable crops)."""
    try:
        shape = np.load(Path(faces) / "crops.npy", mmap_mode="r", allow_pickle=False).shape
    except Exception:  # noqa: BLE001 — empty or unreadable: shard_video_features reports it
        return None
    return int(shape[1]) if len(shape) == 4 else None


def load_model(encoder: str | Path, faces: str | Path, device_spec: str,
               backend: str = "auto") -> tuple[Any, dict[str, Any], str]:
    """-> (model, encoder metadata, backend used). backend auto: on CPU an image encoder whose
    img_size is the crop size runs on numpy (no torch import, ~2.5 s less per job); a video
    MAE, a resize, or a GPU use torch. backend torch | numpy forces one."""
    info = read_encoder_info(encoder)
    cfg = info["model_config"]
    size = _crop_size(faces)
    numpy_ok = info.get("kind", "image") == "image" and size in (None, cfg["img_size"])
    if backend == "numpy" and not numpy_ok:
        raise ValueError(f"backend numpy needs an image encoder with img_size {size} (the crop size); "
                         f"got kind {info.get('kind')!r}, img_size {cfg['img_size']}")
    if backend == "numpy" or (backend == "auto" and numpy_ok and device_name(device_spec) == "cpu"):
        return MAEImageEncoder.from_file(encoder), info, "numpy"
    from expmae.device import resolve_device

    from .checkpoint import load_encoder

    model, info = load_encoder(encoder, resolve_device(device_spec))
    return model, info, "torch"


def extract(faces: str | Path, manifest: str | Path, encoder: str | Path, out: str | Path,
            frames_out: str | Path | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    params = dict(params or {})
    names = pd.read_parquet(manifest, columns=["name"])["name"].astype(str).tolist()
    model, enc_meta, backend = load_model(encoder, faces, str(params.get("device", "auto")),
                                          str(params.get("backend", "auto")))
    cfg = enc_meta["model_config"]
    D = int(cfg["embed_dim"])
    X, mask, feats = shard_video_features(model, faces, names, int(params.get("batch_size", 256)))

    sha = file_sha256(encoder)
    video = enc_meta.get("kind", "image") == "video"
    name = "expmae_video" if video else "expmae"
    level = f"video (one {cfg['num_frames']}-frame clip)" if video else "video (mean of frame features)"
    meta = {"extractor": name, "model_id": f"{name}-mae@{sha[:12]}", "encoder_sha256": sha, "encoder_meta": enc_meta,
            "dim": D, "level": level, "n_frames": int(len(feats)), "backend": backend,
            "n_videos": len(names), "n_with_faces": int(mask.sum()), "shard": Path(faces).name,
            "config_hash": config_hash({k: v for k, v in params.items() if k not in ("batch_size", "backend")})}
    if frames_out is not None and not video:
        write_npy(frames_out, feats.astype(np.float16))
    write_features(out, names, X, mask, meta)
    log.info("%s: %d videos (%d with faces), %d frames, dim %d", Path(faces).name, len(names), mask.sum(), len(feats), D)
    return meta


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="expMAE per-shard features")
    ap.add_argument("--faces", required=True, help="face cache folder results/faces/{shard}")
    ap.add_argument("--manifest", required=True, help="ingest manifest results/ingest/{shard}.parquet")
    ap.add_argument("--encoder", required=True, help="results/mae/encoder.safetensors or results/mae_video/...")
    ap.add_argument("--out", required=True, help="feature table .parquet")
    ap.add_argument("--frames-out", default=None, help="optional float16 [F, D] frame features .npy")
    ap.add_argument("--params", default="{}", help='JSON: {"device": "auto", "batch_size": 256}')
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    extract(args.faces, args.manifest, args.encoder, args.out, args.frames_out, json.loads(args.params))


if __name__ == "__main__":
    main()

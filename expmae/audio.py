"""Audio stage: 16 kHz mono speech from each video, eGeMAPS (or ComParE) functionals via openSMILE.

Decoding uses PyAV (FFmpeg): it reports a missing audio stream or a broken file as a
Python exception, so one bad video becomes a QC row (mask False) instead of killing the
shard job. One job per shard; the openSMILE extractor is built once per job.

    python -m expmae.audio --manifest results/ingest/s00000.parquet \
        --out results/features/egemaps/s00000.parquet --params '{"sample_rate": 16000, ...}'
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import time

import numpy as np
import pandas as pd

from expmae.io import config_hash, write_features, write_table

log = logging.getLogger("expmae.audio")

DEFAULTS = {"sample_rate": 16000, "feature_set": "eGeMAPSv02", "min_seconds": 0.1}


class AudioProblem(ValueError):
    """A clear, expected reason (no stream, too short, empty file) — reported verbatim in QC."""


def load_audio(path: str, sample_rate: int = 16000) -> np.ndarray:
    """Decode the first audio stream to float32 mono at `sample_rate`. Raises AudioProblem('no audio stream')."""
    import av

    if not os.path.exists(path):
        raise AudioProblem("file missing")
    if os.path.getsize(path) == 0:
        raise AudioProblem("zero-byte file")

    with av.open(path) as container:
        streams = container.streams.audio
        if not streams:
            raise AudioProblem("no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        for frame in container.decode(streams[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):  # flush
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def make_smile(feature_set: str):
    import opensmile

    try:
        fs = getattr(opensmile.FeatureSet, feature_set)
    except AttributeError:
        names = [f.name for f in opensmile.FeatureSet]
        raise SystemExit(f"config key audio.feature_set: unknown openSMILE set {feature_set!r}; one of {names}")
    return opensmile.Smile(feature_set=fs, feature_level=opensmile.FeatureLevel.Functionals)


def extract_shard(manifest: pd.DataFrame, params: dict) -> tuple[np.ndarray, np.ndarray, list[str], pd.DataFrame]:
    """-> features [N, D] float32, mask [N] bool, feature names, qc rows (name, ok, reason, seconds)."""
    p = {**DEFAULTS, **params}
    smile = make_smile(p["feature_set"])
    dim = len(smile.feature_names)
    feats = np.zeros((len(manifest), dim), np.float32)
    mask = np.zeros(len(manifest), bool)
    qc = []
    for i, (name, path) in enumerate(zip(manifest["name"], manifest["path"])):
        reason, secs = "", 0.0
        try:
            wav = load_audio(path, p["sample_rate"])
            secs = len(wav) / p["sample_rate"]
            if secs < p["min_seconds"]:
                raise AudioProblem(f"audio shorter than {p['min_seconds']} s")
            vals = smile.process_signal(wav, p["sample_rate"]).to_numpy(np.float32).reshape(-1)
            if not np.all(np.isfinite(vals)):
                vals = np.nan_to_num(vals, nan=0.0, posinf=0.0, neginf=0.0)
            feats[i], mask[i] = vals, True
        except Exception as err:  # noqa: BLE001 — any decode failure is a QC row, not a crash
            reason = _short(err)
            log.warning("%s: %s", name, reason)
        qc.append({"name": name, "ok": bool(mask[i]), "reason": reason, "seconds": secs})
    return feats, mask, list(smile.feature_names), pd.DataFrame(qc)


def _short(err: Exception) -> str:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, AudioProblem):
        return msg
    return f"undecodable audio: {msg[:160]}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--qc", help="per-video QC parquet (default: <out>.qc.parquet)")
    ap.add_argument("--params", default="{}")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = {**DEFAULTS, **json.loads(a.params)}
    manifest = pd.read_parquet(a.manifest)
    t0 = time.time()
    X, mask, names, qc = extract_shard(manifest, params)
    meta = {"extractor": "egemaps", "model_id": f"opensmile:{params['feature_set']}", "config_hash": config_hash(params),
            "feature_names": names, "params": params}
    write_table(a.qc or a.out.replace(".parquet", ".qc.parquet"), qc)
    write_features(a.out, manifest["name"].tolist(), X, mask, meta)
    print(f"audio: {mask.sum()}/{len(mask)} videos with audio, dim {X.shape[1]}, {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()

"""Inputs of the extractors: audio decoding (PyAV) and transcripts (CSV, then ASR).

Decoding uses PyAV (FFmpeg): a missing audio stream or a broken file is a Python exception,
so one bad video becomes a QC row (mask False) instead of killing the shard job.
The transcript CSV is tolerant: missing file, non-UTF-8 bytes and empty cells never stop a run.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from expmae.io import config_hash, read_csv_tolerant


class AudioProblem(ValueError):
    """A clear, expected reason (no stream, too short, empty file) — reported verbatim in QC."""


def load_audio(path: str, sample_rate: int = 16000, max_seconds: float = 0.0) -> np.ndarray:
    """Decode the first audio stream to float32 mono [T] at `sample_rate` (first `max_seconds` if > 0)."""
    import av

    if not os.path.exists(path):
        raise AudioProblem("file missing")
    if os.path.getsize(path) == 0:
        raise AudioProblem("zero-byte file")
    limit = int(max_seconds * sample_rate) if max_seconds > 0 else None
    with av.open(path) as container:
        streams = container.streams.audio
        if not streams:
            raise AudioProblem("no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        n = 0
        for frame in container.decode(streams[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                n += len(chunks[-1])
            if limit is not None and n >= limit:  # long videos: stop decoding early
                break
        else:
            for out in resampler.resample(None):  # flush
                chunks.append(out.to_ndarray().reshape(-1))
    wav = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    return wav[:limit] if limit is not None else wav


def audio_reason(err: Exception) -> str:
    """Short QC reason of a decode failure."""
    msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return msg if isinstance(err, AudioProblem) else f"undecodable audio: {msg[:160]}"


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


def read_asr(paths: list[str]) -> dict[str, str]:
    """name -> ASR text from results/asr/<shard>.parquet files (rows that transcribed)."""
    out: dict[str, str] = {}
    for p in paths:
        if p and Path(p).exists():
            t = pd.read_parquet(p, columns=["name", "text", "ok"])
            out.update({n: s for n, s, ok in zip(t["name"], t["text"], t["ok"]) if ok})
    return out


def shard_texts(names: list[str], csv: dict[str, str], asr: dict[str, str]) -> tuple[list[str], list[str]]:
    """The text of each video and where it came from: the CSV row wins, else ASR, else "" (missing)."""
    texts, source = [], []
    for n in names:
        if n in csv:
            texts.append(csv[n]), source.append("csv")
        elif n in asr:
            texts.append(" ".join(asr[n].split())), source.append("asr")
        else:
            texts.append(""), source.append("none")
    return texts, source

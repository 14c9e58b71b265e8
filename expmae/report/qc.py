"""The QC table, results/qc/summary.tsv: one row per (video, stage) problem, name / stage / reason.

Stages and their reasons (the stable vocabulary, docs/troubleshooting.md "Read the QC table first"; the text after a
colon is detail):
    ingest   duplicate id | duplicate content | hidden file | file name not UTF-8 | folder scanned twice |
             unreadable folder | cannot stat
    inputs   bytes replaced | unparsable CSV | empty CSV | file not found | transcript column missing |
             no name column                       (name: the CSV's base name)
    labels   unknown label | non-numeric valence | duplicate label row | conflicting label rows |
             label row without a name | label for a video that was not found | in both label CSV and test list |
             labeled copy of a test clip | groups row without a name | empty group | group for a video that
             was not found | duplicate groups row | several groups
    test     test name without a video
    faces    failures: zero-byte file | file missing | undecodable | no video stream | no frames | no face |
             still image; notes of readable videos: no audio | rotated N | 1 frame | variable frame rate |
             large WxH | partly decoded | decord fallback
    audio    no audio stream | zero-byte file | file missing | audio shorter than 0.1 s | undecodable audio
    asr      as audio (videos ASR could not transcribe)
    text     no transcript | duplicate transcript row
    train    no usable modality (labeled: left out of training and scoring; test: predicted from the class prior)
Names are video ids (or a CSV's / folder's base name), never paths: the table is meant to be shared.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from expmae.io import read_meta

COLUMNS = ["name", "stage", "reason"]


def faces_rows(path: str) -> list[dict]:
    """Failures (not ok) and, for readable videos, each QC note as its own row."""
    q = pd.read_parquet(path)
    rows = [{"name": r.name, "stage": "faces", "reason": r.reason} for r in q.itertuples() if not r.ok]
    for r in q.itertuples():
        notes = getattr(r, "notes", "") or ""
        # notes are comma-separated; a note's own detail may hold commas only inside parentheses
        rows += [{"name": r.name, "stage": "faces", "reason": n} for n in split_notes(notes)]
    return rows


def split_notes(notes: str) -> list[str]:
    """'no audio, partly decoded (x, y), 1 frame' -> ['no audio', 'partly decoded (x, y)', '1 frame']."""
    out, depth, cur = [], 0, ""
    for ch in notes:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [n for n in [*out, cur.strip()] if n]


def stage_rows(path: str, stage: str) -> list[dict]:
    q = pd.read_parquet(path)
    return [{"name": r.name, "stage": stage, "reason": r.reason} for r in q.itertuples() if not r.ok]


def qc_table(faces_qc: list[str], audio_qc: list[str], text: list[str], inputs_qc: str | None,
             label_issues: list[dict], asr: list[str] = (), folder_qc: list[str] = ()) -> pd.DataFrame:
    """One row per (video, stage) problem: name, stage, reason. `inputs_qc`: the inputs check's table
    (results/qc/inputs.tsv: ingest issues, CSV problems, test names without a video, duplicate content).
    `folder_qc`: the QC tables of feature sets read from a folder (results/features/<set>/<shard>.qc.parquet;
    extractor folder): a video without a usable vector there is a row of stage `features:<set>`, whatever the
    other sets have (unlike audio, where the first set stands for every audio extractor)."""
    rows: list[dict] = []
    for p in faces_qc:
        rows += faces_rows(p)
    for p in audio_qc:
        rows += stage_rows(p, "audio")
    for p in folder_qc:
        rows += stage_rows(p, f"features:{Path(p).parent.name}")
    for p in asr:  # videos the ASR stage could not transcribe (no audio, undecodable)
        rows += stage_rows(p, "asr")
    for p in text:
        rows += [{"name": n, "stage": "text", "reason": "no transcript"} for n in read_meta(p).get("missing", [])]
    if inputs_qc and Path(inputs_qc).exists():
        rows += pd.read_csv(inputs_qc, sep="\t", dtype=str, keep_default_na=False).to_dict("records")
    rows += label_issues
    return pd.DataFrame(rows, columns=COLUMNS).drop_duplicates(ignore_index=True)


def add_qc_arguments(ap: argparse.ArgumentParser) -> None:
    """The per-shard files whose QC rows a job gathers for qc_table (the report, the predict job): one home
    for the flags, so both jobs read the same inputs under the same names."""
    ap.add_argument("--faces-qc", nargs="*", default=[], help="the face stage's qc.parquet per shard")
    ap.add_argument("--audio-qc", nargs="*", default=[], help="an audio feature table per shard (its QC columns)")
    ap.add_argument("--text", nargs="*", default=[], help="a text feature table per shard (videos without transcript)")
    ap.add_argument("--asr", nargs="*", default=[], help="the ASR table per shard (videos it could not transcribe)")
    ap.add_argument("--folder-qc", nargs="*", default=[], help="QC table per shard of each set read from a folder")


def complete_submission(text: str, test_names: list[str], classes: list[str]) -> tuple[str, list[str]]:
    """Submission CSV text with a row for every listed test name: scoring needs each one. A name without
    a video gets the submission's most frequent class (a chance-level guess) and valence 0; its QC row
    (stage test) flags it. -> (CSV text, the names added)."""
    import io

    sub = pd.read_csv(io.StringIO(text), dtype={"name": str})
    missing = [n for n in test_names if n not in set(sub["name"])]
    if not missing:
        return text, []
    guess = sub["discrete"].mode().iloc[0] if len(sub) else classes[0]
    add = pd.DataFrame({"name": missing, "discrete": guess, "valence": 0.0})
    return pd.concat([sub, add], ignore_index=True).to_csv(index=False), missing

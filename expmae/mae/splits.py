"""Which splits of the data MAE pretraining sees (config mae.pretrain_splits / mae_video.pretrain_splits).

A video's split is the classifiers' rule (expmae/train/data.py): in the label CSV with a known class =
`labeled`, in the test list (data.test) = `test` (a name in both counts as test), any other registered
video = `unlabeled`. Pretraining on test videos is transductive: the encoder has seen the (unlabeled)
test inputs, never their labels. MER-SEMI allows it, and the paper does it (all three splits, the
default); leave `test` out for an inductive encoder.

No torch here: the report reads transductive_summary() from the pretraining jobs' meta.json files.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

SPLITS = ("labeled", "unlabeled", "test")


def video_splits(labels: str | Path | None, test: str | Path | Sequence[str | Path] | None, classes: Sequence[str],
                 encoding: str = "") -> dict[str, str]:
    """name -> labeled | test for the names of the label CSV (known classes only) and the test list
    (test wins); every other name is unlabeled (split_of). Read with expmae.labels (QC rows dropped:
    the inputs check reports them). No classes: every label in the CSV is one."""
    from expmae.labels import read_csv, read_labels, read_names, test_lists

    if not classes and labels and Path(labels).exists():  # a direct call without classes: every label seen
        df, _ = read_csv(labels, encoding)
        classes = sorted({str(v).strip().lower() for v in df.get("discrete", []) if str(v).strip()})
    lab, _ = read_labels(str(labels) if labels else None, list(classes), encoding)
    names = [n for t in test_lists(test) if t for n in read_names(str(t), encoding)[0]]
    return {str(n): "labeled" for n in lab["name"]} | {str(n): "test" for n in names}


def cli_args(labels: str | None, test: str | Sequence[str] | None, classes: Sequence[str],
             encoding: str | None = "") -> str:
    """The pretraining job's --labels/--test/--classes/--encoding flags (the set ones, shell-quoted; --test once
    per test list: data.test and the data.tracks label CSVs)."""
    import shlex

    from expmae.labels import test_lists

    flags = [("--labels", labels), *(("--test", t) for t in test_lists(test)), ("--classes", ",".join(classes)),
             ("--encoding", encoding)]
    return " ".join(f"{f} {shlex.quote(str(v))}" for f, v in flags if v)


def add_split_args(ap: argparse.ArgumentParser) -> None:
    """The pretraining job's --labels / --test / --classes / --encoding (cli_args writes them)."""
    ap.add_argument("--labels", help="label CSV (data.labels): its videos with a known class are split labeled")
    ap.add_argument("--test", action="append", default=[],
                    help="test list (data.test, the data.tracks label CSVs; repeatable): its videos are split test")
    ap.add_argument("--classes", default="", help="comma-separated classes (config classes)")
    ap.add_argument("--encoding", default="", help="data.encoding of the CSVs")


def splits_from_args(args: argparse.Namespace, section: str, filters: bool, log: logging.Logger) -> dict | None:
    """name -> split from the parsed lists; None when neither was given (a direct call: no counts in
    meta.json, and no filtering possible). An unusable list stops a job that filters (it decides the
    videos) and only drops the counts otherwise."""
    if not (args.labels or args.test):
        return None
    try:
        return video_splits(args.labels, args.test, [c for c in args.classes.split(",") if c], args.encoding)
    except (SystemExit, ValueError, OSError) as e:
        if filters:
            raise SystemExit(f"error: {section}.pretrain_splits needs the lists: {e}") from None
        log.warning("no videos_by_split in meta.json (every video is pretrained on anyway): %s", e)
        return None


def split_of(name: str, splits: Mapping[str, str]) -> str:
    return splits.get(str(name), "unlabeled")


def excludes(pretrain_splits: Sequence[str]) -> bool:
    """Whether pretrain_splits leaves a split out (then, and only then, the videos are filtered)."""
    return not set(SPLITS) <= set(pretrain_splits)


def keep_frames(frames: pd.DataFrame, splits: Mapping[str, str], pretrain_splits: Sequence[str]) -> pd.DataFrame:
    """The rows of one shard's frames table whose video is in one of pretrain_splits (order kept)."""
    keep = set(pretrain_splits)
    names = frames["name"].astype(str)
    by_name = {n: split_of(n, splits) in keep for n in names.unique()}
    return frames[names.map(by_name).to_numpy(bool)]


def count_by_split(names: Sequence[str], splits: Mapping[str, str]) -> dict[str, int]:
    """{labeled: n, unlabeled: n, test: n} over distinct names."""
    out = dict.fromkeys(SPLITS, 0)
    for n in set(map(str, names)):
        out[split_of(n, splits)] += 1
    return out


def transductive_summary(meta_paths: Sequence[str | Path]) -> dict[str, Any]:
    """What the MAE encoders were pretrained on, from their meta.json files (results/mae/meta.json,
    results/mae_video/meta.json) -> {"transductive": bool (any encoder saw a test video),
    "by_encoder": {"mae": {"pretrain_splits", "videos_by_split", "transductive"}, "mae_video": ...},
    "unknown": [encoders whose meta.json has no videos_by_split: from before the key, or a direct call
    without the lists]}. The encoder is the meta file's folder name; a missing or unreadable file is
    left out."""
    by: dict[str, dict[str, Any]] = {}
    for p in map(Path, meta_paths):
        try:
            meta = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(meta, dict):
            continue
        counts = meta.get("videos_by_split")
        trans = meta.get("transductive")
        if trans is None and isinstance(counts, dict):
            trans = bool(counts.get("test"))
        by[p.parent.name] = {"pretrain_splits": meta.get("pretrain_splits"), "videos_by_split": counts,
                             "transductive": trans}
    return {"transductive": any(e["transductive"] is True for e in by.values()), "by_encoder": by,
            "unknown": sorted(k for k, e in by.items() if not isinstance(e["videos_by_split"], dict))}

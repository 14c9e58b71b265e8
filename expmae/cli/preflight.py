"""The preflight's (`expmae check`, expmae/check.py) count of labeled videos per class per feature set.

A training job counts the labeled videos that have data for its feature set (a clip without an audio track
has no audio features; one without a detected face no visual ones): a set with fewer than classify.folds of a
class is skipped (expmae.train.cv.unusable_sets: no score, fused heads leave it out); too few labels at all
stop it (cv.check_folds). The preflight counts with the same functions on the same inputs: the extracted
feature shards (results/features/<set>/<shard>.parquet) read by expmae.train.data.load. Before extraction
that count cannot be known: the preflight says so, per feature set, instead of an `ok`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

NOT_YET = ("not known before extraction (a clip without an audio track or a detected face has no data for a "
           "set of that modality): each training job counts its own and skips a set with too few labeled videos "
           "of a class, naming the set, the counts and the fix; `expmae check` after extraction counts them")


def feature_set_rows(cfg: dict[str, Any], labeled: set[str], add: Callable[[str, str, str], None]) -> None:
    """One row per feature set of classify.feature_sets: `warn` (its training job would skip it: the job's
    own reason), `error` (it would stop), `ok` with the smallest class, or `info` when the features are not
    (all) extracted yet."""
    from expmae.train import cv, data

    if not labeled:
        return
    res = Path(str(cfg.get("results") or "results"))
    shards = sorted(p.stem for p in (res / "ingest").glob("s[0-9]*.parquet"))
    manifests = [str(res / "ingest" / f"{s}.parquet") for s in shards]
    d, classes, k = cfg["data"], list(cfg["classes"]), int(cfg["classify"]["folds"])
    waiting = []
    for fs in cfg["classify"]["feature_sets"]:
        files = [res / "features" / fs / f"{s}.parquet" for s in shards]
        if not files or not all(f.is_file() for f in files):
            waiting.append(fs)
            continue
        ds = data.load({fs: [str(f) for f in files]}, d.get("labels"), d.get("test") or None, classes,
                       None, str(d.get("encoding") or ""), str(d.get("groups") or ""), manifests)
        if labeled - set(ds.names):  # videos added since the extraction: their data is not known yet
            waiting.append(fs)
            continue
        if skip := cv.unusable_sets(ds, None, classes, k):
            add("warn", f"folds: {fs}", skip[fs])
            continue
        lab = (ds.split == "labeled") & ds.mask.any(1)
        try:
            cv.check_folds(ds.y[lab], classes, k, [fs])
        except SystemExit as err:
            add("error", f"folds: {fs}", str(err))
            continue
        have = [int((ds.y[lab] == i).sum()) for i in range(len(classes))]
        small = min(n for n in have if n)
        add("ok", f"folds: {fs}", f"{k} folds fit the labeled videos with {fs} data (smallest class: {small})")
    if waiting:
        add("info", "folds per feature set", f"{', '.join(waiting)}: {NOT_YET}")

"""Scored test tracks (config data.tracks): MER 2023's test1 (MER-MULTI), test2 (MER-NOISE), test3 (MER-SEMI).

Each track is a label CSV (name,discrete[,valence]) and its official metric (MERTools MER2023 main-release.py):
- `f1`: weighted F1 over the discrete labels (MER-SEMI);
- `f1_mse`: weighted F1 - 0.25 x valence MSE (MER-MULTI, MER-NOISE; `overall_metric`).
The names of every present label CSV join the test split (expmae.train.data: never trained on, never
pseudo-labelled, in no fold), so the final model predicts them. The report scores its predictions like the
test F1 (expmae.train.scoring.summarize): the seed ensemble's scores, the mean and std of the seeds' own scores,
and a 95% bootstrap interval over the track's videos (expmae.train.stats; F1, MSE and the score resampled
together). A track whose CSV is absent is `not scored (file missing)`, never an error; where no valence is
predicted (the label CSV has none, or train valence: none) or known, `mse` is null and `mse_missing` says why.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from expmae.train import stats
from expmae.train.scoring import MSE_WEIGHT, n_seeds, weighted_f1

METRICS = ("f1", "f1_mse")
MISSING = "not scored (file missing)"
RESERVED = ("final",)  # results/submission/final.csv is data.test's submission


def configured(data: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """track -> {labels, metric} of config data.tracks (metric default f1); a bad entry is one clear line."""
    out = {}
    for name, t in (data.get("tracks") or {}).items():
        if name in RESERVED or not isinstance(t, Mapping) or not t.get("labels"):
            raise SystemExit(f"config key data.tracks.{name}: needs labels: <csv> and a name other than "
                             f"{', '.join(RESERVED)} (its submission is results/submission/<track>.csv)")
        metric = str(t.get("metric") or "f1")
        if metric not in METRICS:
            raise SystemExit(f"config key data.tracks.{name}.metric: {metric!r}; use one of {', '.join(METRICS)}")
        out[str(name)] = {"labels": str(t["labels"]), "metric": metric}
    return out


def label_files(data: Mapping[str, Any]) -> list[str]:
    """The tracks' label CSVs that exist: extra test lists of the training jobs (their names are test videos)."""
    return [t["labels"] for t in configured(data).values() if Path(t["labels"]).is_file()]


def _mse(v: np.ndarray, v_hat: np.ndarray) -> np.ndarray:
    """MSE per row of [..., n] arrays over the entries where both are known (NaN where none is)."""
    sq = (v - v_hat) ** 2
    ok = np.isfinite(sq)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ok, sq, 0).sum(-1) / ok.sum(-1)


def _r(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def score(probs: pd.DataFrame, classes: list[str], truth: pd.DataFrame, metric: str) -> dict[str, Any]:
    """One track's scores of a final model's probs table (expmae.train.scoring.probs_frame) against its
    truth (name, y, valence). Unpredicted label names (none when the track fed the test split) are counted."""
    rows = probs.drop_duplicates("name").set_index("name")
    have = truth[truth["name"].isin(rows.index)]
    out: dict[str, Any] = {"metric": metric, "status": "scored", "n": int(len(have)), "n_labels": int(len(truth))}
    if len(have) < len(truth):
        out["n_unpredicted"] = int(len(truth) - len(have))
    if not len(have):
        out["status"] = "not scored (no predicted name)"
        return out
    t = rows.loc[have["name"]]
    y, v = have["y"].to_numpy(int), have["valence"].to_numpy(float)
    S = n_seeds(t.reset_index(), classes)
    ens = t[[f"prob_{c}" for c in classes]].to_numpy().argmax(1)
    ens_v = t["valence"].to_numpy(float) if "valence" in t else np.full(len(t), np.nan)
    seeds = [(t[[f"s{s}_{c}" for c in classes]].to_numpy().argmax(1), t[f"s{s}_valence"].to_numpy(float))
             for s in range(S)] or [(ens, ens_v)]
    use_mse = metric == "f1_mse"
    if use_mse and not np.isfinite(v).any():
        out["mse_missing"] = "the track's label CSV has no valence"
    elif use_mse and not np.isfinite(ens_v).any():
        out["mse_missing"] = ("no valence predicted: data.labels has no valence column (or classify.valence: none), "
                              "so the score is F1 alone")
    with_mse = use_mse and "mse_missing" not in out

    def parts(pred: np.ndarray, vh: np.ndarray) -> dict[str, float]:
        f1 = weighted_f1(y, pred)
        m = float(_mse(v, vh)) if with_mse else float("nan")
        return {"f1": f1, "mse": m, "score": f1 - MSE_WEIGHT * m if with_mse else f1}

    keys = ("f1", "mse", "score") if use_mse else ("f1", "score")
    ensemble, per_seed = parts(ens, ens_v), [parts(p, vh) for p, vh in seeds]
    idx = stats.resamples(len(y))  # the videos resampled once: F1, MSE and score of the same resamples
    f1_b = stats.weighted_f1_rows(y[idx], ens[idx], len(classes))
    boot = {"f1": f1_b}
    if with_mse:
        boot["mse"] = _mse(v[idx], ens_v[idx])
        boot["score"] = f1_b - MSE_WEIGHT * boot["mse"]
    else:
        boot["score"] = f1_b
    for k in keys:
        vals = [ps[k] for ps in per_seed]
        out[k] = _r(ensemble[k])
        out[f"{k}_seed_mean"] = _r(float(np.mean(vals)))
        out[f"{k}_std"] = _r(float(np.std(vals, ddof=1))) if len(vals) > 1 else None
        fin = boot[k][np.isfinite(boot[k])] if k in boot else np.zeros(0)
        out[f"{k}_ci"] = [_r(x) for x in stats.interval(fin)] if len(fin) else None
    out["per_seed"] = [{k: _r(ps[k]) for k in keys} for ps in per_seed]
    out["class_counts"] = np.bincount(y, minlength=len(classes)).tolist()
    return out


def score_all(probs: pd.DataFrame, classes: list[str], tracks: Mapping[str, Mapping[str, str]],
              encoding: str = "") -> dict[str, dict[str, Any]]:
    """metrics.json `tracks`: track -> its scores (score) or {status: not scored (file missing)}."""
    from expmae.labels import read_labels

    out = {}
    for name, t in tracks.items():
        base = {"labels": t["labels"], "metric": t["metric"]}
        if not Path(t["labels"]).is_file():
            out[name] = {**base, "status": MISSING}
            continue
        truth, _ = read_labels(t["labels"], classes, encoding)
        out[name] = {**base, **score(probs, classes, truth, t["metric"])}
    return out


def rows_of(sub_csv: str, names: list[str]) -> str:
    """The rows of a submission CSV text for these names, in their order (names it lacks are skipped)."""
    import io

    sub = pd.read_csv(io.StringIO(sub_csv), dtype={"name": str}).drop_duplicates("name").set_index("name")
    return sub.loc[[n for n in names if n in sub.index]].reset_index().to_csv(index=False)


def submissions(sub_csv: str, tracks: Mapping[str, Mapping[str, str]], classes: list[str],
                encoding: str = "") -> dict[str, tuple[str, list[str]]]:
    """track -> (its submission CSV text: the rows of sub_csv for its label CSV's names, in file order, a
    guessed row for a name without one; the names guessed). Tracks without a CSV get none."""
    from expmae.labels import read_names
    from expmae.report.qc import complete_submission

    out = {}
    for name, t in tracks.items():
        if Path(t["labels"]).is_file():
            names = read_names(t["labels"], encoding, f"data.tracks.{name}.labels")[0]
            out[name] = complete_submission(rows_of(sub_csv, names), names, classes)
    return out


def headline(scored: Mapping[str, Mapping[str, Any]]) -> str:
    """The headline's lines of the tracks ('' without tracks)."""
    lines = []
    for name, m in scored.items():
        if m["status"] != "scored":
            lines.append(f"track {name}: {m['status']}")
            continue
        ci = m.get("score_ci") or [float("nan")] * 2
        what = "weighted F1 - 0.25 x valence MSE" if m["metric"] == "f1_mse" and m.get("mse") is not None \
            else "weighted F1"
        n = f"{m['n']} video" + ("s" if m["n"] != 1 else "")
        line = f"track {name} ({what}, {n}): {m['score']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
        if m["metric"] == "f1_mse":
            line += (f"; F1 {m['f1']:.3f}, MSE {m['mse']:.3f}" if m.get("mse") is not None
                     else f"; MSE not scored: {m.get('mse_missing')}")
        lines.append(line)
    return "".join(ln + "\n" for ln in lines)


def table(scored: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """The report's tracks table: one row per track (score with its interval, F1, MSE, seeds, status)."""
    def fmt(m: Mapping[str, Any], k: str) -> str:
        if m.get(k) is None:
            return ""
        ci, sd = m.get(f"{k}_ci"), m.get(f"{k}_std")
        return f"{m[k]:.4f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "") + (f" (seeds sd {sd:.4f})" if sd else "")

    rows = [{"track": n, "metric": m["metric"], "n": m.get("n", 0), "score": fmt(m, "score"), "f1": fmt(m, "f1"),
             "mse": fmt(m, "mse") or m.get("mse_missing", ""), "status": m["status"]} for n, m in scored.items()]
    return pd.DataFrame(rows, columns=["track", "metric", "n", "score", "f1", "mse", "status"])


def check_rows(data: Mapping[str, Any], videos: set[str], row: Callable[[str, str, str], None]) -> set[str]:
    """expmae check: a row per track (found with its label count / missing file / unknown names, i.e. label
    names without a video); -> the tracks' names that have a video (test videos)."""
    from expmae.labels import read_csv

    try:
        tracks = configured(data)
    except SystemExit as err:
        row("error", "data.tracks", str(err))
        return set()
    found: set[str] = set()
    for name, t in tracks.items():
        key, p = f"data.tracks.{name}", Path(t["labels"])
        if not p.is_file():
            row("warn", key, f"{p}: {MISSING}; the run goes on without it")
            continue
        df, _ = read_csv(p, str(data.get("encoding") or ""), f"{key}.labels")
        if "name" not in df.columns or "discrete" not in df.columns:
            row("error", key, f"{p}: needs columns name,discrete (found {[str(c) for c in df.columns][:6]})")
            continue
        names = set(df["name"].astype(str).str.strip()) - {""}
        unknown = sorted(names - videos)
        no_val = t["metric"] == "f1_mse" and ("valence" not in df.columns
                                              or pd.to_numeric(df["valence"], errors="coerce").isna().all())
        row("warn" if unknown or no_val else "ok", key,
            f"{p.name}: {len(names)} names, metric {t['metric']}"
            + (f"; {len(unknown)} without a video (first: {', '.join(unknown[:3])}): guessed rows, scored as such"
               if unknown else "") + ("; no valence in the CSV: mse not scored" if no_val else ""))
        found |= names & videos
    return found

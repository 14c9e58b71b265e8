"""Scores of the MER 2023 challenge, in one place (checked against scikit-learn in the tests), and the
outputs that carry them: the probs table and metrics.json of a training job (expmae.train.cv and
expmae.train.late both write through here).

- weighted F1 over the discrete classes (the MER-SEMI ranking metric);
- accuracy;
- valence MSE (MER-MULTI's dimensional score);
- the MER 2023 combined score of the official baseline (MERTools `overall_metric`):
      combined = weighted_F1 - 0.25 * valence_MSE
NaN marks "not computable" (no rows, no valence), so a missing valence never fakes a score.

With seeds (summarize): every score is that of the written predictions, the seed ensemble (mean
probabilities over seeds; what the submission holds, so the official scoring of final.csv gives the
same test F1); `<score>_seed_mean` and `<score>_std` are the mean and std of the seeds' own scores
(s{s}_<class> columns; the seed spread), `per_seed` every seed's numbers, and `weighted_f1_ci` /
`test_weighted_f1_ci` the 95% bootstrap interval over videos of the ensemble's weighted F1
(expmae.train.stats). Models are ranked on the ensemble's `weighted_f1` (rank_score): what is
selected is what is deployed and reported.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from expmae.io import config_hash, write_json, write_table
from expmae.train import stats

MSE_WEIGHT = 0.25  # MER 2023 baseline: final_score = emo_fscore - val_mse * 0.25
# why a row was predicted without data (column no_data; '' = it had data): the class prior stands in
NO_DATA = "no usable data"
NO_VIDEO = "no video"


def confusion(y: np.ndarray, pred: np.ndarray, n_cls: int) -> np.ndarray:
    """[C, C] counts, rows = true class, columns = predicted."""
    cm = np.zeros((n_cls, n_cls), np.int64)
    np.add.at(cm, (np.asarray(y, int), np.asarray(pred, int)), 1)
    return cm


def weighted_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Per-class F1 averaged with the support of each true class (sklearn average='weighted',
    zero_division=0); classes that only appear in `pred` have zero weight."""
    y, pred = np.asarray(y, int), np.asarray(pred, int)
    if not len(y):
        return float("nan")
    n = int(max(y.max(), pred.max())) + 1
    cm = confusion(y, pred, n)
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1), cm.sum(0)
    denom = support + predicted  # F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (support + predicted)
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float((f1 * support).sum() / support.sum())


def accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y), np.asarray(pred)
    return float((y == pred).mean()) if len(y) else float("nan")


def mse(v: np.ndarray, v_hat: np.ndarray) -> float:
    """Mean squared error over the rows whose true value is known (NaN rows skipped)."""
    v, v_hat = np.asarray(v, float), np.asarray(v_hat, float)
    ok = np.isfinite(v) & np.isfinite(v_hat)
    return float(((v[ok] - v_hat[ok]) ** 2).mean()) if ok.any() else float("nan")


def combined(f1: float, valence_mse: float) -> float:
    """MER 2023 combined score; NaN when either part is unknown."""
    return float(f1 - MSE_WEIGHT * valence_mse)


def scores(y: np.ndarray, pred: np.ndarray, v: np.ndarray | None = None, v_hat: np.ndarray | None = None,
           prefix: str = "") -> dict[str, float]:
    """All scores of one split, keys prefixed (e.g. 'test_')."""
    out = {"weighted_f1": weighted_f1(y, pred), "accuracy": accuracy(y, pred)}
    if v is not None and v_hat is not None:
        out["valence_mse"] = mse(v, v_hat)
        out["mer_combined"] = combined(out["weighted_f1"], out["valence_mse"])
    return {prefix + k: v for k, v in out.items()}


def probs_frame(names, split, y, fold_of, probs, fold_probs, v_hat, classes, seed_probs=None, seed_valence=None,
                no_data=None) -> pd.DataFrame:
    """The probs table of a training job: name, split, y, fold, prob_<class>..., pred, confidence,
    agree, valence, no_data, f{f}_<class>..., s{s}_<class>..., s{s}_valence (probs [N, C], fold_probs
    [k, N, C], v_hat [N], seed_probs [S, N, C], seed_valence [S, N], no_data [N] str)."""
    df = pd.DataFrame({"name": list(names), "split": split, "y": y, "fold": fold_of})
    for c, name in enumerate(classes):
        df[f"prob_{name}"] = probs[:, c]
    pred = probs.argmax(1)
    df["pred"] = [classes[i] for i in pred]
    df["confidence"] = probs.max(1)
    # share of fold models whose own top class is the ensemble's (1.0 = all agree)
    df["agree"] = (fold_probs.argmax(2) == pred[None]).mean(0) if len(fold_probs) else 1.0
    df["valence"] = v_hat
    df["no_data"] = no_data if no_data is not None else ""
    cols = {f"f{f}_{name}": fold_probs[f, :, c] for f in range(len(fold_probs)) for c, name in enumerate(classes)}
    seed_probs = probs[None] if seed_probs is None else seed_probs
    seed_valence = np.asarray(v_hat, float)[None] if seed_valence is None else seed_valence
    for s in range(len(seed_probs)):
        cols.update({f"s{s}_{name}": seed_probs[s, :, c] for c, name in enumerate(classes)})
        cols[f"s{s}_valence"] = seed_valence[s]
    return pd.concat([df, pd.DataFrame(cols, index=df.index)], axis=1)


def empty_probs(classes: list[str]) -> pd.DataFrame:
    """The probs table of a skipped job: no rows, every column a consumer reads."""
    none = np.zeros((0, len(classes)), np.float32)
    return probs_frame([], np.zeros(0, object), np.zeros(0, np.int64), np.zeros(0, np.int64), none, none[None],
                       np.zeros(0), classes, no_data=np.zeros(0, object))


def skipped_metrics(reason: str, head: str, p: dict, **extra: Any) -> dict:
    """metrics.json of a job skipped for lack of usable data (`skipped`: why): no score, so never a
    candidate (rank_score None); late fusion, pseudo-labelling and the report leave it out and name it."""
    return {"skipped": reason, "head": head, "weighted_f1": float("nan"), "accuracy": float("nan"),
            "seeds": [p["seed"] + s for s in range(p["seeds"])], "folds": p["folds"], "n_labeled": 0, "n_pseudo": 0,
            "modalities": {}, "modality_order": [], "curves": [], **extra}


def rank_score(m: dict) -> float | None:
    """The number models are chosen on: the OOF weighted F1 of the seed ensemble, the model that is
    deployed and reported (None/NaN: no valid score)."""
    v = m.get("weighted_f1")
    return None if v is None or v != v else float(v)


def n_fold_models(df: pd.DataFrame, classes: list[str]) -> int:
    """How many fold models' predictions a probs table carries (f{j}_<class> columns, j = seed index x
    folds + fold)."""
    tail = f"_{classes[0]}"
    return sum(1 for c in df.columns if c.startswith("f") and c.endswith(tail) and c[1:-len(tail)].isdigit())


def seed_count(m: dict, where: str = "a model") -> int:
    """How many seeds a trained model has: its metrics.json `seeds` (the seeds' values, written by the
    training job from config seeds). The one reader for code that holds a model's metrics (late fusion,
    prediction from the bundle); a probs table alone is counted by n_seeds."""
    seeds = m.get("seeds")
    if not seeds:
        raise SystemExit(f"{where}: metrics.json records no seeds: written by an older expmae; rerun its training job")
    return len(seeds)


def n_seeds(df: pd.DataFrame, classes: list[str]) -> int:
    """How many seeds' predictions a probs table carries (s{s}_<class> columns)."""
    n = 0
    while f"s{n}_{classes[0]}" in df:
        n += 1
    return n


def seed_preds(df: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """[S, N] each seed's predicted class (the ensemble's when the table has no seed columns)."""
    S = n_seeds(df, classes)
    if not S:
        return df[[f"prob_{c}" for c in classes]].to_numpy().argmax(1)[None]
    return np.stack([df[[f"s{s}_{c}" for c in classes]].to_numpy().argmax(1) for s in range(S)])


def seed_frame(df: pd.DataFrame, classes: list[str], s: int) -> pd.DataFrame:
    """The table as seed s alone predicted it (prob_<class> and valence from its s{s}_ columns)."""
    out = df.copy()
    for c in classes:
        out[f"prob_{c}"] = df[f"s{s}_{c}"]
    out["valence"] = df[f"s{s}_valence"]
    return out


def summarize(df: pd.DataFrame, classes: list[str], valence: np.ndarray, test_truth: dict, test_valence: dict) -> dict:
    """Scores of a seed ensemble (see the module docstring): the written predictions' scores, every
    seed's, their mean and std, and bootstrap intervals of the (test) weighted F1."""
    m = evaluate(df, classes, valence, test_truth, test_valence)
    S = n_seeds(df, classes)
    per_seed = [evaluate(seed_frame(df, classes, s), classes, valence, test_truth, test_valence) for s in range(S)] or [m]
    keys = [k for k in m if k not in ("confusion", "class_counts")]  # the scores (counts are the same per seed)
    for k in keys:
        vals = [ps[k] for ps in per_seed]
        m[f"{k}_seed_mean"] = float(np.mean(vals))
        m[f"{k}_std"] = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    m["per_seed"] = [{k: ps[k] for k in keys} for ps in per_seed]
    pred = df[[f"prob_{c}" for c in classes]].to_numpy().argmax(1)
    oof = np.flatnonzero((df["split"] == "labeled").to_numpy() & (df["fold"] >= 0).to_numpy())
    m["weighted_f1_ci"] = stats.bootstrap_ci(df["y"].to_numpy()[oof], pred[oof], len(classes))
    t_idx = [i for i in np.flatnonzero((df["split"] == "test").to_numpy()) if df["name"].iat[i] in test_truth]
    if t_idx:
        yt = np.array([test_truth[df["name"].iat[i]] for i in t_idx])
        m["test_weighted_f1_ci"] = stats.bootstrap_ci(yt, pred[t_idx], len(classes))
    return m


def evaluate(df: pd.DataFrame, classes: list[str], valence: np.ndarray, test_truth: dict, test_valence: dict) -> dict:
    """OOF scores on labeled rows (+ test scores where the test truth is known)."""
    pred = df[[f"prob_{c}" for c in classes]].to_numpy().argmax(1)
    oof = np.flatnonzero((df["split"] == "labeled").to_numpy() & (df["fold"] >= 0).to_numpy())
    has_v = np.isfinite(valence[oof]).any()
    v_hat = df["valence"].to_numpy(float)
    m = scores(df["y"].to_numpy()[oof], pred[oof], valence[oof] if has_v else None, v_hat[oof] if has_v else None)
    t_idx = [i for i in np.flatnonzero((df["split"] == "test").to_numpy()) if df["name"].iat[i] in test_truth]
    if t_idx:
        yt = np.array([test_truth[df["name"].iat[i]] for i in t_idx])
        vt = np.array([test_valence.get(df["name"].iat[i], np.nan) for i in t_idx])
        tv = np.isfinite(vt).any()
        m.update(scores(yt, pred[t_idx], vt if tv else None, v_hat[t_idx] if tv else None, prefix="test_"))
    m["confusion"] = confusion(df["y"].to_numpy()[oof], pred[oof], len(classes)).tolist()
    # class counts of the scored labeled rows and test truth: a shift between them (MER 2023 test3: sad 11% ->
    # 31%) moves test scores away from out-of-fold ones for a reason that is not overfitting
    m["class_counts"] = {"labeled": np.bincount(df["y"].to_numpy()[oof].astype(int), minlength=len(classes)).tolist()}
    if t_idx:
        m["class_counts"]["test"] = np.bincount(yt.astype(int), minlength=len(classes)).tolist()
    return m


def write_result(out: str | Path, df: pd.DataFrame, m: dict[str, Any], p: dict[str, Any], ident: dict[str, Any],
                 t0: float) -> None:
    """<out>/probs.parquet and <out>/metrics.json (scores + identity + params), and a one-line summary."""
    m.update(ident)
    m.update(params=p, config_hash=config_hash(p), seconds=round(time.time() - t0, 2))
    write_table(Path(out) / "probs.parquet", df)
    write_json(Path(out) / "metrics.json", m)
    ci = m.get("weighted_f1_ci") or [float("nan")] * 2
    print(f"{m['name']} ({m['head']}): wF1 {m['weighted_f1']:.4f} [{ci[0]:.3f}, {ci[1]:.3f}] (seeds"
          f" {m.get('weighted_f1_seed_mean', float('nan')):.4f} +- {m.get('weighted_f1_std') or 0:.4f},"
          f" {len(m.get('per_seed', [1]))} seeds), acc {m['accuracy']:.4f} valence MSE"
          f" {m.get('valence_mse', float('nan')):.3f} (labeled {m['n_labeled']}, pseudo {m['n_pseudo']}) in {m['seconds']}s")

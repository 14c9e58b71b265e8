"""The report's optional steps after the final model is chosen (config `prior:` and `stack:`).

- prior: the EM estimate of the test pool's class prior from the final model's test probabilities
  (expmae.train.prior), always recorded in metrics.json (`final.prior_estimate`) with its bootstrap interval,
  the labeled prior and, with test labels, the test weighted F1 before and after re-weighting; with
  `prior.correct` the submitted final.csv is the re-weighted prediction.
- stack: the stacking head over the last round's models (expmae.train.stack), recorded as metrics.json
  `stack` (weights, cross-fitted OOF and test scores, the paired difference to the final model); with
  `stack.submit` final.csv is its test prediction.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from expmae.report import noise
from expmae.report.tables import submission
from expmae.train import prior, stack, stats
from expmae.train.plan import is_subcombination


def test_truth(test_labels: str, classes: list[str], encoding: str = "") -> dict[str, int]:
    """name -> class index of the test split's ground truth ({} without a file)."""
    if not test_labels:
        return {}
    from expmae.train.data import read_labels

    lab = read_labels(test_labels, classes, encoding)[0]
    return dict(zip(lab["name"].astype(str), lab["y"].astype(int)))


def prior_step(final: dict, classes: list[str], truth: dict[str, int], cfg: dict,
               test_names: list[str] | None = None) -> str | None:
    """Adds final['prior_estimate']; -> the re-weighted submission CSV text when prior.correct, else None.
    test_names: the pool to estimate on when the test split holds more (data.tracks' videos beside data.test)."""
    probs = pd.read_parquet(Path(final["dir"]) / "probs.parquet")
    if test_names is not None:  # another track's videos have their own prior: not this pool's
        probs = probs[(probs["split"] != "test") | probs["name"].isin(set(test_names))].reset_index(drop=True)
    rep = prior.prior_report(probs, classes, truth, cfg["bootstrap"], cfg["calibrate"])
    if rep is None:
        return None
    rep["applied"] = bool(cfg["correct"])
    final["prior_estimate"] = rep
    if not cfg["correct"]:
        return None
    vec = [np.array([rep[k][c] for c in classes]) for k in ("source", "test_estimate")]
    return submission(prior.corrected(probs, classes, *vec, rep["calibration"])).to_csv(index=False)


def stack_members(models: dict[str, dict], which: str) -> dict[str, str]:
    """name -> folder of the last round's models the head stacks: the all-modality fusion heads (+ the single
    feature sets with `all`), those with a valid score."""
    return {n: m["dir"] for n, m in sorted(models.items()) if m.get("weighted_f1") == m.get("weighted_f1")
            and m.get("weighted_f1") is not None and not is_subcombination(m)
            and (m["kind"] == "fused" or which == "all")}


def stack_step(final: dict, models: dict[str, dict], classes: list[str], truth: dict[str, int],
               cfg: dict) -> tuple[dict | None, str | None]:
    """-> metrics.json's `stack` section, and its submission CSV text when stack.submit."""
    dirs = stack_members(models, cfg["members"])
    if len(dirs) < 2:
        return None, None
    df, m = stack.stack(dirs, classes, truth)
    fin = pd.read_parquet(Path(final["dir"]) / "probs.parquet").set_index("name").loc[df["name"]].reset_index()
    oof = ((df["split"] == "labeled") & (df["fold"] >= 0)).to_numpy()
    cols = [f"prob_{c}" for c in classes]
    y = df["y"].to_numpy()[oof]
    m["stack_minus_final"] = stats.paired_diff(y, df.loc[oof, cols].to_numpy().argmax(1),
                                               fin.loc[oof, cols].to_numpy().argmax(1), len(classes))
    m["vs_final"] = noise.verdict(m["stack_minus_final"], "stack", final["model"])
    sub = None
    if cfg["submit"]:
        df = df.assign(pred=np.asarray(classes, object)[df[cols].to_numpy().argmax(1)],
                       valence=fin["valence"].to_numpy(), no_data=fin["no_data"].to_numpy())
        sub = submission(df).to_csv(index=False)
    return m, sub

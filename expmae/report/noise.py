"""How far the report's comparisons can be trusted: paired bootstraps between models, the headline.

Two models of one round are compared on the same videos (the labeled videos both scored out of
fold): the weighted F1 of A's predictions (its seed ensemble) minus that of B's, with the 95%
paired-bootstrap interval (expmae.train.stats.paired_diff). A difference whose interval contains 0 is "within the noise":
the report then says so instead of claiming a winner. The headline (a few lines, printed at the end
of `make run` from results/report/headline.txt) names the final model, its OOF and test weighted F1
with spread and interval, the best single feature set, and whether the difference is inside the noise.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from expmae.train import stats


def oof_preds(d: str | Path, classes: list[str]) -> pd.DataFrame:
    """name -> (y, the predicted class: the seed ensemble's) on the rows a model scored out of fold."""
    df = pd.read_parquet(Path(d) / "probs.parquet")
    df = df[(df["split"] == "labeled") & (df["fold"] >= 0)]
    pred = df[[f"prob_{c}" for c in classes]].to_numpy().argmax(1)
    return pd.DataFrame({"y": df["y"].to_numpy(), "p0": pred}, index=df["name"])


def paired(dir_a: str | Path, dir_b: str | Path, classes: list[str]) -> dict | None:
    """Paired bootstrap of A - B over the videos both scored out of fold (None without such videos)."""
    a, b = oof_preds(dir_a, classes), oof_preds(dir_b, classes)
    common = a.index.intersection(b.index)
    if not len(common):
        return None
    a, b = a.loc[common], b.loc[common]
    pa = a[[c for c in a if c.startswith("p")]].to_numpy().T
    pb = b[[c for c in b if c.startswith("p")]].to_numpy().T
    return stats.paired_diff(a["y"].to_numpy(), pa, pb, len(classes))


def verdict(cmp: dict | None, a: str, b: str) -> str:
    if cmp is None:
        return "not comparable (no common out-of-fold videos)"
    if cmp["within_noise"]:
        return "within the noise (the interval contains 0)"
    return f"{a} better" if cmp["diff"] > 0 else f"{b} better"


def compare(final: dict, models: dict[str, dict], classes: list[str]) -> dict:
    """Adds to `final` (choose_final's summary of the last round `models`, each with its `dir`): the
    paired comparison with the best single feature set and with the runner-up candidate."""
    fm = models[final["model"]]
    out = dict(final)
    single = final.get("best_single")
    if single and single != final["model"] and "dir" in fm:
        cmp = paired(fm["dir"], models[single]["dir"], classes)
        out["fused_minus_single"] = cmp
        out["fused_vs_single"] = verdict(cmp, final["model"], single)
    runner = final.get("runner_up")
    if runner and "dir" in fm:
        cmp = paired(fm["dir"], models[runner]["dir"], classes)
        out["final_minus_runner_up"] = cmp
        out["choice_within_noise"] = None if cmp is None else cmp["within_noise"]
    return out


def fmt(m: dict, key: str = "weighted_f1") -> str:
    """'0.612 [0.520, 0.700] (seeds 0.601 +- 0.020)': the seed ensemble's score [95% bootstrap interval
    over videos] (mean +- std of the seeds' own scores)."""
    v = m.get(key)
    if v is None or v != v:
        return "n/a"
    sd, ci, mean = m.get(f"{key}_std"), m.get(f"{key}_ci"), m.get(f"{key}_seed_mean")
    s = f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
    return s + (f" (seeds {mean:.3f} +- {sd:.3f})" if sd is not None and sd == sd and mean is not None else "")


def pretraining_line(pretraining: dict | None) -> str | None:
    """One line on which splits expMAE pretraining saw (transductive when test videos were among them)."""
    enc = {k: v for k, v in ((pretraining or {}).get("by_encoder") or {}).items() if v.get("videos_by_split")}
    if not enc:
        return None
    seen = "; ".join(f"{k} " + ", ".join(f"{n} {s}" for s, n in v["videos_by_split"].items()) for k, v in enc.items())
    if pretraining.get("transductive"):
        return (f"  transductive: expMAE pretraining saw the test videos (no labels; MER-SEMI allows it; "
                f"mae.pretrain_splits): {seen}")
    return f"  expMAE pretraining saw no test video: {seen}"


def headline(final: dict, models: dict[str, dict], pretraining: dict | None = None) -> str:
    """The few lines `make run` ends with."""
    fm = models[final["model"]]
    n_seeds = len(fm.get("per_seed") or [1])
    sel = final.get("selected") or {}
    picked = (f" (selected: best of {sel['from']} by this score, optimistic)" if sel.get("optimistic") else "")
    lines = [f"final model: {final['model']} (round {final['round']}, head {final['head']}, {n_seeds}-seed ensemble;"
             " weighted F1 [95% bootstrap interval over videos] (seeds: mean +- std of the single seeds))",
             f"  out-of-fold {fmt(fm)}{picked}   test {fmt(fm, 'test_weighted_f1')}"]
    single = final.get("best_single")
    if single and single != final["model"]:
        sm = models[single]
        lines.append(f"best single feature set: {single}: out-of-fold {fmt(sm)}   test {fmt(sm, 'test_weighted_f1')}")
        cmp = final.get("fused_minus_single")
        if cmp:
            lines.append(f"  {final['model']} - {single}: {cmp['diff']:+.3f} [{cmp['ci'][0]:+.3f}, {cmp['ci'][1]:+.3f}]"
                         f" (paired bootstrap, {cmp['n']} videos): {final['fused_vs_single']}")
    run = final.get("final_minus_runner_up")
    if run:
        lines.append(f"  choice over runner-up {final['runner_up']}: {run['diff']:+.3f} [{run['ci'][0]:+.3f},"
                     f" {run['ci'][1]:+.3f}]: " + ("within the noise" if run["within_noise"] else "outside the noise"))
    if line := pretraining_line(pretraining):
        lines.append(line)
    est = final.get("prior_estimate")
    if est:
        from expmae.train.prior import note

        classes = list(est["source"])
        f1 = (f"; test weighted F1 {est['test_weighted_f1']:.3f} -> {est['test_weighted_f1_corrected']:.3f} re-weighted"
              if "test_weighted_f1" in est else "")
        lines.append(f"  test prior (EM estimate, 95% interval): {note(est, classes)}{f1}"
                     f" ({'applied to final.csv' if est['applied'] else 'not applied: prior.correct'})")
    shift = final.get("prior_shift")
    if shift:
        lines.append(f"  test class prior differs from the labeled set: {shift['note']} (test scores are not OOF scores)")
    return "\n".join(lines) + "\n"


def prior_shift(m: dict, classes: list[str], min_change: float = 0.05) -> dict | None:
    """Labeled vs test class shares of one model's scored rows, and the classes whose share moves by at least
    `min_change` (absolute); None without test truth."""
    counts = m.get("class_counts") or {}
    if "test" not in counts or not sum(counts["test"]) or not sum(counts.get("labeled", [])):
        return None
    lab = np.array(counts["labeled"], float) / sum(counts["labeled"])
    test = np.array(counts["test"], float) / sum(counts["test"])
    moved = [i for i in np.argsort(-np.abs(test - lab)) if abs(test[i] - lab[i]) >= min_change]
    if not moved:
        return None
    return {"labeled": dict(zip(classes, np.round(lab, 4).tolist())), "test": dict(zip(classes, np.round(test, 4).tolist())),
            "note": ", ".join(f"{classes[i]} {lab[i]:.0%} -> {test[i]:.0%}" for i in moved)}


def seed_values(m: dict, key: str = "weighted_f1") -> np.ndarray:
    """Every seed's score of one model (its mean when per-seed numbers are missing)."""
    vals = [s.get(key) for s in m.get("per_seed") or []]
    vals = [v for v in vals if v is not None and v == v]
    return np.array(vals if vals else [m.get(key, np.nan)], float)

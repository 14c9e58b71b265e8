"""The later MER winners' options against the current defaults, as paired differences (docs/winners.md).

Every row compares an option with the defaults' final model (the round's all-modality fusion head with
the best OOF weighted F1, as expmae.report chooses it) on the same videos: the labeled videos out of fold
(OOF) and the labeled test videos. The difference is that of the seed-mean weighted F1 with its 95%
paired-bootstrap interval over videos (expmae.train.stats.paired_diff; each seed's predictions of A
against the same seed's of B), and the seeds' own differences (mean +- sd). Options that need no
retraining are computed from the defaults' run; pseudo-label policies are runs of their own that reuse
its features (only training reruns), named with --variant.

    python -m expmae.report.winners --base /work/e_run/base --variant thresholds=/work/e_run/thr \
        --test-labels data/test_labels.csv [--out table.md]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from expmae.io import write_text
from expmae.report import ranked
from expmae.report.options import test_truth
from expmae.train import prior, stack, stats
from expmae.train.scoring import n_seeds, weighted_f1

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]


def final_dir(res: Path, round_: int) -> Path:
    """The all-modality fusion head of `round_` with the best OOF weighted F1 (the report's rule)."""
    models = {}
    for d in sorted((res / "fuse" / f"round{round_}" / "all").iterdir()):
        if (d / "metrics.json").exists():
            m = json.loads((d / "metrics.json").read_text())
            models[m["name"]] = {**m, "dir": str(d)}
    return Path(models[ranked(models, "fused")[0]]["dir"])


def seed_probs(df: pd.DataFrame, classes: list[str]) -> np.ndarray:
    """[S, N, C] every seed's probabilities."""
    return np.stack([df[[f"s{s}_{c}" for c in classes]].to_numpy(np.float64) for s in range(n_seeds(df, classes))])


def rows(df: pd.DataFrame, truth: dict[str, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """'oof' / 'test' -> (row positions, true classes)."""
    oof = np.flatnonzero(((df["split"] == "labeled") & (df["fold"] >= 0)).to_numpy())
    test = np.flatnonzero((df["split"] == "test").to_numpy() & df["name"].isin(list(truth)).to_numpy())
    return {"oof": (oof, df["y"].to_numpy()[oof]), "test": (test, np.array([truth[n] for n in df["name"].iloc[test]], int))}


def compare(a: np.ndarray, b: np.ndarray, where: dict, n_cls: int) -> dict:
    """a, b: [S, N] predicted classes of every seed. -> per split: paired diff and the seeds' differences."""
    out = {}
    for k, (idx, y) in where.items():
        if not len(idx):
            continue
        d = stats.paired_diff(y, a[:, idx], b[:, idx], n_cls)
        per = [weighted_f1(y, pa[idx]) - weighted_f1(y, pb[idx]) for pa, pb in zip(a, b)]
        out[k] = {**d, "seed_diffs": [round(v, 4) for v in per]}
    return out


def prior_row(df: pd.DataFrame, classes: list[str], where: dict, calibrate_first: bool) -> dict:
    """EM re-weighting of every seed's probabilities vs the raw ones: test rows to the test pool's estimate,
    OOF rows to their own (the no-shift check). With calibrate_first, bias-corrected temperature scaling
    first, fitted on OOF rows: for the test rows on all of them, for an OOF row on the other folds' only."""
    S = seed_probs(df, classes)
    (oof_idx, y_oof), test_idx = where["oof"], where["test"][0]
    fold = df["fold"].to_numpy()[oof_idx]
    fixed = S.argmax(2).copy()
    for s, P in enumerate(S):
        Q = P.copy()
        if calibrate_first:
            T, b = prior.calibrate(P[oof_idx], y_oof)
            Q[test_idx] = prior.calibrated(P[test_idx], T, b)
            for f in np.unique(fold):
                T, b = prior.calibrate(P[oof_idx[fold != f]], y_oof[fold != f])
                Q[oof_idx[fold == f]] = prior.calibrated(P[oof_idx[fold == f]], T, b)
        src = Q[oof_idx].mean(0)
        for idx in (oof_idx, test_idx):
            est, _ = prior.em_prior(Q[idx], src)
            fixed[s, idx] = prior.reweight(Q[idx], src, est).argmax(1)
    return compare(fixed, S.argmax(2), where, len(classes))


def per_fold(pool: pd.DataFrame | None, probs: pd.DataFrame) -> list[int] | None:
    """Pseudo-labels each fold model trains on (every fold, empty ones as 0)."""
    if pool is None:
        return None
    return pool.groupby("fold").size().reindex(range(int(probs["fold"].max()) + 1), fill_value=0).tolist()


def fmt(c: dict | None) -> str:
    if not c:
        return "n/a"
    sd = np.std(c["seed_diffs"], ddof=1) if len(c["seed_diffs"]) > 1 else 0.0
    return (f"{c['diff']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] (seeds {np.mean(c['seed_diffs']):+.3f} ± {sd:.3f})"
            + ("" if c["within_noise"] else " **"))


def table(base: Path, variants: dict[str, Path], truth: dict[str, int], classes: list[str], round_: int) -> tuple[str, dict]:
    """The markdown table and everything behind it."""
    fdir = final_dir(base, round_)
    fin = pd.read_parquet(fdir / "probs.parquet")
    where = rows(fin, truth)
    ref = seed_probs(fin, classes).argmax(2)
    res: dict[str, dict] = {"defaults' final model": {"dir": str(fdir)}}
    res["prior: EM re-weighting (Saerens 2002)"] = prior_row(fin, classes, where, False)
    res["prior: calibration (BCTS) + EM re-weighting"] = prior_row(fin, classes, where, True)
    est = {k: prior.prior_report(fin, classes, None, 200, cal) for k, cal in (("raw", False), ("calibrated", True))}
    models = {d.name: d for d in sorted((base / "fuse" / f"round{round_}" / "all").iterdir())}
    singles = {d.name: d for d in sorted((base / "classify" / f"round{round_}").iterdir())}
    for label, members in (("stack: fusion heads", models), ("stack: fusion heads + feature sets", {**models, **singles})):
        sdf, m = stack.stack(members, classes, truth)
        sdf = sdf.set_index("name").loc[fin["name"]].reset_index()
        res[label] = {**compare(seed_probs(sdf, classes).argmax(2), ref, where, len(classes)), "weights": m["weights"]}
    for name, vdir in variants.items():
        vdf = pd.read_parquet(final_dir(vdir, round_) / "probs.parquet").set_index("name").loc[fin["name"]].reset_index()
        pool = pd.read_parquet(vdir / "pseudo" / f"round{round_ - 1}.parquet") if round_ else None
        res[f"pseudo-labels: {name}"] = {**compare(seed_probs(vdf, classes).argmax(2), ref, where, len(classes)),
                                         "final": final_dir(vdir, round_).name,
                                         "pool_per_fold": per_fold(pool, fin)}
    lines = [f"Reference: the defaults' final model `{fdir.parent.parent.name}/all/{fdir.name}`; option minus reference, "
             "weighted F1 of the seed ensemble [95% paired bootstrap over videos] (the 3 seeds' own differences, "
             "mean ± sd); ** = the interval excludes 0.", "",
             "| option | out of fold (labeled) | test |", "|---|---|---|"]
    for k, v in res.items():
        if "oof" in v or "test" in v:
            lines.append(f"| {k} | {fmt(v.get('oof'))} | {fmt(v.get('test'))} |")
    base_pool = pd.read_parquet(base / "pseudo" / f"round{round_ - 1}.parquet") if round_ else None
    picked = [("x: defaults", {"final": fdir.name, "pool_per_fold": per_fold(base_pool, fin)})]
    picked += [(k, v) for k, v in res.items() if "pool_per_fold" in v]
    if len(picked) > 1:
        lines += ["", "| pseudo-label variant | its final model | pseudo-labels per fold model (round 0 -> 1) |",
                  "|---|---|---|"]
        lines += [f"| {k.split(': ', 1)[1]} | {v['final']} | {v['pool_per_fold']} |" for k, v in picked]
    y = where["test"][1]
    true = np.bincount(y, minlength=len(classes)) / max(len(y), 1)
    lines += ["", "Test prior, EM estimate [95% bootstrap interval over test videos], without and with calibration, vs the "
              "labeled prior and the test truth:", "",
              "| class | labeled (counts) | model's OOF mean | EM estimate | EM after calibration | test truth |",
              "|---|---|---|---|---|---|"]
    for i, c in enumerate(classes):
        cells = [f"{e['test_estimate'][c]:.2f} [{e['test_estimate_ci'][c][0]:.2f}, {e['test_estimate_ci'][c][1]:.2f}]"
                 for e in (est["raw"], est["calibrated"])]
        lines.append(f"| {c} | {est['raw']['labeled_counts'][c]:.2f} | {est['raw']['source'][c]:.2f} | "
                     f"{cells[0]} | {cells[1]} | {true[i]:.2f} |")
    res["prior_estimate"] = est
    return "\n".join(lines) + "\n", res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="The MER winners' options vs the defaults, as paired differences.")
    ap.add_argument("--base", required=True, help="results folder of the run with the defaults")
    ap.add_argument("--variant", action="append", default=[], help="NAME=results folder of a pseudo-label variant")
    ap.add_argument("--test-labels", required=True)
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--round", type=int, default=1, help="the round compared (the last one)")
    ap.add_argument("--out", default="", help="write the markdown table here (+ .json beside it)")
    a = ap.parse_args(argv)
    classes = a.classes.split(",")
    variants = {k: Path(v) for k, _, v in (x.partition("=") for x in a.variant)}
    text, res = table(Path(a.base), variants, test_truth(a.test_labels, classes), classes, a.round)
    print(text, end="")
    if a.out:
        write_text(a.out, text)
        write_text(str(Path(a.out).with_suffix(".json")), json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()

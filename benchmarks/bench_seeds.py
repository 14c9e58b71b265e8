"""What the seeds cost: round 0's training stage (every per-feature-set classifier and every trained
fusion head over all modalities) with 1 vs 3 seeds (config `seeds`), side by side: wall time, the
scores (the seed ensemble's, +- the single seeds' std) and the width of the 95% bootstrap interval over videos.

Runs on the cached features of a finished run (`make run` first), in this process, one thread (as the
workflow's training jobs run); writes nothing. The config is the run's (config.yaml < --configfile ...).

    .venv/bin/python -m benchmarks.bench_seeds [--configfile workflow/presets/demo.yaml] [--seeds 1 3]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.harness import Report, timed, workflow_config


def jobs(cfg: dict) -> list[tuple[str, str, dict | None]]:
    """(name, head, modality spec) of round 0's trained models: one per feature set, one per trained head."""
    from expmae.train import plan

    mods = plan.modalities(cfg)
    out = [(fs, plan.SINGLE_HEAD, None) for fs in cfg["classify"]["feature_sets"]]
    return out + [(h, h, mods) for h in plan.heads(cfg) if h in plan.TRAINED_HEADS]


def train_stage(cfg: dict, seeds: int) -> tuple[float, float, dict[str, dict]]:
    """-> wall seconds, CPU seconds, model name -> its metrics (mean, std, interval)."""
    import torch

    from expmae.train import cv, data, plan

    torch.set_num_threads(1)
    res, d = Path(cfg["results"]), cfg["data"]
    params = plan.train_params({**{k: v for k, v in cfg["classify"].items() if k not in plan.PLAN_KEYS["classify"]},
                                **{k: v for k, v in cfg["fuse"].items() if k not in plan.PLAN_KEYS["fuse"]},
                                "seed": cfg["seed"], "seeds": seeds})
    out = {}

    def stage() -> None:
        for name, head, spec in jobs(cfg):
            out[name] = model(name, head, spec)

    def model(name: str, head: str, spec: dict | None) -> dict:
        sets = [name] if spec is None else [fs for v in spec.values() for fs in v]
        paths = {fs: sorted(str(p) for p in (res / "features" / fs).glob("s?????.parquet")) for fs in sets}
        if not all(paths.values()):
            raise SystemExit(f"no cached features under {res}/features for {sets}: run `make run` first")
        ds = data.load(paths, d["labels"], d.get("test") or None, cfg["classes"], d.get("test_labels") or None)
        return cv.cross_validate(ds, head, cfg["classes"], params, None, spec)[1]

    wall, cpu, _ = timed(stage)
    return wall, cpu, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", nargs="*", default=["workflow/presets/demo.yaml"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 3])
    a = ap.parse_args(argv)
    cfg = workflow_config(a.configfile)
    import sklearn.model_selection  # noqa: F401  imports before the clock: both settings pay them alike in a job
    import torch  # noqa: F401

    with Report("seeds: round-0 training stage, one thread", f"config {' '.join(a.configfile)}") as rep:
        runs = {s: train_stage(cfg, s) for s in a.seeds}
        first, last = a.seeds[0], a.seeds[-1]
        rows = [{"": label, **{f"seeds={s}": runs[s][i] for s in a.seeds}, "ratio": runs[last][i] / runs[first][i]}
                for label, i in (("wall s", 0), ("CPU s", 1))]
        rep.table(rows, caption="cost of the stage (every classifier and trained fusion head of round 0):", digits=1)
        rows = []
        for n in runs[first][2]:
            row: dict = {"model": n}
            for s in a.seeds:
                m = runs[s][2][n]
                lo, hi = m["weighted_f1_ci"]
                sd = m["weighted_f1_std"]
                row[f"seeds={s}"] = f"{m['weighted_f1']:.3f} +- {'n/a' if sd is None else f'{sd:.3f}'} w={hi - lo:.3f}"
            rows.append(row)
        rows.append({"model": "mean interval width", **{
            f"seeds={s}": f"{np.mean([m['weighted_f1_ci'][1] - m['weighted_f1_ci'][0] for m in runs[s][2].values()]):.3f}"
            for s in a.seeds}})
        rep.table(rows, caption="the seed ensemble's OOF weighted F1 +- the std of the single seeds' F1, w = width of "
                                "its 95% bootstrap interval over videos:")


if __name__ == "__main__":
    main()

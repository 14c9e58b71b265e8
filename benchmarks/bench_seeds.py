"""What the seeds cost: round 0's training stage (every per-feature-set classifier and every trained
fusion head over all modalities) with 1 vs 3 seeds (config `seeds`), side by side: wall time, the
scores (the seed ensemble's, +- the single seeds' std) and the width of the 95% bootstrap interval over videos.

Runs on the cached features of a finished run (`make run` first), in this process, one thread (as the
workflow's training jobs run); writes nothing. The config is the run's (config.yaml < --configfile ...).

    python benchmarks/bench_seeds.py [--configfile workflow/presets/demo.yaml] [--seeds 1 3]

Measured on the demo (2-core box shared with other jobs, load ~4-10): CPU 31.6 s (1 seed) vs 102.4 s
(3 seeds), 3.2x; mean interval width 0.199 vs 0.195: the interval over 96 videos barely shrinks with
seeds (the videos, not the seeds, dominate it); the seeds' std is 0.009-0.067.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


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
    out, t0, c0 = {}, time.perf_counter(), time.process_time()
    for name, head, spec in jobs(cfg):
        sets = [name] if spec is None else [fs for v in spec.values() for fs in v]
        paths = {fs: sorted(str(p) for p in (res / "features" / fs).glob("s?????.parquet")) for fs in sets}
        if not all(paths.values()):
            raise SystemExit(f"no cached features under {res}/features for {sets}: run `make run` first")
        ds = data.load(paths, d["labels"], d.get("test") or None, cfg["classes"], d.get("test_labels") or None)
        _, m, _ = cv.cross_validate(ds, head, cfg["classes"], params, None, spec)
        out[name] = m
    return time.perf_counter() - t0, time.process_time() - c0, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configfile", nargs="*", default=["workflow/presets/demo.yaml"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[1, 3])
    a = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from expmae import config

    cfg = config.load(a.configfile, base=ROOT / "config.yaml")
    import sklearn.model_selection  # noqa: F401  imports before the clock: both settings pay them alike in a job
    import torch  # noqa: F401

    runs = {s: train_stage(cfg, s) for s in a.seeds}
    names = list(runs[a.seeds[0]][2])
    print(f"round-0 training stage ({len(names)} models, one thread), seeds side by side"
          " (the seed ensemble's OOF weighted F1 +- the std of the single seeds' F1,"
          " w = width of its 95% bootstrap interval over videos):")
    print(f"{'':<12}" + "".join(f"{f'seeds={s}':>30}" for s in a.seeds))
    for label, i in (("wall s", 0), ("CPU s", 1)):
        print(f"{label:<12}" + "".join(f"{runs[s][i]:>30.1f}" for s in a.seeds)
              + f"   ratio {runs[a.seeds[-1]][i] / runs[a.seeds[0]][i]:.2f}x")
    for n in names:
        cells = []
        for s in a.seeds:
            m = runs[s][2][n]
            lo, hi = m["weighted_f1_ci"]
            sd = m["weighted_f1_std"]
            cells.append(f"{m['weighted_f1']:.3f} +- {'n/a  ' if sd is None else f'{sd:.3f}'} w={hi - lo:.3f}")
        print(f"{n:<12}" + "".join(f"{c:>30}" for c in cells))
    for s in a.seeds:
        widths = [m["weighted_f1_ci"][1] - m["weighted_f1_ci"][0] for m in runs[s][2].values()]
        print(f"seeds={s}: mean interval width {np.mean(widths):.3f} (w = 95% bootstrap interval over videos)")


if __name__ == "__main__":
    main()

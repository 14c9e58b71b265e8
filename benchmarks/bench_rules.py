"""Per-rule seconds of two workflow runs side by side, from Snakemake's benchmark files.

Every rule with a `benchmark:` writes <results>/benchmarks/<rule>/<job>.tsv (or <rule>.tsv): wall seconds
(`s`) and CPU seconds (`cpu_time`) of the job. This sums them per rule for run A (e.g. a clean clone of the
previous commit) and run B (this one), both `make run` on the same machine, and prints jobs, wall and CPU
seconds and B/A. CPU seconds are the steadier number on a shared box: two jobs run at once on 2 cores,
so one job's wall time depends on what ran beside it.

    python benchmarks/bench_rules.py /path/to/old/results results
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def rule_times(results: str | Path) -> pd.DataFrame:
    """rule -> jobs, wall s, cpu s (summed over the rule's benchmark files)."""
    root = Path(results) / "benchmarks"
    rows = []
    for f in sorted(root.rglob("*.tsv")):
        rel = f.parent.relative_to(root)
        rule = f.stem if rel == Path(".") else str(rel)  # mae_pretrain.tsv, classify/<job>.tsv, features/<set>/<job>.tsv
        t = pd.read_csv(f, sep="\t")
        rows.append({"rule": rule, "s": float(t["s"].iloc[-1]), "cpu": float(t["cpu_time"].iloc[-1])})
    df = pd.DataFrame(rows, columns=["rule", "s", "cpu"])
    return df.groupby("rule").agg(jobs=("s", "size"), s=("s", "sum"), cpu=("cpu", "sum"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="results folder of run A (before)")
    ap.add_argument("b", help="results folder of run B (after)")
    a = ap.parse_args(argv)
    A, B = rule_times(a.a), rule_times(a.b)
    t = A.add_suffix("_a").join(B.add_suffix("_b"), how="outer").fillna(0)
    t.loc["total"] = t.sum()
    t["wall_b/a"] = (t["s_b"] / t["s_a"]).round(2)
    t["cpu_b/a"] = (t["cpu_b"] / t["cpu_a"]).round(2)
    cols = ["jobs_a", "jobs_b", "s_a", "s_b", "wall_b/a", "cpu_a", "cpu_b", "cpu_b/a"]
    print(t[cols].astype({"jobs_a": int, "jobs_b": int}).round(1).to_string())


if __name__ == "__main__":
    main()

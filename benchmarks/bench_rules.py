"""Per-rule seconds of one workflow run, or of two side by side, from Snakemake's benchmark files.

Every rule with a `benchmark:` writes <results>/benchmarks/<rule>/<job>.tsv (or <rule>.tsv): wall seconds
(`s`) and CPU seconds (`cpu_time`) of the job. This sums them per rule and prints jobs, wall and CPU
seconds; with two results folders, run A (before, e.g. `make run` in a clean clone of the previous commit)
and run B (after, this one) side by side with B/A. Compare wall seconds: Snakemake samples a job's CPU
time every 0.5 s for 15 s, then every 30 s, so the CPU of a job longer than 15 s is a lower bound (up to
half its real CPU; harness.CPU_SAMPLED_S). A CPU figure marked `>=` sums such jobs; `long` counts them.

    .venv/bin/python -m benchmarks.bench_rules results                       # one run
    .venv/bin/python -m benchmarks.bench_rules /path/to/old/results results  # before / after
"""
from __future__ import annotations

import argparse

from benchmarks.harness import Report, rule_seconds


def cpu(seconds: float, long: int) -> str:
    """CPU seconds, marked as a lower bound when some of the jobs ran longer than Snakemake samples densely."""
    return f"{'>=' if long else ''}{seconds:.1f}"


def one_run(results: str) -> list[dict]:
    t = rule_seconds(results)
    t.loc["total"] = t.sum()
    return [{"rule": r, "jobs": int(v.jobs), "long": int(v.long), "wall s": float(v.s), "CPU s": cpu(v.cpu, v.long)}
            for r, v in t.iterrows()]


def before_after(a: str, b: str) -> list[dict]:
    t = rule_seconds(a).add_suffix("_a").join(rule_seconds(b).add_suffix("_b"), how="outer").fillna(0)
    t.loc["total"] = t.sum()
    ratio = lambda x, y: f"{x / y:.2f}" if y else "n/a"  # noqa: E731
    return [{"rule": r, "jobs A": int(v.jobs_a), "jobs B": int(v.jobs_b), "wall s A": float(v.s_a),
             "wall s B": float(v.s_b), "wall B/A": ratio(v.s_b, v.s_a), "CPU s A": cpu(v.cpu_a, v.long_a),
             "CPU s B": cpu(v.cpu_b, v.long_b)} for r, v in t.iterrows()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="results folder of one run, or of run A (before) and run B (after)")
    a = ap.parse_args(argv)
    if len(a.results) > 2:
        raise SystemExit("bench_rules: give one results folder, or two (before, after)")
    if not any(rule_seconds(r).shape[0] for r in a.results):
        raise SystemExit(f"bench_rules: no benchmark files under {' or '.join(a.results)}/benchmarks: run `make run` first")
    with Report("per-rule seconds (Snakemake benchmark files)", "A: " + a.results[0] +
                (f", B: {a.results[1]}" if len(a.results) == 2 else "")) as rep:
        rep.table(one_run(a.results[0]) if len(a.results) == 1 else before_after(*a.results), digits=1)


if __name__ == "__main__":
    main()

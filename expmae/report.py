"""Gather every stage's outputs into results/metrics.json, MER submissions and one QC table.

    python -m expmae.report --classify results/classify/round0/expmae ... --pseudo results/pseudo/round0.parquet \
        --final results/classify/round1/fbp --faces-qc ... --audio-qc ... --text ... --ingest-issues ... --out results
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

from expmae.io import read_meta, write_json, write_text


def submission(probs: pd.DataFrame) -> pd.DataFrame:
    """MER 2023 submission format: name,discrete,valence (valence 0.0 until a valence head exists)."""
    t = probs[probs["split"] == "test"]
    return pd.DataFrame({"name": t["name"], "discrete": t["pred"], "valence": 0.0})


def qc_table(faces_qc: list[str], audio_qc: list[str], text: list[str], ingest_issues: str | None,
             label_issues: list[dict]) -> pd.DataFrame:
    """One row per (video, stage) problem: name, stage, reason."""
    rows: list[dict] = []
    for p in faces_qc:
        q = pd.read_parquet(p)
        rows += [{"name": r.name, "stage": "faces", "reason": r.reason} for r in q.itertuples() if not r.ok]
    for p in audio_qc:
        q = pd.read_parquet(p)
        rows += [{"name": r.name, "stage": "audio", "reason": r.reason} for r in q.itertuples() if not r.ok]
    for p in text:
        rows += [{"name": n, "stage": "text", "reason": "no transcript"} for n in read_meta(p).get("missing", [])]
    if ingest_issues and Path(ingest_issues).exists():
        q = pd.read_csv(ingest_issues, sep="\t", dtype=str, keep_default_na=False)
        rows += [{"name": r.name or r.path, "stage": "ingest", "reason": r.reason} for r in q.itertuples()]
    rows += label_issues
    return pd.DataFrame(rows, columns=["name", "stage", "reason"]).drop_duplicates(ignore_index=True)


def _round(x: float | None) -> float | None:
    return None if x is None or x != x else round(x, 4)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Collect metrics, submissions and QC.")
    ap.add_argument("--classify", nargs="+", required=True, help="results/classify/round{r}/{name} folders")
    ap.add_argument("--pseudo", nargs="*", default=[])
    ap.add_argument("--final", required=True, help="the classify folder whose test predictions are submitted")
    ap.add_argument("--faces-qc", nargs="*", default=[])
    ap.add_argument("--audio-qc", nargs="*", default=[])
    ap.add_argument("--text", nargs="*", default=[])
    ap.add_argument("--ingest-issues", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    out = Path(a.out)
    rounds: dict[str, dict] = {}
    label_issues: list[dict] = []
    for d in a.classify:
        d = Path(d)
        r = re.search(r"round(\d+)", str(d)).group(1)
        m = json.loads((d / "metrics.json").read_text())
        issues = m.pop("issues", [])  # the same label issues are in every metrics.json
        label_issues = label_issues or issues
        rounds.setdefault(r, {})[d.name] = m
        sub = submission(pd.read_parquet(d / "probs.parquet"))
        write_text(out / "submission" / f"round{r}_{d.name}.csv", sub.to_csv(index=False))
    pseudo = {}
    for p in filter(None, a.pseudo):
        meta = read_meta(p)
        pseudo[str(meta.get("round"))] = {"n": int(len(pd.read_parquet(p))), "class_mix": meta.get("class_mix", {})}
    final_dir = Path(a.final)
    final_r = re.search(r"round(\d+)", str(final_dir)).group(1)
    final_m = rounds[final_r][final_dir.name]
    sub = submission(pd.read_parquet(final_dir / "probs.parquet"))
    write_text(out / "submission" / "final.csv", sub.to_csv(index=False))
    qc = qc_table(a.faces_qc, a.audio_qc, a.text, a.ingest_issues, label_issues)
    write_text(out / "qc" / "summary.tsv", qc.to_csv(sep="\t", index=False))
    metrics = {
        "rounds": rounds,
        "pseudo": pseudo,
        "final": {"round": int(final_r), "head": final_dir.name,
                  **{k: final_m.get(k) for k in ("weighted_f1", "accuracy", "test_weighted_f1", "test_accuracy")}},
        "table": {r: {n: _round(m["weighted_f1"]) for n, m in heads.items()} for r, heads in sorted(rounds.items())},
        "qc": {"problems": int(len(qc)), "by_stage": qc["stage"].value_counts().to_dict()},
    }
    write_json(out / "metrics.json", metrics)
    print(json.dumps(metrics["table"], indent=1))
    print("final:", json.dumps(metrics["final"]))


if __name__ == "__main__":
    main()

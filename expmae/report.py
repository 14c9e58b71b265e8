"""Gather every stage's outputs: metrics.json, MER submissions, one QC table and the report figures.

The final model is the fusion head over all modalities of the last round with the best out-of-fold
weighted F1 (the sub-combinations are reported, not candidates: the max of many noisy scores would
inflate it); metrics.json also names the best single feature set, so the fused-vs-single comparison
is explicit (`final.fused_ge_single`).

    python -m expmae.report --classify results/classify/round0/expmae ... results/fuse/round1/all/fbp ... \
        --pseudo results/pseudo/round0.parquet --classes neutral,... --faces-qc ... --audio-qc ... --text ... \
        --ingest-issues ... --out results
Writes <out>/metrics.json, <out>/submission/{final,round<r>_<name>}.csv, <out>/qc/summary.tsv and
<out>/report/{f1_table.html,f1_table.tsv,pseudo.tsv,confusion.png,pseudo.png,curves.png}.
"""
from __future__ import annotations

import argparse
import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd

from expmae import plots
from expmae.io import read_meta, write_json, write_text
from expmae.pseudolabel import candidate_name

SCORES = ("weighted_f1", "accuracy", "valence_mse", "mer_combined", "test_weighted_f1", "test_accuracy",
          "test_valence_mse", "test_mer_combined")


def submission(probs: pd.DataFrame) -> pd.DataFrame:
    """MER 2023 submission format: name,discrete,valence (predicted valence; 0.0 where none was learned)."""
    t = probs[probs["split"] == "test"]
    v = t["valence"].to_numpy(float) if "valence" in t else np.zeros(len(t))
    return pd.DataFrame({"name": t["name"], "discrete": t["pred"], "valence": np.round(np.nan_to_num(v), 4)})


def qc_table(faces_qc: list[str], audio_qc: list[str], text: list[str], ingest_issues: str | None,
             label_issues: list[dict], asr: list[str] = ()) -> pd.DataFrame:
    """One row per (video, stage) problem: name, stage, reason."""
    rows: list[dict] = []
    for p in faces_qc:
        q = pd.read_parquet(p)
        rows += [{"name": r.name, "stage": "faces", "reason": r.reason} for r in q.itertuples() if not r.ok]
    for p in audio_qc:
        q = pd.read_parquet(p)
        rows += [{"name": r.name, "stage": "audio", "reason": r.reason} for r in q.itertuples() if not r.ok]
    for p in asr:  # videos the ASR stage could not transcribe (no audio, undecodable)
        q = pd.read_parquet(p)
        rows += [{"name": r.name, "stage": "asr", "reason": r.reason} for r in q.itertuples() if not r.ok]
    for p in text:
        rows += [{"name": n, "stage": "text", "reason": "no transcript"} for n in read_meta(p).get("missing", [])]
    if ingest_issues and Path(ingest_issues).exists():
        q = pd.read_csv(ingest_issues, sep="\t", dtype=str, keep_default_na=False)
        rows += [{"name": r.name or r.path, "stage": "ingest", "reason": r.reason} for r in q.itertuples()]
    rows += label_issues
    return pd.DataFrame(rows, columns=["name", "stage", "reason"]).drop_duplicates(ignore_index=True)


def _round(x: float | None) -> float | None:
    return None if x is None or x != x else round(float(x), 4)


def tables(rounds: dict[str, dict[str, dict]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> wide weighted-F1 table (round x model) and the long table of every score."""
    long = pd.DataFrame([{"round": int(r), "model": n, "kind": m["kind"], **{k: _round(m.get(k)) for k in SCORES},
                          "n_pseudo": m.get("n_pseudo", 0)} for r, ms in rounds.items() for n, m in ms.items()])
    long = long.sort_values(["round", "kind", "model"], ascending=[True, False, True], ignore_index=True)
    order = list(dict.fromkeys(long["model"]))
    wide = long.pivot(index="round", columns="model", values="weighted_f1")[order]
    return wide, long


def html_report(wide: pd.DataFrame, long: pd.DataFrame, final: dict) -> str:
    def cell(v, best):
        s = "" if v is None or v != v else f"{v:.3f}"
        return f"<td><b>{s}</b></td>" if best and s else f"<td>{s}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in wide.columns)
    rows = "".join(f"<tr><th>{r}</th>" + "".join(cell(v, v == row.max()) for v in row) + "</tr>" for r, row in wide.iterrows())
    lhead = "".join(f"<th>{html.escape(c)}</th>" for c in long.columns)
    lrows = "".join("<tr>" + "".join(f"<td>{'' if v is None or v != v else html.escape(str(v))}</td>" for v in row) + "</tr>"
                    for row in long.itertuples(index=False))
    summary = html.escape(json.dumps(final))
    return ("<html><head><meta charset='utf-8'><style>table{border-collapse:collapse;font:13px sans-serif}"
            "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}</style></head><body>"
            "<h3>Out-of-fold weighted F1 on the labeled set, per round (rows) and model (best per round in bold)</h3>"
            f"<table><tr><th>round</th>{head}</tr>{rows}</table>"
            f"<h3>Final model</h3><pre>{summary}</pre><h3>All scores</h3>"
            f"<table><tr>{lhead}</tr>{lrows}</table></body></html>")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Collect metrics, submissions, QC and report figures.")
    ap.add_argument("--classify", nargs="+", required=True,
                    help="classify/round{r}/{feature set} and fuse/round{r}/{combination}/{head} folders")
    ap.add_argument("--pseudo", nargs="*", default=[])
    ap.add_argument("--classes", required=True)
    ap.add_argument("--faces-qc", nargs="*", default=[])
    ap.add_argument("--audio-qc", nargs="*", default=[])
    ap.add_argument("--text", nargs="*", default=[])
    ap.add_argument("--asr", nargs="*", default=[])
    ap.add_argument("--ingest-issues", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    out, classes = Path(a.out), a.classes.split(",")
    rounds: dict[str, dict] = {}
    dirs: dict[tuple[str, str], Path] = {}
    label_issues: list[dict] = []
    for d in map(Path, a.classify):
        r = re.search(r"round(\d+)", str(d)).group(1)
        m = json.loads((d / "metrics.json").read_text())
        issues = m.pop("issues", [])  # the same label issues are in every metrics.json
        m.update({k: float("nan") for k in SCORES if k in m and m[k] is None})  # strict JSON wrote NaN as null
        label_issues = label_issues or issues
        name = candidate_name(d)
        m["kind"] = "single" if d.parent.name.startswith("round") else "fused"
        rounds.setdefault(r, {})[name] = m
        dirs[r, name] = d
        sub = submission(pd.read_parquet(d / "probs.parquet"))
        write_text(out / "submission" / f"round{r}_{name}.csv", sub.to_csv(index=False))
    pseudo = {}
    for p in filter(None, a.pseudo):
        meta = read_meta(p)
        pseudo[str(meta.get("round"))] = {"n": int(len(pd.read_parquet(p))), "class_mix": meta.get("class_mix", {}),
                                          "source": candidate_name(Path(meta["source"])) if meta.get("source") else None,
                                          "mean_confidence": _round(meta.get("mean_confidence"))}
    last = max(rounds, key=int)

    def best(kind: str) -> str | None:
        # fused candidates: the heads over ALL modalities only; the sub-combinations are for analysis
        # (picking the max of many noisy OOF scores would inflate the final model's score)
        c = {n: m["weighted_f1"] for n, m in rounds[last].items() if m["kind"] == kind and "[" not in n}
        # ties and unscored runs (too few labels to cross-validate: F1 NaN): prefer FBP, the paper's head
        return max(c, key=lambda n: (c[n] if c[n] == c[n] else -1.0, n == "fbp")) if c else None

    final_name = best("fused") or best("single")
    single = best("single")
    fm = rounds[last][final_name]
    final = {"round": int(last), "model": final_name, "head": fm.get("head"),
             **{k: _round(fm.get(k)) for k in SCORES if k in fm},
             "best_single": single, "best_single_weighted_f1": _round(rounds[last][single]["weighted_f1"]) if single else None,
             "best_single_test_weighted_f1": _round(rounds[last][single].get("test_weighted_f1")) if single else None,
             "fused_ge_single": bool(single is None or fm["weighted_f1"] >= rounds[last][single]["weighted_f1"])
             if fm["weighted_f1"] == fm["weighted_f1"] else None}
    write_text(out / "submission" / "final.csv", submission(pd.read_parquet(dirs[last, final_name] / "probs.parquet")).to_csv(index=False))
    qc = qc_table(a.faces_qc, a.audio_qc, a.text, a.ingest_issues, label_issues, a.asr)
    write_text(out / "qc" / "summary.tsv", qc.to_csv(sep="\t", index=False))
    wide, long = tables(rounds)
    rep = out / "report"
    write_text(rep / "f1_table.tsv", long.to_csv(sep="\t", index=False))
    write_text(rep / "f1_table.html", html_report(wide, long, final))
    ptab = pd.DataFrame([{"round": int(r), "n": v["n"], "source": v["source"], "mean_confidence": v["mean_confidence"],
                          **{c: v["class_mix"].get(c, 0) for c in classes}} for r, v in sorted(pseudo.items())],
                        columns=["round", "n", "source", "mean_confidence", *classes])
    write_text(rep / "pseudo.tsv", ptab.to_csv(sep="\t", index=False))
    plots.pseudo_png({r: v["class_mix"] for r, v in pseudo.items()}, classes, rep / "pseudo.png")
    plots.confusion_png(fm["confusion"], classes, f"final: {final_name}, round {last} (out-of-fold, labeled set), "
                        f"wF1 {fm['weighted_f1']:.3f}", rep / "confusion.png")
    # curves of the single feature sets and the all-modality heads (sub-combinations would crowd the figure)
    shown = [n for n in rounds[last] if "[" not in n or n == final_name]
    plots.curves_png({f"{n} (round {last})": rounds[last][n].get("curves", []) for n in shown}, rep / "curves.png")
    for ms in rounds.values():  # curves and confusions live in each model's metrics.json
        for m in ms.values():
            m.pop("curves", None)
    metrics = {"rounds": rounds, "pseudo": pseudo, "final": final,
               "table": {r: {n: _round(m["weighted_f1"]) for n, m in heads.items()} for r, heads in sorted(rounds.items())},
               "qc": {"problems": int(len(qc)), "by_stage": qc["stage"].value_counts().to_dict()}}
    write_json(out / "metrics.json", metrics)
    print(wide.round(3).to_string())
    print("final:", json.dumps(final))


if __name__ == "__main__":
    main()

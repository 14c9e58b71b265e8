"""Gather every stage's outputs: metrics.json, MER submissions, one QC table and the report figures.

The final model is the fusion head over all modalities of the last round with the best out-of-fold
weighted F1 (the sub-combinations are reported, not candidates: the max of many noisy scores would
inflate it); metrics.json also names the best single feature set, so the fused-vs-single comparison
is explicit (`final.fused_ge_single`). Which model a folder holds (round, kind, combo, head, name)
is read from the identity its training job recorded in its metrics.json.

    python -m expmae.report --classify results/classify/round0/expmae ... results/fuse/round1/all/fbp ... \
        --pseudo results/pseudo/round0.parquet --classes neutral,... --faces-qc ... --audio-qc ... --text ... \
        --inputs-qc results/qc/inputs.tsv --test data/test.csv --out results
Writes <out>/metrics.json, <out>/submission/{final,round<r>_<name>}.csv, <out>/qc/summary.tsv and
<out>/report/{f1_table.html,f1_table.tsv,pseudo.tsv,confusion.png,pseudo.png,curves.png}.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from expmae.io import read_meta, write_json, write_text
from expmae.report import figures
from expmae.labels import read_names
from expmae.report.qc import complete_submission, qc_table
from expmae.report.tables import SCORES, html_report, pseudo_table, round4, submission, tables
from expmae.train.plan import is_subcombination

Rounds = dict[str, dict[str, dict]]  # round ('0', '1', ...) -> model name -> its metrics.json


def load_models(dirs: list[str], out: Path) -> tuple[Rounds, dict[tuple[str, str], str], list[dict]]:
    """Every training output's metrics (by round and name, from its identity), its submission CSV text
    (also written to <out>/submission/round<r>_<name>.csv), and the label issues (the same in every
    metrics.json)."""
    rounds: Rounds = {}
    subs: dict[tuple[str, str], str] = {}
    label_issues: list[dict] = []
    for d in map(Path, dirs):
        m = json.loads((d / "metrics.json").read_text())
        if not {"round", "kind", "name"} <= set(m):
            raise SystemExit(f"{d}/metrics.json records no identity (round, kind, name): written by an older expmae; rerun it")
        issues = m.pop("issues", [])
        m.update({k: float("nan") for k in SCORES if k in m and m[k] is None})  # strict JSON wrote NaN as null
        label_issues = label_issues or issues
        r, name = str(m["round"]), m["name"]
        rounds.setdefault(r, {})[name] = m
        subs[r, name] = submission(pd.read_parquet(d / "probs.parquet")).to_csv(index=False)
        write_text(out / "submission" / f"round{r}_{name}.csv", subs[r, name])
    return rounds, subs, label_issues


def best(models: dict[str, dict], kind: str) -> str | None:
    """The best-scoring model of one kind (single | fused) among one round's models."""
    # fused candidates: the heads over ALL modalities only; the sub-combinations are for analysis
    # (picking the max of many noisy OOF scores would inflate the final model's score)
    c = {n: m["weighted_f1"] for n, m in models.items() if m["kind"] == kind and not is_subcombination(m)}
    # ties and unscored runs (too few labels to cross-validate: F1 NaN): prefer FBP, the paper's head
    return max(c, key=lambda n: (c[n] if c[n] == c[n] else -1.0, n == "fbp")) if c else None


def choose_final(rounds: Rounds) -> dict:
    """The final model of the last round (best all-modality fused model, else the best single one),
    its scores and the comparison with the best single feature set."""
    last = max(rounds, key=int)
    models = rounds[last]
    final_name = best(models, "fused") or best(models, "single")
    single = best(models, "single")
    fm = models[final_name]
    return {"round": int(last), "model": final_name, "head": fm.get("head"),
            **{k: round4(fm.get(k)) for k in SCORES if k in fm},
            "best_single": single, "best_single_weighted_f1": round4(models[single]["weighted_f1"]) if single else None,
            "best_single_test_weighted_f1": round4(models[single].get("test_weighted_f1")) if single else None,
            "fused_ge_single": bool(single is None or fm["weighted_f1"] >= models[single]["weighted_f1"])
            if fm["weighted_f1"] == fm["weighted_f1"] else None}


def pseudo_summary(paths: list[str]) -> dict[str, dict]:
    """round -> pool size, class mix, source model (its name, as expmae.train.pseudo recorded it), mean confidence."""
    pseudo = {}
    for p in filter(None, paths):
        meta = read_meta(p)
        pseudo[str(meta.get("round"))] = {"n": int(len(pd.read_parquet(p))), "class_mix": meta.get("class_mix", {}),
                                          "source": meta.get("source"), "mean_confidence": round4(meta.get("mean_confidence"))}
    return pseudo


def write_figures(rep: Path, rounds: Rounds, final: dict, pseudo: dict[str, dict], classes: list[str]) -> None:
    last, final_name = str(final["round"]), final["model"]
    fm = rounds[last][final_name]
    figures.pseudo_png({r: v["class_mix"] for r, v in pseudo.items()}, classes, rep / "pseudo.png")
    figures.confusion_png(fm["confusion"], classes, f"final: {final_name}, round {last} (out-of-fold, labeled set), "
                          f"wF1 {fm['weighted_f1']:.3f}", rep / "confusion.png")
    # curves of the single feature sets and the all-modality heads (sub-combinations would crowd the figure)
    shown = [n for n, m in rounds[last].items() if not is_subcombination(m) or n == final_name]
    figures.curves_png({f"{n} (round {last})": rounds[last][n].get("curves", []) for n in shown}, rep / "curves.png")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Collect metrics, submissions, QC and report figures.")
    ap.add_argument("--classify", nargs="+", required=True,
                    help="training output folders (classify/round{r}/{feature set}, fuse/round{r}/{combination}/{head})")
    ap.add_argument("--pseudo", nargs="*", default=[])
    ap.add_argument("--classes", required=True)
    ap.add_argument("--faces-qc", nargs="*", default=[])
    ap.add_argument("--audio-qc", nargs="*", default=[])
    ap.add_argument("--text", nargs="*", default=[])
    ap.add_argument("--asr", nargs="*", default=[])
    ap.add_argument("--inputs-qc", default="", help="the inputs check's QC rows (results/qc/inputs.tsv)")
    ap.add_argument("--test", default="", help="the test list: final.csv gets a (flagged) row for every name")
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    out, classes = Path(a.out), a.classes.split(",")
    rounds, subs, label_issues = load_models(a.classify, out)
    pseudo = pseudo_summary(a.pseudo)
    final = choose_final(rounds)
    final_csv, no_video = complete_submission(subs[str(final["round"]), final["model"]], read_names(a.test)[0],
                                              classes)
    write_text(out / "submission" / "final.csv", final_csv)
    if no_video:
        print(f"final.csv: {len(no_video)} test names without a video got a guessed row (QC stage test)")
    qc = qc_table(a.faces_qc, a.audio_qc, a.text, a.inputs_qc, label_issues, a.asr)
    write_text(out / "qc" / "summary.tsv", qc.to_csv(sep="\t", index=False))
    wide, long = tables(rounds)
    rep = out / "report"
    write_text(rep / "f1_table.tsv", long.to_csv(sep="\t", index=False))
    write_text(rep / "f1_table.html", html_report(wide, long, final))
    write_text(rep / "pseudo.tsv", pseudo_table(pseudo, classes).to_csv(sep="\t", index=False))
    write_figures(rep, rounds, final, pseudo, classes)
    for ms in rounds.values():  # curves and confusions live in each model's metrics.json
        for m in ms.values():
            m.pop("curves", None)
    metrics = {"rounds": rounds, "pseudo": pseudo, "final": final,
               "table": {r: {n: round4(m["weighted_f1"]) for n, m in heads.items()} for r, heads in sorted(rounds.items())},
               "qc": {"problems": int(len(qc)), "by_stage": qc["stage"].value_counts().to_dict()}}
    write_json(out / "metrics.json", metrics)
    print(wide.round(3).to_string())
    print("final:", json.dumps(final))

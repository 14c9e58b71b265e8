"""Gather every stage's outputs: metrics.json, MER submissions, one QC table and the report figures.

The final model is the fusion head over all modalities of the last round with the best out-of-fold
weighted F1 of its seed ensemble: the same predictions are deployed (submission, bundle) and reported
(the sub-combinations are reported, not candidates: the max of many noisy scores would inflate it; a
model without a valid score is never a candidate). Its OOF score is the best of N candidates, so it is
optimistic: metrics.json (`final.selected`) and the headline say so, beside its test score and the
paired difference to the runner-up. metrics.json also
names the best single feature set and compares the two on the same videos (paired bootstrap,
`final.fused_minus_single`, `final.fused_vs_single`), and the final model with the runner-up
(`final.choice_within_noise`); see expmae.report.noise. The headline of those numbers is
<out>/report/headline.txt (printed at the end of `make run`). Submissions keep the MER columns
name,discrete,valence for every test-list name; <name>.flags.csv beside each says which rows were
predicted without data (column no_data: '' = had data, else why). Which model a folder holds (round, kind, combo, head, name)
is read from the identity its training job recorded in its metrics.json.

    python -m expmae.report --classify results/classify/round0/expmae ... results/fuse/round1/all/fbp ... \
        --pseudo results/pseudo/round0.parquet --classes neutral,... --faces-qc ... --audio-qc ... --text ... \
        --inputs-qc results/qc/inputs.tsv --test data/test.csv --out results
Writes <out>/metrics.json, <out>/submission/{final,round<r>_<name>}.csv, <out>/qc/summary.tsv and
<out>/report/{f1_table.html,f1_table.tsv,pseudo.tsv,headline.txt} and the paper's figures and tables,
<out>/report/figures/*.{pdf,svg,png} and <out>/report/tables/*.{csv,tex} (expmae.report.paper).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from expmae.io import read_meta, write_json, write_text
from expmae.labels import read_names
from expmae.mae.splits import transductive_summary
from expmae import config, tracks
from expmae.report import noise, options, paper, perclass
from expmae.report.qc import add_qc_arguments, complete_submission, qc_table
from expmae.report.page import html_report
from expmae.report.tables import (SCORES, SUBMISSION_COLUMNS, flags, pseudo_table, round4, select_columns, submission,
                                  tables)
from expmae.train.plan import is_subcombination
from expmae.train.scoring import rank_score

Rounds = dict[str, dict[str, dict]]  # round ('0', '1', ...) -> model name -> its metrics.json


def load_models(dirs: list[str], out: Path, columns: list[str] = SUBMISSION_COLUMNS) -> tuple[Rounds, dict[tuple[str, str], str], list[dict], list[dict]]:
    """Every training output's metrics (by round and name, from its identity), its submission CSV text
    (also written to <out>/submission/round<r>_<name>.csv, its flags beside it), and the QC issues the
    training jobs recorded (label problems, videos without any usable modality; merged), and the models
    whose job was skipped for lack of usable data (round, name, reason): left out of every table and choice."""
    rounds: Rounds = {}
    subs: dict[tuple[str, str], str] = {}
    label_issues: list[dict] = []
    skipped: list[dict] = []
    for d in map(Path, dirs):
        m = json.loads((d / "metrics.json").read_text())
        if not {"round", "kind", "name"} <= set(m):
            raise SystemExit(f"{d}/metrics.json records no identity (round, kind, name): written by an older expmae; rerun it")
        if m.get("skipped"):  # no usable data (expmae.train.cv): never a candidate, named in metrics.json
            skipped.append({"round": m["round"], "name": m["name"], "reason": m["skipped"]})
            continue
        issues = m.pop("issues", [])
        m.update({k: float("nan") for k in SCORES if k in m and m[k] is None})  # strict JSON wrote NaN as null
        label_issues += [i for i in issues if i not in label_issues]
        r, name = str(m["round"]), m["name"]
        m["dir"] = str(d)
        rounds.setdefault(r, {})[name] = m
        probs = pd.read_parquet(d / "probs.parquet")
        subs[r, name] = submission(probs).to_csv(index=False)
        subs[r, name, "flags"] = flags(probs).to_csv(index=False)
        write_text(out / "submission" / f"round{r}_{name}.csv", select_columns(subs[r, name], columns))
        write_text(out / "submission" / f"round{r}_{name}.flags.csv", subs[r, name, "flags"])
    return rounds, subs, label_issues, skipped


def ranked(models: dict[str, dict], kind: str) -> list[str]:
    """One round's models of one kind (single | fused) with a valid OOF score, best first by the mean
    over seeds of their OOF weighted F1 (expmae.train.scoring.rank_score)."""
    # fused candidates: the heads over ALL modalities only; the sub-combinations are for analysis
    # (picking the max of many noisy OOF scores would inflate the final model's score)
    c = {n: rank_score(m) for n, m in models.items() if m["kind"] == kind and not is_subcombination(m)}
    c = {n: v for n, v in c.items() if v is not None}  # a model without a valid score is no candidate
    # ties: prefer FBP, the paper's head
    return sorted(c, key=lambda n: (c[n], n == "fbp"), reverse=True)


def best(models: dict[str, dict], kind: str) -> str | None:
    """The best-scoring model of one kind among one round's models (None: none has a valid score)."""
    return (ranked(models, kind) or [None])[0]


def final_round(rounds: Rounds) -> int:
    return max(map(int, rounds))


def choose_final(rounds: Rounds) -> dict:
    """The final model of the last round (best all-modality fused model, else the best single one),
    its identity (round, kind, combo, head, model = name, seeds, dir: the folder with its probs,
    metrics and model.safetensors of every seed x fold member), its scores, the runner-up candidate
    and the best single feature set. No model with a valid OOF score: an error saying why."""
    last = str(final_round(rounds))
    models = rounds[last]
    cands = ranked(models, "fused") or ranked(models, "single")
    if not cands:
        raise SystemExit(f"round {last}: no model has a valid out-of-fold score ({sorted(models)}); there is no final "
                         "model. Too few labeled videos per class for classify.folds?")
    final_name = cands[0]
    single = best(models, "single")
    fm = models[final_name]
    return {"round": int(last), "model": final_name, "head": fm.get("head"), "kind": fm.get("kind"),
            "combo": fm.get("combo"), "seeds": fm.get("seeds"), "dir": fm.get("dir"),
            "runner_up": cands[1] if len(cands) > 1 else None,
            # the winner's OOF score is the max of len(cands) noisy scores: optimistic, and said so
            "selected": {"from": len(cands), "candidates": cands, "by": "out-of-fold weighted F1 of the seed ensemble",
                         "optimistic": len(cands) > 1},
            **{k: round4(fm.get(k)) for k in SCORES if k in fm},
            **{k: fm[k] for k in ("weighted_f1_seed_mean", "weighted_f1_std", "weighted_f1_ci", "test_weighted_f1_seed_mean",
                                  "test_weighted_f1_std", "test_weighted_f1_ci") if fm.get(k) is not None},
            "best_single": single, "best_single_weighted_f1": round4(models[single]["weighted_f1"]) if single else None,
            "best_single_test_weighted_f1": round4(models[single].get("test_weighted_f1")) if single else None,
            "fused_ge_single": bool(single is None or fm["weighted_f1"] >= models[single]["weighted_f1"])
            if fm["weighted_f1"] == fm["weighted_f1"] else None}


def pseudo_summary(paths: list[str]) -> dict[str, dict]:
    """round -> pools (expmae.train.pseudo: one per fold, cumulative): n = pseudo-labels one fold model
    trains on (mean over folds), per fold, distinct videos, class mix per fold model, source model(s) (as
    expmae.train.pseudo recorded them), mean confidence of the round's new picks."""
    pseudo = {}
    for p in filter(None, paths):
        meta = read_meta(p)
        per_fold = meta.get("per_fold") or [int(len(pd.read_parquet(p)))]
        pseudo[str(meta.get("round"))] = {"n": round(sum(per_fold) / len(per_fold), 1), "per_fold": per_fold,
                                          "new_per_fold": meta.get("new_per_fold"), "n_videos": meta.get("n_videos"),
                                          "class_mix": meta.get("class_mix", {}), "source": meta.get("source"),
                                          "mean_confidence": round4(meta.get("mean_confidence"))}
    return pseudo


def probe_results(paths: list[str]) -> dict[str, dict]:
    """encoder kind (image, video) -> its expMAE probe.json (expmae.probe); missing files are skipped."""
    out = {}
    for p in map(Path, filter(None, paths)):
        if p.exists():
            res = json.loads(p.read_text())
            out[str(res.get("kind") or p.parent.name)] = res
    return out


def write_tracks(out: Path, tracks_of: dict, final: dict, final_sub: str, classes: list[str], columns: list[str],
                 encoding: str) -> dict[str, dict]:
    """Each track (config data.tracks) scored on the final model's predictions (expmae.tracks), and its
    submission <out>/submission/<track>.csv: the final model's rows for the track's names (the prior / stack
    options change final.csv only); -> metrics.json `tracks` ({} without tracks)."""
    if not tracks_of:
        return {}
    probs = pd.read_parquet(Path(final["dir"]) / "probs.parquet")
    scored = tracks.score_all(probs, classes, tracks_of, encoding)
    for name, (csv, guessed) in tracks.submissions(final_sub, tracks_of, classes, encoding).items():
        write_text(out / "submission" / f"{name}.csv", select_columns(csv, columns))
        scored[name]["submission"] = f"submission/{name}.csv"
        if guessed:  # names without a video: a guessed row each (QC stage test), scored as submitted
            scored[name]["n_guessed"] = len(guessed)
    write_text(out / "report" / "tracks.tsv", tracks.table(scored).to_csv(sep="\t", index=False))
    return scored


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Collect metrics, submissions, QC and report figures.")
    ap.add_argument("--classify", nargs="+", required=True,
                    help="training output folders (classify/round{r}/{feature set}, fuse/round{r}/{combination}/{head})")
    ap.add_argument("--pseudo", nargs="*", default=[])
    ap.add_argument("--classes", required=True)
    add_qc_arguments(ap)
    ap.add_argument("--inputs-qc", default="", help="the inputs check's QC rows (results/qc/inputs.tsv)")
    ap.add_argument("--test", default="", help="the test list: final.csv gets a (flagged) row for every name")
    ap.add_argument("--submission-columns", default="name,discrete,valence",
                    help="columns of the submission CSVs (config submission.columns)")
    ap.add_argument("--mae-meta", nargs="*", default=[], help="results/mae*/meta.json: which splits pretraining saw")
    ap.add_argument("--mae-probe", nargs="*", default=[], help="results/mae*/probe.json: expMAE vs random weights")
    ap.add_argument("--test-labels", default="", help="the test split's truth: prior-shift check and stacking scores")
    ap.add_argument("--options", default="{}", help='JSON {"prior": {...}, "stack": {...}} over the schema defaults')
    ap.add_argument("--tracks", default="{}", help='JSON {"tracks": config data.tracks, "encoding": data.encoding}:'
                    " each track scored (metrics.json tracks) and submitted (submission/<track>.csv)")
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    out, classes = Path(a.out), a.classes.split(",")
    columns = a.submission_columns.split(",")
    rounds, subs, label_issues, skipped = load_models(a.classify, out, columns)
    pseudo = pseudo_summary(a.pseudo)
    final = noise.compare(choose_final(rounds), rounds[str(final_round(rounds))], classes)
    if shift := noise.prior_shift(rounds[str(final["round"])][final["model"]], classes):
        final["prior_shift"] = shift
    # MAE pretraining on test videos (no labels) is transductive: allowed by MER-SEMI, said wherever scores are
    pretraining = transductive_summary(a.mae_meta)
    final["transductive"] = pretraining["transductive"]
    write_text(out / "submission" / "final.flags.csv", subs[str(final["round"]), final["model"], "flags"])
    # config prior: / stack: (expmae.report.options): the estimate is always recorded, the submission changes on request
    opts = {k: config.resolve(k, v) for k, v in {"prior": {}, "stack": {}, **json.loads(a.options)}.items()}
    truth = options.test_truth(a.test_labels, classes)
    track_cfg = json.loads(a.tracks)
    tracks_of, enc = track_cfg.get("tracks") or {}, str(track_cfg.get("encoding") or "")
    # with tracks the test split also holds the tracks' videos: data.test's own names are its pool and final.csv
    test_list = read_names(a.test)[0]
    test_names = test_list if tracks_of and a.test else None
    reweighted = options.prior_step(final, classes, truth, opts["prior"], test_names)
    stacked, stack_csv = (options.stack_step(final, rounds[str(final["round"])], classes, truth, opts["stack"])
                          if opts["stack"]["enabled"] else (None, None))
    final_csv, no_video = complete_submission(stack_csv or reweighted or subs[str(final["round"]), final["model"]],
                                              test_list, classes)
    if test_names is not None:
        final_csv = tracks.rows_of(final_csv, test_names)
    scored = write_tracks(out, tracks_of, final, subs[str(final["round"]), final["model"]], classes, columns, enc)
    write_text(out / "submission" / "final.csv", select_columns(final_csv, columns))
    if no_video:
        print(f"final.csv: {len(no_video)} test names without a video got a guessed row (QC stage test)")
    qc = qc_table(a.faces_qc, a.audio_qc, a.text, a.inputs_qc, label_issues, a.asr, a.folder_qc)
    write_text(out / "qc" / "summary.tsv", qc.to_csv(sep="\t", index=False))
    wide, long = tables(rounds)
    rep = out / "report"
    write_text(rep / "f1_table.tsv", long.to_csv(sep="\t", index=False))
    write_text(rep / "pseudo.tsv", pseudo_table(pseudo, classes).to_csv(sep="\t", index=False))
    files = paper.write(rep, rounds, final, long, pseudo, classes, truth, probe_results(a.mae_probe))
    final["per_class"] = perclass.as_metrics(files["per_class"])  # OOF and test, with the test confusion matrix
    head = noise.headline(final, rounds[str(final["round"])], pretraining) + tracks.headline(scored)
    head += "".join(f"skipped (round {s['round']}): {s['name']}: {s['reason']}\n" for s in skipped
                    if str(s["round"]) == str(final["round"]))
    write_text(rep / "headline.txt", head)
    write_text(rep / "f1_table.html", html_report(wide, long, final, head, files, tracks.table(scored) if scored else None))
    for ms in rounds.values():  # curves and confusions live in each model's metrics.json
        for m in ms.values():
            m.pop("curves", None)
    metrics = {"rounds": rounds, "skipped": skipped, "pseudo": pseudo, "final": final, "pretraining": pretraining, "stack": stacked,
               "table": {r: {n: round4(m["weighted_f1"]) for n, m in heads.items()} for r, heads in sorted(rounds.items())},
               "qc": {"problems": int(len(qc)), "by_stage": qc["stage"].value_counts().to_dict()}}
    if tracks_of:  # only when data.tracks is set: a config without tracks writes the same metrics.json
        metrics["tracks"] = scored
    write_json(out / "metrics.json", metrics)
    print(wide.round(3).to_string())
    print("".join(f"{r.field:<28} {r.value}\n" for r in files["tables"]["final_model"].itertuples()), end="")
    print(head, end="")

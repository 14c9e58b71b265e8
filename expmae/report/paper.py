"""The report's files for a paper: results/report/figures/<name>.{pdf,svg,png} and
results/report/tables/<name>.{csv,tex}, with the index the report page lists.

Tables (CSV: the numbers as metrics.json holds them; LaTeX: booktabs, three decimals, expmae.report.latex):
    f1_rounds    every round's models: OOF and test weighted F1 of the seed ensemble, 95% bootstrap interval
                 over videos, the single seeds' mean and sd
    per_class    the final model's precision / recall / F1 / support per class, OOF and test
    final_model  the final model: identity, how it was selected (best of N: optimistic), scores, comparisons
    pseudo_pool  the pseudo-label pool per round and class (per fold model, as the training jobs use it)
    probe        the expMAE linear probe: pretrained vs random weights (and the init checkpoint), paired difference
Figures: the tables' content as column-wide plots (expmae.report.figures), plus training curves.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from expmae.report import figures, latex, perclass
from expmae.report.tables import interval_text, round4
from expmae.train.plan import is_subcombination

FIGURES = {"confusion_oof": "final model: confusion matrix, out of fold on the labeled set",
           "confusion_test": "final model: confusion matrix on the labeled test videos",
           "per_class_f1": "final model: F1 per class, OOF and test",
           "pseudo_pool": "pseudo-label pool per round and class",
           "probe": "expMAE linear probe: pretrained vs random weights",
           "curves": "training curves of the final round's models",
           "intervals": "weighted F1 per round (single feature sets, all-modality heads): seed ensemble, 95% "
                        "interval, single seeds"}
TABLES = {"f1_rounds": "Weighted F1 per round and model (seed ensemble [95% bootstrap interval]; seeds mean ± sd)",
          "per_class": "Final model: precision, recall and F1 per class, out of fold and on test",
          "final_model": "Final model",
          "pseudo_pool": "Pseudo-label pool per round and class (per fold model)",
          "probe": "expMAE linear probe: out-of-fold weighted F1 of a logistic regression on encoder features"}
F1_COLUMNS = ["round", "model", "kind", "n_seeds"] + [f"{p}weighted_f1{s}" for p in ("", "test_")
                                                      for s in ("", "_lo", "_hi", "_seed_mean", "_std")]


def f1_rounds(long: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> (the CSV: the long table's weighted-F1 columns, the LaTeX view: intervals as text)."""
    df = long[F1_COLUMNS]
    rows = [r._asdict() for r in df.itertuples(index=False)]

    def seeds(r: dict, k: str) -> str:
        sd = r.get(f"{k}_std")
        return "" if sd is None or sd != sd else f"{r[f'{k}_seed_mean']:.3f} ± {sd:.3f}"

    shown = pd.DataFrame({"round": df["round"], "model": df["model"], "kind": df["kind"],
                          "OOF wF1 [95% CI]": [interval_text({k: r[k] for k in r if not k.endswith(("_std", "_mean"))})
                                               for r in rows],
                          "OOF seeds": [seeds(r, "weighted_f1") for r in rows],
                          "test wF1 [95% CI]": [interval_text({k[5:]: r[k] for k in r if k.startswith("test_")
                                                               and not k.endswith(("_std", "_mean"))}) for r in rows],
                          "test seeds": [seeds(r, "test_weighted_f1") for r in rows]})
    return df, shown


def final_table(final: dict) -> pd.DataFrame:
    """The final model as field / value rows (metrics.json `final`, readable)."""
    sel = final.get("selected") or {}
    ci = final.get("weighted_f1_ci") or [None, None]
    tci = final.get("test_weighted_f1_ci") or [None, None]

    def num(v: float | None, lo: float | None = None, hi: float | None = None) -> str:
        if v is None or v != v:
            return "not scored"
        return f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if lo is not None else "")

    rows = [("model", final["model"]), ("round", final["round"]), ("kind", final.get("kind")),
            ("head", final.get("head")), ("modalities", final.get("combo") or "single feature set"),
            ("seeds", ", ".join(map(str, final.get("seeds") or []))),
            ("selected", f"best of {sel.get('from', 1)} by {sel.get('by', 'OOF weighted F1')}"
                         + (" (optimistic)" if sel.get("optimistic") else "")),
            ("OOF weighted F1 [95% CI]", num(final.get("weighted_f1"), *ci)),
            ("OOF accuracy", num(final.get("accuracy"))),
            ("test weighted F1 [95% CI]", num(final.get("test_weighted_f1"), *tci)),
            ("test accuracy", num(final.get("test_accuracy"))),
            ("best single feature set", f"{final.get('best_single')} (OOF {num(final.get('best_single_weighted_f1'))})"),
            ("vs best single", final.get("fused_vs_single") or ""),
            ("runner-up", final.get("runner_up") or "none"),
            ("pretraining saw test videos", "yes (transductive)" if final.get("transductive") else "no")]
    return pd.DataFrame([(k, "" if v is None else str(v)) for k, v in rows], columns=["field", "value"])


def pseudo_table(pseudo: dict[str, dict], classes: list[str]) -> pd.DataFrame:
    """One row per round: pool size and new picks per fold model (mean over folds), videos, per class."""
    def mean(v: list | None) -> float | None:
        return round(sum(v) / len(v), 1) if v else None

    return pd.DataFrame([{"round": int(r), "n": v["n"], "new": mean(v.get("new_per_fold")), "n_videos": v.get("n_videos"),
                          "mean_confidence": v.get("mean_confidence"), **{c: v["class_mix"].get(c, 0.0) for c in classes}}
                         for r, v in sorted(pseudo.items(), key=lambda kv: int(kv[0]))],
                        columns=["round", "n", "new", "n_videos", "mean_confidence", *classes])


def probe_table(probes: dict[str, dict]) -> pd.DataFrame:
    """Per probed encoder: each weight set's score (mean, sd over fold shuffles) and the paired difference
    expMAE - random weights with its 95% interval over videos."""
    names = {"pretrained": "expMAE", "random_init": "random weights", "init": "init checkpoint"}
    rows = []
    for enc, p in probes.items():
        for tag, label in names.items():
            if tag in p:
                rows.append({"encoder": enc, "weights": label, "weighted_f1": round4(p[tag].get("f1")),
                             "sd": round4(p[tag].get("f1_std")), "lo": None, "hi": None, "n_videos": p.get("n_videos")})
        d = p.get("paired_vs_random") or {}
        if d:
            lo, hi = (d.get("ci") or [None, None])[:2]
            rows.append({"encoder": enc, "weights": "expMAE - random (paired)", "weighted_f1": round4(d.get("diff")),
                         "sd": None, "lo": round4(lo), "hi": round4(hi), "n_videos": d.get("n")})
    return pd.DataFrame(rows, columns=["encoder", "weights", "weighted_f1", "sd", "lo", "hi", "n_videos"])


def curve_models(rounds: dict[str, dict[str, dict]], final: dict) -> dict[str, dict]:
    """The curves shown: the last round's single feature sets and all-modality heads (sub-combinations would
    crowd the figure), each with its fold and seed counts (the legend names folds x seeds)."""
    last = rounds[str(final["round"])]
    return {f"{n} (round {final['round']})": {"curves": m.get("curves") or [], "folds": m.get("folds"),
                                              "seeds": len(m.get("seeds") or []) or None}
            for n, m in last.items() if not is_subcombination(m) or n == final["model"]}


def write(rep: Path, rounds: dict[str, dict[str, dict]], final: dict, long: pd.DataFrame, pseudo: dict[str, dict],
          classes: list[str], truth: dict[str, int], probes: dict[str, dict]) -> dict:
    """Every figure and table under rep/figures and rep/tables. -> {"per_class": the final model's per-class
    results (expmae.report.perclass), "tables": stem -> shown DataFrame, "files": [(path, what)]}."""
    fig, tab = rep / "figures", rep / "tables"
    pc = perclass.final_model(final["dir"], classes, truth)
    title = f"{final['model']}, round {final['round']}"
    for split in ("oof", "test"):
        r = pc.get(split)
        figures.confusion(r and r["confusion"], classes, f"{title}: {perclass.SPLITS[split]}", fig / f"confusion_{split}",
                          empty="no test labels (data.test_labels): no test confusion matrix")
    figures.per_class_f1({perclass.SPLITS[k]: dict(zip(r["per_class"]["class"], r["per_class"]["f1"]))
                          for k, r in pc.items()}, classes, fig / "per_class_f1")
    figures.pseudo_pool({r: v["class_mix"] for r, v in pseudo.items()}, classes, fig / "pseudo_pool")
    figures.probe(probes, fig / "probe")
    figures.curves(curve_models(rounds, final), fig / "curves")
    # the single feature sets and the all-modality heads; every sub-combination is in the tables
    figures.intervals({r: {n: m for n, m in ms.items() if not is_subcombination(m)} for r, ms in rounds.items()},
                      fig / "intervals")
    f1_csv, f1_shown = f1_rounds(long)
    shown = {"f1_rounds": f1_shown, "per_class": perclass.per_class_table(pc), "final_model": final_table(final),
             "pseudo_pool": pseudo_table(pseudo, classes), "probe": probe_table(probes)}
    csv = {**shown, "f1_rounds": f1_csv}
    for stem, caption in TABLES.items():
        latex.write_table(csv[stem], tab, stem, caption, shown[stem])
    files = [(f"figures/{n}.{{pdf,svg,png}}", what) for n, what in FIGURES.items()]
    files += [(f"tables/{n}.{{csv,tex}}", what) for n, what in TABLES.items()]
    return {"per_class": pc, "tables": shown, "files": files}


def outputs(folder: str) -> dict[str, list[str]]:
    """The files write() makes under `folder` (results/report), for the workflow's rule: the PDF and SVG
    figures and the tables (the PNGs are the rule's report items, each named on its own)."""
    return {"vector": [f"{folder}/figures/{n}.{e}" for n in FIGURES for e in figures.FORMATS if e != "png"],
            "tables": [f"{folder}/tables/{n}.{e}" for n in TABLES for e in ("csv", "tex")]}

"""The report's paper files (expmae.report.paper, figures, latex, perclass, page) on a real small set of
training outputs: probs.parquet and metrics.json written by the training package's own writers (5 folds x
3 seeds), a pseudo-label pool, test labels and an expMAE probe.json, run through `expmae.report`'s main."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from expmae import report
from expmae.io import write_table
from expmae.report import latex, paper
from expmae.report.figures import FORMATS
from expmae.train import plan, scoring

CLASSES = ["neutral", "happy", "sad_face"]  # an underscore the LaTeX must escape
FOLDS, SEEDS, N_LAB, N_TEST = 5, 3, 30, 12


def model(d: Path, ident: dict, strength: float, rng: np.random.Generator, truth: dict[str, int]) -> None:
    """A training output folder of a seed ensemble, as expmae.train.cv writes it."""
    n = N_LAB + N_TEST
    names = [f"v{i}" for i in range(n)]
    y = np.r_[np.arange(N_LAB) % len(CLASSES), -np.ones(N_TEST, int)]
    split = np.array(["labeled"] * N_LAB + ["test"] * N_TEST, dtype=object)
    yt = np.r_[y[:N_LAB], [truth[nm] for nm in names[N_LAB:]]]
    seed_p = rng.dirichlet(np.ones(len(CLASSES)), (SEEDS, n))
    seed_p[:, np.arange(n), yt] += strength
    seed_p /= seed_p.sum(2, keepdims=True)
    fold_of = np.r_[np.arange(N_LAB) % FOLDS, -np.ones(N_TEST, int)]
    df = scoring.probs_frame(names, split, y, fold_of, seed_p.mean(0), seed_p[:1], np.zeros(n), CLASSES,
                             seed_probs=seed_p, seed_valence=np.zeros((SEEDS, n)))
    m = scoring.summarize(df, CLASSES, np.full(n, np.nan), truth, {})
    curve = {"train": [1.0, 0.7, 0.5], "val": [1.1, 0.9, 0.95], "inner": [1.0, 0.8, 0.85], "best_epoch": 2}
    m.update(curves=[curve] * (FOLDS * SEEDS), folds=FOLDS, seeds=[0, 1, 2], n_pseudo=0, **ident)
    d.mkdir(parents=True)
    write_table(d / "probs.parquet", df)
    (d / "metrics.json").write_text(json.dumps(m))


def run(tmp: Path, class_mix: dict[str, float], test_labels: bool = True) -> tuple[Path, dict]:
    rng = np.random.default_rng(3)
    truth = {f"v{i}": i % len(CLASSES) for i in range(N_LAB, N_LAB + N_TEST)}
    dirs = []
    for name, s in (("egemaps", 0.25), ("minilm", 0.05)):
        dirs.append(tmp / "classify" / "round0" / name)
        model(dirs[-1], plan.identity(0, "single", "mlp", name), s, rng, truth)
    for head, s in (("fbp", 0.4), ("late", 0.3)):
        dirs.append(tmp / "fuse" / "round0" / "all" / head)
        model(dirs[-1], plan.identity(0, "fused", head, head, "all"), s, rng, truth)
    pool = tmp / "pseudo" / "round0.parquet"
    write_table(pool, pd.DataFrame({"name": [], "fold": [], "discrete": []}),
                meta={"round": 0, "class_mix": class_mix, "source": "fbp", "per_fold": [int(sum(class_mix.values()))] * FOLDS,
                      "new_per_fold": [0] * FOLDS, "n_videos": 0})
    probe = tmp / "mae" / "probe.json"
    probe.parent.mkdir()
    probe.write_text(json.dumps({"kind": "image", "n_videos": N_LAB, "pretrained": {"f1": 0.61, "f1_std": 0.02},
                                 "random_init": {"f1": 0.42, "f1_std": 0.03},
                                 "paired_vs_random": {"diff": 0.19, "ci": [0.05, 0.33], "n": N_LAB}}))
    labels = tmp / "test_labels.csv"
    labels.write_text("name,discrete\n" + "".join(f"{n},{CLASSES[c]}\n" for n, c in truth.items()))
    out = tmp / "res"
    report.main(["--classify", *map(str, dirs), "--pseudo", str(pool), "--classes", ",".join(CLASSES),
                 "--mae-probe", str(probe), *(["--test-labels", str(labels)] if test_labels else []), "--out", str(out)])
    return out / "report", json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def grown(tmp_path_factory) -> tuple[Path, dict]:
    return run(tmp_path_factory.mktemp("grown"), {"neutral": 2.0, "happy": 1.0, "sad_face": 0.5})


def test_every_figure_is_vector_at_column_width(grown) -> None:
    rep, _ = grown
    for name in paper.FIGURES:
        for fmt in FORMATS:
            assert (rep / "figures" / f"{name}.{fmt}").stat().st_size > 0, (name, fmt)
        svg = (rep / "figures" / f"{name}.svg").read_text()
        assert "<image" not in svg, f"{name}.svg embeds a raster image"
        assert 'width="252pt"' in svg  # 3.5 in
        pdf = (rep / "figures" / f"{name}.pdf").read_bytes()
        assert b"/Subtype /Image" not in pdf, f"{name}.pdf holds an image XObject"
        assert b"/FontFile2" in pdf, f"{name}.pdf does not embed its TrueType font (pdf.fonttype 42)"


def test_latex_tables_are_booktabs_and_escaped(grown) -> None:
    rep, _ = grown
    for name in paper.TABLES:
        tex = (rep / "tables" / f"{name}.tex").read_text()
        begins, ends = re.findall(r"\\begin\{(\w+)\}", tex), re.findall(r"\\end\{(\w+)\}", tex)
        assert begins == ends[::-1] == ["table", "tabular"], name
        assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule"), name
        assert not re.search(r"(?<!\\)[_%#$]", tex.replace(r"$\pm$", "")), f"{name}.tex: an unescaped special character"
        cols = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1))
        rows = [r for r in tex[tex.index(r"\toprule") + 8:tex.index(r"\bottomrule")].splitlines() if r and r != r"\midrule"]
        assert rows and all(len(re.findall(r"(?<!\\)&", r)) == cols - 1 and r.endswith(r"\\") for r in rows), name
    assert r"sad\_face" in (rep / "tables" / "per_class.tex").read_text()
    assert r"\label{tab:per-class}" in (rep / "tables" / "per_class.tex").read_text()
    assert latex.escape("a_b&c%d$e#{f}~^\\") == (r"a\_b\&c\%d\$e\#\{f\}\textasciitilde{}\textasciicircum{}"
                                                 r"\textbackslash{}")


def test_csv_tables_equal_the_metrics(grown) -> None:
    rep, m = grown
    f1 = pd.read_csv(rep / "tables" / "f1_rounds.csv")
    assert len(f1) == 4
    for r in f1.itertuples():
        mm = m["rounds"][str(r.round)][r.model]
        assert r.weighted_f1 == pytest.approx(mm["weighted_f1"], abs=1e-4)
        assert [r.weighted_f1_lo, r.weighted_f1_hi] == pytest.approx(mm["weighted_f1_ci"], abs=1e-4)
        assert r.test_weighted_f1 == pytest.approx(mm["test_weighted_f1"], abs=1e-4)
        assert r.weighted_f1_std == pytest.approx(mm["weighted_f1_std"], abs=1e-4) and r.n_seeds == SEEDS
    fin = pd.read_csv(rep / "tables" / "final_model.csv").set_index("field")["value"]
    assert fin["model"] == m["final"]["model"] and "best of 2" in fin["selected"] and "(optimistic)" in fin["selected"]
    probe = pd.read_csv(rep / "tables" / "probe.csv")
    assert probe["weighted_f1"].tolist() == [0.61, 0.42, 0.19] and probe["lo"].iloc[2] == 0.05
    pool = pd.read_csv(rep / "tables" / "pseudo_pool.csv")
    assert pool[CLASSES].values.tolist() == [[2.0, 1.0, 0.5]]


def test_per_class_scores_match_sklearn(grown) -> None:
    rep, m = grown
    probs = pd.read_parquet(m["final"]["dir"] + "/probs.parquet")
    pred = probs[[f"prob_{c}" for c in CLASSES]].to_numpy().argmax(1)
    oof = (probs["split"] == "labeled").to_numpy()
    test = ~oof
    y_test = np.array([int(n[1:]) % len(CLASSES) for n in probs["name"][test]])
    table = pd.read_csv(rep / "tables" / "per_class.csv")
    for split, y, p in (("oof", probs["y"].to_numpy()[oof], pred[oof]), ("test", y_test, pred[test])):
        want = np.array(precision_recall_fscore_support(y, p, labels=range(len(CLASSES)), zero_division=0)).T
        got = table[table["split"] == split][["precision", "recall", "f1", "support"]].to_numpy()
        assert got == pytest.approx(want, abs=1e-4), split
        cm = confusion_matrix(y, p, labels=range(len(CLASSES))).tolist()
        assert m["final"]["per_class"][split]["confusion"] == cm
        w = np.average(want[:, 2], weights=want[:, 3])  # the per-class F1s give the model's weighted F1
        assert w == pytest.approx(m["final"]["weighted_f1" if split == "oof" else "test_weighted_f1"], abs=1e-3)
    assert m["final"]["per_class"]["oof"]["confusion"] == m["rounds"]["0"][m["final"]["model"]]["confusion"]


def test_curve_legends_name_folds_and_seeds(grown) -> None:
    svg = (grown[0] / "figures" / "curves.svg").read_text()
    assert "mean of 5 folds × 3 seeds" in svg and "15 folds" not in svg


def test_page_opens_on_the_results_and_lists_the_files(grown) -> None:
    page = (grown[0] / "f1_table.html").read_text()
    order = [page.index(s) for s in ("<h3>Headline", "<h3>Final model", "Out-of-fold weighted F1", "per class",
                                     "Pseudo-label pool", "linear probe", "<h3>Files", "<h3>All scores")]
    assert order == sorted(order)
    assert "tables/per_class.{csv,tex}" in page and "figures/confusion_test.{pdf,svg,png}" in page
    # the final model is a table of field / value rows, not one JSON line
    assert "<pre>{" not in page and "&quot;round&quot;" not in page and "<td class='l'>selected</td>" in page


def test_empty_inputs_are_said_in_words(tmp_path) -> None:
    rep, m = run(tmp_path, {c: 0.0 for c in CLASSES}, test_labels=False)
    svg = (rep / "figures" / "pseudo_pool.svg").read_text()
    assert "0 pseudo-labels selected after round 0" in svg and "0.04" not in svg
    assert "no test labels" in (rep / "figures" / "confusion_test.svg").read_text()
    assert set(m["final"]["per_class"]) == {"oof"}
    assert set(pd.read_csv(rep / "tables" / "per_class.csv")["split"]) == {"oof"}

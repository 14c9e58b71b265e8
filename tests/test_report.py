"""expmae.report: the final model is the best all-modality fused model of the last round, compared
with the single-modality ones, never an unscored model; built from training folders written with the
real writers."""
import pandas as pd
import pytest

from expmae.train import plan


def fake_model(d, ident, f1_shift, classes, rng, curves=True):
    """A training output folder (probs.parquet + metrics.json with identity `ident`) built with the real writers."""
    import json

    import numpy as np

    from expmae.io import write_table
    from expmae.train import scoring
    n = 40
    y = np.r_[np.arange(20) % len(classes), -np.ones(20, int)]
    split = np.array(["labeled"] * 20 + ["unlabeled"] * 10 + ["test"] * 10, dtype=object)
    P = rng.dirichlet(np.ones(len(classes)), n).astype(np.float32)
    P[np.arange(20), y[:20]] += f1_shift  # a stronger model: more rows right
    P /= P.sum(1, keepdims=True)
    df = scoring.probs_frame([f"v{i}" for i in range(n)], split, y, np.r_[np.arange(20) % 2, -np.ones(20, int)],
                              P, P[None].repeat(2, 0), np.linspace(-1, 1, n), classes)
    m = scoring.evaluate(df, classes, np.r_[np.zeros(20), np.full(20, np.nan)], {}, {})
    m.update(curves=[{"train": [1.0, 0.5], "val": [1.1, 0.9], "inner": [1.0, 0.8], "best_epoch": 2}] * 2 if curves else [],
             n_pseudo=0, issues=[{"name": "x", "stage": "labels", "reason": "unknown label 'confused'"}], **ident)
    d.mkdir(parents=True)
    write_table(d / "probs.parquet", df)
    (d / "metrics.json").write_text(json.dumps(m))
    return m["weighted_f1"]


def test_report_picks_final_fused_and_compares_with_single(tmp_path):
    import json

    import numpy as np

    from expmae import report
    from expmae.io import write_table
    classes = ["neutral", "happy", "sad"]
    rng = np.random.default_rng(0)
    dirs, f1 = [], {}
    for r in (0, 1):
        for name, shift in (("egemaps", 0.4), ("minilm", 0.1)):
            d = tmp_path / "classify" / f"round{r}" / name
            f1[r, name] = fake_model(d, plan.identity(r, "single", "mlp", name), shift + r, classes, rng)
            dirs.append(str(d))
        # fbp[audio+text] scores best but is no candidate: only heads over all modalities are
        for combo, head, shift in (("all", "fbp", 0.6), ("all", "late", 0.3), ("audio+text", "fbp", 0.9)):
            d = tmp_path / "fuse" / f"round{r}" / combo / head
            ident = plan.identity(r, "fused", head, plan.fused_name(combo, head), combo)
            f1[r, ident["name"]] = fake_model(d, ident, shift + r, classes, rng, curves=head != "late")
            dirs.append(str(d))
    pseudo = tmp_path / "pseudo" / "round0.parquet"
    # one pool per fold (expmae.train.pseudo): fold 0 got v20 and v21, fold 1 v20; the mix per fold model
    write_table(pseudo, pd.DataFrame({"name": ["v20", "v21", "v20"], "fold": [0, 0, 1],
                                      "discrete": ["happy", "sad", "happy"]}),
                meta={"round": 0, "class_mix": {"happy": 1.0, "sad": 0.5}, "source": "fbp", "per_fold": [2, 1],
                      "new_per_fold": [2, 1], "n_videos": 2, "sources": {"0": "fbp", "1": "fbp"}})
    out = tmp_path / "res"
    report.main(["--classify", *dirs, "--pseudo", str(pseudo), "--classes", ",".join(classes), "--out", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    fused1 = {n: v for (r, n), v in f1.items() if r == 1 and n in ("fbp", "late")}  # all-modality heads only
    best_fused = max(fused1, key=fused1.get)
    assert m["final"]["model"] == best_fused and m["final"]["round"] == 1
    assert m["final"]["best_single"] == max(("egemaps", "minilm"), key=lambda n: f1[1, n])
    assert m["final"]["fused_ge_single"] == (fused1[best_fused] >= max(f1[1, "egemaps"], f1[1, "minilm"]))
    assert set(m["table"]["0"]) == {"egemaps", "minilm", "fbp", "late", "fbp[audio+text]"}
    assert m["pseudo"]["0"] == {"n": 1.5, "per_fold": [2, 1], "new_per_fold": [2, 1], "n_videos": 2,
                                "class_mix": {"happy": 1.0, "sad": 0.5}, "source": "fbp", "mean_confidence": None}
    assert m["final"]["selected"] == {"from": 2, "candidates": sorted(fused1, key=fused1.get, reverse=True),
                                      "by": "out-of-fold weighted F1 of the seed ensemble", "optimistic": True}
    assert "(selected: best of 2 by this score, optimistic)" in (out / "report" / "headline.txt").read_text()
    sub = pd.read_csv(out / "submission" / "final.csv")
    assert list(sub.columns) == ["name", "discrete", "valence"] and len(sub) == 10 and sub["valence"].abs().sum() > 0
    assert (out / "submission" / "round0_fbp[audio+text].csv").exists()
    html = (out / "report" / "f1_table.html").read_text()
    assert "<table>" in html and "fbp[audio+text]" in html
    tsv = pd.read_csv(out / "report" / "f1_table.tsv", sep="\t")
    assert len(tsv) == 10 and {"valence_mse", "mer_combined"} <= set(tsv.columns)
    assert pd.read_csv(out / "report" / "pseudo.tsv", sep="\t")[["happy", "sad"]].values.tolist() == [[1.0, 0.5]]
    for png in ("confusion_oof.png", "pseudo_pool.png", "curves.png"):
        assert (out / "report" / "figures" / png).read_bytes()[:4] == b"\x89PNG"
    qc = pd.read_csv(out / "qc" / "summary.tsv", sep="\t")
    assert qc["reason"].str.contains("unknown label").any()


def test_report_never_names_an_unscored_model_final(tmp_path):
    """F1 NaN everywhere (no valid out-of-fold score): no final model, an error saying why; a NaN model
    beside scored ones is never chosen."""
    import json

    import numpy as np

    from expmae import report
    classes = ["neutral", "happy"]
    rng = np.random.default_rng(1)
    dirs = []
    idents = {"classify/round0/egemaps": plan.identity(0, "single", "mlp", "egemaps"),
              "fuse/round0/all/late": plan.identity(0, "fused", "late", "late", "all"),
              "fuse/round0/all/fbp": plan.identity(0, "fused", "fbp", "fbp", "all")}
    for d, ident in idents.items():
        fake_model(tmp_path / d, ident, 0.0, classes, rng)
        m = json.loads((tmp_path / d / "metrics.json").read_text())
        m.update(weighted_f1=None, accuracy=None)  # as written for NaN (strict JSON)
        (tmp_path / d / "metrics.json").write_text(json.dumps(m))
        dirs.append(str(tmp_path / d))
    with pytest.raises(SystemExit, match="no model has a valid out-of-fold score"):
        report.main(["--classify", *dirs, "--classes", ",".join(classes), "--out", str(tmp_path / "res")])


def test_choose_final_is_the_best_all_modality_fused_model_of_the_last_round():
    """A pure function of the models' metrics: sub-combinations are no candidates; ties fall back to
    FBP; a NaN score is never a candidate; the best single feature set is named beside it."""
    from expmae import report

    def model(kind, name, f1, combo=None, head="mlp"):
        return {**plan.identity(1, kind, head, name, combo), "weighted_f1": f1, "test_weighted_f1": f1 / 2}

    last = {"egemaps": model("single", "egemaps", 0.5), "minilm": model("single", "minilm", 0.6),
            "fbp": model("fused", "fbp", 0.55, "all", "fbp"), "late": model("fused", "late", 0.58, "all", "late"),
            "fbp[audio+text]": model("fused", "fbp[audio+text]", 0.9, "audio+text", "fbp")}
    rounds = {"0": {"fbp": model("fused", "fbp", 0.99, "all", "fbp")}, "1": last}
    final = report.choose_final(rounds)
    assert (final["round"], final["model"], final["head"], final["weighted_f1"]) == (1, "late", "late", 0.58)
    assert final["best_single"] == "minilm" and final["best_single_weighted_f1"] == 0.6
    assert final["best_single_test_weighted_f1"] == 0.3 and final["fused_ge_single"] is False
    tie = {"1": {**last, "fbp": model("fused", "fbp", 0.58, "all", "fbp")}}
    assert report.choose_final(tie)["model"] == "fbp"
    nan = {"1": {n: {**m, "weighted_f1": float("nan")} for n, m in last.items()}}
    with pytest.raises(SystemExit, match="no model has a valid out-of-fold score"):
        report.choose_final(nan)
    late_nan = {"1": {**last, "late": {**last["late"], "weighted_f1": float("nan")}}}
    assert report.choose_final(late_nan)["model"] == "fbp" and report.choose_final(late_nan)["runner_up"] is None
    assert report.choose_final(rounds)["runner_up"] == "fbp"
    singles = {"1": {n: m for n, m in last.items() if m["kind"] == "single"}}
    assert report.choose_final(singles)["model"] == "minilm" and report.choose_final(singles)["fused_ge_single"]

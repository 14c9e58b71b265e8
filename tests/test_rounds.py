"""Round unrolling and fusion layout in the DAG (Snakemake dry-runs on empty placeholder videos:
the DAG only needs the files to exist), and config resolution of modalities/combinations."""
import re
import sys

import pandas as pd
import pytest

from expmae import rounds
from fixtures.workflow import dry_run_jobs, smk

CFG = {"classify": {"feature_sets": ["expmae", "egemaps", "minilm"]},
       "fuse": {"heads": ["fbp", "late"], "modalities": {"visual": ["expmae", "expmae_video"], "audio": ["egemaps"]},
                "combinations": [["audio", "visual"], ["audio", "minilm"]]}}


def test_modalities_ignore_unconfigured_sets_and_keep_unlisted_ones(capsys):
    mods = rounds.modalities(CFG)
    # expmae_video is not trained -> ignored with a note; minilm is in no modality -> its own
    assert mods == {"visual": ["expmae"], "audio": ["egemaps"], "minilm": ["minilm"]}
    assert "expmae_video" in capsys.readouterr().err
    combos = rounds.combinations(CFG)
    assert combos == {"all": ["visual", "audio", "minilm"], "visual+audio": ["visual", "audio"],
                      "audio+minilm": ["audio", "minilm"]}
    assert rounds.feature_sets_of(CFG, "visual+audio") == ["expmae", "egemaps"]
    assert rounds.fused_name("all", "fbp") == "fbp" and rounds.fused_name("audio+minilm", "late") == "late[audio+minilm]"
    assert rounds.modalities({"classify": {"feature_sets": ["a", "b"]}, "fuse": {}}) == {"a": ["a"], "b": ["b"]}


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"fuse\.combinations\[0\]"):
        rounds.combinations({**CFG, "fuse": {**CFG["fuse"], "combinations": [["audio", "smell"]]}})
    with pytest.raises(ValueError, match="fuse.heads"):
        rounds.heads({"fuse": {"heads": ["fbp", "magic"]}})


def jobs_with_commands(wd, *configs):
    """(rule, sorted wildcards) -> shell command, from a dry-run with --printshellcmds."""
    args = ["--configfile", "config_tiny.yaml", *configs]
    jobs = dry_run_jobs(wd, *args)
    text = smk(wd, "-n", "-p", *args)
    cmds = re.findall(r"^\s*(?:Shell command:\s*)?(python -m expmae\.\S+ .*)$", text.stdout + text.stderr, re.M)
    assert len(cmds) == len([j for j in jobs if j[0] != "all"]), "could not read the shell commands"
    return jobs, cmds


def test_raising_rounds_only_adds_jobs(wf):
    (wf / "r1.yaml").write_text("pseudolabel:\n  rounds: 1\n")
    (wf / "r3.yaml").write_text("pseudolabel:\n  rounds: 3\n")
    j1, c1 = jobs_with_commands(wf, "r1.yaml")
    j3, c3 = jobs_with_commands(wf, "r3.yaml")
    key = lambda jobs: {(r, tuple(sorted(w.items()))) for r, w in jobs}  # noqa: E731
    k1, k3 = key(j1), key(j3)
    assert k1 <= k3
    extra = k3 - k1
    per_round = lambda rule: {dict(w)["round"] for r, w in extra if r == rule}  # noqa: E731
    assert {r for r, _ in extra} == {"classify", "fuse", "pseudolabel"}
    assert per_round("classify") == per_round("fuse") == {"2", "3"}
    assert per_round("pseudolabel") == {"1", "2"}
    # per extra round: one classifier per feature set, every head x combination
    sets = rounds.modalities({"classify": {"feature_sets": ["expmae", "egemaps", "minilm"]}})
    n_fuse = sum(1 for r, w in extra if r == "fuse" and dict(w)["round"] == "2")
    assert sum(1 for r, w in extra if r == "classify" and dict(w)["round"] == "2") == len(sets)
    assert n_fuse == len({(dict(w)["combo"], dict(w)["head"]) for r, w in extra if r == "fuse"}) > 0
    # the jobs of rounds 0-1 run the same commands (rounds is no param), so raising N reruns none of them;
    # only the report, which gathers every round, changes
    train = lambda cmds: {c for c in cmds if not c.startswith("python -m expmae.report")}  # noqa: E731
    assert train(c1) and train(c1) <= train(c3), sorted(train(c1) - train(c3))[:3]


def test_fusion_layout_follows_config(wf):
    (wf / "fuse.yaml").write_text("pseudolabel:\n  rounds: 0\nfuse:\n  heads: [fbp, late]\n  combinations: [[audio, text]]\n")
    jobs, cmds = jobs_with_commands(wf, "fuse.yaml")
    fuse = {(w["combo"], w["head"]) for r, w in jobs if r == "fuse"}
    assert fuse == {("all", "fbp"), ("all", "late"), ("audio+text", "fbp"), ("audio+text", "late")}
    late = [c for c in cmds if "--head late" in c and "audio+text" in c]
    assert late and "classify/round0/egemaps" in late[0] and "classify/round0/minilm" in late[0]
    assert "--features" not in late[0] and "round0/expmae" not in late[0]
    fbp = [c for c in cmds if "--head fbp" in c and "audio+text" in c][0]
    assert "--modality audio=egemaps" in fbp and "--modality text=minilm" in fbp and "visual" not in fbp


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


def fake_model(d, f1_shift, classes, rng, curves=True):
    """A classify output folder (probs.parquet + metrics.json) built with the real writers."""
    import json

    import numpy as np

    from expmae import classify
    from expmae.io import write_table
    n = 40
    y = np.r_[np.arange(20) % len(classes), -np.ones(20, int)]
    split = np.array(["labeled"] * 20 + ["unlabeled"] * 10 + ["test"] * 10, dtype=object)
    P = rng.dirichlet(np.ones(len(classes)), n).astype(np.float32)
    P[np.arange(20), y[:20]] += f1_shift  # a stronger model: more rows right
    P /= P.sum(1, keepdims=True)
    df = classify.probs_frame([f"v{i}" for i in range(n)], split, y, np.r_[np.arange(20) % 2, -np.ones(20, int)],
                              P, P[None].repeat(2, 0), np.linspace(-1, 1, n), classes)
    m = classify.evaluate(df, classes, np.r_[np.zeros(20), np.full(20, np.nan)], {}, {})
    m.update(curves=[{"train": [1.0, 0.5], "val": [1.1, 0.9], "inner": [1.0, 0.8], "best_epoch": 2}] * 2 if curves else [],
             n_pseudo=0, issues=[{"name": "x", "stage": "labels", "reason": "unknown label 'confused'"}])
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
            f1[r, name] = fake_model(d, shift + r, classes, rng)
            dirs.append(str(d))
        # fbp[audio+text] scores best but is no candidate: only heads over all modalities are
        for combo, head, shift in (("all", "fbp", 0.6), ("all", "late", 0.3), ("audio+text", "fbp", 0.9)):
            d = tmp_path / "fuse" / f"round{r}" / combo / head
            f1[r, rounds.fused_name(combo, head)] = fake_model(d, shift + r, classes, rng, curves=head != "late")
            dirs.append(str(d))
    pseudo = tmp_path / "pseudo" / "round0.parquet"
    write_table(pseudo, pd.DataFrame({"name": ["v20", "v21"], "discrete": ["happy", "sad"]}),
                meta={"round": 0, "class_mix": {"happy": 1, "sad": 1}, "source": str(tmp_path / "fuse/round0/all/fbp")})
    out = tmp_path / "res"
    report.main(["--classify", *dirs, "--pseudo", str(pseudo), "--classes", ",".join(classes), "--out", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    fused1 = {n: v for (r, n), v in f1.items() if r == 1 and n in ("fbp", "late")}  # all-modality heads only
    best_fused = max(fused1, key=fused1.get)
    assert m["final"]["model"] == best_fused and m["final"]["round"] == 1
    assert m["final"]["best_single"] == max(("egemaps", "minilm"), key=lambda n: f1[1, n])
    assert m["final"]["fused_ge_single"] == (fused1[best_fused] >= max(f1[1, "egemaps"], f1[1, "minilm"]))
    assert set(m["table"]["0"]) == {"egemaps", "minilm", "fbp", "late", "fbp[audio+text]"}
    assert m["pseudo"]["0"] == {"n": 2, "class_mix": {"happy": 1, "sad": 1}, "source": "fbp", "mean_confidence": None}
    sub = pd.read_csv(out / "submission" / "final.csv")
    assert list(sub.columns) == ["name", "discrete", "valence"] and len(sub) == 10 and sub["valence"].abs().sum() > 0
    assert (out / "submission" / "round0_fbp[audio+text].csv").exists()
    html = (out / "report" / "f1_table.html").read_text()
    assert "<table>" in html and "fbp[audio+text]" in html
    tsv = pd.read_csv(out / "report" / "f1_table.tsv", sep="\t")
    assert len(tsv) == 10 and {"valence_mse", "mer_combined"} <= set(tsv.columns)
    assert pd.read_csv(out / "report" / "pseudo.tsv", sep="\t")[["happy", "sad"]].values.tolist() == [[1, 1]]
    for png in ("confusion.png", "pseudo.png", "curves.png"):
        assert (out / "report" / png).read_bytes()[:4] == b"\x89PNG"
    qc = pd.read_csv(out / "qc" / "summary.tsv", sep="\t")
    assert qc["reason"].str.contains("unknown label").any()


def test_report_without_oof_scores_falls_back_to_fbp(tmp_path):
    """Too few labels to cross-validate (F1 NaN everywhere): the report still picks FBP and writes all."""
    import json

    import numpy as np

    from expmae import report
    classes = ["neutral", "happy"]
    rng = np.random.default_rng(1)
    dirs = []
    for d in ("classify/round0/egemaps", "fuse/round0/all/late", "fuse/round0/all/fbp"):
        fake_model(tmp_path / d, 0.0, classes, rng)
        m = json.loads((tmp_path / d / "metrics.json").read_text())
        m.update(weighted_f1=None, accuracy=None)  # as written for NaN (strict JSON)
        (tmp_path / d / "metrics.json").write_text(json.dumps(m))
        dirs.append(str(tmp_path / d))
    report.main(["--classify", *dirs, "--classes", ",".join(classes), "--out", str(tmp_path / "res")])
    final = json.loads((tmp_path / "res" / "metrics.json").read_text())["final"]
    assert final["model"] == "fbp" and final["fused_ge_single"] is None
    assert (tmp_path / "res" / "report" / "confusion.png").exists()

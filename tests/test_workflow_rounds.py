"""Round unrolling and fusion layout in the DAG (Snakemake dry-runs on empty placeholder videos:
the DAG only needs the files to exist)."""
import re
import sys

import pytest

from expmae.train import plan
from fixtures.workflow import dry_run_jobs, smk


def jobs_with_commands(wd, *configs):
    """(rule, sorted wildcards) -> shell command, from a dry-run with --printshellcmds."""
    args = ["--configfile", "config_tiny.yaml", *configs]
    jobs = dry_run_jobs(wd, *args)
    text = smk(wd, "-n", "-p", *args)
    # the training jobs' commands start with the pinned environment (env K=V ...: expmae.train.repro.shell_prefix)
    cmds = re.findall(r"^\s*(?:Shell command:\s*)?(?:env (?:\w+=(?:'[^']*'|\S+) )+)?(python -m expmae\.\S+ .*)$",
                      text.stdout + text.stderr, re.M)
    assert len(cmds) == len([j for j in jobs if j[0] != "all"]), "could not read the shell commands"
    return jobs, cmds


@pytest.mark.e2e
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
    assert {r for r, _ in extra} == {"classify", "fuse", "fuse_late", "pseudolabel"}
    assert per_round("classify") == per_round("fuse") == per_round("fuse_late") == {"2", "3"}
    assert per_round("pseudolabel") == {"1", "2"}
    # per extra round: one classifier per feature set, every head x combination (late: rule fuse_late)
    sets = plan.modalities({"classify": {"feature_sets": ["expmae", "egemaps", "minilm"]}})
    fused = lambda rnd: [(dict(w)["combo"], dict(w).get("head", "late")) for r, w in extra  # noqa: E731
                         if r in ("fuse", "fuse_late") and dict(w)["round"] == rnd]
    assert sum(1 for r, w in extra if r == "classify" and dict(w)["round"] == "2") == len(sets)
    assert len(fused("2")) == len(set(fused("2")) | set(fused("3"))) > 0
    assert {h for _, h in fused("2")} == set(plan.HEADS)  # the default heads, late among them
    # the jobs of rounds 0-1 run the same commands (rounds is no param), so raising N reruns none of them;
    # only the report, which gathers every round, and the bundle (the last round's classifiers) change
    train = lambda cmds: {c for c in cmds if not c.startswith(("python -m expmae.report", "python -m expmae.predict"))}  # noqa: E731
    assert train(c1) and train(c1) <= train(c3), sorted(train(c1) - train(c3))[:3]


@pytest.mark.e2e
def test_fusion_layout_follows_config(wf):
    (wf / "fuse.yaml").write_text("pseudolabel:\n  rounds: 0\nfuse:\n  heads: [fbp, late]\n  combinations: [[audio, text]]\n")
    jobs, cmds = jobs_with_commands(wf, "fuse.yaml")
    fuse = {(w["combo"], w["head"]) for r, w in jobs if r == "fuse"}
    fuse |= {(w["combo"], "late") for r, w in jobs if r == "fuse_late"}
    assert fuse == {("all", "fbp"), ("all", "late"), ("audio+text", "fbp"), ("audio+text", "late")}
    late = [c for c in cmds if c.startswith("python -m expmae.train.late") and "audio+text" in c]
    assert late and "classify/round0/egemaps" in late[0] and "classify/round0/minilm" in late[0]
    assert "--features" not in late[0] and "round0/expmae" not in late[0]
    assert "--name 'late[audio+text]'" in late[0]  # its identity, on the command line
    fbp = [c for c in cmds if "--head fbp" in c and "audio+text" in c][0]
    assert "--kind fused --combo audio+text --name 'fbp[audio+text]'" in fbp
    assert "--modality audio=egemaps" in fbp and "--modality text=minilm" in fbp and "visual" not in fbp


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))

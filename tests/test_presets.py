"""workflow/presets/quick.yaml: layered over any MER preset, the demo's or a plain config, it keeps the data:
section and needs only the models the install ships (micro expMAE, eGeMAPS, MiniLM, tiny.en), 1 seed, 1 round.
workflow/presets/paper.yaml: its DAG with the slurm profile asks for ViT-L pretraining on 2 nodes x 8 GPUs."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from expmae.config import load
from expmae.mae.pretrain import PretrainConfig
from expmae.models import references
from fixtures.mer_release import build_release
from fixtures.workflow import SNAKEMAKE, copy_workflow

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ROOT / "workflow" / "presets"
QUICK = PRESETS / "quick.yaml"
HUB_SETS = {"hubert", "clip", "macbert", "roberta", "expmae_video"}


def offline(tmp: Path) -> dict[str, str]:
    """An environment with an empty Hugging Face cache, offline: a hub id cannot be found there."""
    return {**os.environ, "HF_HOME": str(tmp / "hf"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("base", [[], ["mer2023"], ["mer2024"], ["mer2025"], ["mer2023", "paper"], ["demo"]])
def test_quick_over_any_preset_uses_shipped_models_only(base, monkeypatch):
    monkeypatch.chdir(ROOT)  # config.yaml below the overlays, as Snakemake reads it
    cfg = load([PRESETS / f"{b}.yaml" for b in base] + [QUICK])
    plain = load([PRESETS / f"{b}.yaml" for b in base])
    assert cfg["data"] == plain["data"]  # the data: section is the user's
    assert cfg["classify"]["feature_sets"] == ["expmae", "egemaps", "minilm"]
    used = {n for names in cfg["fuse"]["modalities"].values() for n in names}
    assert used <= set(cfg["classify"]["feature_sets"])  # no note about ignored feature sets
    assert cfg["seeds"] == 1 and cfg["pseudolabel"]["rounds"] == 1 and not cfg["mae_video"]["enabled"]
    assert cfg["mae"]["size"] == "micro" and cfg["mae"]["init"] is None and cfg["mae"]["img_size"] == 112
    assert cfg["mae"]["gpus"] == 1 and cfg["mae"]["nodes"] == 1 and cfg["mae"]["embed_dim"] is None
    refs = list(references(cfg))
    assert {r.kind for r in refs} == {"shipped"} and all(r.present for r in refs), refs


def demo_placeholders(wd: Path, per_class: int = 6) -> None:
    """data/demo as demo.yaml names it, with empty videos (check and dry runs never decode)."""
    classes = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
    demo = wd / "data" / "demo"
    (demo / "videos").mkdir(parents=True)
    labeled = [f"demo_{i:05d}" for i in range(per_class * len(classes))]
    test = [f"demo_t{i:04d}" for i in range(6)]
    pool = [f"demo_u{i:04d}" for i in range(6)]
    for name in labeled + test + pool:
        (demo / "videos" / f"{name}.mp4").write_bytes(b"")
    pd.DataFrame({"name": labeled, "discrete": [classes[i % 6] for i in range(len(labeled))], "valence": 0.0}
                 ).to_csv(demo / "labels.csv", index=False)
    pd.DataFrame({"name": test}).to_csv(demo / "test.csv", index=False)
    pd.DataFrame({"name": test, "discrete": "happy"}).to_csv(demo / "test_labels.csv", index=False)
    pd.DataFrame({"name": labeled + test + pool, "english": "hello there"}).to_csv(demo / "transcripts.csv", index=False)


@pytest.mark.e2e
def test_check_accepts_demo_plus_quick(tmp_path):
    wd = copy_workflow(tmp_path / "wf")
    demo_placeholders(wd)
    p = subprocess.run([sys.executable, "-m", "expmae", "check", "--configfile", "workflow/presets/demo.yaml",
                        "workflow/presets/quick.yaml"], cwd=wd, capture_output=True, text=True, timeout=600,
                       env=offline(tmp_path))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "0 error(s)" in p.stdout
    assert "features.minilm.model" in p.stdout and "mae_video_pretrain" not in p.stdout


@pytest.mark.e2e
def test_mer2023_plus_quick_dry_run_needs_no_hub_model(tmp_path):
    """The MER 2023 preset alone names hub models that an offline machine lacks; with quick.yaml the whole
    DAG of a MER-layout release builds from the shipped models."""
    release = tmp_path / "dataset-release"
    build_release(release)
    wd = copy_workflow(tmp_path / "wf")
    my = tmp_path / "my.yaml"
    my.write_text(yaml.safe_dump({"data": {"root": str(release)}}))
    preset = str(PRESETS / "mer2023.yaml")
    listed = subprocess.run([sys.executable, "-m", "expmae", "models", "list", "--configfile", preset, str(QUICK),
                             str(my)], cwd=wd, capture_output=True, text=True, timeout=300, env=offline(tmp_path))
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "MISSING" not in listed.stdout
    p = subprocess.run([*SNAKEMAKE, "-n", "--cores", "2", "--configfile", preset, str(QUICK), str(my)], cwd=wd,
                       capture_output=True, text=True, timeout=600, env=offline(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    text = p.stdout + p.stderr
    sets = set(re.findall(r"^\s+wildcards: .*\bfs(?:et)?=(\w+)", text, re.M))
    assert sets == {"expmae", "egemaps", "minilm"}, sets
    rules = set(re.findall(r"^(?:local)?rule (\w+):$", text, re.M))
    assert "mae_pretrain" in rules and not rules & {"mae_video_pretrain", "mae_video_probe"}
    assert "note: fuse.modalities" not in p.stderr
    alone = subprocess.run([sys.executable, "-m", "expmae", "models", "list", "--configfile", preset, str(my)],
                           cwd=wd, capture_output=True, text=True, timeout=300, env=offline(tmp_path))
    assert alone.returncode == 1 and "TencentGameMate/chinese-hubert-large" in alone.stdout


@pytest.mark.e2e
def test_paper_preset_builds_its_dag_and_asks_slurm_for_gpus(tmp_path) -> None:
    """config.yaml + workflow/presets/paper.yaml + a data config, dry run with the slurm profile:
    both pretraining jobs are ViT-L at 224 px and ask for 2 nodes x 8 GPUs (srun + torchrun)."""
    import shutil

    import yaml

    from fixtures.workflow import SNAKEMAKE, placeholder_workflow

    wd = placeholder_workflow(tmp_path / "wf")
    shutil.copytree(ROOT / "workflow" / "presets", wd / "workflow" / "presets", dirs_exist_ok=True)
    data = {"videos": ["data/tiny/videos"], "labels": "data/tiny/labels.csv", "transcripts": "data/tiny/transcripts.csv"}
    (wd / "mydata.yaml").write_text(yaml.safe_dump({"data": data}))
    p = subprocess.run([*SNAKEMAKE, "-n", "-p", "--profile", "workflow/profiles/slurm", "--configfile", "config.yaml",
                        "workflow/presets/paper.yaml", "mydata.yaml"], cwd=wd, capture_output=True, text=True, timeout=300)
    text = p.stdout + p.stderr
    assert p.returncode == 0, text[-4000:]
    assert not (wd / "results").exists()  # a dry run writes nothing
    for rule, kind in (("mae_pretrain", "image"), ("mae_video_pretrain", "video")):
        block = re.search(rf"^rule {rule}:\n(.*?)\n\n", text, re.M | re.S).group(1)
        resources = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", block).group(1).split(", "))
        assert (resources["nodes"], resources["gres"], resources["tasks"], resources["mpi"]) == \
            ("2", "gpu:8", "2", "srun"), resources
        shell = re.search(r"Shell command: (.*)", block).group(1)
        assert shell.startswith("python -m expmae.mae.launch --nnodes 2 --nproc-per-node 8 -- -m expmae.mae.pretrain")
        params = json.loads(re.search(r"--params '(.*?)'", shell).group(1))
        c = PretrainConfig.from_params(params)
        assert (c.kind, c.model.embed_dim, c.model.depth, c.model.img_size) == (kind, 1024, 24, 224)
        assert c.bf16 and c.batch_size >= 512
        if kind == "video":  # 16 frames / tubelet 2 x (224 / 16)^2 tubes
            assert c.model.grid[0] * c.model.grid[1] == 1568

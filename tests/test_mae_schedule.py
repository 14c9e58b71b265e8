"""MAE pretraining at paper scale: schedule (warmup + cosine, layer decay, retrain fraction), the
run monitor (samples/s + ETA lines, TensorBoard events), the video MAE's init from the image MAE as a
DAG edge and the GPU check's CPU path (the launcher: tests/test_mae_launch.py; the paper preset's DAG:
tests/test_presets.py; the FLOP accounting: tests/test_mae_flops.py)."""
from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from expmae.mae.model import MAE, MAEConfig
from expmae.mae.pretrain import PretrainConfig, train
from expmae.mae.schedule import Schedule, layer_id, lr_at, param_groups
from fixtures.mae_shards import TINY_RUN as TINY, two_shards

ROOT = Path(__file__).resolve().parents[1]


def cfg(**kw) -> PretrainConfig:
    return PretrainConfig.from_params({**TINY, "epochs": 2, **kw})


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    return two_shards(tmp_path_factory.mktemp("faces"))


# ----------------------------------------------------------------------------- schedule
def test_warmup_then_cosine_from_the_first_step() -> None:
    s = Schedule(total=10, warmup=2)
    lrs = [lr_at(i, s, 1.0, 0.1) for i in range(10)]
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)  # warmup from the init, not the peak
    assert lrs[2] == pytest.approx(1.0) and all(a >= b for a, b in zip(lrs[1:], lrs[2:]))
    assert lr_at(10, s, 1.0, 0.1) == pytest.approx(0.1)


def test_layer_decay_groups() -> None:
    model = MAE(MAEConfig.from_dict(TINY))  # depth 2: layers 0 (embeddings), 1, 2 (blocks), 3 (norm, decoder)
    assert [layer_id(n, 2) for n in ("cls_token", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
                                     "blocks.1.mlp.fc1.bias", "norm.weight", "decoder_blocks.0.norm1.weight")] \
        == [0, 0, 1, 2, 3, 3]
    off = param_groups(model, 0.05)  # layer_decay 1.0: the two groups of before (matrices decay, rest not)
    assert [(g["weight_decay"], g["lr_scale"]) for g in off] == [(0.05, 1.0), (0.0, 1.0)]
    groups = param_groups(model, 0.05, layer_decay=0.5)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert scale[id(named["cls_token"])] == 0.125 and scale[id(named["blocks.0.attn.qkv.weight"])] == 0.25
    assert scale[id(named["blocks.1.attn.qkv.weight"])] == 0.5 and scale[id(named["decoder_pred.weight"])] == 1.0
    assert sum(len(g["params"]) for g in groups) == len(named)


def test_layer_decay_trains_and_scales_the_lr(shards, tmp_path) -> None:
    res = train(cfg(epochs=1, layer_decay=0.75), shards, tmp_path)
    assert res.finished and all(math.isfinite(v) for v in res.step_losses)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["config"]["layer_decay"] == 0.75


def test_retrain_fraction_continues_the_weights_on_new_shards(shards, tmp_path) -> None:
    kw = dict(retrain_on_new_videos=True, retrain_fraction=0.5, epochs=1)
    first = train(cfg(**kw), shards[:1], tmp_path)
    second = train(cfg(**kw), shards, tmp_path)  # a new shard: half the steps, from the first run's weights
    meta = json.loads((tmp_path / "meta.json").read_text())
    sched = meta["schedule"]
    full = meta["steps_per_epoch"]
    assert second.step == sched["total"] == math.ceil(0.5 * full) < full
    assert sched["continued_shards"] == ["s00000"] and sched["continued_step"] == first.step
    fresh = train(cfg(retrain_on_new_videos=True, epochs=1), shards, tmp_path / "fresh")  # fraction 1.0
    assert fresh.step == full and json.loads((tmp_path / "fresh" / "meta.json").read_text())["schedule"][
        "continued_from"] is None
    assert second.step_losses[0] < fresh.step_losses[0]  # it starts from trained weights
    again = train(cfg(**kw), shards, tmp_path)  # nothing new: the finished continued run is resumed as is
    assert again.step == second.step and again.step_losses == second.step_losses
    changed = train(cfg(**kw, lr=5e-4), shards, tmp_path)  # same shards, new config: the full schedule again
    assert changed.step == full and json.loads((tmp_path / "meta.json").read_text())["schedule"]["continued_from"] is None


# ----------------------------------------------------------------------------- monitor
def test_log_lines_have_throughput_and_eta_and_tensorboard_events(shards, tmp_path, caplog) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with caplog.at_level(logging.INFO, logger="expmae.mae.pretrain"):
        train(cfg(epochs=1, log_every_steps=1, recon_every_steps=2), shards, tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("step ")]
    assert lines and all("samples/s" in ln and "ETA" in ln and "grad_norm" in ln for ln in lines), lines
    ev = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0}).Reload()
    tags = ev.Tags()
    assert {"train/loss", "train/lr", "train/samples_per_s", "train/grad_norm"} <= set(tags["scalars"])
    assert "train/reconstruction" in tags["images"] and len(ev.Images("train/reconstruction")) >= 1
    assert len(ev.Scalars("train/loss")) == json.loads((tmp_path / "meta.json").read_text())["steps"]
    assert (tmp_path / "recon.png").exists() and (tmp_path / "loss.png").exists()  # the report's PNGs stay


# ----------------------------------------------------------------------------- video MAE init: a DAG edge
@pytest.mark.e2e
def test_video_mae_from_this_runs_image_mae_is_a_dag_edge(tmp_path) -> None:
    """mae_video.init: mae -> the video pretraining job reads the image job's encoder (an input, so a
    retrained image MAE reruns it) and gets its path as init; the model check does not ask for it."""
    from expmae.models import references
    from fixtures.workflow import SNAKEMAKE, placeholder_workflow

    wd = placeholder_workflow(tmp_path / "wf")
    (wd / "inflate.yaml").write_text("mae_video:\n  init: mae\n")
    p = subprocess.run([*SNAKEMAKE, "-n", "-p", "--configfile", "config_tiny.yaml", "inflate.yaml", "--",
                        "results/mae_video/probe.json"],
                       cwd=wd, capture_output=True, text=True, timeout=300)
    text = p.stdout + p.stderr
    assert p.returncode == 0, text[-4000:]
    block = re.search(r"^rule mae_video_pretrain:\n(.*?)\n\n", text, re.M | re.S).group(1)
    assert "results/mae/encoder.safetensors" in re.search(r"input: (.*)", block).group(1)
    params = json.loads(re.search(r"--params '(.*?)'", re.search(r"Shell command: (.*)", block).group(1)).group(1))
    assert params["init"] == "results/mae/encoder.safetensors"
    assert text.index("rule mae_pretrain:") < text.index("rule mae_video_pretrain:")
    assert not [r for r in references({"mae_video": {"init": "mae", "enabled": True}}) if r.key == "mae_video.init"]


# ----------------------------------------------------------------------------- GPU check
@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path: a CUDA machine runs the real rows")
def test_gpu_check_skips_every_gpu_row_cleanly_on_cpu() -> None:
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PY": sys.executable})
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [ln for ln in p.stdout.splitlines() if ln.startswith("| ") and not ln.startswith("| check")]
    checks = [r.split("|")[1].strip() for r in rows]
    assert checks == ["pretrain step (bf16 autocast)", "pretrain step (torch.compile + bf16)", "DDP via launcher",
                      "extractor batching", "GPU video decode"], p.stdout
    assert all("skipped: no CUDA device" in r for r in rows), p.stdout

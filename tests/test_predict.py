"""Issue #17: use the trained recogniser. The session's tiny workflow run (tests/conftest.py tiny_run, read
as it is; the data.predict folder goes into a copy of it) serves every check:
the bundle reproduces every model of the last round; `python -m expmae.predict` on the bundle and the
test-split videos gives final.csv's labels and the final model's probabilities (1e-6); an unseen real clip
gets a row; a tampered bundle and a missing local model are refused; and, last (it runs Snakemake on the
copy), data.predict through the workflow: its videos run only their per-shard jobs and the predict job, and
the workflow's predictions equal the standalone CLI's (one copy and one standalone run serve both)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fixtures.predict import SHARED_CLIP, add_predict_folder, split_videos, standalone_predict
from fixtures.workflow import clone_run, dry_run_jobs, smk

CFG = ("--configfile", "config_tiny.yaml")
PER_SHARD = {"ingest_shard", "faces", "extract_audio", "extract_text", "extract_visual", "asr"}


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    """The session's run copied (new_folder adds data.predict videos to it); its last round is round 1."""
    return clone_run(tiny_run, tmp_path_factory.mktemp("predict"))


@pytest.fixture(scope="module")
def new_folder(run):
    return add_predict_folder(run)


@pytest.fixture(scope="module")
def standalone(run, new_folder, tmp_path_factory):
    return standalone_predict(run, new_folder, tmp_path_factory.mktemp("standalone"),
                              tmp_path_factory.mktemp("elsewhere"))


def classes_of(wd: Path) -> list[str]:
    return json.loads((wd / "results" / "bundle" / "bundle.json").read_text())["classes"]


def final_probs(wd: Path) -> pd.DataFrame:
    final = json.loads((wd / "results" / "metrics.json").read_text())["final"]
    probs = pd.read_parquet(Path(wd, final["dir"]) / "probs.parquet")
    return probs[probs["split"] == "test"].set_index("name")


@pytest.mark.e2e
def test_bundle_reproduces_every_model_of_the_last_round(run):
    from expmae.predict.bundle import verify
    from expmae.predict.model import Features, predict_folder, read_metrics

    res = run / "results"
    info = verify(res / "bundle")
    final = json.loads((res / "metrics.json").read_text())["final"]
    assert info["final"]["model"] == final["model"]
    fdir = res / "bundle" / info["final"]["dir"]
    assert (fdir / "model.safetensors").exists() or info["models"][final["model"]]["members"]
    assert info["faces"]["crop_size"] and "expmae" in json.dumps(info["features"])
    assert any(Path(res / "bundle", e["encoder"]).exists() for e in info["features"].values() if e["encoder"])
    shards = sorted(p.stem for p in (res / "ingest").glob("s*.parquet"))
    sets = sorted(d.name for d in (res / "classify" / "round0").iterdir())  # every trained feature set
    feats = Features.read({fs: [str(res / "features" / fs / f"{s}.parquet") for s in shards] for fs in sets})
    classes = info["classes"]
    last = max(int(p.name[5:]) for p in (res / "classify").iterdir())
    dirs = [*(res / "classify" / f"round{last}").iterdir(), *(res / "fuse" / f"round{last}" / "all").iterdir()]
    singles = {read_metrics(d)["name"]: d for d in dirs if read_metrics(d)["kind"] == "single"}
    cols = [f"prob_{c}" for c in classes]
    for d in dirs:
        want = pd.read_parquet(d / "probs.parquet").set_index("name")
        want = want[want["split"] == "test"]
        got = predict_folder(d, feats, classes, singles).set_index("name").loc[want.index]
        np.testing.assert_allclose(got[cols].to_numpy(), want[cols].to_numpy(), atol=1e-6, err_msg=str(d))
        np.testing.assert_allclose(got["valence"].to_numpy(float), want["valence"].to_numpy(float), atol=1e-6)


@pytest.mark.e2e
def test_standalone_predict_matches_the_submission(run, standalone):
    classes = classes_of(run)
    sub = pd.read_csv(run / "results" / "submission" / "final.csv", dtype={"name": str}).set_index("name")
    want = final_probs(run)
    names = [p.stem for p in split_videos(run)]
    got = standalone.set_index("name").loc[names]
    assert list(got["label"]) == list(sub.loc[names, "discrete"])
    cols = [f"prob_{c}" for c in classes]
    np.testing.assert_allclose(got[cols].to_numpy(), want.loc[names, cols].to_numpy(), atol=1e-6)
    np.testing.assert_allclose(got["valence"].to_numpy(float), sub.loc[names, "valence"].to_numpy(float), atol=1e-4)
    # bad input is a qc value, never a crash: the zero-byte file is predicted from the class prior
    broken = standalone.set_index("name").loc["broken"]
    assert "zero-byte" in broken["qc"] and "class prior" in broken["qc"] and broken["missing"]
    assert np.isclose(broken[cols].sum(), 1)


@pytest.mark.e2e
def test_unseen_real_clip_gets_a_row(standalone):
    if not SHARED_CLIP.exists():
        pytest.skip("../shared/data not present")
    row = standalone.set_index("name").loc["real_clip"]
    assert row["label"] in set(row.index.str.removeprefix("prob_")) and abs(row.filter(like="prob_").sum() - 1) < 1e-5


@pytest.mark.e2e
def test_tampered_bundle_and_missing_model_are_refused(run, tmp_path):
    from expmae.predict.bundle import write_manifest
    from expmae.predict.run import predict_videos

    video = str(split_videos(run)[0])
    b = tmp_path / "bundle"
    shutil.copytree(run / "results" / "bundle", b)
    weights = next(b.rglob("model.safetensors"))
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 1
    weights.write_bytes(bytes(raw))
    with pytest.raises(SystemExit, match="model.safetensors does not match"):
        predict_videos(str(b), [video], None)
    weights.write_bytes(bytes(raw[:-1] + bytes([raw[-1] ^ 1])))  # restored: accepted by the manifest again
    info = json.loads((b / "bundle.json").read_text())
    info["features"]["minilm"]["params"]["model"] = str(tmp_path / "no-such-minilm")
    (b / "bundle.json").write_text(json.dumps(info))
    with pytest.raises(SystemExit, match="bundle.json does not match"):
        predict_videos(str(b), [video], None)
    write_manifest(b)  # a re-signed bundle naming a model this machine lacks
    with pytest.raises(SystemExit, match=r"no-such-minilm.*features\.minilm\.model"):
        predict_videos(str(b), [video], None)


# Last in the file: it adds data.predict shards to the copy the tests above read.
@pytest.fixture(scope="module")
def in_workflow(run, new_folder):
    """Dry-run job list after adding data.predict, then the real run of those jobs."""
    jobs = dry_run_jobs(run, *CFG, "pred.yaml")
    smk(run, *CFG, "pred.yaml")
    return jobs


@pytest.mark.e2e
def test_predict_folder_runs_only_its_shards_and_matches_standalone(run, in_workflow, standalone):
    jobs = in_workflow
    rules = {r for r, _ in jobs}
    assert "predict" in rules and not rules & {"classify", "fuse", "fuse_late", "pseudolabel", "report", "mae_pretrain",
                                               "inputs_qc", "bundle", "cache_check"}, rules
    per_shard = [w["shard"] for r, w in jobs if r in PER_SHARD]
    assert per_shard and all(s.startswith("p") for s in per_shard)
    assert rules <= PER_SHARD | {"predict", "all"}, rules
    out = pd.read_csv(run / "results" / "predict" / "final.csv", dtype={"name": str}, keep_default_na=False,
                      na_values=[""]).set_index("name")
    expected = {"copy_of_test", "broken"} | ({"real_clip"} if SHARED_CLIP.exists() else set())
    assert set(out.index) == expected
    cols = [c for c in out.columns if c.startswith("prob_")]
    ref = standalone.set_index("name").loc[sorted(expected)]
    np.testing.assert_allclose(out.loc[sorted(expected), cols].to_numpy(), ref[cols].to_numpy(), atol=1e-6)
    assert list(out.loc[sorted(expected), "label"]) == list(ref["label"])
    heads = pd.read_csv(run / "results" / "predict" / "heads.csv", dtype={"name": str})
    assert {"egemaps", "minilm", "expmae", "fbp", "late"} <= set(heads["model"]) and len(heads) == len(expected) * heads["model"].nunique()
    reg = pd.read_parquet(run / "results" / "ingest" / "registry.parquet")
    assert set(reg.loc[reg["role"] == "predict", "name"]) == expected and reg.loc[reg["role"] == "predict", "shard"].str.startswith("p").all()

"""The whole DAG on the real clips in ../shared/data (skipped when absent)."""
import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from fixtures.workflow import ROOT, copy_workflow

pytestmark = [pytest.mark.e2e, pytest.mark.realdata]


def test_real_clips_run_through(tmp_path, shared_data):
    wd = copy_workflow(tmp_path / "wf")
    cfg = yaml.safe_load((ROOT / "tests" / "config_realdata.yaml").read_text())
    cfg["data"]["videos"] = [str(shared_data / "videos" / "labeled"), str(shared_data / "videos" / "unlabeled")]
    cfg["data"]["labels"] = str(shared_data / "labels.csv")
    cfg["data"]["transcripts"] = str(shared_data / "transcripts.csv")
    (wd / "real.yaml").write_text(yaml.safe_dump(cfg))
    p = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "real.yaml"],
                       cwd=wd, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-5000:]
    res = wd / cfg["results"]
    qc = pd.concat(pd.read_parquet(f / "qc.parquet") for f in sorted((res / "faces").iterdir()))
    q = qc.set_index("name")
    for n in pd.read_csv(shared_data / "labels.csv")["name"]:
        assert q.loc[n, "ok"] and q.loc[n, "frames_with_face"] > 0, n   # faces found in every labeled clip
    assert not q.loc["ravdess_01-01-08-02-01-01-19", "has_audio"]
    summary = pd.read_csv(res / "qc" / "summary.tsv", sep="\t")
    rav = summary[summary.name == "ravdess_01-01-08-02-01-01-19"]
    assert rav[rav.stage == "audio"]["reason"].tolist() == ["no audio stream"]
    m = json.loads((res / "metrics.json").read_text())  # strict JSON (NaN written as null)
    assert m["final"]["head"] == "fbp"
    assert len(pd.read_csv(res / "submission" / "final.csv")) == 0  # no test split configured

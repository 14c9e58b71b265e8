"""The same training numbers on another CPU (expmae.train.repro): a real `python -m expmae.train.cv`
job, run as if on two CPUs with different instruction sets, must write bit-identical outputs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from expmae.io import write_features
from expmae.train.repro import aten_level, numpy_dispatch

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]

# Two CPUs simulated by the variables with which each library would pick its kernels there: an AVX2
# node (no AVX-512) and a plain x86-64 one. Without pinning these give different probabilities (~1e-5).
AVX2_CPU = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "OPENBLAS_CORETYPE": "Haswell",
            "NPY_DISABLE_CPU_FEATURES": " ".join(f for f in numpy_dispatch() if f != "X86_V3")}
PLAIN_CPU = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "OPENBLAS_CORETYPE": "Nehalem",
             "NPY_DISABLE_CPU_FEATURES": " ".join(numpy_dispatch())}


def job_inputs(tmp_path: Path, n_lab: int = 36, n: int = 48) -> list[str]:
    """Two feature sets carrying the class (one row missing in each), labels with valence, a test list."""
    rng = np.random.default_rng(0)
    y = np.r_[np.arange(n_lab) % len(CLASSES), rng.integers(0, len(CLASSES), n - n_lab)]
    names = [f"v{i:03d}" for i in range(n)]
    args = []
    for m, dim, gone in (("a", 24, 2), ("b", 16, 40)):
        X = rng.normal(size=(len(CLASSES), dim))[y] + rng.normal(size=(n, dim)) * 1.5
        mask = np.arange(n) != gone
        write_features(tmp_path / f"{m}.parquet", names, np.where(mask[:, None], X, 0.0), mask, {"extractor": m})
        args += ["--features", f"{m}={tmp_path / f'{m}.parquet'}"]
    valence = (y[:n_lab] * 0.3 - 1 + rng.normal(size=n_lab) * 0.2).round(3)
    pd.DataFrame({"name": names[:n_lab], "discrete": [CLASSES[i] for i in y[:n_lab]], "valence": valence}).to_csv(
        tmp_path / "labels.csv", index=False)
    pd.DataFrame({"name": names[n_lab:n_lab + 6]}).to_csv(tmp_path / "test.csv", index=False)
    params = {"folds": 3, "seeds": 1, "epochs": 8, "batch_size": 8, "valence": "ridge"}
    return [*args, "--labels", str(tmp_path / "labels.csv"), "--test", str(tmp_path / "test.csv"),
            "--classes", ",".join(CLASSES), "--params", json.dumps(params)]


def run_job(tmp_path: Path, args: list[str], cpu: dict[str, str], out: str) -> tuple[pd.DataFrame, dict, dict]:
    env = {k: v for k, v in os.environ.items() if k not in {*AVX2_CPU, *PLAIN_CPU, "MKL_CBWR", "EXPMAE_NUMERICS_REEXEC"}}
    r = subprocess.run([sys.executable, "-m", "expmae.train.cv", "--head", "fbp", *args, "--out", str(tmp_path / out)],
                       env={**env, **cpu}, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    m = json.loads((tmp_path / out / "metrics.json").read_text())
    m.pop("seconds")
    w = {k: v.tobytes() for k, v in load_file(tmp_path / out / "model.safetensors").items()}  # the file's header order varies
    return pd.read_parquet(tmp_path / out / "probs.parquet"), m, w


@pytest.mark.slow
def test_training_job_gives_the_same_numbers_on_two_cpus(tmp_path):
    args = job_inputs(tmp_path)
    (pa, ma, wa), (pb, mb, wb) = run_job(tmp_path, args, AVX2_CPU, "avx2"), run_job(tmp_path, args, PLAIN_CPU, "plain")
    cols = [f"prob_{c}" for c in CLASSES]
    a, b = pa[cols].to_numpy(), pb[cols].to_numpy()
    assert np.isfinite(a).all() and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes(), f"probabilities differ by up to {np.abs(a - b).max():.3g}"
    assert pa.equals(pb)  # every column: fold and seed probabilities, valence, predictions
    assert ma == mb       # scores (weighted F1, valence MSE, intervals), curves
    assert wa == wb       # the fold models' weights


def test_pin_restarts_a_program_that_loaded_numpy():
    """numpy (and its OpenBLAS) read their variables at import, before a job's main(): pin_numerics
    re-executes the program with them; torch's and MKL's still take effect in the process."""
    code = ("import numpy, os; from expmae.train.repro import pin_numerics; s = pin_numerics();"
            " print(repr(s), os.environ.get('EXPMAE_NUMERICS_REEXEC'))")
    env = {k: v for k, v in os.environ.items() if k not in {*PLAIN_CPU, "MKL_CBWR", "OPENBLAS_NUM_THREADS", "EXPMAE_NUMERICS_REEXEC"}}
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "RuntimeWarning" not in r.stderr, r.stderr
    state, mark = r.stdout.strip().rsplit(" ", 1)
    assert eval(state) == {"numpy_simd": [], "openblas": ["Nehalem"], "aten": aten_level().upper(), "mkl_cbwr": 3,
                           "mkldnn": False}
    assert mark == "1"  # it ran twice: once as started, once pinned


def test_a_job_started_with_the_rules_prefix_is_pinned_without_restarting():
    """The training rules start their jobs with shell_prefix() (train.smk): the job is pinned from its first
    import and never re-executes itself (~0.3 s of each of the demo's 38 training jobs)."""
    from expmae.train.repro import shell_prefix

    code = ("import numpy, os; from expmae.train.repro import pin_numerics; s = pin_numerics();"
            " print(s['numpy_simd'], s['openblas'], os.environ.get('EXPMAE_NUMERICS_REEXEC'))")
    env = {k: v for k, v in os.environ.items() if k not in {*PLAIN_CPU, "MKL_CBWR", "OPENBLAS_NUM_THREADS", "EXPMAE_NUMERICS_REEXEC"}}
    r = subprocess.run(f"{shell_prefix()} {sys.executable} -c \"{code}\"", shell=True, env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "RuntimeWarning" not in r.stderr, r.stderr
    assert r.stdout.split() == ["[]", "['Nehalem']", "None"]

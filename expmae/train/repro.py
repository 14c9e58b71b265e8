"""The same training numbers on any x86-64 CPU: pin the numerical libraries' CPU dispatch.

torch, MKL, OpenBLAS and numpy pick their kernels by the CPU's instruction set (SSE, AVX2, AVX-512),
and the kernels round differently, so one config scored on an AVX-512 node and on an AVX2 node gave
different probabilities (~1e-5) and, through argmax ties and pseudo-label thresholds, different
scores. The small heads train on one CPU thread in fp32, where speed hardly matters, so a training
job's main() starts with pin_numerics(), which sets:

  ATEN_CPU_CAPABILITY=avx2        torch's ATen kernels (randn, elementwise ops, reductions, softmax,
                                  the optimizer) in their AVX2 build on every CPU with AVX2 (AVX2 and
                                  AVX-512 nodes alike), the plain build ("default") on the rare x86-64
                                  CPU without it, whose numbers may then differ (aten_level). Read at
                                  torch's first dispatched op.
  MKL_CBWR=COMPATIBLE             torch's BLAS (MKL sgemm: every nn.Linear): MKL's conditional
                                  numerical reproducibility, its one code path for every x86-64 CPU.
                                  Read at MKL's first call.
  OPENBLAS_CORETYPE=Nehalem       numpy's and scipy's BLAS (scipy-openblas, DYNAMIC_ARCH: numpy
                                  matmul, the ridge valence model): one kernel set (SSE4.2; numpy 2.4
                                  needs x86-64-v2 anyway). Read when the library loads (import numpy).
  OPENBLAS_NUM_THREADS=1          as the job's torch (cv: torch.set_num_threads(1)).
  NPY_DISABLE_CPU_FEATURES=...    every feature numpy dispatches at run time (this build: X86_V3
                                  X86_V4 AVX512_ICL AVX512_SPR), leaving its baseline: numpy's float64
                                  exp/log (late fusion's geometric mean) differ under AVX-512. Read at
                                  import numpy. (Sums, means and std do not depend on it.)
and, in the process, torch.backends.mkldnn.enabled = False (oneDNN picks its ISA by the CPU; fp32
Linear does not use it in torch 2.14, this keeps it so).

Most of these are read when a library loads, and a job's module imports numpy before main() runs,
so when they were not already in the environment pin_numerics re-executes the program with them
(sys.orig_argv: `python -m expmae.train.cv ...` restarts as itself, ~0.3 s); the training rules start
their jobs with shell_prefix() (the pinned environment), which saves that. Not allowed to re-execute
(reexec=False: an in-process call, e.g. from a test), it sets what still takes effect and warns about
the rest. Left as is: glibc's libm (expf,
logf) picks its FMA variant on every CPU with AVX2, i.e. the same on AVX2 and AVX-512 nodes.

Cost (MLP head, hidden 128, 300 x 400 inputs, batch 32, 50 epochs, one thread, CPU time on an
AVX-512 Xeon): 0.43 s -> 0.63 s per fit with ATen's plain kernels (1.46x; ATen ~1.35x, MKL COMPATIBLE
~1.05x); with its AVX2 kernels (what aten_level picks there) ~0.45 s.
"""
from __future__ import annotations

import ctypes
import os
import sys
import warnings

REEXEC_MARK = "EXPMAE_NUMERICS_REEXEC"   # set in the re-executed process: never re-execute twice
MKL_CBWR_BRANCH, MKL_CBWR_COMPATIBLE = 1, 3  # mkl_service.h


def numpy_dispatch() -> list[str]:
    """The CPU features this numpy build dispatches at run time (all of them are disabled)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__

    return list(__cpu_dispatch__)


def aten_level() -> str:
    """avx2 on every CPU that has it (x86-64 servers since 2013: AVX2 and AVX-512 nodes alike get torch's
    AVX2 kernels, the same instructions, so the same numbers), else the plain kernels. The plain ones on
    every CPU cost 1.4-1.7x of a training job; these cost nothing over the CPU's own choice."""
    try:
        flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "").split()
    except OSError:
        flags = []
    return "avx2" if {"avx2", "fma"} <= set(flags) else "default"


def pinned_env() -> dict[str, str]:
    """The environment of a pinned training job (see the module docstring)."""
    return {"ATEN_CPU_CAPABILITY": aten_level(), "MKL_CBWR": "COMPATIBLE", "OPENBLAS_CORETYPE": "Nehalem",
            "OPENBLAS_NUM_THREADS": "1", "NPY_DISABLE_CPU_FEATURES": " ".join(numpy_dispatch())}


def shell_prefix() -> str:
    """`env K=V ...` for a rule's shell command: the job starts pinned and does not re-execute itself. Computed
    where Snakemake parses; a job on a node whose CPU wants other values still restarts once (pin_numerics
    compares with its own pinned_env)."""
    import shlex

    return "env " + " ".join(f"{k}={shlex.quote(v)}" for k, v in pinned_env().items())


def _mkl_branch() -> int | None:
    """MKL's CNR branch in effect (3 = COMPATIBLE), None when torch's MKL cannot be asked."""
    import torch

    try:
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
        get = lib.mkl_serv_cbwr_get
    except (OSError, AttributeError):
        return None
    get.restype, get.argtypes = ctypes.c_int, [ctypes.c_int]
    return int(get(MKL_CBWR_BRANCH))


def in_effect(with_torch: bool = True) -> dict[str, object]:
    """What the process runs with: numpy's active dispatched features, the OpenBLAS kernels loaded and
    (with_torch) torch's CPU capability, MKL's CNR branch, oneDNN on/off."""
    import numpy  # noqa: F401 — loads its OpenBLAS
    from numpy._core._multiarray_umath import __cpu_features__
    from threadpoolctl import threadpool_info

    state = {"numpy_simd": [f for f in numpy_dispatch() if __cpu_features__.get(f)],
             "openblas": sorted({i.get("architecture") for i in threadpool_info() if i["internal_api"] == "openblas"})}
    if with_torch:
        import torch

        state.update(aten=torch.backends.cpu.get_cpu_capability(), mkl_cbwr=_mkl_branch(),
                     mkldnn=torch.backends.mkldnn.enabled)
    return state


def problems(state: dict[str, object]) -> list[str]:
    """The pins in_effect() shows not to have taken ([] = all in effect)."""
    out = []
    if state.get("aten", aten_level().upper()) != aten_level().upper():
        out.append(f"torch CPU capability {state['aten']} (torch ran an op before the pin)")
    if state.get("mkl_cbwr") not in (MKL_CBWR_COMPATIBLE, None):
        out.append(f"MKL CNR branch {state['mkl_cbwr']} (MKL was called before the pin)")
    if state["numpy_simd"]:
        out.append(f"numpy SIMD {' '.join(state['numpy_simd'])} (numpy was imported before the pin)")
    if any(a != "Nehalem" for a in state["openblas"]):
        out.append(f"OpenBLAS kernels {state['openblas']} (numpy was imported before the pin)")
    return out


def pin_numerics(reexec: bool = True, with_torch: bool = True) -> dict[str, object]:
    """Make this process's numbers independent of the CPU's instruction set; call it first in a
    training job's main(). reexec: restart the program (os.execv of sys.orig_argv) when a setting
    can only take effect at start-up; pass False when main() runs inside another program (tests).
    with_torch=False: a job without torch (late fusion) is not made to import it.
    -> in_effect() (for metrics.json)."""
    want = pinned_env()
    may_restart = reexec and any(os.environ.get(k) != v for k, v in want.items()) and not os.environ.get(REEXEC_MARK)
    os.environ.update(want)
    if may_restart and "numpy" in sys.modules:  # its settings are read at import: restart before importing torch
        _restart()
    if with_torch:
        import torch  # ATEN_CPU_CAPABILITY and MKL_CBWR are still read after this, before torch's first op

        torch.backends.mkldnn.enabled = False
    state = in_effect(with_torch)
    bad = problems(state)
    if bad and may_restart:
        _restart()
    if bad:
        warnings.warn("expmae.train.repro: numerics not pinned, results may differ on another CPU: " + "; ".join(bad),
                      RuntimeWarning, stacklevel=2)
    return state


def _restart() -> None:
    """Run this program again from the start, in the pinned environment (os.environ)."""
    os.environ[REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

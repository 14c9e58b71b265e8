import os
from pathlib import Path

import cv2  # noqa: F401  — must load before decord: decord's bundled zlib breaks cv2's libpng otherwise
import pytest

from fixtures import workflow

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# Keep torch from oversubscribing the 2-core CI machine: one thread per worker under `pytest -n 2`.
os.environ.setdefault("OMP_NUM_THREADS", "1" if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1 else "2")


# Files that take longest, started first under `pytest -n 2` (make test): xdist hands out whole groups in
# collection order, and a long group started last would end the run alone on one core. Longest first, by
# `pytest --durations` on the 2-core box (the tiny_run group holds every module that reads the session run;
# benchmarks/README.md has the figures).
HEAVY_FIRST = ("tiny_run", "test_workflow_optional_inputs.py", "test_presets_mer.py", "test_protocol.py",
               "test_mae_pretrain.py", "test_demo.py", "test_faces_folder.py", "test_cv.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for `--dist loadgroup`: one per test file, except that every test of a module that uses
    the session's tiny run joins one group "tiny_run", so that run is made once, by one worker (a session
    fixture is made once per xdist worker). Heavy groups go first (HEAVY_FIRST)."""
    uses_run = {item.module.__name__ for item in items if "tiny_run" in item.fixturenames}
    group = {}
    for item in items:
        name = "tiny_run" if item.module.__name__ in uses_run else Path(item.fspath).name
        group[item.nodeid] = name
        item.add_marker(pytest.mark.xdist_group(name))
    rank = {g: i for i, g in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda it: rank.get(group[it.nodeid], len(rank)))  # stable: file order within a group


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before a test's fixtures are set up: fixtures.workflow.smk refuses Snakemake to a test not marked e2e."""
    workflow.E2E_TEST = item.get_closest_marker("e2e") is not None


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole DAG on the tiny demo data, run once per test session (test_workflow, test_workflow_training
    and test_predict read it). Never change it: a test that changes data or config works on a copy,
    fixtures.workflow.clone_run(tiny_run, ...), where Snakemake reruns only what the change touches."""
    return workflow.tiny_run(tmp_path_factory.mktemp("tiny_run"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "videos").is_dir():
        pytest.skip("../shared/data not present")
    return SHARED


@pytest.fixture(scope="module")
def one_native_thread():
    """Run native thread pools (YuNet's OpenMP, OpenBLAS under O-Net) single-threaded, as the face
    stage's worker processes do: on a loaded 2-core box their spin-waiting turned a 10 ms
    detection into 840 ms. Modules opt in with pytestmark = pytest.mark.usefixtures(...)."""
    import yuface  # noqa: F401 — load its OpenMP runtime first: limits apply to loaded libraries only
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture
def one_torch_thread():
    """Tiny heads: one torch thread (as expmae.train.cv runs them); more only contend on a loaded box.
    Modules opt in with pytestmark = pytest.mark.usefixtures("one_torch_thread")."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    """The workflow over 8 empty placeholder videos (one shard): enough for a dry-run."""
    return workflow.placeholder_workflow(tmp_path_factory.mktemp("wf"))

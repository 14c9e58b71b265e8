"""A non-editable install works outside the checkout: the wheel carries what the package reads at run
time (the config schema, through importlib.resources), and `python -m expmae check` on the demo
config runs from a folder that is not the repository."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from fixtures.workflow import ROOT

pytestmark = pytest.mark.e2e
SOURCES = ("pyproject.toml", "README.md", "expmae")  # what setuptools reads to build the wheel


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing of the checkout on the path
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def build_wheel(src: Path, out: Path) -> Path:
    """pip wheel of a copy of `src` (an in-tree build would leave build/ in the checkout)."""
    tree = out / "src"
    tree.mkdir(parents=True)
    for name in SOURCES:
        if (src / name).is_dir():
            shutil.copytree(src / name, tree / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src / name, tree / name)
    p = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", out / "dist", tree], out)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return next((out / "dist").glob("expmae-*.whl"))


def venv_with(wheel: Path, where: Path) -> Path:
    """A venv holding only the wheel's expmae. --system-site-packages exposes the base interpreter's
    packages, not this venv's, so a .pth line adds this venv's site-packages (torch, snakemake ...) after
    the new one's: a path in a .pth is not itself a site dir, so the editable install's finder never runs."""
    run([sys.executable, "-m", "venv", "--system-site-packages", where], where.parent).check_returncode()
    py = where / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], where).stdout.strip())
    (site / "outer_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    p = run([py, "-m", "pip", "install", "--no-deps", "--no-index", wheel], where.parent)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    return py


def placeholder_demo(d: Path) -> None:
    """The demo's files with the demo's names and columns, each video a 64-byte placeholder: `check` reads
    the CSVs and lists the folders, it never decodes (rendering the real demo took a minute of the test)."""
    from expmae.config import default

    classes = default("classes")
    labeled = [(f"demo_{i:05d}", classes[i % len(classes)]) for i in range(5 * len(classes))]  # 5 folds
    test = [f"demo_{i:05d}" for i in range(100, 103)]
    (d / "videos").mkdir(parents=True)
    (d / "labels.csv").write_text("name,discrete,valence\n" + "".join(f"{n},{c},0.5\n" for n, c in labeled))
    (d / "test.csv").write_text("name\n" + "".join(f"{n}\n" for n in test))
    (d / "test_labels.csv").write_text("name,discrete,valence\n" + "".join(f"{n},{classes[0]},0.0\n" for n in test))
    (d / "transcripts.csv").write_text("name,english\n" + "".join(f"{n},hello\n" for n, _ in labeled))
    for name in [n for n, _ in labeled] + test + ["demo_00200"]:
        (d / "videos" / f"{name}.mp4").write_bytes(b"\0" * 64)


def test_the_wheel_runs_check_on_the_demo_config_outside_the_checkout(tmp_path):
    py = venv_with(build_wheel(ROOT, tmp_path / "build"), tmp_path / "venv")
    work = tmp_path / "elsewhere"  # no config.yaml, no workflow/: what a wheel user has
    work.mkdir()
    where = run([py, "-c", "import expmae, expmae.config as c; print(expmae.__file__); print(c.SCHEMA)"], work)
    assert where.returncode == 0, where.stderr[-2000:]
    assert all(str(tmp_path / "venv") in line for line in where.stdout.split()), where.stdout  # not the checkout's
    placeholder_demo(work / "data" / "demo")  # the demo preset's paths are relative: data/demo/...
    p = run([py, "-m", "expmae", "check", "--configfile", ROOT / "workflow" / "presets" / "demo.yaml", "--no-dag"],
            work)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "0 error(s)" in p.stdout and "labeled" in p.stdout

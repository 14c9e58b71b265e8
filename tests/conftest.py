import os
from pathlib import Path

import cv2  # noqa: F401  — must load before decord: decord's bundled zlib breaks cv2's libpng otherwise
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# Keep torch from oversubscribing the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED / "videos").is_dir():
        pytest.skip("../shared/data not present")
    return SHARED

"""expmae.train.late: late fusion is the normalised geometric mean of its members' probabilities."""
import numpy as np
import pandas as pd
import pytest

from expmae.train import cv, data
from expmae.train.late import late_fuse
from fixtures.training import CLASSES, P0, make_ds

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_late_fusion_is_a_normalised_geometric_mean(tmp_path):
    paths, y = make_ds(tmp_path)
    ds = data.load(paths, tmp_path / "labels.csv", tmp_path / "test.csv", CLASSES, tmp_path / "tl.csv")
    p = {**P0, "epochs": 30}
    members = [cv.cross_validate(data.load({m: paths[m]}, tmp_path / "labels.csv", tmp_path / "test.csv", CLASSES),
                                       "mlp", CLASSES, p)[0] for m in ("a", "b")]
    late = late_fuse(members, CLASSES)
    cols = [f"prob_{c}" for c in CLASSES]
    P = np.sqrt(members[0][cols].to_numpy() * members[1][cols].to_numpy())
    np.testing.assert_allclose(late[cols].to_numpy(), P / P.sum(1, keepdims=True), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(late["valence"], (members[0]["valence"] + members[1]["valence"]) / 2)
    assert (late["fold"] == members[0]["fold"]).all() and "f4_happy" in late
    pd.testing.assert_frame_equal(late_fuse(members[:1], CLASSES)[cols], members[0][cols], atol=1e-5, check_dtype=False)

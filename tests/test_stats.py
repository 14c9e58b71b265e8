"""expmae.train.stats (issue 14): the bootstrap interval and the paired difference against a direct
computation."""
import numpy as np
import pytest
from sklearn.metrics import f1_score

from expmae.train import stats

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bootstrap_interval_matches_a_direct_computation():
    """A small fixed table: 3 classes, 12 videos, 2 seeds. The interval is the 2.5/97.5% quantile of
    the seed-mean weighted F1 (sklearn) over the same resamples, computed here one by one."""
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    a = np.array([[0, 0, 1, 0, 1, 1, 2, 1, 2, 2, 0, 2], [0, 1, 1, 0, 1, 1, 1, 1, 2, 2, 2, 2]])
    b = np.array([[0, 0, 0, 0, 1, 2, 2, 2, 2, 1, 0, 0], [1, 0, 0, 0, 1, 1, 2, 2, 2, 0, 0, 0]])
    idx = stats.resamples(len(y), 100, seed=3)

    def direct(p):
        return np.array([np.mean([f1_score(y[i], s[i], average="weighted", zero_division=0) for s in p]) for i in idx])

    assert stats.bootstrap_ci(y, a, 3, n_boot=100, seed=3) == pytest.approx(
        [np.quantile(direct(a), 0.025), np.quantile(direct(a), 0.975)], abs=1e-12)
    d = direct(a) - direct(b)
    full = np.mean([f1_score(y, s, average="weighted") for s in a]) - np.mean([f1_score(y, s, average="weighted") for s in b])
    cmp = stats.paired_diff(y, a, b, 3, n_boot=100, seed=3)
    assert cmp["diff"] == pytest.approx(full, abs=1e-4) and cmp["n"] == 12
    assert cmp["ci"] == pytest.approx([np.quantile(d, 0.025), np.quantile(d, 0.975)], abs=1e-4)
    assert cmp["within_noise"] == (cmp["ci"][0] <= 0 <= cmp["ci"][1])
    # a model against itself: difference 0, interval [0, 0], within the noise
    assert stats.paired_diff(y, a, a, 3)["ci"] == [0.0, 0.0]
    # the same resamples every call: reruns give the same interval
    assert stats.bootstrap_ci(y, a, 3) == stats.bootstrap_ci(y, a, 3)

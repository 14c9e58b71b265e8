"""expmae.train.scoring: weighted F1, accuracy, confusion and MSE against sklearn."""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, mean_squared_error

from expmae.train import scoring

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, p = rng.integers(0, 6, 200), rng.integers(0, 6, 200)
    p[p == 5] = 4  # a class never predicted (F1 0) ...
    y[y == 0] = 1  # ... and one only predicted (zero weight)
    assert scoring.weighted_f1(y, p) == pytest.approx(f1_score(y, p, average="weighted", zero_division=0))
    assert scoring.accuracy(y, p) == pytest.approx(accuracy_score(y, p))
    np.testing.assert_array_equal(scoring.confusion(y, p, 6), confusion_matrix(y, p, labels=range(6)))
    v, vh = rng.normal(size=200), rng.normal(size=200)
    assert scoring.mse(v, vh) == pytest.approx(mean_squared_error(v, vh))
    s = scoring.scores(y, p, v, vh, prefix="test_")
    assert s["test_mer_combined"] == pytest.approx(f1_score(y, p, average="weighted") - 0.25 * mean_squared_error(v, vh))
    v[:10] = np.nan  # unknown valence rows are skipped, not counted as errors
    assert scoring.mse(v, vh) == pytest.approx(mean_squared_error(v[10:], vh[10:]))
    assert np.isnan(scoring.mse(np.full(3, np.nan), np.zeros(3))) and np.isnan(scoring.weighted_f1([], []))

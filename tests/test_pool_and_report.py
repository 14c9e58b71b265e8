"""Pseudo-label pool exclusions (still images, copies; real Parquet inputs), the prior-shift note and submission columns."""
import pandas as pd

from expmae.faces.worker import STILL_IMAGE
from expmae.train.pseudo import copy_groups, pool_filter, still_images


def test_still_images_and_copies_stay_out_of_the_pool(tmp_path):
    man = pd.DataFrame({"name": ["a", "a_copy", "t", "t_copy", "u1", "u2", "z"],
                        "sha256": ["h1", "h1", "h2", "h2", "h3", "h3", ""], "size": [10] * 7})
    man.to_parquet(tmp_path / "s00000.parquet")
    pd.DataFrame({"name": ["pic", "u1"], "reason": [STILL_IMAGE, ""]}).to_parquet(tmp_path / "qc.parquet")
    probs = pd.DataFrame({"name": ["a", "a_copy", "t", "t_copy", "u1", "u2", "z", "pic"],
                          "split": ["labeled", "unlabeled", "test", "unlabeled", "unlabeled", "unlabeled",
                                    "unlabeled", "unlabeled"]})
    groups = copy_groups([str(tmp_path / "s00000.parquet")])
    assert sorted(map(tuple, groups)) == [("a", "a_copy"), ("t", "t_copy"), ("u1", "u2")]
    still = still_images([str(tmp_path / "qc.parquet")])
    assert still == {"pic"}
    kept = pool_filter(probs, still, groups)
    pool = set(kept.loc[kept["split"] == "unlabeled", "name"])
    # a copy of a labeled or test video, the second of two unlabeled copies, and the picture are out
    assert pool == {"u1", "z"}
    assert {"a", "t"} <= set(kept["name"])   # labeled and test rows themselves are untouched


def test_prior_shift_is_named_next_to_test_scores():
    from expmae.report.noise import prior_shift

    classes = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
    # MER 2023: train vs test3 counts (../shared/reference/mer.md)
    m = {"class_counts": {"labeled": [871, 822, 689, 383, 462, 146], "test": [166, 183, 169, 257, 45, 14]}}
    s = prior_shift(m, classes)
    assert s["note"].startswith("sad 11% -> 31%") and "worried 14% -> 5%" in s["note"]
    assert prior_shift({"class_counts": {"labeled": [10, 10], "test": [5, 5]}}, ["a", "b"]) is None
    assert prior_shift({"class_counts": {"labeled": [10, 10]}}, ["a", "b"]) is None


def test_submission_columns_follow_the_config():
    from expmae.report.tables import select_columns

    text = "name,discrete,valence\na,happy,0.5\n"
    assert select_columns(text, ["name", "discrete"]) == "name,discrete\na,happy\n"
    assert select_columns(text, ["name", "discrete", "valence"]) == text

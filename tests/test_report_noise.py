"""expmae.report.noise: the prior shift between labeled and test classes, named next to test scores."""


def test_prior_shift_is_named_next_to_test_scores():
    from expmae.report.noise import prior_shift

    classes = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
    # MER 2023: train vs test3 counts (../shared/reference/mer.md)
    m = {"class_counts": {"labeled": [871, 822, 689, 383, 462, 146], "test": [166, 183, 169, 257, 45, 14]}}
    s = prior_shift(m, classes)
    assert s["note"].startswith("sad 11% -> 31%") and "worried 14% -> 5%" in s["note"]
    assert prior_shift({"class_counts": {"labeled": [10, 10], "test": [5, 5]}}, ["a", "b"]) is None
    assert prior_shift({"class_counts": {"labeled": [10, 10]}}, ["a", "b"]) is None

"""expmae.tracks: the scored test tracks (config data.tracks; MER 2023 test1 MER-MULTI, test2 MER-NOISE, test3
MER-SEMI): their official metrics against hand-computed values, a missing label CSV, a run without valence,
the tracks' names as test videos, and the report's tracks (metrics.json, one submission per track)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from expmae import tracks
from expmae.io import write_table
from expmae.train import plan, scoring

CLASSES = ["neutral", "happy", "sad"]


def probs_table(v_hat: list[float] | None = None) -> pd.DataFrame:
    """A final model's probs table (the real writer) over t1..t4 (track test1), x1 (another test name) and l1
    (labeled). Two seeds: seed 0 predicts t1..t4 as neutral, happy, happy, happy (0.9 sure), seed 1 as neutral,
    neutral, happy, happy (0.6 sure), so the ensemble (mean) predicts as seed 0; valence: seed 0 and the ensemble
    v_hat, seed 1 the truth exactly (None: no valence learned, NaN)."""
    names = ["t1", "t2", "t3", "t4", "x1", "l1"]
    s0, s1 = [0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 0]
    seed_probs = np.zeros((2, len(names), 3))
    for s, (pred, p) in enumerate(((s0, 0.9), (s1, 0.6))):
        seed_probs[s] = (1 - p) / 2
        seed_probs[s, np.arange(len(names)), pred] = p
    probs = seed_probs.mean(0)
    v = np.array((v_hat or [np.nan] * 4) + [0.0, 0.0], float)
    truth_v = np.array([1.0, 0.0, -1.0, 2.0, 0.0, 0.0])
    seed_v = np.stack([v, np.where(np.isfinite(v), truth_v, np.nan)])
    split = np.array(["test"] * 5 + ["labeled"], object)
    return scoring.probs_frame(names, split, np.r_[-np.ones(5, int), 0], np.r_[-np.ones(5, int), 0], probs,
                               probs[None], v, CLASSES, seed_probs=seed_probs, seed_valence=seed_v)


def track_csv(path: Path, valence: bool = True) -> Path:
    df = pd.DataFrame({"name": ["t1", "t2", "t3", "t4"], "discrete": ["neutral", "neutral", "happy", "happy"],
                       "valence": [1.0, 0.0, -1.0, 2.0] if valence else ""})
    df.to_csv(path, index=False)
    return path


def test_f1_mse_track_matches_hand_computed_scores(tmp_path):
    """MER-MULTI's metric by hand: truth neutral, neutral, happy, happy; the ensemble predicts neutral, happy,
    happy, happy: F1 neutral 2/3 (tp 1, support 2, predicted 1), happy 4/5 (tp 2, support 2, predicted 3),
    weighted (2/3 + 4/5) / 2 = 0.7333; valence (1, 0, -1, 2) vs (0.5, 0, -1, 1): MSE (0.25 + 1) / 4 = 0.3125;
    score 0.7333 - 0.25 x 0.3125 = 0.6552. Seed 1 is right everywhere: F1 1, MSE 0, score 1."""
    cfg = {"test1": {"labels": str(track_csv(tmp_path / "test1-label.csv")), "metric": "f1_mse"}}
    m = tracks.score_all(probs_table([0.5, 0.0, -1.0, 1.0]), CLASSES, cfg)["test1"]
    f1 = (2 / 3 + 4 / 5) / 2
    assert m["status"] == "scored" and m["n"] == 4 and m["metric"] == "f1_mse"
    assert m["f1"] == round(f1, 4) and m["mse"] == 0.3125 and m["score"] == round(f1 - 0.25 * 0.3125, 4)
    assert m["per_seed"] == [{"f1": round(f1, 4), "mse": 0.3125, "score": round(f1 - 0.078125, 4)},
                             {"f1": 1.0, "mse": 0.0, "score": 1.0}]
    assert m["f1_seed_mean"] == round((f1 + 1) / 2, 4) and m["f1_std"] == round((1 - f1) / np.sqrt(2), 4)
    assert m["score_seed_mean"] == round((f1 - 0.078125 + 1) / 2, 4)
    for k in ("f1", "mse", "score"):  # the ensemble's 95% bootstrap interval over the track's videos
        lo, hi = m[f"{k}_ci"]
        assert lo <= hi and 0 <= lo <= 1.5 and hi >= 0
    assert m["class_counts"] == [2, 2, 0]
    # the same F1 as the scorer every other score uses (checked against scikit-learn in test_scoring)
    assert m["f1"] == round(scoring.weighted_f1(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])), 4)


def test_f1_track_and_a_missing_label_csv(tmp_path):
    """MER-SEMI's metric is F1 alone (no mse key); a track whose CSV is absent is reported, never an error,
    and gets no submission."""
    cfg = {"test3": {"labels": str(track_csv(tmp_path / "test3-label.csv", valence=False)), "metric": "f1"},
           "test2": {"labels": str(tmp_path / "test2-label.csv"), "metric": "f1_mse"}}
    probs = probs_table([0.5, 0.0, -1.0, 1.0])
    out = tracks.score_all(probs, CLASSES, cfg)
    assert out["test3"]["score"] == out["test3"]["f1"] == round((2 / 3 + 4 / 5) / 2, 4)
    assert "mse" not in out["test3"] and "mse_missing" not in out["test3"]
    assert out["test2"] == {"labels": cfg["test2"]["labels"], "metric": "f1_mse", "status": "not scored (file missing)"}
    subs = tracks.submissions(scoring_submission(probs), cfg, CLASSES)
    assert list(subs) == ["test3"]
    assert "track test2: not scored (file missing)" in tracks.headline(out)


def scoring_submission(probs: pd.DataFrame) -> str:
    from expmae.report.tables import submission

    return submission(probs).to_csv(index=False)


def test_a_run_without_valence_scores_f1_with_mse_null_and_why(tmp_path):
    """No valence predicted (the training labels have none): the f1_mse track reports F1, mse null and the
    reason, and its score is F1 (never F1 - 0.25 x a made-up MSE); a track CSV without valence likewise."""
    cfg = {"test1": {"labels": str(track_csv(tmp_path / "test1-label.csv")), "metric": "f1_mse"}}
    m = tracks.score_all(probs_table(None), CLASSES, cfg)["test1"]
    assert m["mse"] is None and m["mse_ci"] is None and "no valence predicted" in m["mse_missing"]
    assert m["score"] == m["f1"] == round((2 / 3 + 4 / 5) / 2, 4)
    assert "MSE not scored: no valence predicted" in tracks.headline({"test1": m})
    cfg["test1"]["labels"] = str(track_csv(tmp_path / "no-valence.csv", valence=False))
    m = tracks.score_all(probs_table([0.5, 0.0, -1.0, 1.0]), CLASSES, cfg)["test1"]
    assert m["mse"] is None and m["mse_missing"] == "the track's label CSV has no valence"


def test_config_entries_and_paths(tmp_path):
    from expmae.config import data_paths

    assert tracks.configured({"tracks": {"t": {"labels": "a.csv"}}}) == {"t": {"labels": "a.csv", "metric": "f1"}}
    with pytest.raises(SystemExit, match=r"data.tracks.t.metric: 'mse'; use one of f1, f1_mse"):
        tracks.configured({"tracks": {"t": {"labels": "a.csv", "metric": "mse"}}})
    with pytest.raises(SystemExit, match="data.tracks.final: needs labels"):  # would overwrite final.csv
        tracks.configured({"tracks": {"final": {"labels": "a.csv"}}})
    data = data_paths({"root": str(tmp_path), "videos": [], "tracks": {"test1": {"labels": "test1-label.csv"},
                                                                        "abs": {"labels": "/x/y.csv"}}})
    assert data["tracks"]["test1"]["labels"] == str(tmp_path / "test1-label.csv")
    assert data["tracks"]["abs"]["labels"] == "/x/y.csv"
    track_csv(tmp_path / "test1-label.csv")
    assert tracks.label_files(data) == [str(tmp_path / "test1-label.csv")]  # only the present ones


def test_track_names_are_test_videos(tmp_path):
    """Every test list (data.test and each track's CSV) makes its names split test, in the training data and
    in MAE pretraining's split counts, even a name that is also in the label CSV: never trained on, never
    in the pseudo-label pool (only unlabeled rows are), never in a fold."""
    from fixtures.training import make_ds

    from expmae.mae.splits import cli_args, video_splits
    from expmae.train import cv, data

    paths, _ = make_ds(tmp_path)
    pd.DataFrame({"name": ["v070", "v071", "v010"], "discrete": "happy", "valence": 0.0}).to_csv(
        tmp_path / "track.csv", index=False)
    ds = data.load(paths, tmp_path / "labels.csv", [str(tmp_path / "test.csv"), str(tmp_path / "track.csv")],
                   ["neutral", "angry", "happy", "sad", "worried", "surprise"])
    split = dict(zip(ds.names, ds.split))
    assert [split[n] for n in ("v070", "v071", "v010", "v100")] == ["test"] * 4
    assert ds.y[ds.names.index("v010")] == -1  # labeled in labels.csv, but a test video: no training row
    one = data.load(paths, tmp_path / "labels.csv", tmp_path / "test.csv", ["neutral", "angry", "happy"])
    assert dict(zip(one.names, one.split))["v070"] == "unlabeled"  # one list as before
    a = cv.parse_args(["--labels", "l.csv", "--classes", "a,b", "--out", "o", "--test", "t.csv", "--test", "k.csv"])
    assert a.test == ["t.csv", "k.csv"]
    sp = video_splits(tmp_path / "labels.csv", [tmp_path / "test.csv", tmp_path / "track.csv"], ["happy"])
    assert sp["v070"] == sp["v100"] == "test"
    assert cli_args("l.csv", ["t.csv", "k.csv"], ["a"]) == "--labels l.csv --test t.csv --test k.csv --classes a"
    assert cli_args("l.csv", ["t.csv"], ["a"]) == cli_args("l.csv", "t.csv", ["a"])


def fake_final(d: Path) -> None:
    """The final model's folder (probs.parquet + metrics.json, real writers) for the report."""
    df = probs_table([0.5, 0.0, -1.0, 1.0])
    d.mkdir(parents=True)
    write_table(d / "probs.parquet", df)
    m = scoring.summarize(df, CLASSES, np.r_[np.full(5, np.nan), 0.0], {"x1": 2}, {})
    m.update(n_pseudo=0, n_labeled=1, **plan.identity(0, "single", "mlp", "egemaps"))
    (d / "metrics.json").write_text(json.dumps(m))


def test_report_scores_and_submits_every_track(tmp_path):
    """The report with tracks: metrics.json `tracks` (scored, not scored), submission/<track>.csv with the
    track's names in its file order, final.csv with data.test's names only, the tracks table and headline;
    without tracks, metrics.json has no `tracks` key and final.csv every test row, as before."""
    from expmae import report

    fake_final(tmp_path / "classify" / "round0" / "egemaps")
    pd.DataFrame({"name": ["x1"]}).to_csv(tmp_path / "test.csv", index=False)
    track_csv(tmp_path / "test1-label.csv")
    pd.DataFrame({"name": ["t4", "t9"], "discrete": ["happy", "sad"]}).to_csv(tmp_path / "odd.csv", index=False)
    cfg = {"test1": {"labels": str(tmp_path / "test1-label.csv"), "metric": "f1_mse"},
           "test2": {"labels": str(tmp_path / "gone.csv"), "metric": "f1_mse"},
           "odd": {"labels": str(tmp_path / "odd.csv"), "metric": "f1"}}
    args = ["--classify", str(tmp_path / "classify" / "round0" / "egemaps"), "--classes", ",".join(CLASSES),
            "--test", str(tmp_path / "test.csv")]
    report.main([*args, "--out", str(tmp_path / "plain")])
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert "tracks" not in plain
    assert pd.read_csv(tmp_path / "plain" / "submission" / "final.csv")["name"].tolist() == ["t1", "t2", "t3", "t4", "x1"]
    out = tmp_path / "res"
    report.main([*args, "--tracks", json.dumps({"tracks": cfg, "encoding": ""}), "--out", str(out)])
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) == set(plain) | {"tracks"}
    assert m["tracks"]["test1"]["score"] == round((2 / 3 + 4 / 5) / 2 - 0.25 * 0.3125, 4)
    assert m["tracks"]["test1"]["submission"] == "submission/test1.csv"
    assert m["tracks"]["test2"]["status"] == "not scored (file missing)"
    assert m["tracks"]["odd"]["n"] == 1 and m["tracks"]["odd"]["n_unpredicted"] == 1
    assert m["tracks"]["odd"]["n_guessed"] == 1  # t9 has no prediction: a guessed row in its submission
    sub = pd.read_csv(out / "submission" / "test1.csv")
    assert list(sub.columns) == ["name", "discrete", "valence"] and sub["name"].tolist() == ["t1", "t2", "t3", "t4"]
    assert sub["discrete"].tolist() == ["neutral", "happy", "happy", "happy"] and sub["valence"].tolist()[:2] == [0.5, 0.0]
    assert pd.read_csv(out / "submission" / "odd.csv")["name"].tolist() == ["t4", "t9"]
    assert not (out / "submission" / "test2.csv").exists()
    assert pd.read_csv(out / "submission" / "final.csv")["name"].tolist() == ["x1"]  # data.test's names only
    # the prior estimate (EM over the test pool) is data.test's pool, not every track's videos pooled
    assert plain["final"]["prior_estimate"]["n_test"] == 5 and m["final"]["prior_estimate"]["n_test"] == 1
    table = pd.read_csv(out / "report" / "tracks.tsv", sep="\t")
    assert table["track"].tolist() == ["test1", "test2", "odd"] and table["status"].tolist()[1] == "not scored (file missing)"
    assert "Test tracks" in (out / "report" / "f1_table.html").read_text()
    head = (out / "report" / "headline.txt").read_text()
    assert "track test1 (weighted F1 - 0.25 x valence MSE, 4 videos): 0.655" in head


def test_check_lists_each_track(tmp_path):
    """expmae check: found (names, metric), file missing (a warning: the run goes on), names without a video,
    and an f1_mse track whose CSV has no valence."""
    track_csv(tmp_path / "test1-label.csv")
    track_csv(tmp_path / "test3-label.csv", valence=False)
    data = {"tracks": {"test1": {"labels": str(tmp_path / "test1-label.csv"), "metric": "f1_mse"},
                       "test2": {"labels": str(tmp_path / "test2-label.csv"), "metric": "f1_mse"},
                       "test3": {"labels": str(tmp_path / "test3-label.csv"), "metric": "f1_mse"}}}
    rows: list[tuple[str, str, str]] = []
    found = tracks.check_rows(data, {"t1", "t2", "t3"}, lambda *r: rows.append(r))
    assert found == {"t1", "t2", "t3"}
    by = {item: (level, value) for level, item, value in rows}
    assert by["data.tracks.test1"][0] == "warn" and "1 without a video (first: t4)" in by["data.tracks.test1"][1]
    assert by["data.tracks.test2"][0] == "warn" and "not scored (file missing)" in by["data.tracks.test2"][1]
    assert "no valence in the CSV: mse not scored" in by["data.tracks.test3"][1]
    rows.clear()
    tracks.check_rows({"tracks": {"t": {"labels": "a.csv", "metric": "rmse"}}}, set(), lambda *r: rows.append(r))
    assert rows[0][0] == "error" and "data.tracks.t.metric" in rows[0][2]


def test_inputs_qc_treats_track_names_as_test_videos(tmp_path):
    """The inputs check (expmae.labels, results/qc/inputs.tsv): a track name without a video is a QC row like a
    data.test name's, a bad row of the track's CSV is one, and a labeled video with the same bytes as a track's
    is train/test leakage."""
    from expmae import labels

    man = tmp_path / "s00000.parquet"
    pd.DataFrame({"name": ["l1", "t1", "t2"], "path": ["a", "b", "c"], "size": [1, 1, 1],
                  "sha256": ["x", "x", "y"]}).to_parquet(man)
    pd.DataFrame({"name": ["l1"], "discrete": ["happy"]}).to_csv(tmp_path / "labels.csv", index=False)
    pd.DataFrame({"name": ["t1", "t2", "t3", "t2"], "discrete": ["happy", "sad", "sad", "sad"]}).to_csv(
        tmp_path / "test1-label.csv", index=False)
    q = labels.check([str(man)], CLASSES, str(tmp_path / "labels.csv"), tracks=[str(tmp_path / "test1-label.csv")])
    why = dict(zip(q["name"] + "/" + q["stage"], q["reason"]))
    assert why["t3/test"].startswith("test name without a video")
    assert "duplicate" in why["t2/labels"]
    assert "train/test leakage" in why["t1/ingest"]
    plain = labels.check([str(man)], CLASSES, str(tmp_path / "labels.csv"))
    assert "t3/test" not in set(plain["name"] + "/" + plain["stage"]) and not plain["reason"].str.contains("leakage").any()

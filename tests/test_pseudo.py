"""Pseudo-label policies of expmae.train.pseudo: per-class thresholds, agreement across models (each from
its own fold lineage), their composition with caps and soft labels, and the schema as the only home of
the selection defaults; threshold, top-k and agreement selection with caps, the source chosen by
out-of-fold F1, pseudo-labels (hard and soft) entering training along their fold lineage, and the pool's
exclusions (still images, copies)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from expmae import config
from expmae.faces.worker import STILL_IMAGE
from expmae.train import cv, data, plan, pseudo
from expmae.train.pseudo import choose_source, copy_groups, pool_filter, select, still_images
from expmae.train.scoring import probs_frame
from fixtures.training import P0, make_ds

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
A, H, S = 1, 2, 3  # angry, happy, sad


def table(rows: list[tuple[int, float]], split: list[str] | None = None) -> pd.DataFrame:
    """One row per (class, confidence); the rest of the mass on the next class."""
    P = np.zeros((len(rows), 6))
    for i, (c, conf) in enumerate(rows):
        P[i, c], P[i, (c + 1) % 6] = conf, 1 - conf
    df = pd.DataFrame({"name": [f"v{i}" for i in range(len(rows))], "split": split or ["unlabeled"] * len(rows)})
    for i, c in enumerate(CLASSES):
        df[f"prob_{c}"] = P[:, i]
    return df


def test_class_thresholds_select_exactly_the_expected_rows():
    df = table([(A, 0.995), (A, 0.95), (H, 0.86), (H, 0.84), (S, 0.91), (S, 0.89), (H, 0.99), (A, 0.999)],
               ["unlabeled"] * 7 + ["labeled"])
    p = {"threshold": 0.9, "class_thresholds": {"angry": 0.99, "happy": 0.85}}
    sel = pseudo.select(df, CLASSES, **p)
    # angry needs 0.99 (v1 out), happy 0.85 (v2, v6 in; v3 out), sad the global 0.9 (v4 in, v5 out); v7 labeled
    assert sel["name"].tolist() == ["v0", "v2", "v4", "v6"]
    # composes with the caps, top-k and soft labels: the floor first, then the most confident per class
    capped = pseudo.select(df, CLASSES, max_per_class=1, soft_labels=True, **p)
    assert capped["name"].tolist() == ["v0", "v4", "v6"] and "prob_happy" in capped
    topk = pseudo.select(df, CLASSES, policy="topk", top_k=1, **p)
    assert topk["name"].tolist() == ["v0", "v4", "v6"]
    with pytest.raises(SystemExit, match="pseudolabel.class_thresholds"):
        pseudo.select(df, CLASSES, class_thresholds={"joy": 0.5})


def test_select_takes_its_defaults_from_the_schema(monkeypatch):
    """select() repeats no default: a changed schema default is what a caller that leaves the key out gets."""
    df = table([(A, 0.6), (H, 0.95)])
    assert pseudo.select(df, CLASSES)["name"].tolist() == ["v1"]  # the schema's threshold 0.9
    real = config.defaults
    monkeypatch.setattr(config, "defaults", lambda s: {**real(s), "threshold": 0.5} if s == "pseudolabel" else real(s))
    assert pseudo.select(df, CLASSES)["name"].tolist() == ["v0", "v1"]


def model_dir(root, name: str, kind: str, fold_probs: np.ndarray, no_data: list[str] | None = None):
    """A real training output folder: probs.parquet with 2 fold models (folds=2, seeds=1) + metrics.json."""
    names = [f"u{i}" for i in range(6)] + [f"l{i}" for i in range(4)]
    split = np.array(["unlabeled"] * 6 + ["labeled"] * 4)
    y = np.array([-1] * 6 + [A, A, H, H])
    fold = np.array([-1] * 6 + [0, 1, 0, 1])
    lab = np.eye(6)[[A, A, H, H]] * 0.9 + 0.1 / 6
    F = np.concatenate([fold_probs, np.stack([lab, lab])], 1)  # labeled rows: right, out of fold
    df = probs_frame(names, split, y, fold, F.mean(0), F, np.full(10, np.nan), CLASSES,
                     no_data=np.array((no_data or [""] * 6) + [""] * 4, object))
    d = root / name
    d.mkdir()
    df.to_parquet(d / "probs.parquet")
    (d / "metrics.json").write_text(json.dumps({"name": name, "kind": kind, "combo": "all" if kind == "fused" else None,
                                                "folds": 2, "weighted_f1": 1.0, "seeds": [0]}))
    return str(d)


def onehot(rows: list[tuple[int, float]]) -> np.ndarray:
    return table(rows)[[f"prob_{c}" for c in CLASSES]].to_numpy()


def test_agreement_across_models_selects_exactly_the_expected_rows(tmp_path):
    """Source fbp predicts angry at 0.95 for u0..u5 in both folds. Fold 0: egemaps and minilm vote from their
    fold-0 models; from their fold-1 models both agree on all but u4 (egemaps has no data for it).
    agree_min 2 of [egemaps, minilm], floor 0.6."""
    src = onehot([(A, 0.95)] * 6)
    ege0 = onehot([(A, 0.9), (A, 0.5), (H, 0.9), (A, 0.9), (A, 0.9), (A, 0.9)])  # u1 under its floor, u2 other class
    mini0 = onehot([(A, 0.9), (A, 0.9), (A, 0.9), (S, 0.9), (A, 0.9), (A, 0.9)])  # u3 other class
    all1 = onehot([(A, 0.9)] * 6)
    cands = [model_dir(tmp_path, "fbp", "fused", np.stack([src, src])),
             model_dir(tmp_path, "egemaps", "single", np.stack([ege0, all1]),
                       no_data=["", "", "", "", "no usable data", ""]),  # u4: no vote from egemaps
             model_dir(tmp_path, "minilm", "single", np.stack([mini0, all1]))]
    p = {**config.resolve("pseudolabel", {"threshold": 0.6, "agree_with": ["egemaps", "minilm"], "agree_min": 2})}
    p.pop("rounds")
    pool, sources = pseudo.grow(None, cands, 1, CLASSES, p, set(), [])
    assert sources == {0: "fbp", 1: "fbp"}  # voters are never the source
    got = {f: sorted(pool.loc[pool["fold"] == f, "name"]) for f in (0, 1)}
    assert got == {0: ["u0", "u5"], 1: ["u0", "u1", "u2", "u3", "u5"]}
    one = pseudo.grow(None, cands, 1, CLASSES, {**p, "agree_min": 1}, set(), [])[0]
    assert sorted(one.loc[one["fold"] == 0, "name"]) == ["u0", "u1", "u2", "u3", "u4", "u5"]
    with pytest.raises(SystemExit, match="pseudolabel.agree_with"):
        pseudo.grow(None, cands, 1, CLASSES, {**p, "agree_with": ["hubert"]}, set(), [])


def probs_table(P, split):
    df = pd.DataFrame({"name": [f"v{i}" for i in range(len(P))], "split": split})
    for c, name in enumerate(CLASSES):
        df[f"prob_{name}"] = P[:, c]
    return df


@pytest.mark.usefixtures("one_torch_thread")
def test_select_threshold_and_class_cap():
    P = np.full((6, 6), 0.02)
    P[0, 1], P[1, 1], P[2, 1], P[3, 2], P[4, 3], P[5, 1] = 0.95, 0.92, 0.97, 0.91, 0.5, 0.99
    split = ["unlabeled"] * 5 + ["labeled"]
    sel = select(probs_table(P, split), CLASSES, threshold=0.9)
    assert sel["name"].tolist() == ["v0", "v1", "v2", "v3"]           # v4 below threshold, v5 labeled
    assert sel["discrete"].tolist() == ["angry", "angry", "angry", "happy"]
    capped = select(probs_table(P, split), CLASSES, threshold=0.9, max_per_class=2, round_=3)
    assert sorted(capped["name"]) == ["v0", "v2", "v3"] and set(capped["round"]) == {3}
    assert capped.set_index("name").loc["v2", "confidence"] == pytest.approx(0.97)


def pool(seed=0):
    """30 unlabeled rows: 20 predicted angry (the majority), 6 happy, 4 sad; confidence 0.5-0.99."""
    rng = np.random.default_rng(seed)
    P = np.full((30, 6), 0.0)
    cls = np.array([1] * 20 + [2] * 6 + [3] * 4)
    conf = np.round(np.linspace(0.5, 0.99, 30), 3)[rng.permutation(30)]
    P[np.arange(30), cls] = conf
    P[np.arange(30), (cls + 1) % 6] = 1 - conf
    df = probs_table(P, ["unlabeled"] * 30)
    df["agree"] = np.where(np.arange(30) % 3 == 0, 0.8, 1.0)  # every third row: one fold model disagrees
    return df, cls, conf


@pytest.mark.usefixtures("one_torch_thread")
def test_select_topk_is_class_balanced():
    df, cls, conf = pool()
    sel = select(df, CLASSES, threshold=0.0, policy="topk", top_k=3)
    assert sel["discrete"].value_counts().to_dict() == {"angry": 3, "happy": 3, "sad": 3}
    for c in (1, 2, 3):  # the 3 most confident of each class
        expect = sorted(conf[cls == c])[-3:]
        assert sorted(sel.loc[sel["y"] == c, "confidence"].round(3)) == pytest.approx(expect)
    by_thr = select(df, CLASSES, threshold=0.7)
    assert by_thr["discrete"].value_counts().idxmax() == "angry" and (by_thr["confidence"] >= 0.7).all()
    both = select(df, CLASSES, threshold=0.9, policy="topk", top_k=3)  # the threshold stays a floor
    assert (both["confidence"] >= 0.9).all() and (both["discrete"].value_counts() <= 3).all()
    with pytest.raises(SystemExit, match="pseudolabel.policy"):
        select(df, CLASSES, policy="random")


@pytest.mark.usefixtures("one_torch_thread")
def test_select_agreement_caps_and_soft_labels():
    df, cls, conf = pool()
    agree = select(df, CLASSES, threshold=0.0, agreement=True)
    assert len(agree) == 20 and (agree["agree"] == 1.0).all()
    capped = select(df, CLASSES, threshold=0.0, max_per_round=7, round_=2)
    # round-robin over classes: the cap keeps all three classes, the most confident of each first
    assert len(capped) == 7 and capped["discrete"].value_counts().to_dict() == {"angry": 3, "happy": 2, "sad": 2}
    assert set(capped["round"]) == {2}
    assert capped.loc[capped["y"] == 3, "confidence"].min() == pytest.approx(sorted(conf[cls == 3])[-2], abs=1e-3)
    soft = select(df, CLASSES, threshold=0.95, soft_labels=True)
    assert {f"prob_{c}" for c in CLASSES} <= set(soft) and len(soft) > 0
    np.testing.assert_allclose(soft[[f"prob_{c}" for c in CLASSES]].sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.usefixtures("one_torch_thread")
def test_choose_source_by_oof_f1(tmp_path):
    import json

    def write(d, f1):  # the identity a training job records, + its score
        combo, head = d.split("/")[-2:]
        ident = plan.identity(0, "fused", head, plan.fused_name(combo, head), combo)
        (tmp_path / d / "metrics.json").write_text(json.dumps({**ident, "weighted_f1": f1}))

    for d, f1 in (("fuse/round0/all/fbp", 0.5), ("fuse/round0/all/late", 0.7), ("fuse/round0/audio+text/fbp", 0.6)):
        (tmp_path / d).mkdir(parents=True)
        write(d, f1)
    dirs = [str(tmp_path / d) for d in ("fuse/round0/all/fbp", "fuse/round0/all/late", "fuse/round0/audio+text/fbp")]
    assert choose_source(dirs).name == "late"
    write("fuse/round0/audio+text/fbp", 0.9)
    assert choose_source(dirs).name == "late"  # sub-combinations are not candidates for `best`
    assert choose_source(dirs, "fbp[audio+text]").parent.name == "audio+text"
    with pytest.raises(SystemExit, match="pseudolabel.source"):
        choose_source(dirs, "attention")
    (tmp_path / "fuse/round0/all/fbp/metrics.json").write_text(json.dumps({"weighted_f1": 0.5}))  # no identity
    with pytest.raises(SystemExit, match="identity"):
        choose_source(dirs)


@pytest.mark.usefixtures("one_torch_thread")
def test_pseudo_labels_enter_training(tmp_path):
    paths, y = make_ds(tmp_path)
    ds = data.load(paths, tmp_path / "labels.csv", tmp_path / "test.csv", CLASSES)
    unl = [n for n, s in zip(ds.names, ds.split) if s == "unlabeled"]
    # fold 0's lineage gets every unlabeled video, fold 1's two of them; v000 is labeled: ignored
    pseudo = pd.DataFrame({"name": unl + ["v000"] + unl[:2], "y": 0, "weight": 1.0,
                           "fold": [0] * (len(unl) + 1) + [1, 1]})
    _, m, _ = cv.cross_validate(ds, "mlp", CLASSES, {**P0, "epochs": 5}, pseudo)
    assert m["n_pseudo_per_fold"] == [len(unl), 2, 0, 0, 0]
    with pytest.raises(SystemExit, match="fold lineage"):
        cv.cross_validate(ds, "mlp", CLASSES, {**P0, "epochs": 5}, pseudo.drop(columns="fold"))


@pytest.mark.usefixtures("one_torch_thread")
def test_soft_pseudo_labels_become_training_targets(tmp_path):
    paths, _ = make_ds(tmp_path)
    ds = data.load(paths, tmp_path / "labels.csv", tmp_path / "test.csv", CLASSES)
    unl = [n for n, s in zip(ds.names, ds.split) if s == "unlabeled"][:4]
    hard = pd.DataFrame({"name": unl, "y": [1, 2, 3, 4], "fold": 0})
    idx, T, w = cv.pseudo_rows(ds, hard, CLASSES, ds.mask.any(1), 5)[0]
    np.testing.assert_array_equal(T, np.eye(6)[[1, 2, 3, 4]]) and np.testing.assert_array_equal(w, 1.0)
    soft = hard.assign(**{f"prob_{c}": 0.5 if c == "sad" else 0.1 for c in CLASSES})
    idx, T, w = cv.pseudo_rows(ds, soft, CLASSES, ds.mask.any(1), 5)[0]
    np.testing.assert_allclose(T[:, 3], 0.5) and np.testing.assert_allclose(T.sum(1), 1.0)
    _, m, _ = cv.cross_validate(ds, "mlp", CLASSES, {**P0, "epochs": 3}, soft)
    assert m["n_pseudo_per_fold"][0] == 4 and m["soft_pseudo"]


@pytest.mark.usefixtures("one_torch_thread")
def test_pseudo_labels_follow_fold_lineage_and_accumulate(tmp_path):
    """Fold f's pool is chosen from fold f's models only (f{j} columns, j = seed x folds + f), grows round by
    round, and a video already in fold f's pool is never re-chosen for it."""
    import json

    from expmae.train.pseudo import grow

    k, S, names = 2, 2, ["u0", "u1", "u2", "l0", "l1"]
    df = pd.DataFrame({"name": names, "split": ["unlabeled"] * 3 + ["labeled"] * 2, "y": [-1, -1, -1, 0, 1],
                       "fold": [-1, -1, -1, 0, 1], "no_data": ""})
    cols = {}
    for j in range(k * S):  # fold 0's models (j = 0, 2) say angry for u0; fold 1's (j = 1, 3) say sad for u1
        P = np.full((5, 6), 0.02)
        P[0, 1 if j % k == 0 else 0] = 0.9
        P[1, 3 if j % k == 1 else 0] = 0.9
        P[2, 0] = 0.5
        P[3, 0] = P[4, 1] = 0.9  # labeled rows: out-of-fold, right
        cols.update({f"f{j}_{c}": P[:, i] for i, c in enumerate(CLASSES)})
    df = pd.concat([df, pd.DataFrame(cols)], axis=1)
    for i, c in enumerate(CLASSES):
        df[f"prob_{c}"] = df[[f"f{j}_{c}" for j in range(k * S)]].mean(axis=1)
    d = tmp_path / "fbp"
    d.mkdir()
    df.to_parquet(d / "probs.parquet")
    (d / "metrics.json").write_text(json.dumps({**plan.identity(0, "fused", "fbp", "fbp", "all"), "weighted_f1": 1.0,
                                                "folds": k}))
    p = {**config.resolve("pseudolabel", {"threshold": 0.8, "policy": "threshold"}), "source": "best"}
    pool0, src = grow(None, [str(d)], 0, CLASSES, p, set(), [])
    got = {(r.fold, r.name): r.discrete for r in pool0.itertuples()}
    # each fold's own models decide: u0 is angry for fold 0 and neutral for fold 1, u1 the other way round
    assert got == {(0, "u0"): "angry", (0, "u1"): "neutral", (1, "u0"): "neutral", (1, "u1"): "sad"}
    assert src == {0: "fbp", 1: "fbp"}
    # round 1: the same predictions; fold 0's u0 stays (its label and round), nothing is picked twice
    p1 = {**p, "threshold": 0.45}
    pool1, _ = grow(pool0, [str(d)], 1, CLASSES, p1, set(), [])
    rows = {(r.fold, r.name): (r.discrete, r.round) for r in pool1.itertuples()}
    assert rows[(0, "u0")] == ("angry", 0) and rows[(1, "u1")] == ("sad", 0)
    assert rows[(0, "u2")] == ("neutral", 1) and rows[(1, "u2")] == ("neutral", 1)
    assert len(pool1) == len(rows) == 6 and (pool1["round"] == 1).sum() == 2


@pytest.mark.usefixtures("one_torch_thread")
def test_an_unscored_model_is_never_the_pseudo_label_source(tmp_path):
    for name, f1 in (("fbp", None), ("late", 0.3)):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.json").write_text(json.dumps({**plan.identity(0, "fused", name, name, "all"), "weighted_f1": f1}))
    assert choose_source([str(tmp_path / "fbp"), str(tmp_path / "late")]).name == "late"
    with pytest.raises(SystemExit, match="valid out-of-fold score: no pseudo-labels"):
        choose_source([str(tmp_path / "fbp")])
    with pytest.raises(SystemExit, match="pseudolabel.source"):
        choose_source([str(tmp_path / "fbp"), str(tmp_path / "late")], "fbp")


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

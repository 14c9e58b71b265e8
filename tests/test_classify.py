"""Heads, metrics, CV training and pseudo-label selection — no Snakemake."""
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, mean_squared_error

from expmae import config
from expmae.io import read_features, write_features
from expmae.train import cv, data, fit, plan, scoring
from expmae.train.heads import HEADS, AttentionHead, FBPHead, build_head, fbp_pool
from expmae.train.late import late_fuse
from expmae.train.pseudo import choose_source, select

CLASSES = ["neutral", "angry", "happy", "sad", "worried", "surprise"]
# The tests' training settings: the schema defaults, without early stopping unless a test asks for it,
# one seed unless a test asks for more (tests/test_trust.py checks the seed ensemble).
P0 = plan.train_params({"early_stop": 0.0, "seeds": 1})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_fbp_pool_shapes_and_normalisation():
    a, b = torch.randn(8, 16 * 4), torch.randn(8, 16 * 4)
    z = fbp_pool(a, b, factor=4)
    assert z.shape == (8, 16)
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(8))
    # power normalisation keeps the sign of the sum-pooled product
    raw = (a * b).view(8, 16, 4).sum(-1)
    assert torch.equal(torch.sign(z), torch.sign(raw))


def test_fbp_head_three_modalities():
    head = FBPHead([10, 20, 30], num_classes=6, out_dim=8, factor=3)
    out = head([torch.randn(5, 10), torch.randn(5, 20), torch.randn(5, 30)])
    assert out.shape == (5, 6) and len(head.pairs) == 3


def test_fbp_power_normalisation_is_signed_sqrt():
    a, b = torch.randn(4, 8 * 2), torch.randn(4, 8 * 2)
    raw = (a * b).view(4, 8, 2).sum(-1)
    expect = torch.nn.functional.normalize(torch.sign(raw) * torch.sqrt(raw.abs() + 1e-8), dim=-1)
    torch.testing.assert_close(fbp_pool(a, b, factor=2), expect)


def test_attention_head_weights_sum_to_one():
    head = AttentionHead([10, 20, 30], num_classes=6, hidden=16)
    xs = [torch.randn(5, 10), torch.randn(5, 20), torch.randn(5, 30)]
    a, h = head.weights(xs)
    assert a.shape == (5, 3) and h.shape == (5, 3, 16) and head(xs).shape == (5, 6)
    torch.testing.assert_close(a.sum(1), torch.ones(5))


def test_unknown_head_names_config_key():
    with pytest.raises(SystemExit, match="fuse.heads"):
        build_head("nope", [4], 6, {})


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


def make_ds(tmp_path, n=120, noise=1.0, seed=0):
    """Two modalities that each carry the class with noise; the rest of the rows unlabeled/test."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, n)
    names = [f"v{i:03d}" for i in range(n)]
    paths = {}
    for m, dim in (("a", 12), ("b", 20)):
        centers = rng.normal(size=(6, dim)) * 2
        X = centers[y] + rng.normal(size=(n, dim)) * noise
        mask = np.ones(n, bool)
        mask[3] = False  # a missing modality row must stay, zeroed (v003 has no modality at all)
        write_features(tmp_path / f"{m}.parquet", names, X, mask, {"extractor": m})
        paths[m] = [str(tmp_path / f"{m}.parquet")]
    valence = y * 0.5 - 1.0 + rng.normal(size=n) * 0.1  # valence follows the class here
    lab = pd.DataFrame({"name": names[:60], "discrete": [CLASSES[i] for i in y[:60]], "valence": valence[:60].round(3)})
    lab.loc[5, "discrete"] = "confused"  # unknown label -> QC issue, treated as unlabeled
    lab.to_csv(tmp_path / "labels.csv", index=False)
    pd.DataFrame({"name": names[100:]}).to_csv(tmp_path / "test.csv", index=False)
    pd.DataFrame({"name": names[100:], "discrete": [CLASSES[i] for i in y[100:]], "valence": valence[100:]}).to_csv(
        tmp_path / "tl.csv", index=False)
    return paths, y


@pytest.mark.slow
def test_cross_validation_learns_and_fbp_fuses(tmp_path):
    paths, y = make_ds(tmp_path)
    ds = data.load(paths, tmp_path / "labels.csv", tmp_path / "test.csv", CLASSES, tmp_path / "tl.csv")
    assert (ds.split == "labeled").sum() == 59 and (ds.split == "test").sum() == 20
    assert any("unknown label" in i["reason"] for i in ds.issues)
    _, X, mask, _ = read_features(paths["a"])
    assert not mask[3] and not X[3].any()
    p = {**P0, "epochs": 60}
    df, m, states = cv.cross_validate(ds, "fbp", CLASSES, p)
    assert m["weighted_f1"] > 0.6 and m["test_weighted_f1"] > 0.6
    # v003 (labeled, no modality at all) is no training or scored row: fold -1, flagged, the class prior
    assert set(df.loc[(df.split == "labeled") & (df.name != "v003"), "fold"]) == set(range(5))
    v3 = df.set_index("name").loc["v003"]
    assert v3["fold"] == -1 and v3["no_data"] == scoring.NO_DATA and m["n_labeled"] == 58
    assert m["n_labeled_without_data"] == 1
    df2, m2, _ = cv.cross_validate(ds, "fbp", CLASSES, p)
    pd.testing.assert_frame_equal(df, df2)  # deterministic given the seed
    assert any(k.startswith("seed0.fold4.") for k in states)
    # valence (posterior x class means, per fold), scored out-of-fold; better than predicting the mean
    lab = ds.split == "labeled"
    assert m["valence_mse"] < 0.75 * np.nanvar(ds.valence[lab]) and m["test_valence_mse"] < 1.0
    _, mr, st = cv.cross_validate(ds, "mlp", CLASSES, {**p, "valence": "ridge", "epochs": 5})
    assert mr["valence_mse"] < 0.5 * np.nanvar(ds.valence[lab]) and "seed0.fold0.valence.coef" in st
    _, mn, _ = cv.cross_validate(ds, "mlp", CLASSES, {**p, "valence": "none", "epochs": 5})
    assert "valence_mse" not in mn
    assert m["mer_combined"] == pytest.approx(m["weighted_f1"] - 0.25 * m["valence_mse"])
    assert df.loc[df.split == "test", "valence"].notna().all()
    # every fold model's probabilities are kept; `agree` is the share agreeing with the ensemble
    unl = (df.split != "labeled").to_numpy()
    folds = np.stack([df[[f"f{f}_{c}" for c in CLASSES]].to_numpy() for f in range(5)])
    np.testing.assert_allclose(folds.mean(0)[unl], df[[f"prob_{c}" for c in CLASSES]].to_numpy()[unl], atol=1e-6)
    assert ((folds.argmax(2) == folds.mean(0).argmax(1)).mean(0)[unl] == df["agree"].to_numpy()[unl]).all()
    assert len(m["curves"]) == 5 and len(m["curves"][0]["train"]) == 60 and len(m["curves"][0]["val"]) == 60
    assert m["epoch_selection"]["mode"] == ["fixed"] and m["epoch_selection"]["chosen"] == [60] * 5
    # early stopping on a large enough holdout of the training rows: keeps the best inner-loss epoch
    de, me, _ = cv.cross_validate(ds, "fbp", CLASSES, {**p, "early_stop": 0.25, "early_stop_min_rows": 5})
    c = me["curves"][0]
    assert c["selection"] == "holdout" and me["weighted_f1"] > 0.6
    assert len(c["inner"]) == 60 and c["best_epoch"] == int(np.argmin(c["inner"])) + 1
    # a holdout below early_stop_min_rows: inner cross-validation picks the count, the model trains on every row
    di, mi, _ = cv.cross_validate(ds, "fbp", CLASSES, {**p, "early_stop": 0.2, "early_stop_min_rows": 50})
    c = mi["curves"][0]
    assert c["selection"] == "inner-cv" and mi["weighted_f1"] > 0.6
    assert c["best_epoch"] == fit.best_epoch(c["inner"], c["inner_acc"]) == len(c["train"])
    # the inner models stop once the pooled curve has not improved for `patience` epochs
    assert len(c["inner"]) == min(60, c["best_epoch"] + p["patience"])
    ci = cv.cross_validate(ds, "fbp", CLASSES, {**p, "early_stop": 0.2, "patience": 3})[1]["curves"][0]
    assert len(ci["inner"]) == min(60, ci["best_epoch"] + 3)
    es = mi["epoch_selection"]
    assert es["chosen"] == [cc["best_epoch"] for cc in mi["curves"]] and es["flag"] == bool(es["at_edge"])
    # attention and concat over grouped modalities train too; modality dropout stays deterministic
    pa = {**p, "modality_dropout": 0.3}
    da, ma, _ = cv.cross_validate(ds, "attention", CLASSES, pa, spec={"ab": ["a", "b"], "b": ["b"]})
    assert ma["weighted_f1"] > 0.6 and ma["modalities"] == {"ab": ["a", "b"], "b": ["b"]}
    pd.testing.assert_frame_equal(da, cv.cross_validate(ds, "attention", CLASSES, pa, spec={"ab": ["a", "b"], "b": ["b"]})[0])


def test_inner_split_is_stratified():
    y = np.array([0] * 10 + [1] * 5 + [2] * 2)
    inner = fit.inner_split(y, 0.2, seed=0)
    assert np.bincount(y[inner], minlength=3).tolist() == [2, 1, 0]
    np.testing.assert_array_equal(inner, fit.inner_split(y, 0.2, seed=0))
    parts = fit.inner_parts(y, 3, seed=0)  # disjoint, covering, stratified, equal in size
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(y))) and [len(q) for q in parts] == [6, 6, 5]
    assert all(np.bincount(y[q], minlength=3)[0] in (3, 4) for q in parts)


def test_epoch_edges_are_flagged():
    curves = [{"best_epoch": 1, "selection": "inner-cv"}, {"best_epoch": 40, "selection": "inner-cv"},
              {"best_epoch": 100, "selection": "holdout"}, {"best_epoch": 100, "selection": "fixed"}]
    es = cv.epoch_summary(curves, folds=2, epochs=100)
    assert es["at_edge"] == ["seed0.fold0: epoch 1 of 100", "seed1.fold0: epoch 100 of 100"] and es["flag"]
    assert es["mode"] == ["fixed", "holdout", "inner-cv"] and es["median"] == 70.0


def test_group_concatenates_a_modality_and_merges_masks(tmp_path):
    paths, _ = make_ds(tmp_path)
    ds = data.load(paths, tmp_path / "labels.csv", tmp_path / "test.csv", CLASSES)
    ds.mask[7, 0] = False
    inp, mask, mods = cv.group(ds, {"both": ["b", "a"], "a": ["a"]})
    X = inp.xs
    assert mods == ["both", "a"] and X[0].shape == (120, 32) and X[1].shape == (120, 12)
    np.testing.assert_array_equal(X[0][:, :20], ds.X[1])
    assert mask[7].tolist() == [True, False] and mask[3].tolist() == [False, False]
    with pytest.raises(SystemExit, match="fuse.modalities"):
        cv.group(ds, {"x": ["nope"]})
    stats = fit.scaler(inp)
    Z = fit.scale(inp, stats)
    assert not Z[1][7].any() and abs(Z[1][mask[:, 1]].mean()) < 1e-5  # absent -> 0, present standardised
    # inside a modality each feature set has its own mask: v007 has b but not a; a's zeros stay out of the
    # statistics and a's block is 0 after scaling, b's block standardised
    has_a = ds.mask[:, 0]
    np.testing.assert_allclose(stats[0][0][20:], X[0][has_a, 20:].mean(0), rtol=1e-5, atol=1e-6)
    assert not Z[0][7, 20:].any() and Z[0][7, :20].any()
    assert abs(Z[0][has_a, 20:].mean()) < 1e-5 and abs(Z[0][mask[:, 0], :20].mean()) < 1e-5


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


def probs_table(P, split):
    df = pd.DataFrame({"name": [f"v{i}" for i in range(len(P))], "split": split})
    for c, name in enumerate(CLASSES):
        df[f"prob_{name}"] = P[:, c]
    return df


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


def test_head_names_are_one_list():
    """plan.HEADS is the list: the schema's fuse.heads enum, its default and the trained heads' registry follow it."""
    heads = config.section_schema("fuse")["properties"]["heads"]
    assert heads["items"]["enum"] == list(plan.HEADS)
    assert config.defaults("fuse")["heads"] == list(plan.HEADS) == plan.heads({})
    assert set(HEADS) == set(plan.TRAINED_HEADS) and plan.LATE not in HEADS


def test_train_params_are_the_schema_defaults():
    """A direct `python -m expmae.train.cv` trains with exactly the workflow's settings."""
    p = plan.train_params({})
    cls, fuse = config.defaults("classify"), config.defaults("fuse")
    assert p == {**{k: v for k, v in cls.items() if k != "feature_sets"}, "seed": 0, "seeds": 3,
                 **{k: fuse[k] for k in ("modality_dropout", "fbp_dim", "fbp_factor")}}
    assert p["early_stop"] == 0.2 and p["folds"] == 5 and p["batch_size"] == 32
    assert plan.train_params({"epochs": 3, "seed": 4, "fbp_dim": 8}) == {**p, "epochs": 3, "seed": 4, "fbp_dim": 8}
    with pytest.raises(ValueError, match=r"classify\.folds"):
        plan.train_params({"folds": 1})
    with pytest.raises(ValueError, match="classify"):
        plan.train_params({"nope": 1})



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

"""Train a classifier head with k-fold cross-validation on the labeled set (+ pseudo-labels), once per seed.

Folds are fixed for the whole run: every labeled video gets one fold from config `seed` (stratified
group k-fold over all labeled videos, expmae.train.folds: byte copies and data.groups / a `group` column
stay in one fold), the same for every seed, every feature set, every head and every round, so "fold f"
means one set of held-out videos everywhere. Fold f's model trains on the labeled videos of the other
folds plus fold f's own pseudo-labels (fold lineage: they were selected from fold f's models of the
previous round, which never saw fold f's labels; expmae.train.pseudo) and predicts its held-out fold
(out-of-fold probabilities give the weighted F1 reported for the labeled set — the MER metric); no
label thus reaches its own out-of-fold prediction in any round. A labeled video without data for the
job's inputs (modality mask) is left out of training and scoring. The mean of the fold models'
probabilities predicts the unlabeled pool and the test split; rows without any data get the labeled
class prior and are flagged (`no_data`). A labeled byte copy of a test clip is no training row (split
`excluded`, QC row). Too few labels for the folds is refused before training (an error naming
classify.folds with the per-class counts). When the label CSV has valence, each fold
also predicts it (`valence: posterior` = the class posterior times the training rows' mean valence
per class; `ridge` = ridge regression on the same inputs; `none`): valence MSE and the MER 2023
combined score. Each fold model's epoch count is chosen on its own labeled training rows
(expmae.train.fit.train_selected); metrics.json's `epoch_selection` flags a chosen epoch among the
first two or the last.

Seeds (config `seeds`): the whole cross-validation runs once per seed (seed, seed+1, ...:
initialisation, batches, epoch-selection splits; the folds stay); the predictions are the mean over seeds (seed ensemble; each seed's own in
columns s{s}_<class>), the scores those of the ensemble with a bootstrap interval over videos, beside
the seeds' own scores, their mean and std (expmae.train.scoring, expmae.train.stats). Every fold model of every seed is kept (f{j}_<class>
columns, j = seed index x folds + fold): pseudo-labelling reads fold f's lineage from them.

Heads (expmae.train.heads): mlp (one feature set), concat | fbp | attention over modalities
(--modality groups feature sets; default one modality per feature set). Late fusion trains no
weights and has its own program: expmae.train.late. Settings: --params over the schema defaults
of config `classify` (+ `fuse`'s training keys, + `seed`, `seeds`), see expmae.train.plan.train_params.

    python -m expmae.train.cv --round 1 --kind fused --combo all --head fbp --name fbp \
        --features expmae=results/features/expmae/s0.parquet,... --features egemaps=... \
        --modality visual=expmae --modality audio=egemaps --labels labels.csv --test test.csv \
        [--pseudo results/pseudo/round0.parquet] --out results/fuse/round1/all/fbp --params '{"folds": 5, ...}'
Writes <out>/probs.parquet (name, split, y, fold, prob_<class>..., pred, confidence, agree, valence,
no_data, f{j}_<class>..., s{s}_<class>..., s{s}_valence), <out>/metrics.json (identity, scores with
their spread, per-seed scores, per-fold training curves), <out>/model.safetensors (every member:
seed{s}.fold{f}.<tensor>, its input scaling seed{s}.fold{f}.scaler{m}.mean|std per modality m).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from expmae.train import data, plan
from expmae.train.fit import Inputs, choose_epochs, predict, scale, scaler, selection_mode, train_selected, valence_model
from expmae.train.folds import assign_folds
from expmae.train.repro import pin_numerics
from expmae.train.scoring import (NO_DATA, NO_VIDEO, empty_probs, probs_frame, skipped_metrics, summarize,
                                  write_result)


def group(ds: data.Dataset, spec: dict[str, list[str]] | None) -> tuple[Inputs, np.ndarray, list[str]]:
    """Feature sets -> modality inputs. One modality = its feature sets' columns side by side, each set
    with its own mask (expmae.train.fit.Inputs). -> inputs, modality mask [N, M] (present when any of
    its sets is), modality names."""
    spec = spec or {m: [m] for m in ds.modalities}
    pos = {m: i for i, m in enumerate(ds.modalities)}
    missing = [fs for sets in spec.values() for fs in sets if fs not in pos]
    if missing:
        raise SystemExit(f"config key fuse.modalities: feature sets {missing} were not passed with --features")
    inp = Inputs([np.concatenate([ds.X[pos[fs]] for fs in sets], 1) for sets in spec.values()],
                 [ds.mask[:, [pos[fs] for fs in sets]] for sets in spec.values()],
                 [[ds.X[pos[fs]].shape[1] for fs in sets] for sets in spec.values()])
    return inp, inp.mask, list(spec)


def check_folds(y: np.ndarray, classes: list[str], folds: int, inputs: list[str]) -> None:
    """Refuse (before any training) a labeled set too small for `folds` stratified folds: every class
    with labels needs >= folds of them, and there must be 2 such classes. Otherwise some videos would
    never be held out and every score would be NaN."""
    counts = {c: int((y == i).sum()) for i, c in enumerate(classes)}
    have = [n for n in counts.values() if n]
    if len(have) >= 2 and min(have) >= folds:
        return
    sets = ", ".join(inputs)
    short = [f"{c!r} has {n}" for c, n in counts.items() if 0 < n < folds]
    why = "; ".join(short) if short else f"only {len(have)} class(es) have any"
    fix = (f"lower classify.folds to {min(have)}" if have and min(have) >= 2 and len(have) >= 2
           else "label at least 2 videos of at least 2 classes")
    raise SystemExit(
        f"config key classify.folds = {folds}: too few labeled videos with data for {sets}: {why} "
        f"({folds}-fold cross-validation needs at least {folds} per class, and 2 classes; labeled videos with data "
        f"for {sets} per class: {counts}). Fix: {fix}, or drop {sets} from classify.feature_sets, or label more "
        "videos of the short classes. Refused before training: no score would be valid.")


def unusable_sets(ds: data.Dataset, spec: dict[str, list[str]] | None, classes: list[str],
                  folds: int) -> dict[str, str]:
    """Feature sets of the job too sparse to train on -> why: the labeled set has enough videos per class
    for `folds` folds, but this set has data for too few of them (e.g. ASR text for few clips). Such a set
    is skipped (its classifier writes a `skipped` result; fused heads leave it out), never an error: a run
    with an optional input absent completes with what is there. Too few labels at all stays check_folds' error."""
    labeled = ds.split == "labeled"
    try:
        check_folds(ds.y[labeled], classes, folds, ["any input"])
    except SystemExit:
        return {}
    pos = {m: i for i, m in enumerate(ds.modalities)}
    out = {}
    for fs in [fs for fs in pos if fs in {f for s in (spec or {}).values() for f in s} or not spec]:
        counts = {c: int((ds.y[labeled & ds.mask[:, pos[fs]]] == i).sum()) for i, c in enumerate(classes)}
        have = [n for n in counts.values() if n]
        if len(have) < 2 or min(have) < folds:
            out[fs] = (f"feature set {fs} has data for too few labeled videos per class for classify.folds = {folds} "
                       f"({counts}): skipped; lower classify.folds, label more of the short classes or drop {fs} from classify.feature_sets")
    return out


def usable_spec(ds: data.Dataset, spec: dict[str, list[str]] | None, skip: dict[str, str]) -> dict[str, list[str]]:
    """The modality spec without the skipped feature sets (a modality left without sets is dropped)."""
    kept = {m: [fs for fs in sets if fs not in skip] for m, sets in (spec or {m: [m] for m in ds.modalities}).items()}
    return {m: sets for m, sets in kept.items() if sets}


def run_folds(ds: data.Dataset, folds: int, seed: int) -> np.ndarray:
    """[N] the fold of every labeled row (-1 elsewhere): one assignment over ALL labeled videos, whether
    or not this job's inputs have data for them, so every job of the run holds out the same videos in
    fold f (fold lineage of the pseudo-labels, late fusion's members). Rows go in name order: the
    assignment depends on the labels, groups and seed only."""
    lab = np.flatnonzero(ds.split == "labeled")
    order = lab[np.argsort(np.asarray(ds.names, object)[lab], kind="stable")]
    out = np.full(len(ds.names), -1)
    if len(order):
        groups = ds.groups[order] if ds.groups is not None else np.asarray(ds.names, object)[order]
        out[order] = assign_folds(ds.y[order], groups, folds, seed)
    return out


def pseudo_rows(ds: data.Dataset, pseudo: pd.DataFrame | None, classes: list[str], present: np.ndarray,
                folds: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each fold's own pseudo-labels (column `fold`: its lineage) on unlabeled rows with data for this
    job's inputs -> per fold (row index, targets [n, C], weights). Soft targets when the table carries
    prob_<class> columns (pseudolabel.soft_labels), else one-hot on y."""
    n_cls = len(classes)
    empty = (np.zeros(0, int), np.zeros((0, n_cls)), np.zeros(0))
    if pseudo is None or not len(pseudo):
        return [empty] * folds
    if "fold" not in pseudo:
        raise SystemExit("--pseudo: the table has no `fold` column (fold lineage): written by an older expmae; rerun "
                         "the pseudolabel job")
    pos = pd.Index(ds.names).get_indexer(pseudo["name"])
    keep = (pos >= 0) & (ds.split[pos.clip(0)] == "unlabeled") & present[pos.clip(0)]
    cols = [f"prob_{c}" for c in classes]
    if all(c in pseudo for c in cols):
        T = pseudo[cols].to_numpy(np.float64)
        T = T / T.sum(1, keepdims=True)
    else:
        T = np.eye(n_cls)[pseudo["y"].to_numpy()]
    w = pseudo["weight"].to_numpy(np.float64) if "weight" in pseudo else np.ones(len(pseudo))
    lineage = pseudo["fold"].to_numpy()
    return [(pos[sel], T[sel], w[sel]) for sel in (keep & (lineage == f) for f in range(folds))]


def fold_data(ds: data.Dataset, inp: Inputs, f: int, rows: tuple[np.ndarray, np.ndarray], fold_of: np.ndarray,
              ps: tuple[np.ndarray, np.ndarray, np.ndarray], n_cls: int) -> dict:
    """Fold f's rows (train: its labeled training rows first, then its pseudo-labeled rows; held-out;
    other), targets, weights and inputs scaled on its training rows (the same for every seed)."""
    lab, other = rows
    tr, va = lab[fold_of[lab] != f], lab[fold_of[lab] == f]
    ps_idx, ps_T, ps_w = ps
    idx = (np.concatenate([tr, ps_idx]), va, other)
    stats = scaler(inp.rows(idx[0]))
    return {"idx": idx, "y_lab": ds.y[tr], "y_va": ds.y[va], "stats": stats,
            "T": np.concatenate([np.eye(n_cls)[ds.y[tr]], ps_T]), "w": np.concatenate([np.ones(len(tr)), ps_w]),
            "parts": [(scale(inp.rows(i), stats), inp.mask[i]) for i in idx]}


def run_folds_and_seeds(ds: data.Dataset, kind: str, inp: Inputs, rows: tuple[np.ndarray, np.ndarray],
                        fold_of: np.ndarray, ps: list[tuple[np.ndarray, np.ndarray, np.ndarray]], vals: np.ndarray,
                        n_cls: int, p: dict) -> list[dict]:
    """The k-fold cross-validation, fold by fold, every seed within a fold (seed p['seed'] + s: initialisation,
    batches, holdout split). With inner-cv epoch selection the epoch count is chosen once per fold (its
    labeled training rows do not change with the seed) and every seed trains for it.
    -> per seed: probs [N, C] (rows without data: 0), fold_probs [k, N, C], v_hat [N], fold_of [N], states, curves."""
    N, k, S = len(ds.names), p["folds"], p["seeds"]
    out = [{"probs": np.zeros((N, n_cls), np.float32), "fold_probs": np.zeros((k, N, n_cls), np.float32),
            "v_hat": np.full(N, np.nan), "fold_of": np.full(N, -1), "states": {}, "curves": [None] * k} for _ in range(S)]
    for f in range(k):
        d = fold_data(ds, inp, f, rows, fold_of, ps[f], n_cls)
        (tr_idx, va_idx, other), (trn, hold, rest) = d["idx"], d["parts"]
        chosen = None
        if selection_mode(len(d["y_lab"]), p) == "inner-cv":
            chosen = choose_epochs(kind, *trn, d["T"], d["w"], d["y_lab"], p, p["seed"] * 1000 + f)
        for s, r in enumerate(out):
            model, curve = train_selected(kind, *trn, d["T"], d["w"], d["y_lab"], p, (p["seed"] + s) * 1000 + f,
                                          (*hold, d["y_va"]), chosen)
            r["curves"][f] = curve
            r["probs"][va_idx] = r["fold_probs"][:, va_idx] = predict(model, *hold, n_cls)  # OOF: the same in every fold column
            r["fold_of"][va_idx] = f
            r["fold_probs"][f, other] = predict(model, *rest, n_cls)
            r["probs"][other] += r["fold_probs"][f, other] / k
            y_tr = d["y_lab"]
            pv, vstates = valence_model(p["valence"], trn[0], vals[tr_idx], y_tr, vals[tr_idx[:len(y_tr)]], n_cls)
            if pv is not None:
                r["v_hat"][va_idx] = pv(hold[0], r["probs"][va_idx])
                r["v_hat"][other] = np.nan_to_num(r["v_hat"][other]) + pv(rest[0], r["fold_probs"][f, other]) / k
            r["states"].update({f"fold{f}.{n}": t for n, t in vstates.items()})
            r["states"].update({f"fold{f}.{n}": t.detach().numpy() for n, t in model.state_dict().items()})
            # the input scaling, saved beside the weights: prediction elsewhere (expmae.predict) scales as this fold did
            r["states"].update({f"fold{f}.scaler{m}.{k_}": v for m, st in enumerate(d["stats"])
                                for k_, v in zip(("mean", "std"), st)})
    return out


def epoch_summary(curves: list[dict], folds: int, epochs: int) -> dict:
    """How each fold model's epoch was chosen, and the fold models whose choice sits at an edge (among the
    first two epochs: the loss never fell after the first steps; the last: it might still have fallen)."""
    chosen = [int(c.get("best_epoch", len(c.get("train", [])))) for c in curves]
    edge = [f"seed{i // folds}.fold{i % folds}: epoch {e} of {epochs}" for i, e in enumerate(chosen)
            if e <= 2 or (e >= epochs and curves[i].get("selection") != "fixed")]
    return {"mode": sorted({c.get("selection", "fixed") for c in curves}), "epochs": epochs, "chosen": chosen,
            "median": float(np.median(chosen)) if chosen else None, "at_edge": edge, "flag": bool(edge)}


def no_data_reasons(ds: data.Dataset, present: np.ndarray) -> np.ndarray:
    """'' where the row has data for this job's inputs, else why it was predicted without data."""
    no_video = set(ds.meta.get("no_video") or ())
    return np.array(["" if ok else NO_VIDEO if n in no_video else NO_DATA for n, ok in zip(ds.names, present)], object)


def cross_validate(ds: data.Dataset, kind: str, classes: list[str], p: dict, pseudo: pd.DataFrame | None = None,
                   spec: dict[str, list[str]] | None = None) -> tuple[pd.DataFrame, dict, dict]:
    """-> probs table (seed ensemble), metrics (scores with their spread, curves, counts), model weights
    (seed{s}.fold{f}.<tensor>)."""
    n_cls, N = len(classes), len(ds.names)
    inp, mask, mods = group(ds, spec)
    present = mask.any(1)
    labeled = ds.split == "labeled"
    lab, other = np.flatnonzero(labeled & present), np.flatnonzero(~labeled & present)
    check_folds(ds.y[lab], classes, p["folds"], mods)
    fold_of = run_folds(ds, p["folds"], p["seed"])
    ps = pseudo_rows(ds, pseudo, classes, present, p["folds"])
    vals = ds.valence if ds.valence is not None and p["valence"] != "none" else np.full(N, np.nan)
    runs = run_folds_and_seeds(ds, kind, inp, (lab, other), fold_of, ps, vals, n_cls, p)
    # rows without any data: the labeled class prior, flagged (never a training or scored row)
    prior = np.bincount(ds.y[lab], minlength=n_cls) / len(lab)
    for r in runs:
        r["probs"][~present] = prior
        r["fold_probs"][:, ~present] = prior
    seed_probs = np.stack([r["probs"] for r in runs])
    seed_v = np.stack([r["v_hat"] for r in runs])
    df = probs_frame(ds.names, ds.split, ds.y, runs[0]["fold_of"], seed_probs.mean(0),
                     np.concatenate([r["fold_probs"] for r in runs]), seed_v.mean(0), classes,
                     seed_probs=seed_probs, seed_valence=seed_v, no_data=no_data_reasons(ds, present))
    m = summarize(df, classes, vals, ds.meta.get("test_truth") or {}, ds.meta.get("test_valence") or {})
    curves = [c for r in runs for c in r["curves"]]
    m.update(run_summary(ds, kind, classes, spec, mods, pseudo, p["folds"], len(lab), [len(x[0]) for x in ps]),
             seeds=[p["seed"] + s for s in range(p["seeds"])], n_labeled_without_data=int((labeled & ~present).sum()),
             curves=curves, epoch_selection=epoch_summary(curves, p["folds"], p["epochs"]))
    states = {f"seed{s}.{k}": v for s, r in enumerate(runs) for k, v in r["states"].items()}
    return df, m, states


def data_issues(ds: data.Dataset, mask: np.ndarray) -> list[dict]:
    """QC rows for the videos without any usable modality (reported by the all-modality jobs)."""
    none = ~mask.any(1)
    # the QC vocabulary's form, "kind: detail" (stage train, kind "no usable modality")
    why = {"labeled": "no usable modality: labeled, left out of training and scoring",
           "test": "no usable modality: test, predicted from the class prior (flagged in the submission's flags.csv)"}
    no_video = set(ds.meta.get("no_video") or ())
    return [{"name": n, "stage": "train", "reason": why[s]} for n, s, x in zip(ds.names, ds.split, none)
            if x and s in why and n not in no_video]


def run_summary(ds: data.Dataset, kind: str, classes: list[str], spec: dict[str, list[str]] | None, mods: list[str],
                pseudo: pd.DataFrame | None, folds: int, n_lab: int, n_pseudo: list[int]) -> dict:
    """The counts and layout metrics.json records beside the scores."""
    # modality_order: the heads' input order (metrics.json sorts the keys of "modalities"); expmae.predict needs it
    return {"head": kind, "modalities": {mm: (spec or {mm: [mm]})[mm] for mm in mods}, "modality_order": mods, "folds": folds,
            # n_pseudo: pseudo-labels per fold model, mean over folds (each fold trains on its own lineage's)
            "n_labeled": int(n_lab), "n_pseudo": int(round(np.mean(n_pseudo))) if n_pseudo else 0,
            "n_pseudo_per_fold": [int(n) for n in n_pseudo],
            "soft_pseudo": bool(sum(n_pseudo)) and bool(pseudo is not None and f"prob_{classes[0]}" in pseudo),
            "n_unlabeled": int((ds.split == "unlabeled").sum()), "n_test": int((ds.split == "test").sum())}


def save_model(path: Path, states: dict[str, np.ndarray], head: str, classes: list[str], p: dict) -> None:
    if not states:
        return
    from expmae import weights

    # byte-stable, with its sha256 recorded: the bundle and predict check it before using a weight
    weights.save(path, states, {"head": head, "classes": json.dumps(classes), "params": json.dumps(p, sort_keys=True)})


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="k-fold classifier over cached features.")
    ap.add_argument("--head", default=plan.SINGLE_HEAD, help=" | ".join(plan.TRAINED_HEADS))
    plan.add_identity_args(ap)
    ap.add_argument("--features", action="append", default=[], help="name=shard1.parquet,shard2.parquet")
    ap.add_argument("--modality", action="append", default=[], help="modality=featureset1,featureset2")
    ap.add_argument("--labels", required=True)
    ap.add_argument("--test", action="append", default=[], help="test list(s): data.test and the data.tracks label CSVs")
    ap.add_argument("--test-labels", default="")
    ap.add_argument("--encoding", default="", help="config data.encoding of the CSVs")
    ap.add_argument("--pseudo", default="")
    ap.add_argument("--groups", default="", help="config data.groups: CSV name,group kept in one fold")
    ap.add_argument("--manifests", nargs="*", default=[], help="ingest shard manifests (sha256: byte copies share a fold)")
    ap.add_argument("--classes", required=True, help="comma-separated class names")
    ap.add_argument("--out", required=True)
    ap.add_argument("--params", default="{}", help="JSON over the schema defaults of config classify (+ fuse)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    # the same numbers on any x86-64 CPU (a job restarts itself once in the pinned environment)
    numerics = pin_numerics(reexec=argv is None)
    a = parse_args(argv)
    if a.head == plan.LATE:
        raise SystemExit("--head late: late fusion trains nothing; it is `python -m expmae.train.late --members ...`")
    t0 = time.time()
    p = plan.train_params(json.loads(a.params))
    classes, features, out = a.classes.split(","), plan.parse_pairs(a.features), Path(a.out)
    ident = plan.identity_of(a, a.head, list(features))
    import torch

    torch.set_num_threads(1)  # tiny heads: more threads only contend with the parallel jobs
    ds = data.load(features, a.labels, a.test, classes, a.test_labels or None, a.encoding, a.groups, a.manifests)
    pseudo = pd.read_parquet(a.pseudo) if a.pseudo else None
    spec = plan.parse_pairs(a.modality) or None
    if skip := unusable_sets(ds, spec, classes, p["folds"]):
        spec = usable_spec(ds, spec, skip)
    if skip and not spec:  # no usable set: outputs marked skipped, never a candidate downstream
        df, m = empty_probs(classes), skipped_metrics("; ".join(skip.values()), a.head, p, skipped_sets=skip)
        m.update(issues=ds.issues, numerics=numerics)
        (out / "model.safetensors").unlink(missing_ok=True)  # a stale model of an earlier run is no output of this one
        write_result(out, df, m, p, ident, t0)
        return
    df, m, states = cross_validate(ds, a.head, classes, p, pseudo, spec)
    if skip:  # a fused head over the sets that have data: the skipped ones named
        m["skipped_sets"] = skip
    # the all-modality jobs know which videos have no usable modality at all: QC rows
    extra = data_issues(ds, group(ds, spec)[1]) if ident["combo"] == plan.ALL else []
    m.update(feature_meta={fs: {k: v for k, v in meta.items() if k in ("extractor", "model_id", "dim", "encoder_sha256")}
                           for fs, meta in ds.meta.items() if isinstance(meta, dict) and not fs.startswith("test_")},
             issues=ds.issues + extra, numerics=numerics)
    save_model(out / "model.safetensors", states, a.head, classes, p)
    write_result(out, df, m, p, ident, t0)


if __name__ == "__main__":
    main()

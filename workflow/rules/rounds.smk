# Parse-time definitions of the training stages (classify, fuse, pseudolabel, report):
# what each round trains (see expmae/rounds.py): one classifier per feature set, and per
# modality combination x fusion head.
import shlex as _shlex

from expmae import rounds as _rounds

MODALITIES = _rounds.modalities(config)
COMBOS = _rounds.combinations(config)
FUSE_HEADS = _rounds.heads(config)
# Training settings only: which feature sets / combinations / rounds exist are not params, so adding
# a feature set or raising pseudolabel.rounds reruns no existing classifier.
TRAIN_CFG = {k: v for k, v in config["classify"].items() if k != "feature_sets"} | {"seed": config["seed"]}
FUSE_CFG = TRAIN_CFG | {k: v for k, v in config["fuse"].items() if k not in ("heads", "modalities", "combinations")}


def fuse_dirs(r):
    return [f"{RES}/fuse/round{r}/{c}/{h}" for c in COMBOS for h in FUSE_HEADS]


def label_args(input):
    """--test / --test-labels / --pseudo for the inputs that exist."""
    out = []
    for key, flag in (("test", "--test"), ("test_labels", "--test-labels"), ("pseudo", "--pseudo")):
        val = input[key]
        out += [f"{flag} {_shlex.quote(v)}" for v in ([val] if isinstance(val, str) else list(val))]
    return " ".join(out)


def fuse_inputs(w):
    """late: the round's per-feature-set classifiers of the combination; other heads: their features."""
    sets = _rounds.feature_sets_of(config, w.combo)
    if w.head == "late":
        return [f"{RES}/classify/round{w.round}/{fs}/{f}" for fs in sets for f in ("probs.parquet", "metrics.json")]
    return [f"{RES}/features/{fs}/{s}.parquet" for fs in sets for s in SHARDS]


def fuse_args(w):
    sets = _rounds.feature_sets_of(config, w.combo)
    if w.head == "late":
        return "--members " + " ".join(f"{RES}/classify/round{w.round}/{fs}" for fs in sets)
    return f"{feature_arg(sets)} {_rounds.modality_arg(config, w.combo)}"


# pseudolabel.rounds is not a param: raising it adds rounds and reruns none of the existing ones.
PSEUDO_CFG = {k: v for k, v in config["pseudolabel"].items() if k != "rounds"}


def pseudo_sources(w):
    """Classifiers of round r the selection may draw from: the fused ones (source: best picks the
    best OOF weighted F1 among them), or the one feature set named by pseudolabel.source."""
    src = PSEUDO_CFG.get("source", "best")
    return [f"{RES}/classify/round{w.round}/{src}"] if src in FEATURE_SETS else fuse_dirs(w.round)


# QC rows of the report: the first trained audio extractor's QC table (a video without decodable audio
# fails every audio extractor alike) and the first text set's list of videos without text.
_QC_SETS = {m: [n for n in FEATURE_NAMES.get(m, []) if n in FEATURE_SETS][:1] for m in ("audio", "text")}

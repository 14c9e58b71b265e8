# Shared state computed once at parse time, and input functions.
# Parse time: one scandir or data.manifest read + one registry read, then vectorised per-shard hashes
# (no per-video Python loop); the DAG is O(shards).
import json
import os
import re
import shlex as _shlex
import time as _time
from pathlib import Path

from expmae import config as _cfg
from expmae import ingest as _ingest
from expmae.io import config_hash as _fingerprint_of
from expmae.features import config as _fcfg
from expmae.features import media as _text
from expmae.shard_hash import LazyShards as _LazyShards
from expmae.shard_hash import ShardRows as _ShardRows

_PARSE_T0 = _time.perf_counter()  # EXPMAE_PARSE_TIMING (end of this file): the project's parse-time share
RES = config["results"]
DATA = config["data"]
# A user's data section never mixes with the demo's (data.* defaults are empty): an unset or missing
# folder/file is an error naming its key, also for -n.
if _data_errors := _ingest.check_data(DATA):
    raise WorkflowError("\n".join(_data_errors))
CLASSES = ",".join(config["classes"])
# columns of the submission CSVs (MER 2025: name,discrete); the schema's default when the section is absent
SUBMISSION_COLUMNS = (config.get("submission") or {}).get("columns") or _cfg.defaults("submission")["columns"]
ENV = "../../envs/expmae.yaml"

# Append-only shard registry (see expmae/ingest.py). The main process plans it in memory at every
# parse and persists it only when a real run starts (onstart below): -n, --lint and --report write
# nothing under results/. Cluster job processes read the registry the main process saved.
if workflow.is_main_process:
    try:
        REGISTRY, _INGEST_ISSUES = _ingest.plan_registry(
            RES,
            DATA["videos"],
            DATA["extensions"],
            config["ingest"]["shard_size"],
            predict=DATA.get("predict") or [],  # data.predict: role predict, own p-shards (expmae/predict)
            manifest=DATA.get("manifest") or "",  # data.manifest (expmae/manifest.py): read, never stat'ed
        )
    except ValueError as _err:  # an unusable data.manifest, a bad ingest.shard_size: the message names the key
        raise WorkflowError(str(_err))
    if not (REGISTRY["role"] == "train").any():
        raise WorkflowError(
            f"no videos found under config key data.videos = {DATA['videos']} / data.manifest = {DATA.get('manifest')!r}"
        )
else:
    REGISTRY, _INGEST_ISSUES = _ingest.read_registry(RES), None
# A param of the inputs_qc rule, so an ingest issue appearing or going away reruns it (and the report)
INGEST_DIGEST = _fingerprint_of(_INGEST_ISSUES) if _INGEST_ISSUES is not None else ""


onstart:
    if _INGEST_ISSUES is not None:
        _ingest.save_registry(RES, REGISTRY, _INGEST_ISSUES)


# data.predict videos (role predict, shards p00000...) run the per-shard jobs (ingest, faces, extract, asr) and
# the predict rule only (workflow/rules/predict.smk); everything else (MAE pretraining, training, pseudo-labels,
# report, cache_check) reads the training shards: SHARDS = TRAIN_SHARDS.
TRAIN_SHARDS = sorted(REGISTRY.loc[REGISTRY["role"] == "train", "shard"].unique())
PREDICT_SHARDS = sorted(REGISTRY.loc[REGISTRY["role"] == "predict", "shard"].unique())
SHARDS = TRAIN_SHARDS
_TRANSCRIPTS, _ = _text.read_transcripts(DATA.get("transcripts") or None, DATA["transcript_column"], DATA["encoding"])
ASR = config.get("asr") or {}


def _per_shard(fn, keys=None):
    """shard -> fn(REGISTRY)[shard]: all at once in the main process (it plans every job); one shard at
    a time in a cluster job process, which needs only its own shard's value (expmae/shard_hash.py)."""
    if workflow.is_main_process:
        return fn(REGISTRY)
    return _LazyShards(fn, _REGISTRY_ROWS, keys() if keys else None)


_REGISTRY_ROWS = None if workflow.is_main_process else _ShardRows(REGISTRY)  # the three maps' shared slices


FINGERPRINT = _per_shard(_ingest.fingerprints)
TEXT_HASH = _per_shard(lambda reg: _text.shard_hashes(_TRANSCRIPTS, reg))

# Feature extractors (expmae/features): config `features:` names instances (the expMAE sets
# expmae / expmae_video too); each is its own per-shard job (workflow/rules/extract.smk).
# FEATURE_NAMES: modality -> instance names.
FEATURES = config.get("features") or {}
try:
    FEATURE_NAMES = _fcfg.plan(FEATURES, config["classify"]["feature_sets"], config)
except ValueError as _err:
    raise WorkflowError(str(_err))
# shard -> hash of the videos to transcribe, for the shards with any (the others have no asr job)
ASR_TODO = _per_shard(
    lambda reg: _fcfg.asr_plan(ASR, _TRANSCRIPTS, reg),
    lambda: _fcfg.asr_rows(ASR, _TRANSCRIPTS, REGISTRY)["shard"].unique(),
)


def shard_cache(w):
    """Every cached per-shard file of one shard that the report depends on (rule cache_check)."""
    return shard_files(w.shard)


def shard_files(s):
    files = [f"{RES}/ingest/{s}.parquet", f"{RES}/faces/{s}"]
    for modality, names in FEATURE_NAMES.items():
        for n in [n for n in names if n in FEATURE_SETS]:
            files.append(f"{RES}/features/{n}/{s}.parquet")
            files += {
                "audio": [f"{RES}/features/{n}/{s}.qc.parquet"],
                "visual": [f"{RES}/features/{n}/{s}.frames.npy"],
            }.get(modality, [])
    return files + ([f"{RES}/asr/{s}.parquet"] if s in ASR_TODO else [])


def only_names(names):
    """Wildcard constraint matching exactly these names (feature sets, combinations, heads; nothing if none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def fparams(w, column=None):
    """--params of a feature job: the instance's config entry + device + code version (JSON)."""
    return js(_fcfg.rule_params(w.fset, FEATURES[w.fset], config["device"], column))


def encoder_input(w):
    """The encoder file of an instance whose weights the workflow pretrains (expmae_image: config
    section mae, expmae_video: mae_video -> results/<section>/encoder.safetensors); [] otherwise."""
    section = _fcfg.encoder_section(FEATURES[w.fset])
    return [f"{RES}/{section}/encoder.safetensors"] if section else []


_EXTRACT_FLAGS = {"features": "--out", "frames": "--frames-out"}  # any other name: --<name>


def extract_args(input, output, **more):
    """Named inputs / outputs (+ more) of an extract job -> its CLI flags, quoted
    (--manifest m --faces f --encoder e --out o ...); an empty input list gives no flag."""
    args = []
    for name, value in [*input.items(), *output.items(), *more.items()]:
        paths = [value] if isinstance(value, str) else list(value)
        if paths:
            args += [_EXTRACT_FLAGS.get(name, f"--{name}"), *map(_shlex.quote, paths)]
    return " ".join(args)


ROUNDS = list(range(config["pseudolabel"]["rounds"] + 1))
FEATURE_SETS = config["classify"]["feature_sets"]

# Targets of the all rule. Snakemake never rebuilds a deleted intermediate file of an up-to-date job (it
# treats it like a removed temp file), so every per-shard cache file is requested: a plain rerun
# rebuilds a deleted one, and everything computed from it. O(shards) targets.
CACHE_FILES = [f for s in SHARDS for f in shard_files(s)]
# MODALITIES, COMBOS, FUSE_HEADS (what each round trains): the training region at the end of this file


def js(obj):
    """Params as compact JSON: a changed setting changes the param, so Snakemake reruns the rule."""
    return json.dumps(obj, sort_keys=True)


def per_shard(pattern):
    # not expand(): a plain replace is ~20x faster, and this runs for many rules over thousands of shards
    return [pattern.replace("{shard}", s) for s in SHARDS]


def optional(path):
    """An optional data file as an input: [] when unset or absent."""
    return [path] if path and Path(path).exists() else []


def pretrain_shards(section="mae"):
    """Shards MAE pretraining (config section mae or mae_video) sees. Unless <section>.retrain_on_new_videos,
    keep the shards recorded by the existing checkpoint, so new videos do not retrigger pretraining."""
    meta = Path(RES, section, "meta.json")
    if not config[section]["retrain_on_new_videos"] and meta.exists():
        seen = [s for s in json.loads(meta.read_text()).get("shards", []) if s in SHARDS]
        if seen:
            return seen
    return SHARDS


# --- training and report (train.smk, report.smk) ---
# What each round trains (expmae/train/plan.py): one classifier per feature set, and per modality
# combination x fusion head. Training settings are the rule params; which feature sets, combinations
# and rounds exist are not, so adding a feature set or raising pseudolabel.rounds reruns no existing job.
from expmae.train import plan as _plan

MODALITIES = _plan.modalities(config)
COMBOS = _plan.combinations(config)
FUSE_HEADS = _plan.heads(config)
TRAINED_FUSE_HEADS = [h for h in FUSE_HEADS if h != _plan.LATE]  # rule fuse; late fusion is rule fuse_late
TRAIN_CFG = {k: v for k, v in config["classify"].items() if k not in _plan.PLAN_KEYS["classify"]} | {
    "seed": config["seed"],
    "seeds": config["seeds"],
}
FUSE_CFG = TRAIN_CFG | {k: v for k, v in config["fuse"].items() if k not in _plan.PLAN_KEYS["fuse"]}
# pseudolabel.rounds is not a param: raising it adds rounds and reruns none of the existing ones.
PSEUDO_CFG = {k: v for k, v in config["pseudolabel"].items() if k != "rounds"}


def fuse_dirs(r):
    """Output folders of round r's fused models (every combination x head, late included)."""
    return [f"{RES}/fuse/round{r}/{c}/{h}" for c in COMBOS for h in FUSE_HEADS]


def pseudo_input(wildcards):
    r = int(wildcards.round)
    return [f"{RES}/pseudo/round{r - 1}.parquet"] if r > 0 else []


def feature_arg(names, shards=None):
    """--features name=shard0.parquet,shard1.parquet ... for expmae.train.cv (training shards) and
    expmae.predict.table (shards=PREDICT_SHARDS)."""
    shards = SHARDS if shards is None else shards
    return " ".join(f"--features {n}=" + ",".join(f"{RES}/features/{n}/{s}.parquet" for s in shards) for n in names)


def flag_args(input, keys):
    """--<key> 'path' for each named input of these keys that is set (optional files may be [])."""
    out = []
    for key in keys:
        val = input[key]
        out += [f"--{key.replace('_', '-')} {_shlex.quote(v)}" for v in ([val] if isinstance(val, str) else list(val))]
    return " ".join(out)


def label_args(input, keys=("test", "test_labels", "pseudo", "groups")):
    """--test / --test-labels / --pseudo / --groups for the inputs (of these keys) that exist, and the
    training jobs' --manifests (content hashes: byte copies share a fold)."""
    out = [flag_args(input, keys)]
    if "manifests" in input.keys():
        out.append("--manifests " + " ".join(_shlex.quote(v) for v in input.manifests))
    if DATA.get("encoding"):  # the CSVs' configured encoding (expmae/labels.py tries it after UTF-8)
        out.append(f"--encoding {_shlex.quote(DATA['encoding'])}")
    return " ".join(out)


def fuse_inputs(w):
    """The feature shards of the combination's feature sets."""
    return [f"{RES}/features/{fs}/{s}.parquet" for fs in _plan.feature_sets_of(config, w.combo) for s in SHARDS]


def fuse_args(w):
    sets = _plan.feature_sets_of(config, w.combo)
    return f"{feature_arg(sets)} {_plan.modality_arg(config, w.combo)}"


def late_members(w):
    """Late fusion's members: the round's per-feature-set classifiers of the combination."""
    return [f"{RES}/classify/round{w.round}/{fs}" for fs in _plan.feature_sets_of(config, w.combo)]


def pseudo_sources(w):
    """Models of round r the selection may draw from: the fused ones (source: best picks the
    best OOF weighted F1 among them), or the one feature set named by pseudolabel.source."""
    src = PSEUDO_CFG.get("source", "best")
    return [f"{RES}/classify/round{w.round}/{src}"] if src in FEATURE_SETS else fuse_dirs(w.round)


# QC rows of the report: the first trained audio extractor's QC table (a video without decodable audio
# fails every audio extractor alike) and the first text set's list of videos without text.
_QC_SETS = {m: [n for n in FEATURE_NAMES.get(m, []) if n in FEATURE_SETS][:1] for m in ("audio", "text")}


# --- prediction (predict.smk, expmae/predict): the bundle and the data.predict videos ---
LAST_ROUND = ROUNDS[-1]
# What the bundle records of the config: the extractor jobs' exact params (so features computed
# elsewhere are the workflow's), the face and ASR settings, which sets are text / audio.
BUNDLE_CFG = {
    "classes": config["classes"],
    "faces": config["faces"],
    "features": {
        fs: _fcfg.rule_params(
            fs,
            FEATURES[fs],
            config["device"],
            DATA["transcript_column"] if fs in FEATURE_NAMES["text"] else None,
        )
        for fs in FEATURE_SETS
    },
    "asr": {**ASR, "device": config["device"]},
    "transcript_column": DATA["transcript_column"],
    "encoding": DATA["encoding"],
    "extensions": DATA["extensions"],
    "text_sets": FEATURE_NAMES["text"],
    "audio_sets": FEATURE_NAMES["audio"],
}
# feature set -> its expMAE encoder file (the sets whose weights the workflow pretrains)
BUNDLE_ENCODERS = {
    fs: f"{RES}/{_fcfg.encoder_section(FEATURES[fs])}/encoder.safetensors"
    for fs in FEATURE_SETS
    if _fcfg.encoder_section(FEATURES[fs])
}
PREDICT_TARGETS = [f"{RES}/bundle"] + ([f"{RES}/predict/final.csv"] if PREDICT_SHARDS else [])


def last_round_dirs():
    """Every model folder of the last round: per-feature-set classifiers and fused heads (late included)."""
    singles = [f"{RES}/classify/round{LAST_ROUND}/{fs}" for fs in FEATURE_SETS]
    return singles + fuse_dirs(LAST_ROUND)


# The parse's objects live as long as the process: keep them out of the cyclic GC's sweeps while
# Snakemake builds the DAG (at 1.1M videos the sweeps over them cost seconds).
import gc as _gc

_gc.collect()
_gc.freeze()


if os.environ.get("EXPMAE_PARSE_TIMING"):  # benchmarks/bench_dag.py: parse-time work of this file vs Snakemake's
    import sys as _sys

    from expmae.shard_hash import peak_rss_mb

    print(
        f"EXPMAE_PARSE_TIMING common.smk {_time.perf_counter() - _PARSE_T0:.3f} s, peak rss {peak_rss_mb()} MB",
        file=_sys.stderr,
    )

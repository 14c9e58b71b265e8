# What every stage shares: the config's data paths and classes, the shard plan (which video is in
# which shard: expmae/dag/shards.py), the feature sets, and the small helpers of the rule files. Each
# stage's own constants live at the top of its .smk (ingest, faces, extract, mae, train, report,
# predict), included in that order by the Snakefile: a file reads only what is above it. What they
# compute (input functions included: Snakemake's linter keeps functions out of rule files) is
# expmae/dag/, tested without Snakemake.
# Parse time: one scandir or data.manifest read + one registry read, then vectorised per-shard hashes
# (no per-video Python loop); the DAG is O(shards).
import re
import time as _time
from pathlib import Path

from expmae import ingest as _ingest
from expmae import tracks as _tracks
from expmae.dag import flag_args, js  # params as JSON, optional inputs as flags (every stage's rules)
from expmae.dag import shards as _dag_shards

PARSE_T0 = _time.perf_counter()  # EXPMAE_PARSE_TIMING (Snakefile, after the includes): the project's parse-time share
RES = config["results"]
DATA = config["data"]
# A user's data section never mixes with the demo's (data.* defaults are empty): an unset or missing
# folder/file is an error naming its key, also for -n.
if _data_errors := _ingest.check_data(DATA):
    raise WorkflowError("\n".join(_data_errors))
CLASSES = ",".join(config["classes"])
# Scored test tracks (data.tracks, expmae/tracks.py): their present label CSVs are test lists beside data.test
# (their videos are test videos for every stage); an absent one is reported as not scored by the report.
try:
    TRACKS = _tracks.configured(DATA)
except SystemExit as _err:
    raise WorkflowError(str(_err))
TEST_LISTS = _tracks.label_files(DATA)
ENV = "../../envs/expmae.yaml"

# Append-only shard registry (expmae/ingest.py). The main process plans it in memory at every parse
# and persists it only when a real run starts (onstart below): -n, --lint and --report write nothing
# under results/. Cluster job processes read the registry the main process saved.
try:
    PLAN = _dag_shards.plan(RES, DATA, config["ingest"]["shard_size"], main=workflow.is_main_process)
except ValueError as _err:  # no videos, an unusable data.manifest, a bad ingest.shard_size: the message names the key
    raise WorkflowError(str(_err))


onstart:
    PLAN.save()


# data.predict videos (role predict, shards p00000...) run the per-shard jobs (ingest, faces, extract, asr) and
# the predict rule only (workflow/rules/predict.smk); everything else (MAE pretraining, training, pseudo-labels,
# report, cache_check) reads the training shards: SHARDS = TRAIN_SHARDS.
TRAIN_SHARDS = PLAN.shards("train")
PREDICT_SHARDS = PLAN.shards("predict")
SHARDS = TRAIN_SHARDS
# Feature extractor instances (config `features:`, expmae/features) and the ones the classifiers train on.
FEATURES = config.get("features") or {}
FEATURE_SETS = config["classify"]["feature_sets"]


def per_shard(pattern):
    # not expand(): a plain replace is ~20x faster, and this runs for many rules over thousands of shards
    return [pattern.replace("{shard}", s) for s in SHARDS]


def optional(path):
    """An optional data file as an input: [] when unset or absent."""
    return [path] if path and Path(path).exists() else []


def only_names(names):
    """Wildcard constraint matching exactly these names (feature sets, combinations, heads; nothing if none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"

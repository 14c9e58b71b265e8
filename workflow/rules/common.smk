# Shared state computed once at parse time, and input functions.
# Parse time stays O(videos) in plain Python (one scandir + one registry read); the DAG is O(shards).
import json
from pathlib import Path

from expmae import ingest as _ingest
from expmae import text as _text

RES = config["results"]
DATA = config["data"]
CLASSES = ",".join(config["classes"])
ENV = "../../envs/expmae.yaml"

# Append-only shard registry (see expmae/ingest.py). Only the main process writes it;
# cluster job processes read the registry the main process wrote.
REGISTRY = _ingest.update_registry(
    RES,
    DATA["videos"],
    DATA["extensions"],
    config["ingest"]["shard_size"],
    write=workflow.is_main_process,
)
if REGISTRY.empty and workflow.is_main_process:
    raise WorkflowError(f"no videos found under config key data.videos = {DATA['videos']}")
SHARDS = sorted(REGISTRY["shard"].unique())
FINGERPRINT = _ingest.fingerprints(REGISTRY)
_TRANSCRIPTS, _ = _text.read_transcripts(DATA.get("transcripts") or None, DATA["transcript_column"])
TEXT_HASH = _text.shard_hashes(_TRANSCRIPTS, REGISTRY)

ROUNDS = list(range(config["pseudolabel"]["rounds"] + 1))
FEATURE_SETS = config["classify"]["feature_sets"]
FUSE_HEADS = sorted({config["fuse"]["method"], "concat"})


def js(obj):
    """Params as compact JSON: a changed setting changes the param, so Snakemake reruns the rule."""
    return json.dumps(obj, sort_keys=True)


def per_shard(pattern):
    return expand(pattern, shard=SHARDS)


def optional(path):
    """An optional data file as an input: [] when unset or absent."""
    return [path] if path and Path(path).exists() else []


def pretrain_shards():
    """Shards MAE pretraining sees. Unless mae.retrain_on_new_videos, keep the shards recorded
    by the existing checkpoint, so new videos do not retrigger pretraining."""
    meta = Path(RES, "mae", "meta.json")
    if not config["mae"]["retrain_on_new_videos"] and meta.exists():
        seen = [s for s in json.loads(meta.read_text()).get("shards", []) if s in SHARDS]
        if seen:
            return seen
    return SHARDS


def pseudo_input(wildcards):
    r = int(wildcards.round)
    return [f"{RES}/pseudo/round{r - 1}.parquet"] if r > 0 else []


def feature_arg(names):
    """--features name=shard0.parquet,shard1.parquet ... for expmae.classify."""
    paths = {name: ",".join(per_shard(f"{RES}/features/{name}/{{shard}}.parquet")) for name in names}
    return " ".join(f"--features {name}={p}" for name, p in paths.items())

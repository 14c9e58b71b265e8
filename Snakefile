# expmae — expression-MAE semi-supervised multimodal emotion recognition (MER 2023 recipe).
# Stages live in workflow/rules/*.smk; all logic in the expmae package. Run: snakemake --cores N
import os
import sys

from snakemake.utils import min_version

from expmae import config as _cfg
from expmae.features import registry as _registry

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


# config.yaml holds only what differs from the schema (expmae/config.schema.yaml, package data): every
# key it leaves out gets its default here. Then one line per problem (key, value, "did you mean"), the
# misspelt feature sets and extractors too: Snakemake's own validate prints the whole schema instead.
_cfg.fill_defaults(config)
if _config_problems := _cfg.config_problems(config) + _registry.name_problems(config):
    raise WorkflowError("\n".join(_config_problems))
# A preset names the release's files and folders relative to data.root (the one key a user sets).
_cfg.resolve_paths(config)

# Shell jobs call `python -m expmae...`: make that the interpreter running Snakemake (the venv),
# also when the venv is not activated.
shell.prefix(f'export PATH="{os.path.dirname(sys.executable)}:$PATH"; ')


wildcard_constraints:
    shard=r"[sp]\d{5}",  # s: training shards, p: data.predict shards (workflow/rules/predict.smk)
    round=r"\d+",


include: "workflow/rules/common.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/mae.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/predict.smk"


# The shard plan and every stage's constants are made: freeze them out of the GC's sweeps (expmae/dag/shards.py).
_dag_shards.end_of_parse(PARSE_T0)


rule all:
    default_target: True
    input:
        f"{RES}/metrics.json",
        f"{RES}/submission/final.csv",
        f"{RES}/qc/summary.tsv",
        f"{RES}/qc/faces_summary.tsv",
        MAE_TARGETS,  # mae.smk: the probes, which pull in pretraining
        CACHE_FILES,  # extract.smk: a deleted per-shard file is rebuilt by a plain rerun
        TRAIN_TARGETS,  # train.smk: so is a deleted training output
        PREDICT_TARGETS,  # predict.smk: results/bundle (+ results/predict/final.csv with data.predict)


# One run per results/ folder, whatever the workdir (expmae/lock.py): taken when a real run starts, before
# the registry is saved (common.smk's onstart, called from here), released on exit. Dry runs never get here.
from expmae import lock as _lock

_save_registry = globals().get("onstart", lambda: None)


onstart:
    try:
        _lock.acquire(RES)
    except _lock.Locked as err:
        raise WorkflowError(str(err))
    _save_registry()


onsuccess:
    _lock.release(RES)


onerror:
    _lock.release(RES)

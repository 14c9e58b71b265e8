"""What the training jobs of workflow/rules/train.smk (and the report and predict rules after them) read
and write, over one parse's config: rounds, combinations x heads, the jobs' settings (--params) and
their input functions. expmae.train.plan says what is trained; this module says where it lies.

Training settings are the rule params; which feature sets, combinations and rounds exist are not, so
adding a feature set or raising pseudolabel.rounds reruns no existing job."""
from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from expmae.dag import flag_args
from expmae.train import plan

LABEL_KEYS = ("test", "test_labels", "pseudo", "groups")  # optional inputs of the training jobs, as flags


class TrainPlan:
    """Rounds, combinations and heads of one config, and the input / param functions of the training rules."""

    def __init__(self, config: Mapping[str, Any], res: str, shards: Sequence[str]):
        self.config, self.res, self.shards = config, res, list(shards)
        self.feature_sets = config["classify"]["feature_sets"]
        self.encoding = (config.get("data") or {}).get("encoding") or ""
        self.rounds = list(range(config["pseudolabel"]["rounds"] + 1))
        self.modalities = plan.modalities(config)
        self.combos = plan.combinations(config)
        self.fuse_heads = plan.heads(config)
        self.trained_fuse_heads = [h for h in self.fuse_heads if h != plan.LATE]  # rule fuse; late: rule fuse_late
        self.train_cfg = {k: v for k, v in config["classify"].items() if k not in plan.PLAN_KEYS["classify"]} | {
            "seed": config["seed"], "seeds": config["seeds"]}
        self.fuse_cfg = self.train_cfg | {k: v for k, v in config["fuse"].items() if k not in plan.PLAN_KEYS["fuse"]}
        # pseudolabel.rounds is not a param: raising it adds rounds and reruns none of the existing ones.
        self.pseudo_cfg = {k: v for k, v in config["pseudolabel"].items() if k != "rounds"}

    def fuse_dirs(self, r: int) -> list[str]:
        """Output folders of round r's fused models (every combination x head, late included)."""
        return [f"{self.res}/fuse/round{r}/{c}/{h}" for c in self.combos for h in self.fuse_heads]

    def round_dirs(self, r: int) -> list[str]:
        """Every model folder of round r: per-feature-set classifiers, then fused heads (late included)."""
        return [f"{self.res}/classify/round{r}/{fs}" for fs in self.feature_sets] + self.fuse_dirs(r)

    def pseudo_input(self, wildcards: Any) -> list[str]:
        r = int(wildcards.round)
        return [f"{self.res}/pseudo/round{r - 1}.parquet"] if r > 0 else []

    def feature_arg(self, names: Sequence[str], shards: Sequence[str] | None = None) -> str:
        """--features name=shard0.parquet,shard1.parquet ... for expmae.train.cv (training shards) and
        expmae.predict.table (shards: data.predict's)."""
        shards = self.shards if shards is None else shards
        return " ".join(f"--features {n}=" + ",".join(f"{self.res}/features/{n}/{s}.parquet" for s in shards)
                        for n in names)

    def label_args(self, input: Mapping[str, Any], keys: Sequence[str] = LABEL_KEYS) -> str:
        """--test / --test-labels / --pseudo / --groups for the inputs (of these keys) that exist, and the
        training jobs' --manifests (content hashes: byte copies share a fold)."""
        out = [flag_args(input, keys)]
        if "manifests" in input.keys():
            out.append("--manifests " + " ".join(shlex.quote(v) for v in input["manifests"]))
        if self.encoding:  # the CSVs' configured encoding (expmae/labels.py tries it after UTF-8)
            out.append(f"--encoding {shlex.quote(self.encoding)}")
        return " ".join(out)

    def fuse_inputs(self, wildcards: Any) -> list[str]:
        """The feature shards of the combination's feature sets."""
        return [f"{self.res}/features/{fs}/{s}.parquet"
                for fs in plan.feature_sets_of(self.config, wildcards.combo) for s in self.shards]

    def fuse_args(self, wildcards: Any) -> str:
        sets = plan.feature_sets_of(self.config, wildcards.combo)
        return f"{self.feature_arg(sets)} {plan.modality_arg(self.config, wildcards.combo)}"

    def late_members(self, wildcards: Any) -> list[str]:
        """Late fusion's members: the round's per-feature-set classifiers of the combination."""
        return [f"{self.res}/classify/round{wildcards.round}/{fs}"
                for fs in plan.feature_sets_of(self.config, wildcards.combo)]

    def pseudo_sources(self, wildcards: Any) -> list[str]:
        """Models of round r the selection may draw from: the fused ones (source: best picks the
        best OOF weighted F1 among them), or the one feature set named by pseudolabel.source, with the
        fused ones beside it: they select when that set's classifier was skipped (no usable data)."""
        src = self.pseudo_cfg.get("source", "best")
        if src in self.feature_sets:
            return [f"{self.res}/classify/round{wildcards.round}/{src}"] + self.fuse_dirs(int(wildcards.round))
        return self.fuse_dirs(int(wildcards.round))

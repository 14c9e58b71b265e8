# Training of every round: the per-feature-set classifiers, the fusion heads, late fusion, and the
# pseudo-labels that feed the next round. What each round trains: the constants below
# (expmae/train/plan.py). Each job records its identity (round, kind, combo, head, name) in its metrics.json.
# Every job trains once per seed (config seeds). A job that fails (e.g. too few labels for classify.folds)
# prints the end of its log on the console, so the reason is on screen, not only in the log.


from expmae.dag import train as _dag_train
from expmae.train import plan as _plan
from expmae.train import repro as _repro

# What each round trains (expmae/train/plan.py): one classifier per feature set, and per modality
# combination x fusion head; the jobs' settings and input functions (expmae/dag/train.py). Training
# settings are the rule params; which feature sets, combinations and rounds exist are not, so adding a
# feature set or raising pseudolabel.rounds reruns no existing job.
TRAIN = _dag_train.TrainPlan(config, RES, SHARDS)
# The training jobs start in the pinned numerical environment (expmae/train/repro.py) instead of restarting
# themselves into it; a param that is a function of input, so no rerun trigger (it names this CPU's level).
PINNED = _repro.shell_prefix()
# Every training output is a target of rule all (Snakefile), like the per-shard caches: a deleted one is rebuilt
# by a plain rerun, and what read it after it (Snakemake rebuilds a missing intermediate file only for a job
# that must run anyway, and the report would be newer than what is left).
PSEUDO_TABLES = [f"{RES}/pseudo/round{r}.parquet" for r in TRAIN.rounds[:-1]]  # read by the report too
TRAIN_TARGETS = [
    f"{d}/{f}" for r in TRAIN.rounds for d in TRAIN.round_dirs(r) for f in ("probs.parquet", "metrics.json")
] + PSEUDO_TABLES
ROUNDS, COMBOS, TRAINED_FUSE_HEADS = TRAIN.rounds, TRAIN.combos, TRAIN.trained_fuse_heads
TRAIN_CFG, FUSE_CFG, PSEUDO_CFG = TRAIN.train_cfg, TRAIN.fuse_cfg, TRAIN.pseudo_cfg
# the rules' input and param functions, by the names the rules use (report.smk and predict.smk too)
fuse_dirs, pseudo_input, feature_arg, label_args = (
    TRAIN.fuse_dirs,
    TRAIN.pseudo_input,
    TRAIN.feature_arg,
    TRAIN.label_args,
)
fuse_inputs, fuse_args, late_members, pseudo_sources = (
    TRAIN.fuse_inputs,
    TRAIN.fuse_args,
    TRAIN.late_members,
    TRAIN.pseudo_sources,
)


rule classify:
    # One classifier per feature set and round, k-fold CV on the labeled set (+ each fold's own pseudo-labels
    # of round-1: fold lineage, expmae/train/pseudo.py). Folds: the same for every job (labels, groups, seed).
    input:
        features=lambda w: per_shard(f"{RES}/features/{w.fs}/{{shard}}.parquet"),
        labels=DATA["labels"],
        test=optional(DATA.get("test")) + TEST_LISTS,  # + the tracks' label CSVs
        test_labels=optional(DATA.get("test_labels")),
        pseudo=pseudo_input,
        manifests=per_shard(f"{RES}/ingest/{{shard}}.parquet"),  # byte copies share a fold
        groups=optional(DATA.get("groups")),
    output:
        probs=f"{RES}/classify/round{{round}}/{{fs}}/probs.parquet",
        metrics=f"{RES}/classify/round{{round}}/{{fs}}/metrics.json",
    log:
        f"{RES}/logs/classify/round{{round}}_{{fs}}.log",
    benchmark:
        f"{RES}/benchmarks/classify/round{{round}}_{{fs}}.tsv"
    wildcard_constraints:
        fs=only_names(FEATURE_SETS),
    conda:
        ENV
    params:
        features=lambda w: feature_arg([w.fs]),
        cfg=js(TRAIN_CFG),
        classes=CLASSES,
        out=lambda w, output: os.path.dirname(output.probs),
        extra=lambda w, input: label_args(input),
        pinned=lambda w, input: PINNED,
    shell:
        "{params.pinned} python -m expmae.train.cv --round {wildcards.round} --kind single --name {wildcards.fs} --head mlp"
        " {params.features} --labels {input.labels:q} {params.extra} --classes {params.classes} --out {params.out:q}"
        " --params {params.cfg:q} > {log:q} 2>&1 || {{ tail -n 3 {log:q} >&2; exit 1; }}"


rule fuse:
    # Multimodal fusion of one modality combination with one trained head (config fuse.heads:
    # fbp | attention | concat) on the features of the combination's feature sets.
    input:
        features=fuse_inputs,
        labels=DATA["labels"],
        test=optional(DATA.get("test")) + TEST_LISTS,  # + the tracks' label CSVs
        test_labels=optional(DATA.get("test_labels")),
        pseudo=pseudo_input,
        manifests=per_shard(f"{RES}/ingest/{{shard}}.parquet"),
        groups=optional(DATA.get("groups")),
    output:
        probs=f"{RES}/fuse/round{{round}}/{{combo}}/{{head}}/probs.parquet",
        metrics=f"{RES}/fuse/round{{round}}/{{combo}}/{{head}}/metrics.json",
    log:
        f"{RES}/logs/fuse/round{{round}}_{{combo}}_{{head}}.log",
    benchmark:
        f"{RES}/benchmarks/fuse/round{{round}}_{{combo}}_{{head}}.tsv"
    wildcard_constraints:
        combo=only_names(COMBOS),
        head=only_names(TRAINED_FUSE_HEADS),
    conda:
        ENV
    params:
        args=fuse_args,
        name=lambda w: _plan.fused_name(w.combo, w.head),
        cfg=js(FUSE_CFG),
        classes=CLASSES,
        out=lambda w, output: os.path.dirname(output.probs),
        extra=lambda w, input: label_args(input),
        pinned=lambda w, input: PINNED,
    shell:
        "{params.pinned} python -m expmae.train.cv --round {wildcards.round} --kind fused --combo {wildcards.combo}"
        " --name {params.name:q} --head {wildcards.head} {params.args} --labels {input.labels:q} {params.extra}"
        " --classes {params.classes} --out {params.out:q} --params {params.cfg:q} > {log:q} 2>&1 || {{ tail -n 3 {log:q} >&2; exit 1; }}"


rule fuse_late:
    # Late fusion (fuse.heads: late) of one modality combination: the geometric mean of the round's
    # per-feature-set classifiers of its feature sets. No weights, no features: its inputs are those classifiers.
    input:
        members=lambda w: [f"{d}/{f}" for d in late_members(w) for f in ("probs.parquet", "metrics.json")],
        labels=DATA["labels"],
        test_labels=optional(DATA.get("test_labels")),
    output:
        probs=f"{RES}/fuse/round{{round}}/{{combo}}/late/probs.parquet",
        metrics=f"{RES}/fuse/round{{round}}/{{combo}}/late/metrics.json",
    log:
        f"{RES}/logs/fuse/round{{round}}_{{combo}}_late.log",
    benchmark:
        f"{RES}/benchmarks/fuse/round{{round}}_{{combo}}_late.tsv"
    wildcard_constraints:
        combo=only_names(COMBOS),
    conda:
        ENV
    params:
        members=late_members,
        name=lambda w: _plan.fused_name(w.combo, _plan.LATE),
        cfg=js(FUSE_CFG),
        classes=CLASSES,
        out=lambda w, output: os.path.dirname(output.probs),
        extra=lambda w, input: label_args(input, ("test_labels",)),
        pinned=lambda w, input: PINNED,
    shell:
        "{params.pinned} python -m expmae.train.late --round {wildcards.round} --kind fused --combo {wildcards.combo}"
        " --name {params.name:q} --members {params.members:q} --labels {input.labels:q} {params.extra}"
        " --classes {params.classes} --out {params.out:q} --params {params.cfg:q} > {log:q} 2>&1 || {{ tail -n 3 {log:q} >&2; exit 1; }}"


rule pseudolabel:
    # Confident predictions of round r's fold-f models on the unlabeled pool -> fold f's training data of
    # round r+1, added to fold f's earlier pool (fold lineage: expmae/train/pseudo.py).
    input:
        models=lambda w: [f"{d}/{f}" for d in pseudo_sources(w) for f in ("probs.parquet", "metrics.json")],
        previous=pseudo_input,
        # still images and copies of other videos never join the pool (expmae/train/pseudo.py)
        manifests=per_shard(f"{RES}/ingest/{{shard}}.parquet"),
        faces=per_shard(f"{RES}/faces/{{shard}}"),
    output:
        f"{RES}/pseudo/round{{round}}.parquet",
    log:
        f"{RES}/logs/pseudolabel/round{{round}}.log",
    conda:
        ENV
    params:
        dirs=pseudo_sources,
        faces_qc=lambda w, input: [f"{d}/qc.parquet" for d in input.faces],
        previous=lambda w, input: flag_args(input, ("previous",)),
        cfg=js(PSEUDO_CFG),
        classes=CLASSES,
    shell:
        "python -m expmae.train.pseudo --candidates {params.dirs:q} --round {wildcards.round} {params.previous}"
        " --manifests {input.manifests:q} --faces-qc {params.faces_qc:q}"
        " --classes {params.classes} --out {output:q} --params {params.cfg:q} > {log:q} 2>&1 || {{ tail -n 3 {log:q} >&2; exit 1; }}"

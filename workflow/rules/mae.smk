# expMAE pretraining (image MAE: config mae:, video MAE: config mae_video:) and its linear probe.
# Both train on the face crops of the shards of PRETRAIN_FACES (below: by default new videos do
# not retrigger pretraining). Resumable from <out>/checkpoint.safetensors, so --retries after a
# walltime kill continues. Figures and probe scores go into `snakemake --report` (category expMAE).
# The features of the encoders are extract_visual jobs (feature sets expmae / expmae_video,
# extract.smk); a feature set needing a disabled mae_video is a config error (features/config.py).
# One process, torchrun per GPU, or srun + torchrun on several nodes (expmae/mae/launch.py).
from expmae.mae import launch as mae_launch
from expmae.dag import shards as _dag_shards
from expmae.mae import splits as mae_splits

# <section> -> the face folders its pretraining sees (expmae/dag/shards.py: unless
# <section>.retrain_on_new_videos, the shards of the existing checkpoint, so new videos do not retrigger it).
PRETRAIN_FACES = {
    sec: [
        f"{RES}/faces/{s}" for s in _dag_shards.pretrain_shards(RES, sec, config[sec]["retrain_on_new_videos"], SHARDS)
    ]
    for sec in ("mae", "mae_video")
    if sec in config
}
MAE_VIDEO_ON = bool(config.get("mae_video", {}).get("enabled", False))
# mae_video.init: mae = start the video MAE from this run's image expMAE, inflated (expmae/mae/inflate.py).
IMAGE_ENCODER = f"{RES}/mae/encoder.safetensors"
VIDEO_FROM_IMAGE = config.get("mae_video", {}).get("init") == "mae"
# What rule all asks for besides the classifiers: the probe(s), which pull in pretraining.
MAE_TARGETS = [f"{RES}/mae/probe.json"] + ([f"{RES}/mae_video/probe.json"] if MAE_VIDEO_ON else [])
_NOT_TRAINING = ("enabled", "probe_repeats", "gpus", "nodes")  # settings that must not rerun pretraining
# <section>.pretrain_splits (expmae/mae/splits.py): which splits' videos pretraining sees. Leaving a split out
# makes the label CSV and test list decide which videos: they are inputs (a changed list reruns pretraining),
# and the classes / encoding that read them are in its --params. With all three splits (the default,
# transductive) the lists give meta.json's videos_by_split only: not inputs, so editing them reruns nothing.
MAE_FILTERS = {
    sec: mae_splits.excludes(config[sec].get("pretrain_splits", mae_splits.SPLITS))
    for sec in ("mae", "mae_video")
    if sec in config
}
SPLIT_KEYS = {"classes": config["classes"], "encoding": DATA.get("encoding", "")}
# --params of the pretraining / probe jobs per config section (JSON, so a change reruns the rule).
MAE_PARAMS = {
    sec: js(
        {
            **{k: v for k, v in config[sec].items() if k not in _NOT_TRAINING},
            **({"init": IMAGE_ENCODER} if sec == "mae_video" and VIDEO_FROM_IMAGE else {}),
            **(SPLIT_KEYS if MAE_FILTERS[sec] else {}),
            "kind": kind,
            "seed": config["seed"],
            "device": config["device"],
        }
    )
    for sec, kind in (("mae", "image"), ("mae_video", "video"))
    if sec in config
}


# The lists as inputs of a filtering pretraining job (data.test may be unset), and its --labels/--test/
# --classes/--encoding flags (always given: they give meta.json's videos_by_split).
# The tracks' label CSVs are test lists too (TEST_LISTS: common.smk).
SPLIT_LISTS = {"labels": optional(DATA.get("labels")), "test": optional(DATA.get("test")) + TEST_LISTS}
SPLIT_ARGS = mae_splits.cli_args(
    DATA.get("labels"), [DATA.get("test"), *TEST_LISTS], config["classes"], DATA.get("encoding")
)
PROBE_PARAMS = {
    sec: js(
        {
            "folds": config["classify"]["folds"],
            "seed": config["seed"],
            "device": config["device"],
            "repeats": config[sec].get("probe_repeats", 3),
            "classes": config["classes"],
        }
    )
    for sec in ("mae", "mae_video")
    if sec in config
}


rule mae_pretrain:
    input:
        **(SPLIT_LISTS if MAE_FILTERS["mae"] else {}),  # labels, test: when pretrain_splits leaves a split out
        faces=PRETRAIN_FACES["mae"],
        init=optional(config["mae"].get("init")),  # a replaced checkpoint file reruns pretraining
    output:
        encoder=IMAGE_ENCODER,
        loss=report(
            f"{RES}/mae/loss.png",
            caption="../report/mae_loss.rst",
            category="expMAE",
            subcategory="image MAE",
            labels={"figure": "pretraining loss"},
        ),
        recon=report(
            f"{RES}/mae/recon.png",
            caption="../report/mae_recon.rst",
            category="expMAE",
            subcategory="image MAE",
            labels={"figure": "reconstructions"},
        ),
    log:
        f"{RES}/logs/mae_pretrain.log",
    benchmark:
        f"{RES}/benchmarks/mae_pretrain.tsv"
    conda:
        ENV
    threads: 8  # capped at --cores locally; cpus-per-task on SLURM (data-loader workers + torch)
    resources:
        **mae_launch.job_resources(config["mae"]),
    params:
        cfg=MAE_PARAMS["mae"],
        out=lambda w, output: os.path.dirname(output.encoder),
        launch=lambda w, resources: mae_launch.prefix(resources),
        # a function of input, so not a rerun trigger: what changes the weights is in cfg and the inputs
        splits=lambda w, input: SPLIT_ARGS,
    shell:
        "{params.launch} -m expmae.mae.pretrain --faces {input.faces:q} --out {params.out:q} --params {params.cfg:q}"
        " {params.splits} > {log:q} 2>&1"


use rule mae_pretrain as mae_video_pretrain with:
    input:
        **(SPLIT_LISTS if MAE_FILTERS.get("mae_video") else {}),
        faces=PRETRAIN_FACES.get("mae_video", []),
        init=(IMAGE_ENCODER if VIDEO_FROM_IMAGE else optional(config["mae_video"].get("init"))),
    output:
        encoder=f"{RES}/mae_video/encoder.safetensors",
        loss=report(
            f"{RES}/mae_video/loss.png",
            caption="../report/mae_loss.rst",
            category="expMAE",
            subcategory="video MAE",
            labels={"figure": "pretraining loss"},
        ),
        recon=report(
            f"{RES}/mae_video/recon.png",
            caption="../report/mae_video_recon.rst",
            category="expMAE",
            subcategory="video MAE",
            labels={"figure": "reconstructions"},
        ),
    log:
        f"{RES}/logs/mae_video_pretrain.log",
    benchmark:
        f"{RES}/benchmarks/mae_video_pretrain.tsv"
    resources:
        **mae_launch.job_resources(config.get("mae_video", {})),
    params:
        cfg=MAE_PARAMS.get("mae_video", "{}"),
        out=lambda w, output: os.path.dirname(output.encoder),
        launch=lambda w, resources: mae_launch.prefix(resources),
        splits=lambda w, input: SPLIT_ARGS,


rule mae_probe:
    # Linear probe (k-fold logistic regression, weighted F1) of the pretrained encoder vs its own
    # random init, on the labeled videos of the pretraining shards.
    input:
        encoder=rules.mae_pretrain.output.encoder,
        faces=PRETRAIN_FACES["mae"],
        labels=DATA["labels"],
    output:
        probe=report(
            f"{RES}/mae/probe.json",
            caption="../report/mae_probe.rst",
            category="expMAE",
            subcategory="image MAE",
            labels={"figure": "linear probe (JSON)"},
        ),
        png=report(
            f"{RES}/mae/probe.png",
            caption="../report/mae_probe.rst",
            category="expMAE",
            subcategory="image MAE",
            labels={"figure": "linear probe"},
        ),
    log:
        f"{RES}/logs/mae_probe.log",
    benchmark:
        f"{RES}/benchmarks/mae_probe.tsv"
    conda:
        ENV
    params:
        cfg=PROBE_PARAMS["mae"],
    shell:
        "python -m expmae.probe --encoder {input.encoder:q} --faces {input.faces:q} --labels {input.labels:q}"
        " --out {output.probe:q} --params {params.cfg:q} > {log:q} 2>&1"


use rule mae_probe as mae_video_probe with:
    input:
        encoder=rules.mae_video_pretrain.output.encoder,
        faces=PRETRAIN_FACES.get("mae_video", []),
        labels=DATA["labels"],
    output:
        probe=report(
            f"{RES}/mae_video/probe.json",
            caption="../report/mae_probe.rst",
            category="expMAE",
            subcategory="video MAE",
            labels={"figure": "linear probe (JSON)"},
        ),
        png=report(
            f"{RES}/mae_video/probe.png",
            caption="../report/mae_probe.rst",
            category="expMAE",
            subcategory="video MAE",
            labels={"figure": "linear probe"},
        ),
    log:
        f"{RES}/logs/mae_video_probe.log",
    benchmark:
        f"{RES}/benchmarks/mae_video_probe.tsv"
    params:
        cfg=PROBE_PARAMS.get("mae_video", "{}"),

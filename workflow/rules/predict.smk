# Using the trained model (expmae/predict): the final model's portable bundle (results/bundle/, for
# `python -m expmae.predict` on another machine) and, with data.predict, predictions of those videos.
# data.predict videos have shards of their own (p00000...; common.smk PREDICT_SHARDS): the per-shard
# rules (ingest, faces, extract, asr) run on them, and only this file's `predict` rule reads them.
# feature_arg (with shards=PREDICT_SHARDS) is the training jobs' own (train.smk), QC_SETS and FOLDER_SETS the report's.
import shlex as _shlex

from expmae.features import config as _fcfg

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
# feature set computed elsewhere (extractor folder) -> its training tables: their metadata is the set's
# provenance in the bundle (expmae/predict/precomputed.py)
BUNDLE_TABLES = {fs: [f"{RES}/features/{fs}/{s}.parquet" for s in TRAIN_SHARDS] for fs in FOLDER_SETS}
PREDICT_TARGETS = [f"{RES}/bundle"] + ([f"{RES}/predict/final.csv"] if PREDICT_SHARDS else [])


# Every model folder of the last round: per-feature-set classifiers, then fused heads (late included).
LAST_ROUND_DIRS = TRAIN.round_dirs(LAST_ROUND)


rule bundle:
    # The final model (results/metrics.json `final`; late fusion: its members too), the expMAE encoder(s)
    # its features need, the extractor/face settings, its metrics, and manifest.json (sha256 of each file).
    input:
        metrics=f"{RES}/metrics.json",
        singles=[f"{d}/metrics.json" for d in LAST_ROUND_DIRS[: len(FEATURE_SETS)]],
        encoders=list(BUNDLE_ENCODERS.values()),
        tables=[p for ps in BUNDLE_TABLES.values() for p in ps],
    output:
        directory(f"{RES}/bundle"),
    log:
        f"{RES}/logs/bundle.log",
    conda:
        ENV
    params:
        cfg=js(BUNDLE_CFG),
        singles=lambda w, input: [os.path.dirname(p) for p in input.singles],
        encoders=" ".join(f"--encoder {fs}={_shlex.quote(p)}" for fs, p in BUNDLE_ENCODERS.items()),
        tables=" ".join(f"--tables {fs}={_shlex.quote(','.join(ps))}" for fs, ps in BUNDLE_TABLES.items()),
    shell:
        "python -m expmae.predict.bundle --metrics {input.metrics:q} --singles {params.singles:q}"
        " {params.encoders} {params.tables} --params {params.cfg:q} --out {output:q} > {log:q} 2>&1"


rule predict:
    # data.predict videos: the bundle's final model -> final.csv, every model of the last round -> heads.csv
    # (name, label, prob_<class>..., valence, missing modalities, qc; expmae/predict/table.py).
    input:
        bundle=f"{RES}/bundle",
        features=[f"{RES}/features/{fs}/{s}.parquet" for fs in FEATURE_SETS for s in PREDICT_SHARDS],
        models=[f"{d}/metrics.json" for d in LAST_ROUND_DIRS],
        faces=expand(f"{RES}/faces/{{shard}}", shard=PREDICT_SHARDS),
        audio_qc=[f"{RES}/features/{fs}/{s}.qc.parquet" for fs in QC_SETS["audio"] for s in PREDICT_SHARDS],
        folder_qc=[f"{RES}/features/{fs}/{s}.qc.parquet" for fs in FOLDER_SETS for s in PREDICT_SHARDS],
        asr=[f"{RES}/asr/{s}.parquet" for s in PREDICT_SHARDS if s in ASR_TODO],
    output:
        final=f"{RES}/predict/final.csv",
        heads=f"{RES}/predict/heads.csv",
    log:
        f"{RES}/logs/predict.log",
    benchmark:
        f"{RES}/benchmarks/predict.tsv"
    conda:
        ENV
    params:
        features=feature_arg(FEATURE_SETS, PREDICT_SHARDS),
        models=lambda w, input: [os.path.dirname(p) for p in input.models],
        faces_qc=lambda w, input: [f"{d}/qc.parquet" for d in input.faces],
        text=[f"{RES}/features/{fs}/{s}.parquet" for fs in QC_SETS["text"] for s in PREDICT_SHARDS],
        out=lambda w, output: os.path.dirname(output.final),
    shell:
        "python -m expmae.predict.table --bundle {input.bundle:q} {params.features} --models {params.models:q}"
        " --faces-qc {params.faces_qc:q} --audio-qc {input.audio_qc:q} --text {params.text:q} --asr {input.asr:q}"
        " --folder-qc {input.folder_qc:q} --out {params.out:q} > {log:q} 2>&1"

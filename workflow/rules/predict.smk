# Using the trained model (expmae/predict): the final model's portable bundle (results/bundle/, for
# `python -m expmae.predict` on another machine) and, with data.predict, predictions of those videos.
# data.predict videos have shards of their own (p00000...; common.smk PREDICT_SHARDS): the per-shard
# rules (ingest, faces, extract, asr) run on them, and only this file's `predict` rule reads them.
# Its constants and helpers (BUNDLE_CFG, BUNDLE_ENCODERS, PREDICT_TARGETS, last_round_dirs): common.smk's
# prediction region; feature_arg (with shards=PREDICT_SHARDS) is the training jobs' own.


rule bundle:
    # The final model (results/metrics.json `final`; late fusion: its members too), the expMAE encoder(s)
    # its features need, the extractor/face settings, its metrics, and manifest.json (sha256 of each file).
    input:
        metrics=f"{RES}/metrics.json",
        singles=[f"{d}/metrics.json" for d in last_round_dirs()[: len(FEATURE_SETS)]],
        encoders=list(BUNDLE_ENCODERS.values()),
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
    shell:
        "python -m expmae.predict.bundle --metrics {input.metrics:q} --singles {params.singles:q}"
        " {params.encoders} --params {params.cfg:q} --out {output:q} > {log:q} 2>&1"


rule predict:
    # data.predict videos: the bundle's final model -> final.csv, every model of the last round -> heads.csv
    # (name, label, prob_<class>..., valence, missing modalities, qc; expmae/predict/table.py).
    input:
        bundle=f"{RES}/bundle",
        features=[f"{RES}/features/{fs}/{s}.parquet" for fs in FEATURE_SETS for s in PREDICT_SHARDS],
        models=[f"{d}/metrics.json" for d in last_round_dirs()],
        faces=expand(f"{RES}/faces/{{shard}}", shard=PREDICT_SHARDS),
        audio_qc=[f"{RES}/features/{fs}/{s}.qc.parquet" for fs in _QC_SETS["audio"] for s in PREDICT_SHARDS],
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
        text=[f"{RES}/features/{fs}/{s}.parquet" for fs in _QC_SETS["text"] for s in PREDICT_SHARDS],
        out=lambda w, output: os.path.dirname(output.final),
    shell:
        "python -m expmae.predict.table --bundle {input.bundle:q} {params.features} --models {params.models:q}"
        " --faces-qc {params.faces_qc:q} --audio-qc {input.audio_qc:q} --text {params.text:q} --asr {input.asr:q}"
        " --out {params.out:q} > {log:q} 2>&1"

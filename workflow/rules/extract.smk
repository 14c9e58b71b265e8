# Feature extractors (expmae/features): one job per (configured instance, shard), one rule per
# modality because the inputs differ (video / transcripts + ASR / face crops). Each instance
# `features.<fset>` writes results/features/<fset>/<shard>.parquet; its params are its config
# entry + code version, so changing one instance reruns only that instance's jobs.
# Helpers (only_names, fparams): workflow/rules/common.smk.

rule audio:
    # Audio extractors (openSMILE eGeMAPS/ComParE, wav2vec2, HuBERT, WavLM, Whisper encoder).
    # Missing or undecodable audio -> zero vector, mask False, a row in the QC table.
    input:
        f"{RES}/ingest/{{shard}}.parquet",
    output:
        features=f"{RES}/features/{{fset}}/{{shard}}.parquet",
        qc=f"{RES}/features/{{fset}}/{{shard}}.qc.parquet",
    params:
        cfg=fparams,
    wildcard_constraints:
        fset=only_names(FEATURE_NAMES["audio"]),
    resources:
        gpu=lambda w: _fcfg.gpu(FEATURES[w.fset]),
        mem_mb=4000,
        runtime=60,
    log:
        f"{RES}/logs/features/{{fset}}/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/features/{{fset}}/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.features extract --name {wildcards.fset} --manifest {input:q}"
        " --out {output.features:q} --qc {output.qc:q} --params {params.cfg:q} > {log:q} 2>&1"


rule text:
    # Text extractors (sentence-transformers, RoBERTa/MacBERT..., CLIP text). The transcript CSV
    # is not an input (editing it would rerun every shard): its per-shard hash is a param. A video
    # without a CSV row takes its ASR text when the shard has an asr job.
    input:
        manifest=f"{RES}/ingest/{{shard}}.parquet",
        asr=lambda w: [f"{RES}/asr/{w.shard}.parquet"] if w.shard in ASR_TODO else [],
    output:
        f"{RES}/features/{{fset}}/{{shard}}.parquet",
    params:
        cfg=lambda w: fparams(w, DATA["transcript_column"]),
        transcripts=DATA.get("transcripts") or "",
        transcripts_hash=lambda w: TEXT_HASH[w.shard],
    wildcard_constraints:
        fset=only_names(FEATURE_NAMES["text"]),
    resources:
        gpu=lambda w: _fcfg.gpu(FEATURES[w.fset]),
        mem_mb=4000,
        runtime=60,
    log:
        f"{RES}/logs/features/{{fset}}/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/features/{{fset}}/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.features extract --name {wildcards.fset} --manifest {input.manifest:q}"
        " --transcripts {params.transcripts:q} --asr {input.asr:q} --out {output:q}"
        " --params {params.cfg:q} > {log:q} 2>&1"


rule visual:
    # Image encoders on the shard's face crops (open_clip, timm): per-crop features (npy, rows as
    # in the faces frames.parquet) and their per-video mean; no face -> zero vector, mask False.
    input:
        faces=f"{RES}/faces/{{shard}}",
        manifest=f"{RES}/ingest/{{shard}}.parquet",
    output:
        features=f"{RES}/features/{{fset}}/{{shard}}.parquet",
        frames=f"{RES}/features/{{fset}}/{{shard}}.frames.npy",
    params:
        cfg=fparams,
    wildcard_constraints:
        fset=only_names(FEATURE_NAMES["visual"]),
    resources:
        gpu=lambda w: _fcfg.gpu(FEATURES[w.fset]),
        mem_mb=8000,
        runtime=60,
    log:
        f"{RES}/logs/features/{{fset}}/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/features/{{fset}}/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.features extract --name {wildcards.fset} --manifest {input.manifest:q}"
        " --faces {input.faces:q} --out {output.features:q} --frames-out {output.frames:q}"
        " --params {params.cfg:q} > {log:q} 2>&1"


rule asr:
    # faster-whisper transcripts of the videos that need one (asr.enabled; default auto = the
    # videos without a transcript CSV row). Only shards with such videos get this job.
    input:
        f"{RES}/ingest/{{shard}}.parquet",
    output:
        f"{RES}/asr/{{shard}}.parquet",
    params:
        cfg=js({**ASR, "device": config["device"]}),
        transcripts=DATA.get("transcripts") or "",
        column=DATA["transcript_column"],
        todo=lambda w: ASR_TODO.get(w.shard, ""),
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        f"{RES}/logs/asr/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/asr/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.features asr --manifest {input:q} --transcripts {params.transcripts:q}"
        " --column {params.column:q} --out {output:q} --params {params.cfg:q} > {log:q} 2>&1"

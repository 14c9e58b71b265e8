# Feature extractors (expmae/features): one job per (configured instance, shard). Each instance
# `features.<fset>` writes results/features/<fset>/<shard>.parquet; its params are its config
# entry + code version, so changing one instance reruns only that instance's jobs. One base rule
# (extract_audio) and one `use rule` per other modality, because the inputs differ (video /
# transcripts + ASR / face crops + encoder); the command is the same: extract_args turns the
# job's named inputs and outputs into the runner's flags. The expMAE sets (expmae_image /
# expmae_video) are extract_visual jobs whose `encoder` input is the pretraining rule's output.
from expmae.dag import extract as _dag_extract
from expmae.features import config as _fcfg
from expmae.features import media as _text

# FEATURE_NAMES: modality -> the configured instance names (the expMAE sets expmae / expmae_video too).
try:
    FEATURE_NAMES = _fcfg.plan(FEATURES, FEATURE_SETS, config)
except ValueError as _err:
    raise WorkflowError(str(_err))
_TRANSCRIPTS, _ = _text.read_transcripts(DATA.get("transcripts") or None, DATA["transcript_column"], DATA["encoding"])
ASR = config.get("asr") or {}
# shard -> hash of its videos' transcript CSV rows (a param of extract_text), and shard -> hash of the
# videos to transcribe, for the shards with any (the others have no asr job).
TEXT_HASH = PLAN.per_shard(lambda reg: _text.shard_hashes(_TRANSCRIPTS, reg))
ASR_TODO = PLAN.per_shard(
    lambda reg: _fcfg.asr_plan(ASR, _TRANSCRIPTS, reg),
    lambda: _fcfg.asr_rows(ASR, _TRANSCRIPTS, PLAN.registry)["shard"].unique(),
)


# The rules' input and param functions (expmae/dag/extract.py), by the names the rules use.
EXTRACT = _dag_extract.ExtractPlan(config, RES, FEATURE_NAMES, ASR_TODO)
fparams, encoder_input, shard_cache = EXTRACT.fparams, EXTRACT.encoder_input, EXTRACT.shard_cache
extract_args = _dag_extract.extract_args

# Targets of the all rule. Snakemake never rebuilds a deleted intermediate file of an up-to-date job (it
# treats it like a removed temp file), so every per-shard cache file is requested: a plain rerun
# rebuilds a deleted one, and everything computed from it. O(shards) targets.
CACHE_FILES = [f for s in SHARDS for f in EXTRACT.shard_files(s)]


rule extract_audio:
    # Audio extractors (openSMILE eGeMAPS/ComParE, wav2vec2, HuBERT, WavLM, Whisper encoder).
    # Missing or undecodable audio -> zero vector, mask False, a row in the QC table.
    input:
        manifest=f"{RES}/ingest/{{shard}}.parquet",
    output:
        features=f"{RES}/features/{{fset}}/{{shard}}.parquet",
        qc=f"{RES}/features/{{fset}}/{{shard}}.qc.parquet",
    log:
        f"{RES}/logs/features/{{fset}}/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/features/{{fset}}/{{shard}}.tsv"
    wildcard_constraints:
        fset=only_names(FEATURE_NAMES["audio"]),
    conda:
        ENV
    resources:
        gpu=lambda w: _fcfg.gpu(FEATURES[w.fset]),
    params:
        cfg=fparams,
        args=lambda w, input, output: extract_args(input, output),
    shell:
        "python -m expmae.features extract --name {wildcards.fset} {params.args} --params {params.cfg:q} > {log:q} 2>&1"


use rule extract_audio as extract_text with:
    # Text extractors (sentence-transformers, RoBERTa/MacBERT..., CLIP text). The transcript CSV
    # is not an input (editing it would rerun every shard): its per-shard hash is a param. A video
    # without a CSV row takes its ASR text when the shard has an asr job.
    input:
        manifest=f"{RES}/ingest/{{shard}}.parquet",
        asr=lambda w: [f"{RES}/asr/{w.shard}.parquet"] if w.shard in ASR_TODO else [],
    output:
        features=f"{RES}/features/{{fset}}/{{shard}}.parquet",
    wildcard_constraints:
        fset=only_names(FEATURE_NAMES["text"]),
    params:
        cfg=lambda w: fparams(w, DATA["transcript_column"]),
        args=lambda w, input, output: extract_args(
            input, output, transcripts=DATA.get("transcripts") or "", encoding=DATA["encoding"]
        ),
        transcripts_hash=lambda w: TEXT_HASH[w.shard],


use rule extract_audio as extract_visual with:
    # Image encoders on the shard's face crops (open_clip, timm, expmae_image: per-crop features
    # as float16 npy, rows as in the faces frames.parquet, and their per-video mean) and clip
    # encoders (expmae_video: one clip per video, an empty [0, D] npy); no face -> zero vector,
    # mask False. `encoder`: results/<section>/encoder.safetensors for the expMAE sets, else none.
    input:
        manifest=f"{RES}/ingest/{{shard}}.parquet",
        faces=f"{RES}/faces/{{shard}}",
        encoder=encoder_input,
    output:
        features=f"{RES}/features/{{fset}}/{{shard}}.parquet",
        frames=f"{RES}/features/{{fset}}/{{shard}}.frames.npy",
    wildcard_constraints:
        fset=only_names(FEATURE_NAMES["visual"]),


rule asr:
    # faster-whisper transcripts of the videos that need one (asr.enabled; default auto = the
    # videos without a transcript CSV row). --transcripts=: an unset data.transcripts renders as
    # nothing, and a bare flag would stop argparse. Only shards with such videos get this job.
    input:
        f"{RES}/ingest/{{shard}}.parquet",
    output:
        f"{RES}/asr/{{shard}}.parquet",
    log:
        f"{RES}/logs/asr/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/asr/{{shard}}.tsv"
    conda:
        ENV
    params:
        cfg=js({**ASR, "device": config["device"]}),
        transcripts=DATA.get("transcripts") or "",
        column=DATA["transcript_column"],
        todo=lambda w: ASR_TODO.get(w.shard, ""),
    shell:
        "python -m expmae.features asr --manifest {input:q} --transcripts={params.transcripts:q}"
        " --column {params.column:q} --out {output:q} --params {params.cfg:q} > {log:q} 2>&1"


rule cache_check:
    # Heals the cache: reads back every cached file of the shard (Parquet page CRCs, .npy sizes).
    # A corrupt one is removed and the job fails saying so; the next run rebuilds it and everything
    # computed from it. Also, being an input of the report, it makes a plain rerun rebuild a deleted
    # per-shard file (without it Snakemake would see the report up to date: "Nothing to be done").
    input:
        shard_cache,
    output:
        f"{RES}/cache_check/{{shard}}.tsv",
    log:
        f"{RES}/logs/cache_check/{{shard}}.log",
    localrule: True
    conda:
        ENV
    shell:
        "python -m expmae.io verify --files {input:q} --out {output:q} > {log:q} 2>&1"

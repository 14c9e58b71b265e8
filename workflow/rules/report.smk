# Collects every round: metrics.json, MER submissions, QC table, and the figures/tables that
# `snakemake --report results/report.html` shows (captions in workflow/report/).
from expmae import config as _cfg
from expmae.predict.precomputed import computable as _computable
from expmae.report import paper as _paper

# columns of the submission CSVs (MER 2025: name,discrete); the schema's default when the section is absent
SUBMISSION_COLUMNS = (config.get("submission") or {}).get("columns") or _cfg.defaults("submission")["columns"]
# QC rows of the report (and of predict's tables): the first trained audio extractor's QC table (a video
# without decodable audio fails every audio extractor alike) and the first text set's list of videos without text;
# the report also reads every set computed elsewhere (extractor folder): its missing vectors are its own.
# the paper's figures (PNG: report items above; PDF, SVG) and tables (CSV, LaTeX) under results/report/
PAPER_FILES = _paper.outputs(f"{RES}/report")
QC_SETS = {m: [n for n in FEATURE_NAMES.get(m, []) if n in FEATURE_SETS][:1] for m in ("audio", "text")}
FOLDER_SETS = [fs for fs in FEATURE_SETS if not _computable(FEATURES[fs])]  # read from a folder (extractor folder)


rule report:
    input:
        classify=expand(f"{RES}/classify/round{{round}}/{{fs}}/metrics.json", round=ROUNDS, fs=FEATURE_SETS),
        fuse=[f"{d}/metrics.json" for r in ROUNDS for d in fuse_dirs(r)],
        pseudo=PSEUDO_TABLES,
        faces=per_shard(f"{RES}/faces/{{shard}}"),
        audio_qc=[f"{RES}/features/{fs}/{s}.qc.parquet" for fs in QC_SETS["audio"] for s in SHARDS],
        folder_qc=[f"{RES}/features/{fs}/{s}.qc.parquet" for fs in FOLDER_SETS for s in SHARDS],
        text=[f"{RES}/features/{fs}/{s}.parquet" for fs in QC_SETS["text"] for s in SHARDS],
        asr=[f"{RES}/asr/{s}.parquet" for s in ASR_TODO if s in SHARDS],  # not data.predict's shards
        inputs_qc=f"{RES}/qc/inputs.tsv",
        cache=per_shard(f"{RES}/cache_check/{{shard}}.tsv"),
        test=optional(DATA.get("test")),
        test_labels=optional(DATA.get("test_labels")),  # prior-shift check, stacking scores
        tracks=TEST_LISTS,  # the tracks' label CSVs (an absent one: not scored, said in metrics.json)
        mae=MAE_TARGETS,  # the probes: pretraining ran; its meta.json says which splits it saw (transductive?)
    output:
        metrics=f"{RES}/metrics.json",
        submission=f"{RES}/submission/final.csv",
        submission_flags=f"{RES}/submission/final.flags.csv",
        headline=f"{RES}/report/headline.txt",
        qc=f"{RES}/qc/summary.tsv",
        table=report(
            f"{RES}/report/f1_table.html",
            caption="../report/f1_table.rst",
            category="1 Results",
            subcategory="Per-round scores",
            labels={"figure": "weighted F1 table"},
        ),
        table_tsv=report(
            f"{RES}/report/f1_table.tsv",
            caption="../report/f1_table.rst",
            category="1 Results",
            subcategory="Per-round scores",
            labels={"figure": "all scores (TSV)"},
        ),
        confusion=report(
            f"{RES}/report/figures/confusion_oof.png",
            caption="../report/confusion.rst",
            category="1 Results",
            subcategory="Final model",
            labels={"figure": "confusion matrix, out of fold"},
        ),
        confusion_test=report(
            f"{RES}/report/figures/confusion_test.png",
            caption="../report/confusion.rst",
            category="1 Results",
            subcategory="Final model",
            labels={"figure": "confusion matrix, test"},
        ),
        per_class=report(
            f"{RES}/report/figures/per_class_f1.png",
            caption="../report/per_class.rst",
            category="1 Results",
            subcategory="Final model",
            labels={"figure": "F1 per class"},
        ),
        intervals=report(
            f"{RES}/report/figures/intervals.png",
            caption="../report/intervals.rst",
            category="1 Results",
            subcategory="Per-round scores",
            labels={"figure": "weighted F1 with intervals and seeds"},
        ),
        curves=report(
            f"{RES}/report/figures/curves.png",
            caption="../report/curves.rst",
            category="1 Results",
            subcategory="Final round",
            labels={"figure": "training curves"},
        ),
        probe=report(
            f"{RES}/report/figures/probe.png",
            caption="../report/mae_probe.rst",
            category="1 Results",
            subcategory="expMAE",
            labels={"figure": "probe: expMAE vs random weights"},
        ),
        # the same figures as PDF and SVG, and every table as CSV and LaTeX (expmae.report.paper)
        vector=PAPER_FILES["vector"],
        tables=PAPER_FILES["tables"],
        pseudo_tsv=report(
            f"{RES}/report/pseudo.tsv",
            caption="../report/pseudo.rst",
            category="2 Pseudo-labels",
            labels={"figure": "pool per round (TSV)"},
        ),
        pseudo_png=report(
            f"{RES}/report/figures/pseudo_pool.png",
            caption="../report/pseudo.rst",
            category="2 Pseudo-labels",
            labels={"figure": "pool per round"},
        ),
    log:
        f"{RES}/logs/report.log",
    conda:
        ENV
    params:
        dirs=lambda w, input: [os.path.dirname(p) for p in input.classify + input.fuse],
        faces_qc=lambda w, input: [f"{d}/qc.parquet" for d in input.faces],
        test=lambda w, input: flag_args(input, ("test", "test_labels")),
        options=js({k: config.get(k) or {} for k in ("prior", "stack")}),
        tracks=js({"tracks": TRACKS, "encoding": DATA["encoding"]}),  # data.tracks: scored, one submission each
        mae_meta=lambda w, input: [os.path.join(os.path.dirname(p), "meta.json") for p in input.mae],
        classes=CLASSES,
        columns=",".join(SUBMISSION_COLUMNS),
        res=lambda w, output: os.path.dirname(output.metrics),
    shell:
        "python -m expmae.report --classify {params.dirs:q} --pseudo {input.pseudo:q} --classes {params.classes}"
        " --faces-qc {params.faces_qc:q} --audio-qc {input.audio_qc:q} --text {input.text:q} --asr {input.asr:q}"
        " --folder-qc {input.folder_qc:q} --inputs-qc {input.inputs_qc:q} {params.test}"
        " --submission-columns {params.columns}"
        " --mae-meta {params.mae_meta:q} --mae-probe {input.mae:q} --options {params.options:q}"
        " --tracks {params.tracks:q}"
        " --out {params.res:q} > {log:q} 2>&1"

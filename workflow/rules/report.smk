rule report:
    # metrics.json (weighted F1 per feature set, per round, fused), MER submission CSVs, QC table.
    input:
        classify=expand(f"{RES}/classify/round{{round}}/{{fs}}/metrics.json", round=ROUNDS, fs=FEATURE_SETS),
        fuse=expand(f"{RES}/fuse/round{{round}}/{{head}}/metrics.json", round=ROUNDS, head=FUSE_HEADS),
        final=f"{RES}/fuse/round{ROUNDS[-1]}/{config['fuse']['method']}/metrics.json",
        pseudo=expand(f"{RES}/pseudo/round{{round}}.parquet", round=ROUNDS[:-1]),
        faces=per_shard(f"{RES}/faces/{{shard}}"),
        audio_qc=per_shard(f"{RES}/features/egemaps/{{shard}}.qc.parquet"),
        text=per_shard(f"{RES}/features/minilm/{{shard}}.parquet"),
    output:
        metrics=f"{RES}/metrics.json",
        submission=f"{RES}/submission/final.csv",
        qc=f"{RES}/qc/summary.tsv",
    params:
        dirs=lambda w, input: [os.path.dirname(p) for p in input.classify + input.fuse],
        final=lambda w, input: os.path.dirname(input.final),
        faces_qc=lambda w, input: [f"{d}/qc.parquet" for d in input.faces],
        issues=f"{RES}/ingest/issues.tsv",
        res=lambda w, output: os.path.dirname(output.metrics),
    log:
        f"{RES}/logs/report.log",
    conda:
        ENV
    shell:
        "python -m expmae.report --classify {params.dirs:q} --pseudo {input.pseudo:q} --final {params.final:q}"
        " --faces-qc {params.faces_qc:q} --audio-qc {input.audio_qc:q} --text {input.text:q}"
        " --ingest-issues {params.issues:q} --out {params.res:q} > {log:q} 2>&1"

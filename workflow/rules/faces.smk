rule faces:
    # Decode sampled frames, detect, align, keep the main face track; crops + per-frame table + QC per shard.
    input:
        f"{RES}/ingest/{{shard}}.parquet",
    output:
        directory(f"{RES}/faces/{{shard}}"),
    params:
        cfg=js(config["faces"]),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        f"{RES}/logs/faces/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/faces/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.faces --manifest {input:q} --out {output:q} --params {params.cfg:q}"
        " --threads {threads} > {log:q} 2>&1"


rule faces_report:
    # Summary table and per-shard montages of sampled crops, for a person to look at.
    input:
        per_shard(f"{RES}/faces/{{shard}}"),
    output:
        summary=f"{RES}/qc/faces_summary.tsv",
    log:
        f"{RES}/logs/faces_report.log",
    conda:
        ENV
    shell:
        "python -m expmae.faces.report --faces {input:q} --out $(dirname {output.summary:q}) > {log:q} 2>&1"

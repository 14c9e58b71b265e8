rule audio:
    # 16 kHz mono audio -> openSMILE functionals (eGeMAPS by default); missing audio -> mask False.
    input:
        f"{RES}/ingest/{{shard}}.parquet",
    output:
        features=f"{RES}/features/egemaps/{{shard}}.parquet",
        qc=f"{RES}/features/egemaps/{{shard}}.qc.parquet",
    params:
        cfg=js(config["audio"]),
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        f"{RES}/logs/audio/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/audio/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.audio --manifest {input:q} --out {output.features:q} --qc {output.qc:q}"
        " --params {params.cfg:q} > {log:q} 2>&1"

rule mae_features:
    # expMAE encoder features per video (frame-level npy + mean-pooled Parquet row).
    input:
        faces=f"{RES}/faces/{{shard}}",
        manifest=f"{RES}/ingest/{{shard}}.parquet",
        encoder=rules.mae_pretrain.output.encoder,
    output:
        features=f"{RES}/features/expmae/{{shard}}.parquet",
        frames=f"{RES}/features/expmae/{{shard}}.frames.npy",
    params:
        cfg=js({"device": config["device"], "batch_size": 256}),
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        f"{RES}/logs/mae_features/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/mae_features/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.mae.features --faces {input.faces:q} --manifest {input.manifest:q}"
        " --encoder {input.encoder:q} --out {output.features:q} --frames-out {output.frames:q}"
        " --params {params.cfg:q} > {log:q} 2>&1"

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


rule mae_video_features:
    # Video MAE features per video (one clip each, feature set expmae_video); same table format as expmae.
    input:
        faces=f"{RES}/faces/{{shard}}",
        manifest=f"{RES}/ingest/{{shard}}.parquet",
        encoder=rules.mae_video_pretrain.output.encoder,
    output:
        features=f"{RES}/features/expmae_video/{{shard}}.parquet",
    params:
        cfg=js({"device": config["device"], "batch_size": 256}),
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        f"{RES}/logs/mae_video_features/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/mae_video_features/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.mae.features --faces {input.faces:q} --manifest {input.manifest:q}"
        " --encoder {input.encoder:q} --out {output.features:q} --params {params.cfg:q} > {log:q} 2>&1"

rule mae_pretrain:
    # expMAE pretraining on face crops of the shards in pretrain_shards() (see common.smk).
    # Resumable from results/mae/checkpoint.safetensors, so --retries after a walltime kill continues.
    input:
        lambda w: expand(f"{RES}/faces/{{shard}}", shard=pretrain_shards()),
    output:
        encoder=f"{RES}/mae/encoder.safetensors",
    params:
        cfg=js({**config["mae"], "seed": config["seed"], "device": config["device"]}),
        out=lambda w, output: os.path.dirname(output.encoder),
    threads: 8  # capped at --cores locally; cpus-per-task on SLURM (data-loader workers + torch)
    resources:
        mem_mb=8000,
        runtime=lambda w, attempt: 240 * attempt,
    log:
        f"{RES}/logs/mae_pretrain.log",
    benchmark:
        f"{RES}/benchmarks/mae_pretrain.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.mae.pretrain --faces {input:q} --out {params.out:q} --params {params.cfg:q} > {log:q} 2>&1"

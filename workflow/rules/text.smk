rule text:
    # Transcript embeddings. The transcript CSV is not an input (editing it would rerun every
    # shard); the hash of this shard's transcripts is a param instead.
    input:
        f"{RES}/ingest/{{shard}}.parquet",
    output:
        f"{RES}/features/minilm/{{shard}}.parquet",
    params:
        cfg=js({**config["text"], "column": DATA["transcript_column"], "device": config["device"]}),
        transcripts=DATA.get("transcripts") or "",
        transcripts_hash=lambda w: TEXT_HASH[w.shard],
    resources:
        mem_mb=3000,
        runtime=60,
    log:
        f"{RES}/logs/text/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/text/{{shard}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.text --manifest {input:q} --transcripts {params.transcripts:q} --out {output:q}"
        " --params {params.cfg:q} > {log:q} 2>&1"

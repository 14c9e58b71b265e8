rule ingest_shard:
    # One manifest per shard. Its fingerprint param (members' name, path, size, mtime)
    # reruns the shard when one of its videos is replaced; new videos only add shards.
    output:
        f"{RES}/ingest/{{shard}}.parquet",
    log:
        f"{RES}/logs/ingest/{{shard}}.log",
    localrule: True
    conda:
        ENV
    params:
        fingerprint=lambda w: FINGERPRINT[w.shard],
        registry=f"{RES}/ingest/registry.parquet",
    shell:
        "python -m expmae.ingest --registry {params.registry:q} --shard {wildcards.shard} --out {output:q} > {log:q} 2>&1"

# Ingest's params: each shard's members' fingerprint (name, path, size, mtime), so a replaced video reruns
# its shard, and the digest of the ingest issues, so a new or fixed problem reruns inputs_qc (expmae/dag/shards.py).
FINGERPRINT = PLAN.per_shard(_ingest.fingerprints)
INGEST_DIGEST = PLAN.digest


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


rule inputs_qc:
    # QC rows of the inputs, an input of the report (so they always reach qc/summary.tsv): the ingest
    # issues (their digest is a param: a new or fixed problem reruns it), the CSVs' problems (encoding,
    # duplicate or conflicting rows, bad values), test names without a video, identical content under
    # two names (the manifests' sha256; across the test split: leakage).
    input:
        manifests=per_shard(f"{RES}/ingest/{{shard}}.parquet"),
        labels=DATA["labels"],
        transcripts=optional(DATA.get("transcripts")),
        test=optional(DATA.get("test")),
        test_labels=optional(DATA.get("test_labels")),
        tracks=TEST_LISTS,  # data.tracks' label CSVs: their names are test videos
    output:
        f"{RES}/qc/inputs.tsv",
    log:
        f"{RES}/logs/inputs_qc.log",
    localrule: True
    conda:
        ENV
    params:
        issues=f"{RES}/ingest/issues.tsv",
        issues_digest=INGEST_DIGEST,
        classes=CLASSES,
        column=DATA["transcript_column"],
        encoding=DATA["encoding"],
        files=lambda w, input: flag_args(input, ("labels", "transcripts", "test", "test_labels", "tracks")),
    shell:
        "python -m expmae.labels --manifests {input.manifests:q} {params.files} --classes {params.classes}"
        " --column {params.column:q} --encoding={params.encoding:q} --ingest-issues {params.issues:q}"
        " --out {output:q} > {log:q} 2>&1"

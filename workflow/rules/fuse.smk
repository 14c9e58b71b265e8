rule fuse:
    # Multimodal fusion of all feature sets: FBP (config fuse.method) and the concat baseline.
    input:
        features=[f"{RES}/features/{fs}/{s}.parquet" for fs in FEATURE_SETS for s in SHARDS],
        labels=DATA["labels"],
        test=optional(DATA.get("test")),
        test_labels=optional(DATA.get("test_labels")),
        pseudo=pseudo_input,
    output:
        probs=f"{RES}/fuse/round{{round}}/{{head}}/probs.parquet",
        metrics=f"{RES}/fuse/round{{round}}/{{head}}/metrics.json",
    params:
        features=feature_arg(FEATURE_SETS),
        cfg=js({**config["classify"], **config["fuse"], "seed": config["seed"]}),
        classes=CLASSES,
        out=lambda w, output: os.path.dirname(output.probs),
        test=lambda w, input: f"--test {input.test}" if input.test else "",
        test_labels=lambda w, input: f"--test-labels {input.test_labels}" if input.test_labels else "",
        pseudo=lambda w, input: f"--pseudo {input.pseudo}" if input.pseudo else "",
    wildcard_constraints:
        head="fbp|concat",
    log:
        f"{RES}/logs/fuse/round{{round}}_{{head}}.log",
    benchmark:
        f"{RES}/benchmarks/fuse/round{{round}}_{{head}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.classify --head {wildcards.head} {params.features} --labels {input.labels:q}"
        " {params.test} {params.test_labels} {params.pseudo} --classes {params.classes}"
        " --out {params.out:q} --params {params.cfg:q} > {log:q} 2>&1"

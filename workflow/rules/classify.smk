include: "rounds.smk"


rule classify:
    # One classifier per feature set and round, k-fold CV on the labeled set (+ pseudo-labels of round-1).
    input:
        features=lambda w: per_shard(f"{RES}/features/{w.fs}/{{shard}}.parquet"),
        labels=DATA["labels"],
        test=optional(DATA.get("test")),
        test_labels=optional(DATA.get("test_labels")),
        pseudo=pseudo_input,
    output:
        probs=f"{RES}/classify/round{{round}}/{{fs}}/probs.parquet",
        metrics=f"{RES}/classify/round{{round}}/{{fs}}/metrics.json",
    params:
        features=lambda w: feature_arg([w.fs]),
        cfg=js(TRAIN_CFG),
        classes=CLASSES,
        out=lambda w, output: os.path.dirname(output.probs),
        extra=lambda w, input: label_args(input),
    wildcard_constraints:
        fs=only_names(FEATURE_SETS),
    log:
        f"{RES}/logs/classify/round{{round}}_{{fs}}.log",
    benchmark:
        f"{RES}/benchmarks/classify/round{{round}}_{{fs}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.classify --head mlp {params.features} --labels {input.labels:q} {params.extra}"
        " --classes {params.classes} --out {params.out:q} --params {params.cfg:q} > {log:q} 2>&1"

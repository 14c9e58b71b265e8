rule fuse:
    # Multimodal fusion of one modality combination with one head (config fuse.heads):
    # fbp | attention | concat train on the features; late fuses the per-feature-set classifiers.
    input:
        features=fuse_inputs,
        labels=DATA["labels"],
        test=optional(DATA.get("test")),
        test_labels=optional(DATA.get("test_labels")),
        pseudo=lambda w: pseudo_input(w) if w.head != "late" else [],
    output:
        probs=f"{RES}/fuse/round{{round}}/{{combo}}/{{head}}/probs.parquet",
        metrics=f"{RES}/fuse/round{{round}}/{{combo}}/{{head}}/metrics.json",
    params:
        args=fuse_args,
        cfg=js(FUSE_CFG),
        classes=CLASSES,
        out=lambda w, output: os.path.dirname(output.probs),
        extra=lambda w, input: label_args(input),
    wildcard_constraints:
        combo=only_names(COMBOS),
        head=only_names(FUSE_HEADS),
    log:
        f"{RES}/logs/fuse/round{{round}}_{{combo}}_{{head}}.log",
    benchmark:
        f"{RES}/benchmarks/fuse/round{{round}}_{{combo}}_{{head}}.tsv"
    conda:
        ENV
    shell:
        "python -m expmae.classify --head {wildcards.head} {params.args} --labels {input.labels:q}"
        " {params.extra} --classes {params.classes} --out {params.out:q} --params {params.cfg:q} > {log:q} 2>&1"

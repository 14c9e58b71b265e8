rule pseudolabel:
    # Confident predictions of round r's model on the unlabeled pool -> training data of round r+1.
    input:
        lambda w: [f"{d}/{f}" for d in pseudo_sources(w) for f in ("probs.parquet", "metrics.json")],
    output:
        f"{RES}/pseudo/round{{round}}.parquet",
    params:
        dirs=pseudo_sources,
        cfg=js(PSEUDO_CFG),
        classes=CLASSES,
    log:
        f"{RES}/logs/pseudolabel/round{{round}}.log",
    conda:
        ENV
    shell:
        "python -m expmae.pseudolabel --candidates {params.dirs:q} --round {wildcards.round} --classes {params.classes}"
        " --out {output:q} --params {params.cfg:q} > {log:q} 2>&1"

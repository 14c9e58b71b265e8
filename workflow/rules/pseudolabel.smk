rule pseudolabel:
    # Confident predictions of round r's fused model on the unlabeled pool -> training data of round r+1.
    input:
        f"{RES}/fuse/round{{round}}/{config['fuse']['method']}/probs.parquet",
    output:
        f"{RES}/pseudo/round{{round}}.parquet",
    params:
        cfg=js(config["pseudolabel"]),
        classes=CLASSES,
    log:
        f"{RES}/logs/pseudolabel/round{{round}}.log",
    conda:
        ENV
    shell:
        "python -m expmae.pseudolabel --probs {input:q} --round {wildcards.round} --classes {params.classes}"
        " --out {output:q} --params {params.cfg:q} > {log:q} 2>&1"

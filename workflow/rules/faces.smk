rule faces:
    # Decode sampled frames, detect, align, keep the main face track; crops + per-frame table + QC per shard.
    # With faces.source: folder, videos that have an OpenFace-style face folder are read from it instead
    # (expmae/faces/folder.py): the same three outputs, so nothing downstream changes.
    input:
        f"{RES}/ingest/{{shard}}.parquet",
    output:
        directory(f"{RES}/faces/{{shard}}"),
    log:
        f"{RES}/logs/faces/{{shard}}.log",
    benchmark:
        f"{RES}/benchmarks/faces/{{shard}}.tsv"
    conda:
        ENV
    # threads = worker processes. Each worker runs a detection thread and a decode thread that
    # decodes the next video meanwhile; every native pool in it (OpenMP, OpenBLAS, cv2, PyAV,
    # ONNX Runtime) is capped at 1 thread, so N workers keep about N cores busy, not more.
    threads: 2
    params:
        cfg=js(config["faces"]),
    shell:
        "python -m expmae.faces --manifest {input:q} --out {output:q} --params {params.cfg:q}"
        " --threads {threads} > {log:q} 2>&1"


rule faces_report:
    # Summary table and per-shard montages of sampled crops, for a person to look at.
    input:
        per_shard(f"{RES}/faces/{{shard}}"),
    output:
        summary=report(
            f"{RES}/qc/faces_summary.tsv",
            caption="../report/faces.rst",
            category="Faces",
            labels={"figure": "summary per shard"},
        ),
        montages=report(
            directory(f"{RES}/qc/faces_montages"),
            patterns=["montage_{shard}.png"],
            caption="../report/faces.rst",
            category="Faces",
            labels={"figure": "crop montage", "shard": "{shard}"},
        ),
    log:
        f"{RES}/logs/faces_report.log",
    conda:
        ENV
    shell:
        "python -m expmae.faces.report --faces {input:q} --out $(dirname {output.summary:q})"
        " --montage-dir {output.montages:q} > {log:q} 2>&1"

"""Does MAE pretraining help at all: a linear probe's weighted F1 on expMAE features, pretrained vs random init,
with raw pixels as the floor, on a small labeled fixture run through the real pretraining engine and feature
extractor (the `mae:` config as the workflow resolves it: schema defaults < config.yaml; CPU).

    .venv/bin/python -m benchmarks.bench_mae_probe [--epochs 30] [--threads 2]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.harness import Report, progress, timed, workflow_config


# A small labeled fixture: synthetic cartoon faces (random identity: colours, geometry, pose,
# background) with five expressions carried by brows, eyes and mouth. Each "video" is one
# identity and expression seen in 4 jittered frames, stored in the face stage's cache layout and
# run through the real pretraining engine and feature extractor.
CLASSES = ["neutral", "happy", "sad", "surprise", "angry"]


def _stroke(img, xs, ys, r, color) -> None:
    from skimage.draw import disk

    for x, y in zip(xs, ys):
        rr, cc = disk((y, x), r, shape=img.shape[:2])
        img[rr, cc] = color


def cartoon_face(label: str, ident: dict, rng, S: int = 112):
    import numpy as np
    from skimage.draw import ellipse
    from skimage.transform import rotate

    img = np.empty((S, S, 3))
    img[:] = ident["bg"]
    img += ident["grad"] * np.linspace(0, 1, S)[:, None, None]
    cx, cy = S / 2 + ident["dx"] + rng.normal(0, 1.5), S / 2 + ident["dy"] + rng.normal(0, 1.5)
    R = S * ident["scale"]
    rr, cc = ellipse(cy, cx, R * 1.15, R * 0.9, shape=img.shape[:2])
    img[rr, cc] = ident["skin"]
    ex, ey, er = R * 0.38, cy - R * 0.25, R * ident["eye"]
    inten = rng.uniform(0.6, 1.0)
    t = np.linspace(0, 1, 12)
    for s in (-1, 1):
        rr, cc = ellipse(ey, cx + s * ex, er * (1.4 if label == "surprise" else 1.0), er * 1.2, shape=img.shape[:2])
        img[rr, cc] = 0.05
        inner = {"neutral": 0.0, "happy": 0.05, "sad": 0.25, "surprise": 0.3, "angry": -0.28}[label] * inten
        outer = {"neutral": 0.0, "happy": 0.05, "sad": -0.05, "surprise": 0.3, "angry": 0.1}[label] * inten
        bx = cx + s * (ex - R * 0.22 + t * R * 0.44)
        by = ey - R * 0.28 - R * (inner * (1 - t) + outer * t)
        _stroke(img, bx, by, max(1.0, R * 0.045), ident["brow"])
    my, mw, tm = cy + R * 0.5, R * ident["mouth"], np.linspace(-1, 1, 24)
    if label == "surprise":
        rr, cc = ellipse(my, cx, R * 0.2 * inten + 2, mw * 0.45, shape=img.shape[:2])
        img[rr, cc] = (0.3, 0.05, 0.05)
    else:
        curve = {"neutral": 0.0, "happy": 0.25, "sad": -0.22, "angry": -0.05}[label] * inten
        _stroke(img, cx + tm * mw, my + R * curve * (1 - tm**2) - R * curve * 0.5, max(1.0, R * 0.05), (0.45, 0.08, 0.1))
    img = rotate(img, ident["rot"] + rng.normal(0, 2), mode="edge") + rng.normal(0, 0.03, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def identity(rng) -> dict:
    return dict(bg=rng.uniform(0.2, 0.9, 3), grad=rng.uniform(-0.2, 0.2, 3), dx=rng.normal(0, 4), dy=rng.normal(0, 4),
                scale=rng.uniform(0.3, 0.38), skin=rng.uniform([0.5, 0.35, 0.25], [0.95, 0.8, 0.7]),
                eye=rng.uniform(0.06, 0.1), brow=rng.uniform(0.05, 0.4, 3), mouth=rng.uniform(0.3, 0.45),
                rot=rng.normal(0, 6))


def write_fixture(root: Path, n_per_class: int = 40, frames: int = 4, shards: int = 2) -> tuple[list[Path], dict]:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    vids = [(f"{c}_{i:03d}", c) for i in range(n_per_class) for c in CLASSES]
    labels, folders = {}, []
    for s in range(shards):
        part = vids[s::shards]
        crops, rows = [], []
        for name, c in part:
            ident = identity(rng)
            for f in range(frames):
                rows.append({"name": name, "frame_index": f, "time_s": f / 4, "score": 0.99, "track_id": 0,
                             "crop_row": len(crops)})
                crops.append(cartoon_face(c, ident, rng))
            labels[name] = c
        d = root / "faces" / f"s{s:05d}"
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / "crops.npy", np.stack(crops))
        pd.DataFrame(rows).to_parquet(d / "frames.parquet")
        pd.DataFrame({"name": [n for n, _ in part], "path": [f"{n}.mp4" for n, _ in part], "size": 0,
                      "mtime_ns": 0}).to_parquet(root / f"s{s:05d}.manifest.parquet")
        folders.append(d)
    return folders, labels


def probe(epochs: int, threads: int, rep: Report) -> None:
    import tempfile

    import numpy as np

    from expmae.faces.store import load_face_shard
    from expmae.features.run import extract
    from expmae.io import read_features
    from expmae.mae.pretrain import PretrainConfig, train
    from expmae.probe import linear_probe_f1

    torch.set_num_threads(threads)
    params = {**workflow_config()["mae"], "seed": 0, "device": "cpu",
              "frames_per_video": 4}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders, labels = write_fixture(root)

        def pretrain_and_probe(tag: str, ep: int) -> float:
            train(PretrainConfig.from_params({**params, "epochs": ep}), folders, root / tag)
            feats = []
            for s, d in enumerate(folders):
                extract("expmae", {"extractor": "expmae_image", "device": "cpu"}, str(root / f"s{s:05d}.manifest.parquet"),
                        str(root / tag / f"s{s}.parquet"), faces=str(d), encoder=str(root / tag / "encoder.safetensors"))
                feats.append(root / tag / f"s{s}.parquet")
            names, X, _, _ = read_features(feats)
            return linear_probe_f1(X, [labels[n] for n in names])

        rows = []
        for tag, ep in (("random init", 0), (f"pretrained {epochs} ep", epochs)):
            secs, _, f1 = timed(lambda: pretrain_and_probe(tag, ep))
            rows.append({"features": tag, "linear-probe weighted F1": f1, "s": secs})
            progress(f"{tag}: {f1:.3f}")
        # reference: the same probe on raw 16x16 pixels (per-video mean)
        pix = {}
        for d in folders:
            crops, frames = load_face_shard(d)
            small = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(np.array(crops)).permute(0, 3, 1, 2).float(), 16)
            for name, g in frames.groupby("name"):
                pix[name] = small[g["crop_row"].to_numpy()].mean(0).flatten().numpy()
        names = sorted(pix)
        rows.append({"features": "raw 16x16 pixels", "s": float("nan"),
                     "linear-probe weighted F1": linear_probe_f1(np.stack([pix[n] for n in names]),
                                                                 [labels[n] for n in names])})
        rep.table(rows, caption=f"{len(labels)} videos x 4 frames, {len(CLASSES)} classes, chance "
                                f"~{1 / len(CLASSES):.2f}", digits=3)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    with Report("linear probe: pretrained vs random-init expMAE", f"{a.epochs} epochs, {a.threads} threads") as rep:
        probe(a.epochs, a.threads, rep)


if __name__ == "__main__":
    main()

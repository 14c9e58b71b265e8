"""The demo dataset: plan the clips (classes, cues, valence, transcripts), render them, write the CSVs."""
from __future__ import annotations

import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from .audio import synth_voice
from .encode import read_csv, write_bytes, write_csv, write_mp4, write_text
from .spec import CLASSES, CUE_COLS, FPS, ODD_NAME, P_CUE, PRESETS, TEST_PRIORS, VALENCE_MEAN
from .text import make_transcript
from .visual import face_frames, identities, noface_frames

def _draw_cue(true: int, rng: np.random.Generator) -> int:
    return true if rng.random() < P_CUE else int((true + 1 + rng.integers(5)) % 6)


def class_counts(weights: tuple[float, ...], n: int) -> np.ndarray:
    """n clips split over the six classes in proportion to weights (largest remainder, exact total)."""
    w = np.asarray(weights, float) / float(np.sum(weights)) * n
    counts = np.floor(w).astype(int)
    rest = n - int(counts.sum())
    counts[np.argsort(-(w - counts), kind="stable")[:rest]] += 1
    return counts


def plan_clips(names: list[str], split: str, rng: np.random.Generator, n_ident: int,
               prior: tuple[float, ...] | None = None) -> list[dict[str, Any]]:
    """One row per clip: true classes (balanced, or in proportion to prior), per-modality cues, valence, transcript."""
    pool = np.resize(np.arange(6), len(names)) if prior is None else np.repeat(np.arange(6), class_counts(prior, len(names)))
    classes = rng.permutation(pool)  # same draws either way, so the other splits stay byte-identical
    rows = []
    for name, c in zip(names, classes):
        c = int(c)
        v, a, t = (_draw_cue(c, rng) for _ in range(3))
        val = float(np.clip(VALENCE_MEAN[CLASSES[c]] + rng.normal(0, 1.0), -5, 5))
        rows.append(dict(name=name, split=split, kind="normal", discrete=CLASSES[c], valence=round(val, 2),
                         visual_cue=CLASSES[v], audio_cue=CLASSES[a], text_cue=CLASSES[t],
                         identity=int(rng.integers(n_ident)), english=make_transcript(t, rng)))
    return rows


def render_clip(row: dict[str, Any], seed: int, videos: Path) -> None:
    """Write videos/<name>.mp4 for one planned row, from an RNG seeded by (seed, name)."""
    rng = np.random.default_rng([seed, zlib.crc32(row["name"].encode("utf-8"))])
    path = videos / f"{row['name']}.mp4"
    if row["kind"] in ("empty", "corrupt"):
        write_bytes(path, b"" if row["kind"] == "empty" else rng.bytes(48_000))
        return
    dur = rng.uniform(2.0, 3.0)
    audio = synth_voice(CLASSES.index(row["audio_cue"]), dur, rng)
    n = int(round(dur * FPS))
    frames = noface_frames(n, rng) if row["kind"] == "noface" else face_frames(row, n, rng)
    write_mp4(path, frames, audio)


def _render_all(rows: list[dict[str, Any]], seed: int, videos: Path, workers: int) -> None:
    videos.mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        for r in rows:
            render_clip(r, seed, videos)
        return
    import multiprocessing as mp

    # spawn, not fork: a forked child inherits OpenCV's thread pool mid-state and can deadlock
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
        list(pool.map(render_clip, rows, [seed] * len(rows), [videos] * len(rows), chunksize=4))


def _worker_init() -> None:
    cv2.setNumThreads(1)


def _readme(cues: pd.DataFrame, history: list[str]) -> str:
    counts = cues.groupby("split").size().to_dict()
    kinds = cues[cues.kind != "normal"].name.tolist()
    return "\n".join([
        "expmae demo dataset (synthetic cues on real face photographs; see the expmae/demo docstring)",
        *history,
        f"videos: {len(cues)} = labeled {counts.get('labeled', 0)}, unlabeled {counts.get('unlabeled', 0)}"
        f" (incl. bad/odd inputs), test {counts.get('test', 0)}",
        f"bad/odd inputs: {', '.join(kinds) or 'none'}",
        f"classes: {', '.join(CLASSES)}; each modality shows the true class's cue with p={P_CUE},",
        "otherwise another class's cue (uniform), independently per modality.",
        "files: videos/*.mp4, labels.csv, transcripts.csv, test.csv, test_labels.csv,",
        "       cues.csv (hidden truth incl. per-modality cue classes; not read by the pipeline)",
    ]) + "\n"


def _finish(out: Path, cues: pd.DataFrame, history: list[str]) -> None:
    write_csv(out / "cues.csv", cues[CUE_COLS])
    write_text(out / "README.txt", _readme(cues, history))


def make_dataset(out: str | os.PathLike, preset: str = "default", seed: int = 0, n_labeled: int | None = None,
                 n_unlabeled: int | None = None, n_test: int | None = None, force: bool = False,
                 bad_inputs: bool = True, workers: int = 1, test_prior: str = "balanced") -> pd.DataFrame:
    """Write a fresh demo dataset into `out`; returns the cues table (one row per video).

    test_prior names a TEST_PRIORS entry: the test split's classes in that proportion (labeled and
    unlabeled stay balanced), so a classifier trained on the labeled prior meets a prior shift.
    """
    if test_prior not in TEST_PRIORS:
        raise ValueError(f"--test-prior {test_prior!r}: choose one of {', '.join(TEST_PRIORS)}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} is not empty (use --force to overwrite)")
        import shutil

        shutil.rmtree(out / "videos", ignore_errors=True)
        for f in ("labels.csv", "transcripts.csv", "test.csv", "test_labels.csv", "cues.csv", "README.txt"):
            (out / f).unlink(missing_ok=True)
    nl, nu, nt = PRESETS[preset]
    nl, nu, nt = (d if v is None else v for v, d in ((n_labeled, nl), (n_unlabeled, nu), (n_test, nt)))
    rng = np.random.default_rng(seed)
    n_ident = len(identities())
    order = rng.permutation(nl + nu + nt)  # names do not reveal the split
    names = [f"demo_{i:05d}" for i in order]
    rows = (plan_clips(sorted(names[:nl]), "labeled", rng, n_ident)
            + plan_clips(sorted(names[nl:nl + nu]), "unlabeled", rng, n_ident)
            + plan_clips(sorted(names[nl + nu:]), "test", rng, n_ident,
                         None if test_prior == "balanced" else TEST_PRIORS[test_prior]))
    if bad_inputs:
        odd = plan_clips([ODD_NAME, "corrupt_0001", "empty_0001", "noface_0001"], "unlabeled", rng, n_ident)
        for r, kind in zip(odd, ("odd_name", "corrupt", "empty", "noface")):
            r["kind"] = kind
        odd[2]["english"] = None  # the empty file has no transcript row
        unl = [r for r in rows if r["split"] == "unlabeled"]
        if unl:
            unl[0]["english"] = ""  # a normal video whose transcript is empty
        rows += odd
    _render_all(rows, seed, out / "videos", workers)

    df = pd.DataFrame(rows)
    lab = df[df.split == "labeled"].sort_values("name")
    test = df[df.split == "test"].sort_values("name")
    write_csv(out / "labels.csv", lab[["name", "discrete", "valence"]])
    write_csv(out / "transcripts.csv", df[df.english.notna()].sort_values("name")[["name", "english"]])
    write_csv(out / "test.csv", test[["name"]])
    write_csv(out / "test_labels.csv", test[["name", "discrete", "valence"]])
    made = f"made with seed={seed}, preset={preset}" + ("" if test_prior == "balanced" else f", test_prior={test_prior}")
    _finish(out, df, [made])
    return df[CUE_COLS]


def add_unlabeled(out: str | os.PathLike, n: int, seed: int, workers: int = 1) -> list[str]:
    """Add n NEW unlabeled videos (fresh names) to an existing demo folder; returns their names."""
    out = Path(out)
    videos = out / "videos"
    if not videos.is_dir() or not (out / "transcripts.csv").exists():
        raise FileNotFoundError(f"{out} is not a demo dataset (run make_dataset first)")
    taken = [int(p.stem[5:]) for p in videos.glob("demo_*.mp4") if p.stem[5:].isdigit()]
    start = max(taken, default=-1) + 1
    names = [f"demo_{i:05d}" for i in range(start, start + n)]
    assert not any((videos / f"{nm}.mp4").exists() for nm in names)
    rng = np.random.default_rng([seed, start])
    rows = plan_clips(names, "unlabeled", rng, len(identities()))
    _render_all(rows, seed, videos, workers)

    new = pd.DataFrame(rows)
    tr = pd.concat([read_csv(out / "transcripts.csv"), new[["name", "english"]]], ignore_index=True)
    write_csv(out / "transcripts.csv", tr)
    cues_path = out / "cues.csv"
    old = read_csv(cues_path) if cues_path.exists() else pd.DataFrame(columns=CUE_COLS)
    history = [ln for ln in (out / "README.txt").read_text("utf-8").splitlines()
               if ln.startswith(("made with", "added"))] if (out / "README.txt").exists() else []
    new["valence"] = new.valence.map("{:.2f}".format)  # as _write_csv formats floats
    cues = pd.concat([old, new[CUE_COLS].astype(str)], ignore_index=True)
    _finish(out, cues, history + [f"added {n} unlabeled ({names[0]}..{names[-1]}) with seed={seed}"])
    return names

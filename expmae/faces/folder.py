"""Face crops read from an OpenFace-style folder instead of detected (config `faces.source: folder`).

MER releases and MERTools keep each video's aligned faces as
    <root>/<name>/<name>.npy     uint8 [N, H, W, 3] (RGB) or [N, H, W] / [N, H, W, 1] (grayscale)
or as per-frame images (OpenFace's .bmp output; .png/.jpg also read) in <root>/<name>/, in file-name order.
Crops are resized to faces.crop_size and, past faces.max_frames, subsampled evenly, so a folder
video gives the same kind of rows as a detected one (store.py) and nothing downstream changes.

The folder is input a user points us at, so every read is guarded: the video folder must be a real
directory inside the root (a symlink out of it is refused), files must be regular (a FIFO would block
the job), the .npy header is checked (dtype, shape, size) before a byte of data is read, and image
files have a size cap. A failure is a QC row `face folder: <why>`, never a failed job.
"""
from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .worker import qc_row

IMAGE_EXTS = (".bmp", ".png", ".jpg", ".jpeg")
MAX_SIDE = 1024                  # a face crop larger than this is not an OpenFace crop
MAX_NPY_BYTES = 4 << 30          # one video's stack; MER clips at 112 px are a few MB
MAX_IMAGE_BYTES = 8 << 20        # one per-frame image
MAX_IMAGES = 20_000              # files listed per video folder (a 10-minute clip at 30 fps)
DECODER = "folder"               # QC `decoder` of a video whose crops came from the folder


class FolderProblem(Exception):
    """The video has a face folder that cannot be used (the message is the QC reason's tail)."""


def _regular(path: Path) -> os.stat_result:
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise FolderProblem(f"not a regular file: {path.name}")
    return st


def video_dir(root: Path, name: str) -> Path | None:
    """<root>/<name> when it exists (None: no face folder for this video); FolderProblem when it is
    not a directory or resolves outside the root (a symlink out of it, or a name with separators)."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise FolderProblem(f"video name {name!r} cannot name a folder")
    d = root / name
    if not os.path.lexists(d):
        return None
    real, real_root = os.path.realpath(d), os.path.realpath(root)
    if os.path.commonpath([real, real_root]) != real_root:
        raise FolderProblem(f"{d} leads outside {root}")
    if not d.is_dir():
        raise FolderProblem(f"{d} is not a directory")
    return d


def check_root(folder: str) -> str:
    """The configured faces.folder, or one line naming the key and the fix."""
    if not folder:
        raise SystemExit("config key faces.folder is empty but faces.source is folder: set it to the folder "
                         "holding <name>/<name>.npy face stacks (e.g. <release>/openface_face), "
                         "or set faces.source: detect")
    if not os.path.isdir(folder):
        raise SystemExit(f"config key faces.folder: {folder} is not a folder; point it at the face folder root "
                         "(holding <name>/<name>.npy or <name>/*.bmp) or set faces.source: detect")
    return folder


def has_face_folder(root: str | os.PathLike, name: str) -> bool:
    """True when <root>/<name> exists in any form (a symlink or file there is refused later, as a QC row)."""
    if not name or "/" in name or "\\" in name or "\0" in name:
        return True  # read_video_faces turns it into a QC row
    return os.path.lexists(Path(root) / name)


def _open_regular(path: Path) -> Any:
    """Open a regular file without blocking on a FIFO swapped in after the check."""
    _regular(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    f = os.fdopen(fd, "rb")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        f.close()
        raise FolderProblem(f"not a regular file: {path.name}")
    return f


def read_stack(path: Path) -> np.ndarray:
    """A <name>.npy stack -> uint8 [N, H, W, 3] or [N, H, W] (header checked before any data is read)."""
    with _open_regular(path) as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)  # the header only; an object dtype is refused below
        except ValueError as e:
            raise FolderProblem(f"{path.name} is not a .npy file ({e})") from e
        if dtype != np.uint8:
            raise FolderProblem(f"{path.name} has dtype {dtype}, expected uint8")
        if not (len(shape) == 4 and shape[3] in (1, 3) or len(shape) == 3):
            raise FolderProblem(f"{path.name} has shape {shape}, expected [N, H, W, 3] or [N, H, W]")
        if len(shape) == 4 and shape[3] == 1:
            shape = shape[:3]
        if not all(0 < s <= MAX_SIDE for s in shape[1:3]):
            raise FolderProblem(f"{path.name} has crops of {shape[1]}x{shape[2]} px (1..{MAX_SIDE} allowed)")
        nbytes = int(np.prod(shape, dtype=np.int64))
        if nbytes > MAX_NPY_BYTES:
            raise FolderProblem(f"{path.name} holds {nbytes >> 20} MB, over the {MAX_NPY_BYTES >> 20} MB cap")
        data = f.read(nbytes)
        if len(data) != nbytes:
            raise FolderProblem(f"{path.name} is cut short ({len(data)} of {nbytes} bytes)")
    arr = np.frombuffer(data, np.uint8).reshape(shape[::-1] if fortran else shape)
    return arr.transpose(*range(arr.ndim)[::-1]) if fortran else arr


def list_images(d: Path) -> list[Path]:
    """Per-frame image files of a video folder, in name order (OpenFace numbers them)."""
    out: list[Path] = []
    with os.scandir(d) as it:
        for e in it:
            if e.name.lower().endswith(IMAGE_EXTS):
                out.append(d / e.name)
                if len(out) > MAX_IMAGES:
                    raise FolderProblem(f"{d} holds over {MAX_IMAGES} images")
    return sorted(out)


def read_image(path: Path) -> np.ndarray:
    """One per-frame image -> uint8 RGB [H, W, 3] (OpenFace writes BGR .bmp files; cv2 reads them as such)."""
    with _open_regular(path) as f:
        data = f.read(MAX_IMAGE_BYTES + 1)
    if len(data) > MAX_IMAGE_BYTES:
        raise FolderProblem(f"{path.name} is over {MAX_IMAGE_BYTES >> 20} MB")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FolderProblem(f"{path.name} is not a readable image")
    if not all(0 < s <= MAX_SIDE for s in img.shape[:2]):
        raise FolderProblem(f"{path.name} is {img.shape[1]}x{img.shape[0]} px (1..{MAX_SIDE} allowed)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def even_pick(n: int, k: int) -> np.ndarray:
    """Indices of at most k of n frames, evenly spread (all of them when n <= k)."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def to_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Grayscale or RGB crop -> uint8 [size, size, 3] RGB."""
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[:2] != (size, size):
        shrink = img.shape[0] > size or img.shape[1] > size
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return np.ascontiguousarray(img, np.uint8)


def read_video_faces(root: str | os.PathLike, name: str, p: dict) -> dict | None:
    """One video's face folder -> the worker's result {qc, frames, crops} (see worker.collect), or None
    when the video has no face folder. A folder that cannot be used is a not-ok QC row `face folder: ...`."""
    t0 = time.perf_counter()
    S = p["crop_size"]
    empty = np.zeros((0, S, S, 3), np.uint8)
    root = Path(root)
    try:
        d = video_dir(root, name)
        if d is None:
            return None
        stack = d / f"{name}.npy"
        if os.path.lexists(stack):
            if os.path.commonpath([os.path.realpath(stack), os.path.realpath(root)]) != os.path.realpath(root):
                raise FolderProblem(f"{stack} leads outside {root}")
            arr = read_stack(stack)
            idx = even_pick(len(arr), p["max_frames"])
            crops = [to_crop(arr[i], S) for i in idx]
        else:
            files = list_images(d)
            idx = even_pick(len(files), p["max_frames"])
            for f in (files[i] for i in idx):
                if os.path.commonpath([os.path.realpath(f), os.path.realpath(root)]) != os.path.realpath(root):
                    raise FolderProblem(f"{f} leads outside {root}")
            crops = [to_crop(read_image(files[i]), S) for i in idx]
    except FolderProblem as e:
        return {"qc": qc_row(name, f"face folder: {e}"[:300], decoder=DECODER, seconds=time.perf_counter() - t0),
                "frames": [], "crops": empty}
    except OSError as e:
        return {"qc": qc_row(name, f"face folder: {type(e).__name__}: {e.strerror or e}"[:300], decoder=DECODER,
                             seconds=time.perf_counter() - t0), "frames": [], "crops": empty}
    nan4, nan10 = [float("nan")] * 4, [float("nan")] * 10
    # OpenFace crops are already aligned; the source frame's box, landmarks and time are not in the folder
    rows = [dict(name=name, frame_index=int(i), time_s=float("nan"), box=nan4, landmarks=nan10, score=1.0,
                 track_id=0, aligned=True) for i in idx]
    qc = qc_row(name, "" if rows else "no face", ok=bool(rows), frames_decoded=len(rows),
                frames_with_face=len(rows), n_crops=len(rows), mean_score=1.0 if rows else float("nan"),
                decoder=DECODER, seconds=time.perf_counter() - t0, notes=f"face folder {d}"[:300])
    return {"qc": qc, "frames": rows, "crops": np.stack(crops) if crops else empty}

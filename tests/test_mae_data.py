"""expmae.mae.data.ShardCrops: the one lazy reader of the face shards' crops that the image (FaceCropDataset)
and the video (clips.FaceClipDataset) pretraining datasets share."""
from __future__ import annotations

import pickle

import numpy as np

from expmae.faces.store import load_face_shard
from expmae.mae.clips import FaceClipDataset, build_clip_samples
from expmae.mae.data import FaceCropDataset, ShardCrops, build_samples
from fixtures.mae_shards import write_shard


def shards(tmp_path) -> list:
    return [write_shard(tmp_path / "s0", {"a": 5, "b": 3}, size=64), write_shard(tmp_path / "s1", {"c": 4}, seed=1,
                                                                                 size=64)]


def test_rows_read_as_copies_of_the_cache(tmp_path) -> None:
    folders = shards(tmp_path)
    crops = ShardCrops(folders)
    want = np.load(folders[1] / "crops.npy")
    one, several = crops.read(1, 2), crops.read(1, np.array([3, 0, 0]))
    assert np.array_equal(one, want[2]) and np.array_equal(several, want[[3, 0, 0]])
    assert not isinstance(several, np.memmap)  # a copy: augmenting it never touches the map


def test_a_pickled_dataset_carries_no_crops_even_after_a_read(tmp_path) -> None:
    """DataLoader workers receive the dataset pickled: a map opened by an earlier read in the parent must not
    travel with it (numpy pickles a memmap as a full copy of the array), and the worker reopens its own."""
    folders = shards(tmp_path)
    frames = [load_face_shard(f)[1] for f in folders]
    image = FaceCropDataset(folders, build_samples(frames, 0), 32)
    video = FaceClipDataset(folders, build_clip_samples(frames, 4), 32)
    crops_bytes = sum((f / "crops.npy").stat().st_size for f in folders)
    for ds in (image, video):
        first = ds[0, 7]  # opens the maps in this process
        blob = pickle.dumps(ds)
        assert len(blob) < crops_bytes / 4, (type(ds).__name__, len(blob), crops_bytes)
        assert np.array_equal(pickle.loads(blob)[0, 7].numpy(), first.numpy())  # same sample, same augmentation


def test_both_datasets_read_the_same_crops(tmp_path) -> None:
    folders = shards(tmp_path)
    frames = [load_face_shard(f)[1] for f in folders]
    video = FaceClipDataset(folders, build_clip_samples(frames, 4), 32)
    image_crops = ShardCrops(folders)
    for idx, (shard, *rows) in enumerate(video.samples):
        assert np.array_equal(video.clip(idx), np.stack([image_crops.read(int(shard), int(r)) for r in rows]))

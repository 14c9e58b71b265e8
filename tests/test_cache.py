"""CacheError removes a damaged cache file or shard folder so a rerun rebuilds it, and nothing else: a
string handed to read_features where a list was meant once made it delete "/" (its first character)."""
from __future__ import annotations

import os

import numpy as np
import pytest

from expmae.cache import CacheError, removable
from expmae.io import read_features, write_features


def test_a_lone_path_is_refused_not_iterated(tmp_path):
    p = tmp_path / "s.parquet"
    write_features(p, ["a"], np.ones((1, 2), np.float32), np.ones(1, bool), {})
    with pytest.raises(TypeError, match="list of shard paths"):
        read_features(str(p))
    assert p.exists() and read_features([str(p)])[0] == ["a"]


def test_only_cache_files_and_shard_folders_are_removed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shard = tmp_path / "results" / "faces" / "s00000"
    shard.mkdir(parents=True)
    (shard / "crops.npy").write_bytes(b"x")
    (shard / "frames.parquet").write_bytes(b"x")
    keep = tmp_path / "results" / "faces" / "notes"
    keep.mkdir()
    (keep / "plan.md").write_text("mine")
    (keep / "sub").mkdir()
    assert removable(shard) and not removable(keep) and not removable(tmp_path)
    assert not removable(tmp_path.parent) and not removable(type(tmp_path)("/"))
    with pytest.raises(SystemExit, match="not removed"):
        raise CacheError(keep, "bad")
    assert (keep / "plan.md").exists()
    with pytest.raises(SystemExit, match="removed;"):
        raise CacheError(shard, "bad")
    assert not shard.exists()
    target = tmp_path / "elsewhere.parquet"
    target.write_bytes(b"data")
    link = tmp_path / "results" / "link.parquet"
    os.symlink(target, link)
    with pytest.raises(SystemExit):
        raise CacheError(link, "bad")
    assert target.read_bytes() == b"data" and not link.is_symlink()


def test_the_root_is_never_removed():
    err = CacheError("/", "a character of a path string", remove=True)
    assert "not removed" in str(err.code)


def test_remove_cache_says_whether_it_removed(tmp_path):
    from expmae.cache import remove_cache

    f = tmp_path / "a" / "b" / "s00000.parquet"
    f.parent.mkdir(parents=True)
    f.write_bytes(b"x")
    assert remove_cache(f) and not f.exists()
    assert not remove_cache(f)  # gone already
    assert not remove_cache(tmp_path / "a") and (tmp_path / "a" / "b").is_dir()  # has a subfolder: not a cache

"""The shard registry is verified on every read and recovered without reassigning shards (expmae/registry.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from expmae import ingest, registry
from expmae.io import write_table


def _registered(tmp_path: Path, n: int = 10, shard_size: int = 4) -> tuple[Path, pd.DataFrame]:
    """A real registry over n empty videos (3 shards) plus each shard's ingest manifest."""
    vids = tmp_path / "v"
    vids.mkdir()
    for i in range(n):
        (vids / f"clip{i:02d}.mp4").write_bytes(b"x" * i)
    res = tmp_path / "res"
    reg = ingest.update_registry(res, [str(vids)], ingest.DEFAULT_EXTS, shard_size)
    for shard in reg["shard"].unique():
        ingest.write_shard(res / "ingest" / "registry.parquet", shard, res / "ingest" / f"{shard}.parquet")
    return res, reg


def _silent_flip(path: Path, reg: pd.DataFrame) -> bytes:
    """The file with the first one-bit flip that a plain read (pd.read_parquet, no checksums) takes
    without complaint but reads as different data: what the registry reader used to do."""
    raw = path.read_bytes()
    for i in range(4, len(raw) - 8):
        flipped = bytearray(raw)
        flipped[i] ^= 0x04
        path.write_bytes(bytes(flipped))
        try:
            plain = pd.read_parquet(path)
        except Exception:  # noqa: BLE001 — refused: not the case sought
            continue
        if not plain[reg.columns].astype(str).equals(reg.astype(str)):
            return bytes(flipped)
    raise AssertionError("no silent flip found")


def _recover(res: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "expmae.registry", "recover", "--results", str(res)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow  # child processes / ~800 reads: seconds on a loaded box
def test_every_byte_flipped_is_refused_or_reads_back_the_same(tmp_path):
    res, reg = _registered(tmp_path)
    path = res / "ingest" / "registry.parquet"
    raw = path.read_bytes()
    silent, refused = [], 0
    for i in range(0, len(raw), 3):  # every third byte, the flipped bit cycling through all eight positions
        flipped = bytearray(raw)
        flipped[i] ^= 1 << (i % 8)
        path.write_bytes(bytes(flipped))
        try:
            got = registry.load(path)
        except registry.RegistryError:
            refused += 1
            continue
        if not got.astype(str).equals(reg.astype(str)):
            silent.append(i)
    assert not silent, f"{len(silent)} of {len(raw)} flips read back different data (first at byte {silent[0]})"
    assert refused > len(raw) // 6


@pytest.mark.parametrize("damage", ["truncate", "delete", "flip"])
def test_damaged_registry_is_named_then_recovered_from_its_copy(tmp_path, damage):
    res, reg = _registered(tmp_path)
    path = res / "ingest" / "registry.parquet"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "delete":
        path.unlink()
    else:
        path.write_bytes(_silent_flip(path, reg))
    with pytest.raises(registry.RegistryError, match=r"registry\.parquet.*python -m expmae\.registry recover"):
        ingest.plan_registry(res, [str(tmp_path / "v")], ingest.DEFAULT_EXTS, 4)
    p = _recover(res)
    assert p.returncode == 0 and "restored from registry.copy.parquet" in p.stdout, p.stderr
    assert ingest.read_registry(res).astype(str).equals(reg.astype(str))


def test_both_copies_lost_rebuilds_from_the_shard_manifests(tmp_path):
    res, reg = _registered(tmp_path)
    main, copy = registry.paths(res)
    main.unlink()
    copy.write_bytes(b"garbage")
    p = _recover(res)
    assert p.returncode == 0 and "rebuilt from 3 shard manifests" in p.stdout, p.stderr
    got = ingest.read_registry(res)
    assert got.set_index("name")["shard"].to_dict() == reg.set_index("name")["shard"].to_dict()
    # a video added later goes to a new shard, the old ones unchanged
    (tmp_path / "v" / "late.mp4").write_bytes(b"y")
    new, _ = ingest.plan_registry(res, [str(tmp_path / "v")], ingest.DEFAULT_EXTS, 4)
    assert new.set_index("name").loc["late", "shard"] == "s00003"


def test_a_copy_that_disagrees_with_the_manifests_is_not_used(tmp_path):
    res, reg = _registered(tmp_path)
    main, copy = registry.paths(res)
    main.unlink()
    moved = reg.copy()
    moved.loc[moved["name"] == "clip00", "shard"] = "s00002"  # a consistent file, but not what was computed
    write_table(copy, moved)
    p = _recover(res)
    assert "clip00" in p.stdout and "rebuilt from 3 shard manifests" in p.stdout, p.stdout + p.stderr
    assert ingest.read_registry(res).set_index("name").loc["clip00", "shard"] == "s00000"


def test_unknown_role_blames_the_registry_not_the_config(tmp_path):
    res, reg = _registered(tmp_path)
    write_table(res / "ingest" / "registry.parquet", reg.assign(role="trbin"))  # no digest: an older writer
    with pytest.raises(registry.RegistryError) as err:
        ingest.plan_registry(res, [str(tmp_path / "v")], ingest.DEFAULT_EXTS, 4)
    assert "registry.parquet is corrupt (unknown role 'trbin')" in str(err.value)
    assert "data.videos" not in str(err.value)


def test_fresh_results_start_empty_and_a_deleted_registry_with_shards_is_refused(tmp_path):
    assert registry.read(tmp_path / "none").empty
    res, _ = _registered(tmp_path)
    registry.paths(res)[0].unlink()
    registry.paths(res)[1].unlink()
    with pytest.raises(registry.RegistryError, match="is missing but shards were registered"):
        registry.read(res)


def test_shard_job_refuses_a_corrupt_registry_with_the_fix(tmp_path):
    res, _ = _registered(tmp_path)
    path = res / "ingest" / "registry.parquet"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SystemExit, match="expmae.registry recover"):
        ingest.write_shard(path, "s00000", tmp_path / "m.parquet")

"""expmae.train.plan: config resolution of modalities and combinations, config errors naming their key."""
import pytest

from expmae.train import plan

CFG = {"classify": {"feature_sets": ["expmae", "egemaps", "minilm"]},
       "fuse": {"heads": ["fbp", "late"], "modalities": {"visual": ["expmae", "expmae_video"], "audio": ["egemaps"]},
                "combinations": [["audio", "visual"], ["audio", "minilm"]]}}


def test_modalities_ignore_unconfigured_sets_and_keep_unlisted_ones(capsys, monkeypatch):
    monkeypatch.setattr(plan, "_noted", set())  # the note prints once per process: an earlier test may have had it
    mods = plan.modalities(CFG)
    # expmae_video is not trained -> ignored with a note; minilm is in no modality -> its own
    assert mods == {"visual": ["expmae"], "audio": ["egemaps"], "minilm": ["minilm"]}
    assert "expmae_video" in capsys.readouterr().err
    combos = plan.combinations(CFG)
    assert combos == {"all": ["visual", "audio", "minilm"], "visual+audio": ["visual", "audio"],
                      "audio+minilm": ["audio", "minilm"]}
    assert plan.feature_sets_of(CFG, "visual+audio") == ["expmae", "egemaps"]
    assert plan.fused_name("all", "fbp") == "fbp" and plan.fused_name("audio+minilm", "late") == "late[audio+minilm]"
    assert plan.modalities({"classify": {"feature_sets": ["a", "b"]}, "fuse": {}}) == {"a": ["a"], "b": ["b"]}


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"fuse\.combinations\[0\]"):
        plan.combinations({**CFG, "fuse": {**CFG["fuse"], "combinations": [["audio", "smell"]]}})
    with pytest.raises(ValueError, match="fuse.heads"):
        plan.heads({"fuse": {"heads": ["fbp", "magic"]}})

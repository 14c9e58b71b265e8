"""Resources shape the jobs' commands: several GPUs for MAE pretraining -> torchrun DDP."""
import re

import pytest

from fixtures.workflow import smk

pytestmark = pytest.mark.e2e


def pretrain_commands(wd, *extra):
    out = smk(wd, "-n", "-p", "--configfile", "config_tiny.yaml", *extra)
    text = out.stdout + out.stderr
    return re.findall(r"^\s*(?:Shell command:\s*)?(\S+(?: --\S+)* -m expmae\.mae\.pretrain) ", text, re.M)


def test_pretraining_uses_one_ddp_process_per_gpu(wf):
    plain = pretrain_commands(wf)
    assert plain and all(c == "python -m expmae.mae.pretrain" for c in plain), plain
    multi = pretrain_commands(wf, "--set-resources", "mae_pretrain:gpu=4", "mae_video_pretrain:gpu=2")
    assert sorted(multi) == ["torchrun --standalone --nproc_per_node=2 -m expmae.mae.pretrain",
                             "torchrun --standalone --nproc_per_node=4 -m expmae.mae.pretrain"], multi

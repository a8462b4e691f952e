"""The same commands under torchrun (torch.distributed, gloo on CPU): results equal one
process's, whatever the world size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from optodesign.train.rundir import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not available in this build")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return env


def _run(args: list[str], *, nproc: int = 1) -> subprocess.CompletedProcess:
    if nproc == 1:
        cmd = [sys.executable, "-m", "optodesign", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={nproc}", "-m", "optodesign", *args]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_train_on_two_gloo_ranks_equals_one_process(tiny_d2nn_config, tmp_path: Path) -> None:
    # batch 32 over 2 ranks: 16 images each, the same global batch as one process;
    # train_samples 120 makes the last batch 24 (uneven shares are weighted exactly)
    cfg = tiny_d2nn_config("psq-lt", extra="")
    text = cfg.read_text().replace("train_samples = 128", "train_samples = 120")
    cfg.write_text(text)
    one, two = tmp_path / "one", tmp_path / "two"
    _run(["train", str(cfg), "--out", str(one), "--device", "cpu", "--quiet"])
    out = _run(["train", str(cfg), "--out", str(two), "--device", "cpu", "--quiet"], nproc=2)
    assert out.stdout.count("trained d2nn") == 1  # only rank 0 prints
    a = load_checkpoint(one / "checkpoint.pt")["stack"]
    b = load_checkpoint(two / "checkpoint.pt")["stack"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-4), k
    la, lb = np.load(one / "design.npz"), np.load(two / "design.npz")
    assert np.array_equal(la["levels"], lb["levels"])
    ma = json.loads((one / "design.json").read_text())["metrics"]
    mb = json.loads((two / "design.json").read_text())["metrics"]
    assert ma["accuracy"] == mb["accuracy"]
    info = json.loads((two / "run.json").read_text())
    assert info["world_size"] == 2 and info["sessions"][-1]["world_size"] == 2
    hist_a = (one / "metrics.csv").read_text().splitlines()
    hist_b = (two / "metrics.csv").read_text().splitlines()
    assert hist_a[0] == hist_b[0] and len(hist_a) == len(hist_b)


def _strip_timings(obj):
    if isinstance(obj, dict):
        return {k: _strip_timings(v) for k, v in obj.items()
                if k not in ("seconds", "samples_per_second", "device")}
    if isinstance(obj, list):
        return [_strip_timings(v) for v in obj]
    return obj


@pytest.mark.slow
def test_verify_on_two_gloo_ranks_writes_the_same_report(tmp_path: Path) -> None:
    """Monte-Carlo chunks and sweep points split over 2 ranks merge to the same report."""
    import tomllib

    from optodesign.export.fab import export_design
    from optodesign.process import load_process
    from optodesign.train.config import parse_config
    from optodesign.train.trainer import Trainer

    from .conftest import TINY_D2NN

    text = TINY_D2NN.format(method="psq-li").replace(
        "levels = 4", 'levels = 4\nprocess = "thz-printed"').replace(
        "epochs = 2", "epochs = 1").replace("train_samples = 128", "train_samples = 64")
    res = Trainer(parse_config(tomllib.loads(text)), tmp_path / "run", progress=False).run()
    fab = tmp_path / "fab"
    export_design(res.design, load_process("thz-printed"), fab, design_dir=tmp_path / "run",
                  plot=False)
    # 40 samples of 64 test images: 3 Monte-Carlo chunks of at most 16, split over the ranks
    # (--fast: the sharding is the same under any simulation model; the drawn one is slow)
    args = ["verify", str(fab), "--samples", "40", "--sweep-samples", "3", "--device", "cpu",
            "--quiet", "--fast"]
    _run([*args, "--report", str(tmp_path / "r1")])
    _run([*args, "--report", str(tmp_path / "r2")], nproc=2)
    r1 = json.loads((tmp_path / "r1" / "report.json").read_text())
    r2 = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert _strip_timings(r1) == _strip_timings(r2)

"""Safety of train / refine / quickstart: loading never runs code, nothing that is not ours is
overwritten, a resumed run keeps its config, files respect the umask, and bad options are one
line with exit code 2, checked before any expensive work."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from optodesign.cli import main
from optodesign.design import Design
from optodesign.errors import UserError
from optodesign.fileio import atomic_write_text
from optodesign.tasks import HologramSetup

from .conftest import TINY_D2NN

pytestmark = pytest.mark.filterwarnings(
    "ignore::optodesign.optics.propagation.SamplingWarning")

CONFIG = TINY_D2NN.format(method="psq-li")


def cli(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_one_line_exit_2(res, *needles: str) -> str:
    """Exit 2, exactly one line on stderr (``error: ...``) naming ``needles``, no traceback."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in res.output
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): sha(p) for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """One tiny run (1 epoch) trained under umask 0o022; tests copy it before changing it."""
    root = tmp_path_factory.mktemp("trained")
    cfg = root / "tiny.toml"
    cfg.write_text(CONFIG)
    old = os.umask(0o022)
    try:
        res = cli("train", cfg, "--out", root / "run", "--quiet", "--epochs", "1",
                  "--device", "cpu")
    finally:
        os.umask(old)
    assert res.exit_code == 0, res.output
    return cfg, root / "run"


@pytest.fixture
def run_copy(trained, tmp_path: Path) -> tuple[Path, Path]:
    cfg, run = trained
    shutil.copy(cfg, tmp_path / "tiny.toml")
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "tiny.toml", tmp_path / "run"


# ----------------------------------------------------------------------------- 1: no code runs
class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def test_crafted_checkpoint_is_refused_and_never_executed(run_copy, tmp_path) -> None:
    cfg, run = run_copy
    marker = tmp_path / "PWNED"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["extra"] = _Evil(marker)
    torch.save(state, run / "checkpoint.pt")
    before = snapshot(run)
    res = cli("train", cfg, "--out", run, "--resume", "--quiet", "--epochs", "2")
    line = assert_one_line_exit_2(res, "checkpoint.pt", "refused", "system")
    assert "nothing was loaded" in line
    assert not marker.exists()
    assert snapshot(run) == before  # nothing rewritten


def test_truncated_or_foreign_checkpoint_is_one_line(run_copy) -> None:
    cfg, run = run_copy
    ckpt = run / "checkpoint.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    res = cli("train", cfg, "--out", run, "--resume", "--quiet")
    assert_one_line_exit_2(res, "checkpoint.pt", "truncated or damaged")
    torch.save({"weights": torch.zeros(3)}, ckpt)
    res = cli("train", cfg, "--out", run, "--resume", "--quiet")
    assert_one_line_exit_2(res, "not an optodesign checkpoint", "missing epoch")


def test_checkpoint_holds_only_tensors_and_plain_data(trained) -> None:
    from optodesign.train.adaptive import raw_from_checkpoint

    _, run = trained
    state = torch.load(run / "checkpoint.pt", weights_only=True)  # the strict loader
    assert set(state) - {"best"} == {"epoch", "stack", "optimizer", "rng", "history", "run"}
    assert state["run"] == json.loads((run / "run.json").read_text())
    # what benchmarks/quantization.py and adaptive precision read: the kept epoch's raw
    raw = raw_from_checkpoint(run)
    kept = state["best"]["stack"] if "best" in state else state["stack"]
    assert len(raw) == 2 and tuple(raw[0].shape) == (32, 32)
    assert torch.equal(raw[0], kept["raw.0"])


# ----------------------------------------------------------------------------- 2: overwrites
def test_train_refuses_an_existing_run_without_resume_or_force(run_copy) -> None:
    cfg, run = run_copy
    before = snapshot(run)
    res = cli("train", cfg, "--out", run, "--quiet")
    assert_one_line_exit_2(res, "--out", "already holds a run", "--resume", "--force")
    assert snapshot(run) == before
    res = cli("train", cfg, "--out", run, "--quiet", "--resume", "--force")
    assert_one_line_exit_2(res, "--force", "--resume")
    assert snapshot(run) == before


def test_force_replaces_the_run_and_its_stale_outputs_but_nothing_else(run_copy) -> None:
    cfg, run = run_copy
    (run / "refined").mkdir()
    for name in ("design.json", "design.npz"):
        shutil.copy(run / name, run / "refined" / name)
    (run / "plots" / "stale.png").write_bytes(b"not ours")
    (run / "notes.txt").write_text("mine")
    old_design = sha(run / "design.json")
    res = cli("train", cfg, "--out", run, "--quiet", "--force", "--seed", "7", "--epochs", "1")
    assert res.exit_code == 0, res.output
    assert "--force: removed the earlier run" in res.stdout
    assert not (run / "refined").exists()  # the old design's refinement is gone
    assert (run / "notes.txt").read_text() == "mine"  # not a file a run writes
    assert (run / "plots" / "stale.png").read_bytes() == b"not ours"
    assert sha(run / "design.json") != old_design
    info = json.loads((run / "run.json").read_text())
    assert info["config"]["seed"] == 7 and info["sessions"] == [
        {"epochs": 1, "resume": False, "start_epoch": 0, "world_size": 1}]


def test_clear_run_outputs_removes_only_run_files(tmp_path) -> None:
    from optodesign.train.rundir import clear_run_outputs

    run = tmp_path / "run"
    (run / "plots").mkdir(parents=True)
    (run / "refined" / "refined").mkdir(parents=True)
    for name in ("config.toml", "run.json", "checkpoint.pt", "metrics.csv", "design.npz",
                 "design.json", "plots/levels.png", "plots/confusion.png",
                 "refined/design.json", "refined/design.npz", "refined/refined/design.json",
                 "keep.txt", "refined/refined/keep.txt"):
        (run / name).write_text("x")
    removed = clear_run_outputs(run)
    left = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert left == ["keep.txt", "refined", "refined/refined", "refined/refined/keep.txt"]
    assert run / "plots" in removed and run / "design.json" in removed


def test_train_refuses_a_directory_that_is_not_a_run(tiny_d2nn_config, tmp_path) -> None:
    cfg = tiny_d2nn_config()
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"jpeg")
    res = cli("train", cfg, "--out", other, "--quiet")
    assert_one_line_exit_2(res, "--out", "holds no run", "--force")
    fab = tmp_path / "fab"
    fab.mkdir()
    for name in ("manifest.json", "design.json", "design.npz", "layer1.gds"):
        (fab / name).write_text("{}")
    before = snapshot(fab)
    res = cli("train", cfg, "--out", fab, "--quiet")
    assert_one_line_exit_2(res, "--out", "fab directory")
    assert snapshot(fab) == before
    assert sorted(p.name for p in other.iterdir()) == ["holiday.jpg"]


def test_resume_refuses_a_changed_config_and_records_new_epochs(run_copy) -> None:
    cfg, run = run_copy
    before = snapshot(run)
    changed = cfg.parent / "changed.toml"
    changed.write_text(CONFIG.replace("lr = 0.1", "lr = 0.2").replace("[detectors]\nsize = 3",
                                                                       "[detectors]\nsize = 4"))
    res = cli("train", changed, "--out", run, "--resume", "--quiet")
    line = assert_one_line_exit_2(res, "--resume", "train.lr", "detectors.size",
                                  "train.epochs")
    assert "run 0.1, now 0.2" in line
    res = cli("train", cfg, "--out", run, "--resume", "--quiet", "--seed", "4")
    assert_one_line_exit_2(res, "seed (run 3, now 4)")
    assert snapshot(run) == before
    # the epochs may change, and the change is recorded
    res = cli("train", cfg, "--out", run, "--resume", "--quiet", "--epochs", "2")
    assert res.exit_code == 0, res.output
    info = json.loads((run / "run.json").read_text())
    assert info["epochs"] == 2
    assert info["sessions"] == [
        {"epochs": 1, "resume": False, "start_epoch": 0, "world_size": 1},
        {"epochs": 2, "resume": True, "start_epoch": 1, "world_size": 1}]
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 3
    # but not fall below the epochs already trained
    before = snapshot(run)
    res = cli("train", cfg, "--out", run, "--resume", "--quiet", "--epochs", "1")
    assert_one_line_exit_2(res, "--epochs", "already trained 2 epochs")
    assert snapshot(run) == before


def test_config_hash_ignores_only_epochs_and_spelling() -> None:
    import tomllib

    from optodesign.train.config import parse_config
    from optodesign.train.rundir import config_sha256, normalized_config

    def h(text: str) -> str:
        return config_sha256(normalized_config(parse_config(tomllib.loads(text))))

    base = h(CONFIG)
    assert h(CONFIG.replace("epochs = 2", "epochs = 9")) == base
    assert h(CONFIG.replace('distance = "2 cm"', 'distance = "20 mm"')) == base
    assert h(CONFIG.replace("lr = 0.1", "lr = 0.10001")) != base
    assert h(CONFIG.replace("seed = 3", "seed = 4")) != base


def test_run_files_respect_the_umask(trained, tmp_path) -> None:
    _, run = trained  # trained under umask 0o022
    files = [p for p in run.rglob("*") if p.is_file()]
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert {"checkpoint.pt", "design.json", "metrics.csv", "levels.png"} <= {p.name for p in files}
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640


# ----------------------------------------------------------------------------- refine --out
def tiny_hologram(path: Path, seed: int = 0) -> Path:
    from optodesign.data.targets import text_target

    n = 16
    rng = np.random.default_rng(seed)
    Design(setup=HologramSetup(), wavelength=532e-9, pitch=2e-6,
           levels=rng.integers(0, 2, (1, n, n)), level_tables=np.array([1, -1], complex),
           distances=(0.0, 100e-6), target=text_target("A", (n, n))).save(path)
    return path


def test_refine_out_never_replaces_what_is_not_its_own(tmp_path) -> None:
    run = tiny_hologram(tmp_path / "holo")
    res = cli("refine", run, "--budget", "20", "--quiet")
    assert res.exit_code == 0, res.output
    note = Design.load(run / "refined").extra["refine"][-1]
    assert note["source"] == {"design.npz": sha(run / "design.npz"),
                              "design.json": sha(run / "design.json")}
    # refining the same design again replaces its own earlier refinement
    res = cli("refine", run, "--budget", "30", "--quiet")
    assert res.exit_code == 0, res.output
    assert Design.load(run / "refined").extra["refine"][-1]["budget"] == {"evaluations": 30}

    other = tiny_hologram(tmp_path / "other", seed=1)
    (other / "config.toml").write_text("task = 'hologram'\n")
    fab = tmp_path / "fab"
    fab.mkdir()
    for name in ("manifest.json", "design.json", "design.npz"):
        shutil.copy(other / name if name != "manifest.json" else other / "design.json",
                    fab / name)
    misc = tmp_path / "misc"
    misc.mkdir()
    (misc / "x.txt").write_text("x")
    for out, what in ((other, "a training run"), (fab, "fab directory"),
                      (misc, "1 entry")):
        before = snapshot(out)
        res = cli("refine", run, "--budget", "5", "--quiet", "--out", out)
        assert_one_line_exit_2(res, "--out", what, "--force")
        assert snapshot(out) == before
    # a refinement of a different design (a stale refined/ after retraining)
    shutil.copytree(run / "refined", other / "refined")
    res = cli("refine", other, "--budget", "5", "--quiet")
    assert_one_line_exit_2(res, "--out", "refinement of a different design")
    res = cli("refine", other, "--budget", "5", "--quiet", "--force")
    assert res.exit_code == 0, res.output
    assert Design.load(other / "refined").extra["refine"][-1]["source"]["design.npz"] == sha(
        other / "design.npz")


# ----------------------------------------------------------------------------- 3: bad input
@pytest.mark.parametrize("seed", ["-1", "-5", "abc", "1.5", str(2**64)])
def test_bad_seed_is_one_line(tiny_d2nn_config, tmp_path, seed) -> None:
    res = cli("train", tiny_d2nn_config(), "--out", tmp_path / "r", "--seed", seed, "--quiet")
    assert_one_line_exit_2(res, "--seed", "integer")
    assert not (tmp_path / "r").exists()
    run = tiny_hologram(tmp_path / "holo")
    res = cli("refine", run, "--seed", seed, "--quiet")
    assert_one_line_exit_2(res, "--seed", "integer")
    assert not (run / "refined").exists()


def test_refine_library_refuses_negative_seed() -> None:
    from optodesign.errors import UserError
    from optodesign.refine import Objective, direct_binary_search

    d = Design(setup=HologramSetup(), wavelength=532e-9, pitch=2e-6,
               levels=np.zeros((1, 8, 8), int),
               level_tables=np.array([1, -1], complex), distances=(0.0, 50e-6),
               target=np.ones((8, 8)))
    with pytest.raises(UserError, match="seed: must be an integer >= 0"):
        Objective(d, seed=-1)
    with pytest.raises(UserError, match="seed: must be an integer >= 0"):
        direct_binary_search(Objective(d), d.levels, budget=1, seed=-1)


@pytest.mark.parametrize("args", [["--epochs", "0"], ["--epochs", "x"]])
def test_bad_epochs_is_one_line(tiny_d2nn_config, tmp_path, args) -> None:
    res = cli("train", tiny_d2nn_config(), "--out", tmp_path / "r", "--quiet", *args)
    assert_one_line_exit_2(res, "--epochs")


def _no_work(monkeypatch) -> None:
    """Make the expensive steps fail loudly: a bad --out must be refused before them."""
    from optodesign.evaluate import Evaluator
    from optodesign.train.trainer import Trainer

    def boom(*a, **k):
        raise AssertionError("expensive work started before --out was checked")

    monkeypatch.setattr(Trainer, "__init__", boom)
    monkeypatch.setattr(Evaluator, "from_design", boom)


@pytest.mark.parametrize("where", ["file", "under-file"])
def test_invalid_out_is_refused_before_any_work(tiny_d2nn_config, tmp_path, monkeypatch,
                                                where) -> None:
    cfg = tiny_d2nn_config()
    run = tiny_hologram(tmp_path / "holo")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "sub"
    _no_work(monkeypatch)
    assert_one_line_exit_2(cli("train", cfg, "--out", out, "--quiet"), "--out")
    assert_one_line_exit_2(cli("refine", run, "--out", out, "--quiet"), "--out")
    assert_one_line_exit_2(cli("quickstart", "--out", out, "--quiet", "--tiny"), "--out")
    assert blocker.read_text() == "x"


def test_quickstart_refuses_foreign_subdirectories_before_any_work(tmp_path,
                                                                     monkeypatch) -> None:
    from optodesign.commands.quickstart import check_quickstart_out

    out = tmp_path / "qs"
    (out / "fab").mkdir(parents=True)
    (out / "fab" / "thesis.tex").write_text("years of work")
    _no_work(monkeypatch)
    res = cli("quickstart", "--out", out, "--quiet", "--tiny")
    assert_one_line_exit_2(res, "--out", "fab")
    assert (out / "fab" / "thesis.tex").read_text() == "years of work"
    res = cli("quickstart", "--out", tmp_path / "new", "--samples", "0", "--tiny")
    assert_one_line_exit_2(res, "--samples")
    # a manifest.json alone does not make a fab directory ours (export's own rule)
    (out / "fab" / "thesis.tex").unlink()
    (out / "fab" / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match="--out"):
        check_quickstart_out(out)
    # what an earlier quickstart wrote may be replaced (and its run is cleared first)
    (out / "fab" / "manifest.json").unlink()
    (out / "run").mkdir()
    (out / "run" / "design.json").write_text("{}")
    assert check_quickstart_out(out) is True
    (out / "unrelated.txt").write_text("next to it, untouched")
    assert check_quickstart_out(out) is True

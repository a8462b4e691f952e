"""Faults of the environment, not of the input: one line, the right exit code, nothing lost."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from click.testing import CliRunner

from optodesign.cli import main


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(res) -> str:
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert "Traceback" not in res.output, res.output
    assert len(lines) == 1, res.output
    return lines[0]


def _raise(exc: BaseException):
    def fail(*_a, **_k):
        raise exc
    return fail


@pytest.mark.parametrize(("exc", "code", "words"), [
    (OSError(errno.ENOSPC, "No space left on device", "run/design.npz"), 2,
     "no space left"),
    (MemoryError(), 2, "out of memory"),
    (KeyboardInterrupt(), 130, "interrupted"),
])
def test_environment_faults_are_one_line(tiny_d2nn_config, tmp_path: Path, monkeypatch,
                                         exc: BaseException, code: int, words: str) -> None:
    from optodesign.train import trainer

    monkeypatch.setattr(trainer.Trainer, "run", _raise(exc))
    res = run("train", tiny_d2nn_config(), "--out", tmp_path / "run", "--quiet")
    assert res.exit_code == code
    assert words in one_line(res)


def test_unwritable_out_is_refused_before_any_work(tiny_d2nn_config, tmp_path: Path,
                                                   monkeypatch) -> None:
    from optodesign.train import trainer

    monkeypatch.setattr(trainer.Trainer, "__init__", _raise(AssertionError("work started")))
    # /proc refuses new files even to root, where os.access() would say yes
    res = run("train", tiny_d2nn_config(), "--out", "/proc/optodesign-run", "--quiet")
    assert res.exit_code == 2
    assert "--out" in one_line(res)

"""A run directory: what a training run writes, how it is recognised, and its identity.

``run.json`` and the checkpoint record the normalised config and its SHA-256, so that
``--resume`` refuses a changed config; :func:`check_run_dir` and :func:`clear_run_outputs`
decide, before any work, whether ``--out`` may be written (``--resume`` / ``--force``).
Checkpoints hold tensors and plain data only and are read with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from .config import Config

log = logging.getLogger(__name__)

__all__ = ["load_checkpoint", "normalized_config", "config_sha256", "config_differences",
           "read_resume_state", "check_run_dir", "clear_run_outputs", "is_run_dir", "plain",
           "RUN_FILES", "RUN_FORMAT"]

#: files a run writes in its directory (``plots/`` and ``refined/`` hold the rest)
RUN_FILES = ("config.toml", "run.json", "checkpoint.pt", "metrics.csv", "design.npz",
             "design.json")
#: files :func:`optodesign.train.plots.plot_run` writes under ``plots/``
PLOT_FILES = ("levels.png", "curves.png", "outputs.png", "confusion.png")
#: what ``optodesign refine`` writes (by default under ``refined/``)
DESIGN_FILES = ("design.npz", "design.json")
#: any of these makes a directory a run directory (unless it is a fab directory)
RUN_MARKERS = ("design.json", "checkpoint.pt", "config.toml", "run.json")
RUN_FORMAT = "optodesign-run/1"
_CHECKPOINT_KEYS = ("epoch", "stack", "optimizer", "rng", "history")


# ---------------------------------------------------------------------------- run identity
def normalized_config(cfg: Config) -> dict[str, Any]:
    """The parsed config as plain JSON data: what a run's result depends on.

    ``train.epochs`` is left out (a resume may extend a run) and so is the raw TOML
    (``source``): two files that parse to the same values are the same config. Lengths are
    in metres, tuples become lists.
    """
    d = dataclasses.asdict(cfg)
    d.pop("source", None)
    d["train"].pop("epochs", None)
    q = cfg.quantization
    qsrc = cfg.source.get("quantization", {}) if isinstance(cfg.source, Mapping) else {}
    if cfg.is_complex and q.process is not None and "levels" not in qsrc:
        d["quantization"]["levels"] = None  # every meta-atom (build.process_table)
    return json.loads(json.dumps(d, sort_keys=True, default=str))


def config_sha256(normalized: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of a normalised config."""
    text = json.dumps(normalized, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any],
                       prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted field, old value, new value)`` for every field where two configs differ."""
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, name + ".")
        elif a != b:
            out.append((name, a, b))
    return out


def _short(value: Any, width: int = 32) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def plain(obj: Any) -> Any:
    """Numpy scalars and arrays as Python numbers and lists (for weights-only checkpoints)."""
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    return obj


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a trainer's ``checkpoint.pt`` on the CPU, never running code.

    ``torch.load(..., weights_only=True)`` admits only tensors and plain data; anything else
    (a pickled object whose ``__reduce__`` would call a function) is refused before it is
    built. The structure is checked too.

    Raises:
        UserError: one line: the file is missing, truncated or damaged, holds something other
            than tensors and plain data, or is not an optodesign checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"it names {m.group(1)}" if m else "objects other than tensors and plain data"
        raise UserError(f"{path}: refused: not a checkpoint optodesign writes ({what}); a "
                        f"checkpoint holds only tensors and plain data, nothing was loaded"
                        ) from None
    except Exception as e:  # truncated zip, bad magic, ... come in many types
        first = (str(e).strip().splitlines() or [""])[0][:120]
        raise UserError(f"{path}: cannot read the checkpoint (truncated or damaged: "
                        f"{type(e).__name__}: {first})") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not an optodesign checkpoint (no dict at the top)")
    missing = [k for k in _CHECKPOINT_KEYS if k not in state]
    if missing:
        raise UserError(f"{path}: not an optodesign checkpoint (missing {', '.join(missing)})")
    ok = (isinstance(state["epoch"], int) and not isinstance(state["epoch"], bool)
          and state["epoch"] >= 0 and isinstance(state["stack"], dict)
          and isinstance(state["optimizer"], dict) and isinstance(state["history"], list)
          and isinstance(state["rng"], Tensor) and state["rng"].dtype == torch.uint8)
    if not ok:
        raise UserError(f"{path}: not an optodesign checkpoint (epoch, stack, optimizer, rng "
                        f"or history has the wrong type)")
    return state


def read_resume_state(out_dir: str | Path, cfg: Config) -> dict[str, Any]:
    """The checkpoint of the run in ``out_dir``, if ``cfg`` may continue it.

    Only ``train.epochs`` may differ from the run's config, and it may not fall below the
    epochs already trained. Checkpoints of runs before ``run.json`` existed are compared with
    the run's ``config.toml`` (all but ``seed``, which a ``--seed`` may have overridden).

    Raises:
        UserError: one line naming the differing fields, or the checkpoint's problem.
    """
    out = Path(out_dir)
    state = load_checkpoint(out / "checkpoint.pt")
    norm = normalized_config(cfg)
    run = state.get("run")
    if isinstance(run, dict) and isinstance(run.get("config"), dict):
        diffs = ([] if run.get("config_sha256") == config_sha256(norm)
                 else config_differences(run["config"], norm) or [("config", "?", "?")])
    else:
        diffs = []
        toml = out / "config.toml"
        if toml.is_file():
            from .config import load_config

            old = normalized_config(load_config(toml))
            diffs = [d for d in config_differences(old, norm) if d[0] != "seed"]
        else:
            log.warning("%s: an older checkpoint without its config; cannot check that the "
                        "config is unchanged", out / "checkpoint.pt")
    if diffs:
        shown = ", ".join(f"{f} (run {_short(a)}, now {_short(b)})" for f, a, b in diffs[:4])
        more = f" and {len(diffs) - 4} more" if len(diffs) > 4 else ""
        raise UserError(f"--resume: the config differs from the run's in {shown}{more}; only "
                        f"train.epochs (--epochs) may change (train into a new --out, or "
                        f"--force to replace the run)")
    done = state["epoch"] + 1
    if cfg.train.epochs < done:
        raise UserError(f"--epochs: the run has already trained {done} epochs; --resume needs "
                        f"train.epochs (or --epochs) >= {done}, got {cfg.train.epochs}")
    return state


# ---------------------------------------------------------------------------- run directory
def is_run_dir(path: str | Path) -> bool:
    """A directory a training run wrote (a marker file, and not a fab directory)."""
    p = Path(path)
    return (p.is_dir() and any((p / m).exists() for m in RUN_MARKERS)
            and not (p / "manifest.json").exists())


def check_run_dir(out_dir: str | Path, *, resume: bool = False, force: bool = False) -> bool:
    """Check, before any work, that training may write to ``out_dir``; nothing is changed.

    An absent or empty directory is fine. With ``resume`` the run's checkpoint must exist.
    Otherwise a non-empty directory is refused: a run (``--resume`` continues it, ``--force``
    replaces it) or anything else (``--force`` writes beside what is there).

    Returns:
        True when ``out_dir`` holds an earlier run that :func:`clear_run_outputs` must remove
        before training (``force`` over a run).

    Raises:
        UserError: one line naming the option to use.
    """
    out = Path(out_dir)
    if resume and force:
        raise UserError("--force: cannot be combined with --resume (--resume continues the "
                        "run in --out, --force replaces it)")
    if resume:
        if not (out / "checkpoint.pt").is_file():
            raise UserError(f"--resume: no checkpoint at {out / 'checkpoint.pt'}")
        return False
    if not out.is_dir():
        return False
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return False
    if is_run_dir(out):
        if force:
            return True
        found = ", ".join(m for m in RUN_MARKERS if (out / m).exists())
        raise UserError(f"--out: {out} already holds a run ({found}); pass --resume to "
                        f"continue it or --force to replace it")
    if force:
        return False
    what = ("a fab directory (manifest.json)" if "manifest.json" in entries else
            f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, e.g. {entries[0]!r}")
    raise UserError(f"--out: {out} is not empty and holds no run (no design.json, "
                    f"checkpoint.pt or config.toml; it holds {what}); choose a new or empty "
                    f"directory, or pass --force")


def clear_run_outputs(out_dir: str | Path) -> list[Path]:
    """Remove what an earlier run wrote in ``out_dir``: its files, plots, ``refined/`` and
    TensorBoard event files.

    Only files of the names a run (and ``optodesign refine``'s default output) writes are
    removed; ``plots/`` and ``refined/`` go only when nothing else is left in them.

    Returns:
        The removed paths.
    """
    out = Path(out_dir)
    removed: list[Path] = []

    def rm(path: Path) -> None:
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path)

    def rmdir_if_empty(path: Path) -> None:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
            removed.append(path)

    def clear_refined(d: Path) -> None:
        if not d.is_dir() or d.is_symlink():
            return
        clear_refined(d / "refined")
        for name in DESIGN_FILES:
            rm(d / name)
        rmdir_if_empty(d)

    for name in RUN_FILES:
        rm(out / name)
    plots = out / "plots"
    if plots.is_dir() and not plots.is_symlink():
        for name in PLOT_FILES:
            rm(plots / name)
        rmdir_if_empty(plots)
    clear_refined(out / "refined")
    tb = out / "tensorboard"  # event files of --tensorboard (events.out.tfevents.*)
    if tb.is_dir() and not tb.is_symlink():
        for p in tb.glob("events.out.tfevents.*"):
            rm(p)
        rmdir_if_empty(tb)
    return removed

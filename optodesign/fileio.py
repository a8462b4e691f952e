"""Atomic writes: a file is either the old one or the complete new one, never half; a
directory (a fab directory, a verify report) is built aside and swapped in under a lock."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_json", "sha256_file", "read_toml",
           "current_umask", "replace_dir", "Staging", "foreign_entries"]

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left untouched.
    The temporary name keeps the suffix so writers that dispatch on it (numpy, gdstk) work.
    The new file gets the mode an ordinary ``open(path, "w")`` would give (``0o666`` less the
    umask), not the private ``0o600`` of :func:`tempfile.mkstemp`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def current_umask() -> int:
    """The process's file-creation mask (read without changing it where /proc allows)."""
    try:
        with open("/proc/self/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but brief)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON deterministically (sorted keys, fixed indent) and atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def sha256_file(path: str | os.PathLike[str]) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_toml(text: str, *, where: str) -> dict[str, Any]:
    """Parse TOML text; invalid TOML is a one-line ConfigError naming ``where``."""
    import tomllib

    from .errors import ConfigError

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML ({e})") from None


def read_toml_text(path: str | os.PathLike[str], *, what: str) -> tuple[str, dict[str, Any]]:
    """A TOML file's text and its parsed contents; a missing, unreadable or invalid file is a
    one-line ConfigError.

    Args:
        path: the file.
        what: how the message names it (e.g. ``"config file"``, ``"--errors"``).
    """
    from .errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read {what} ({e})") from None
    return text, parse_toml(text, where=str(path))


def read_toml(path: str | os.PathLike[str], *, what: str) -> dict[str, Any]:
    """Parse a TOML file (see :func:`read_toml_text`)."""
    return read_toml_text(path, what=what)[1]


# ---------------------------------------------------------------------------- directories
# A directory replaced as a whole (export's fab directory, verify's report): built aside,
# swapped in under a lock, keeping entries its owner did not write.
#: hidden entries our own staging leaves beside a directory NAME: ``.NAME.<8 chars>.tmp`` (a
#: directory being written), ``.NAME.<8 chars>.old`` (the previous one, during a swap)
_STAGING_RE = r"\.{name}\.[a-z0-9_]{{8}}\.(tmp|old)"
_ANY_STAGING = re.compile(r"^\..+\.([a-z0-9_]{8}\.(tmp|old)|lock)$")


@dataclass
class Staging:
    """A directory being built for :func:`replace_dir`.

    Attributes:
        path: the hidden temporary directory to write into.
        kept: names of the entries of the previous directory that its owner did not write;
            they are carried into the new directory unchanged at the swap.
    """

    path: Path
    kept: list[str] = field(default_factory=list)


@contextlib.contextmanager
def replace_dir(out: str | Path, *, option: str,
                owned: Callable[[Path], set[str]]) -> Iterator[Staging]:
    """Build a directory in a hidden temporary directory beside ``out`` and swap it in.

    ``out`` is replaced only when it is absent, empty, or ``owned(out)`` recognises it as a
    previous output of the same writer: ``owned`` returns the names it wrote (they are
    replaced) or raises :class:`UserError` (nothing is touched). Every other entry (a verify
    report a user put inside a fab directory, notes) is carried into the new directory
    unchanged (hard links, else copies) at the swap, so a re-run never loses it; a carried
    name that the new directory also writes is refused.

    While it runs, ``.NAME.lock`` beside ``out`` is locked (``fcntl.flock``): a second writer
    of the same ``out`` fails at once with one line. Under the lock, staging directories left
    by killed runs (``.NAME.*.tmp``, ``.NAME.*.old``) are removed; a previous directory that a
    killed swap left as ``.NAME.*.old`` with ``out`` missing is first put back.

    Args:
        out: the directory to create or replace.
        option: how error messages name it (``"out"``, ``"--report"``).
        owned: ``owned(out) -> names`` (see above), called only for a non-empty ``out``.

    Yields:
        A :class:`Staging`: write into ``staging.path``; on a clean exit the result replaces
        ``out`` atomically (one rename), on an exception it is removed and ``out`` is left
        untouched.

    Raises:
        UserError: ``out`` is a file, is not recognised, cannot be created, is locked, or a
            kept entry collides with a new file.
    """
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise UserError(f"{option}: {out} exists and is not a directory")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option}: cannot create {out} ({e.strerror or type(e).__name__})"
                        ) from None
    with _dir_lock(out, option):
        _clean_staging(out)
        kept = foreign_entries(out, owned)
        try:
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
        except OSError as e:
            raise UserError(f"{option}: cannot create {out} ({e.strerror or type(e).__name__})"
                            ) from None
        staging = Staging(tmp, kept)
        try:
            yield staging
            _share(tmp)
            _carry(out, tmp, kept, option)
            _swap_into_place(tmp, out)
        except BaseException:
            _remove(tmp)
            raise


def foreign_entries(out: Path, owned: Callable[[Path], set[str]]) -> list[str]:
    """Entries of ``out`` its writer did not write (``[]`` when absent or empty).

    Our own staging leftovers inside it (``.X.*.tmp``, ``.X.*.old``, ``.X.lock`` of a nested
    report) are neither kept nor counted.

    Raises:
        UserError: from ``owned``, when ``out`` is not a previous output.
    """
    if not out.is_dir():
        return []
    names = sorted(p.name for p in out.iterdir() if not _ANY_STAGING.match(p.name))
    if not names:
        return []
    own = owned(out)
    return [n for n in names if n not in own]


@contextlib.contextmanager
def _dir_lock(out: Path, option: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``.NAME.lock`` beside ``out`` (removed afterwards).

    The file is unlinked while locked; a process that opened it before checks after locking
    that the path still names the file it locked, else retries (the usual lock-file dance).
    Where ``fcntl`` or ``flock`` is not available, runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover (not POSIX)
        yield
        return
    path = out.parent / f".{out.name}.lock"
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"{option}: cannot create the lock file {path} "
                            f"({e.strerror or type(e).__name__})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UserError(f"{option}: {out} is being written by another process (lock "
                            f"{path} is held); run one at a time") from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
                os.close(fd)
                raise
            log.warning("cannot lock %s (%s); writing %s unlocked", path, e.strerror, out)
            try:
                yield
            finally:
                os.close(fd)
            return
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # unlinked by its previous holder: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _clean_staging(out: Path) -> None:
    """Remove what killed runs left beside ``out`` (called under the lock)."""
    pattern = re.compile("^" + _STAGING_RE.format(name=re.escape(out.name)) + "$")
    found = [p for p in out.parent.iterdir() if pattern.match(p.name)]
    olds = [p for p in found if p.name.endswith(".old")]
    tmps = [p for p in found if p.name.endswith(".tmp")]
    if olds and not os.path.lexists(out):
        if len(olds) == 1:
            # killed between the two renames of a swap: the previous directory is the .old
            log.warning("restoring %s from %s (a previous run was interrupted)", out, olds[0])
            os.rename(olds[0], out)
        else:  # ambiguous: leave them to the user
            log.warning("%s is missing and %d previous copies lie beside it; not touched",
                        out, len(olds))
        olds = []
    for p in tmps + olds:
        log.info("removing %s (left by an interrupted run)", p)
        _remove(p)


def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)


def _share(tmp: Path) -> None:
    """mkdtemp/mkstemp create private (0700/0600) entries; a fab directory is for sharing."""
    mask = current_umask()
    os.chmod(tmp, 0o777 & ~mask)
    for f in tmp.iterdir():
        if f.is_file() and not f.is_symlink():
            os.chmod(f, 0o666 & ~mask)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(src, dst)


def _carry(out: Path, tmp: Path, kept: list[str], option: str) -> None:
    """Put the kept entries of ``out`` into ``tmp`` unchanged (``out`` is not modified)."""
    for name in kept:
        src, dst = out / name, tmp / name
        if os.path.lexists(dst):
            raise UserError(f"{option}: {src} was not written by the previous run, and this "
                            f"run writes {name} too; move it out of {out} first")
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif src.is_dir():
            shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(src), str(dst))


def _swap_into_place(tmp: Path, out: Path) -> None:
    if not os.path.lexists(out):
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old, out)
        raise
    _remove(old)

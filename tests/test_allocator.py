"""The CLI tunes glibc malloc for commands that compute, and only when the user has not chosen.

Each case runs ``python -m optodesign`` in a fresh process (the allocator is per process) and
asks the hidden ``debug-allocator`` command what was done and whether glibc now serves a
64 MiB block by mmap: glibc's default does (its mmap threshold never exceeds 32 MiB), the
tuned thresholds keep it in the heap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from optodesign.allocator import MALLOC_OPT_OUT, malloc_tuning_blocker
from optodesign.cli import COMPUTE_COMMANDS


def _glibc() -> bool:
    try:
        return sys.platform == "linux" and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


needs_glibc = pytest.mark.skipif(not _glibc(), reason="glibc malloc only")

_CLEAN = {k: v for k, v in os.environ.items()
          if k not in ("GLIBC_TUNABLES", "LD_PRELOAD", MALLOC_OPT_OUT)
          and not (k.startswith("MALLOC_") and k.endswith("_"))}


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optodesign", *args], env={**_CLEAN, **env},
                          capture_output=True, text=True, timeout=60)


def _debug(**env: str) -> dict:
    proc = _run("debug-allocator", **env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@needs_glibc
def test_computing_command_tunes_malloc_in_its_own_process() -> None:
    out = _debug()
    assert out["status"].startswith("tuned"), out
    assert out["mmapped_64mib"] is False


@needs_glibc
def test_opt_out_keeps_glibc_defaults() -> None:
    out = _debug(**{MALLOC_OPT_OUT: "1"})
    assert "opted out" in out["status"]
    assert out["mmapped_64mib"] is True


@needs_glibc
def test_users_glibc_tunables_are_respected() -> None:
    # the user asks for a *low* threshold: tuning over it would keep the block in the heap
    out = _debug(GLIBC_TUNABLES="glibc.malloc.mmap_threshold=131072")
    assert "set by the user" in out["status"]
    assert out["mmapped_64mib"] is True


@needs_glibc
def test_unrelated_glibc_tunables_do_not_block_tuning() -> None:
    out = _debug(GLIBC_TUNABLES="glibc.rtld.optional_static_tls=512")
    assert out["status"].startswith("tuned"), out
    assert out["mmapped_64mib"] is False


@needs_glibc
@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_a_replacement_allocator_is_left_alone(tmp_path: Path) -> None:
    """A replacement malloc whose file name says nothing (so only the symbol check sees it)."""
    src = tmp_path / "shim.c"
    src.write_text("#include <stddef.h>\nextern void *__libc_malloc(size_t);\n"
                   "void *malloc(size_t n) { return __libc_malloc(n); }\n")
    lib = tmp_path / "libshim.so"
    assert "malloc" not in str(lib)  # else the LD_PRELOAD name check answers first
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True,
                   timeout=60)
    out = _debug(LD_PRELOAD=str(lib))
    assert out["status"] == "another allocator replaces glibc malloc"
    assert out["mmapped_64mib"] is True


def test_help_and_non_computing_commands_do_not_tune_or_import_torch() -> None:
    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from optodesign import allocator, cli\n"
        "r = CliRunner()\n"
        "top = r.invoke(cli.main, ['--help'])\n"
        "export = r.invoke(cli.main, ['export'])\n"  # missing arguments: a usage error
        "print(json.dumps({'help': top.output, 'export_exit': export.exit_code,\n"
        "                  'status': allocator.malloc_status, 'torch': 'torch' in sys.modules}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_CLEAN, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert "train" in out["help"] and "debug-allocator" not in out["help"]
    assert out["export_exit"] == 2
    assert out["status"] is None and out["torch"] is False


@needs_glibc
def test_in_process_callers_keep_their_allocator() -> None:
    """CliRunner (tests, notebooks) runs commands inside a long-lived host process: tuning it
    there would keep every freed batch in that host's heap for the rest of its life."""
    code = (
        "from click.testing import CliRunner\n"
        "from optodesign import cli\n"
        "print(CliRunner().invoke(cli.main, ['debug-allocator']).output)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=_CLEAN, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out == {"status": None, "mmapped_64mib": True}


def test_python_dash_m_is_the_cli() -> None:
    proc = _run("--version")
    assert proc.returncode == 0 and "optodesign" in proc.stdout


@pytest.mark.parametrize(("env", "platform", "libc", "blocked_by"), [
    ({}, "linux", "glibc 2.36", None),
    ({MALLOC_OPT_OUT: "1"}, "linux", "glibc 2.36", "opted out"),
    ({MALLOC_OPT_OUT: "0"}, "linux", "glibc 2.36", None),
    ({MALLOC_OPT_OUT: ""}, "linux", "glibc 2.36", None),
    ({}, "darwin", None, "not glibc"),
    ({}, "win32", None, "not glibc"),
    ({}, "linux", None, "not glibc"),  # musl
    ({"LD_PRELOAD": "/usr/lib/libtcmalloc_minimal.so.4"}, "linux", "glibc 2.36", "preloaded"),
    ({"LD_PRELOAD": "libjemalloc.so.2"}, "linux", "glibc 2.36", "preloaded"),
    ({"LD_PRELOAD": "libfoo.so"}, "linux", "glibc 2.36", None),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, "linux", "glibc 2.36", "GLIBC_TUN"),
    ({"GLIBC_TUNABLES": "glibc.cpu.x86_shstk=off"}, "linux", "glibc 2.36", None),
    ({"MALLOC_MMAP_THRESHOLD_": "65536"}, "linux", "glibc 2.36", "MALLOC_MMAP_THRESHOLD_"),
])
def test_when_the_allocator_is_left_alone(env: dict[str, str], platform: str, libc: str | None,
                                          blocked_by: str | None) -> None:
    why = malloc_tuning_blocker(env, platform, libc)
    if blocked_by is None:
        assert why is None
    else:
        assert why is not None and blocked_by in why


def test_the_computing_commands_exist() -> None:
    from optodesign.cli import COMMANDS

    assert COMPUTE_COMMANDS <= set(COMMANDS)
    assert "export" not in COMPUTE_COMMANDS

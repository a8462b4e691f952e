"""``manifest.json``: what a fab directory holds and how to read it back.

Layout of the JSON (``format = "optodesign.fab/1"``; lengths in metres unless a key says
otherwise; keys sorted, so equal inputs give equal bytes)::

    format, created_by
    process      {name, kind, file, sha256, toml, wavelength, n, kappa, n0, references}
    units        {length: "m", phase: "rad", gds_unit, gds_precision, stl: "mm"}
    wavelength, pitch, shape [ny, nx], n_layers, n_levels, distances (K + 1)
    base_thickness               base plate / substrate under the structure
    origin [x0, y0]              lower-left corner of pixel (0, 0) in GDS and STL
    stl_offset [x, y]            the ``offset`` given to the STL writer/reader
    gds_layers                   [[layer, datatype], ...] of masks / levels / pillars
    levels       per design layer: [{level, phase, t [re, im], height | depth | size, ...}]
    layers       per design layer: {index, top_cell, files {fmt: {name, sha256, bytes}}, drc}
    files        every other file: {name: {sha256, bytes}} (design.json, design.npz, drc.*, png)
    design       {task, n_layers, n_levels, files {design.json, design.npz: sha256}}
    drc          {passed, file}
    spacers      optional: [{between [k, k+1], height, file, sha256}]
    notes        list of strings (skipped outputs and why)

:func:`load_manifest` reads and checks it (format tag, field types, every file name a plain
name inside the fab directory: ``../x`` or ``/etc/passwd`` is refused); :func:`check_files`
recomputes every checksum.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fileio import atomic_write_json, sha256_file

__all__ = ["FORMAT", "file_entry", "write_manifest", "load_manifest", "check_files",
           "validate_manifest", "listed_files", "plain_name"]

FORMAT = "optodesign.fab/1"


def file_entry(path: Path) -> dict[str, Any]:
    """``{name, sha256, bytes}`` of a written file (name relative to the fab directory)."""
    return {"name": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_manifest(path: str | Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` atomically with sorted keys (reproducible bytes)."""
    path = Path(path)
    atomic_write_json(path, manifest)
    return path


def load_manifest(fab_dir: str | Path) -> dict[str, Any]:
    """Read ``<fab_dir>/manifest.json`` (or the file itself), check its format tag and the types
    of the fields readers use (:func:`validate_manifest`).

    Raises:
        UserError: missing, not JSON, another format, or malformed (one line naming the field).
    """
    p = Path(fab_dir)
    if p.is_dir():
        p = p / "manifest.json"
    if not p.is_file():
        raise UserError(f"{p}: not found (run `optodesign export` to create a fab directory)")
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise UserError(f"{p}: format {got!r} is not {FORMAT!r}")
    validate_manifest(m, p)
    return m


def plain_name(name: Any, where: str) -> str:
    """``name`` if it is a plain file name inside the fab directory, else a one-line error.

    Refused: anything but a non-empty string, ``.``/``..``, a path separator (``/``, ``\\``),
    an absolute or drive path, a NUL byte. The manifest may only point at its own files.
    """
    ok = (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name
          and "\\" not in name and "\0" not in name and ":" not in name
          and not os.path.isabs(name))
    if not ok:
        raise UserError(f"{where}: file name {name!r} is not a plain file name inside the fab "
                        "directory (no '/', '..', or absolute path)")
    return name


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_sha(v: Any) -> bool:
    return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def validate_manifest(m: dict[str, Any], path: str | Path = "manifest.json") -> None:
    """Check the types of every field a reader of the fab directory uses.

    Raises:
        UserError: ``<path>: <field>: <what is wrong>``, one line.
    """

    def need(cond: bool, field: str, what: str) -> None:
        if not cond:
            raise UserError(f"{path}: {field}: {what}")

    def is_list(v: Any, n: int | None = None) -> bool:
        return isinstance(v, list) and (n is None or len(v) == n)

    for key in ("layers", "levels", "shape", "n_layers", "n_levels", "pitch", "wavelength",
                "distances"):
        need(key in m, key, "missing (not a complete manifest written by optodesign export)")
    need(is_list(m["shape"], 2) and all(isinstance(v, int) and not isinstance(v, bool)
                                        and v > 0 for v in m["shape"]),
         "shape", f"must be [ny, nx] of positive integers, got {m['shape']!r}")
    for key in ("n_layers", "n_levels"):
        v = m[key]
        need(isinstance(v, int) and not isinstance(v, bool) and v > 0, key,
             f"must be a positive integer, got {v!r}")
    for key in ("pitch", "wavelength"):
        need(_is_number(m[key]) and m[key] > 0, key, f"must be a length > 0 in metres, got "
                                                     f"{m[key]!r}")
    need(is_list(m["distances"]) and all(_is_number(v) for v in m["distances"]), "distances",
         "must be a list of numbers (metres)")
    for key in ("base_thickness",):
        if key in m:
            need(_is_number(m[key]), key, f"must be a number (metres), got {m[key]!r}")
    for key in ("origin", "stl_offset"):
        if key in m:
            need(is_list(m[key], 2) and all(_is_number(v) for v in m[key]), key,
                 f"must be [x, y] numbers (metres), got {m[key]!r}")
    if "process" in m:
        need(isinstance(m["process"], dict), "process", "must be an object")
        for key in ("toml", "name", "sha256", "file"):
            if key in m["process"]:
                need(isinstance(m["process"][key], str), f"process.{key}", "must be a string")
    need(is_list(m["layers"]), "layers", "must be a list (one entry per design layer)")
    for i, layer in enumerate(m["layers"]):
        need(isinstance(layer, dict), f"layers[{i}]", "must be an object")
        files = layer.get("files", {})
        need(isinstance(files, dict), f"layers[{i}].files",
             "must be an object {format: {name, sha256, bytes}}")
        for fmt, info in files.items():
            where = f"layers[{i}].files.{fmt}"
            need(isinstance(info, dict), where, "must be an object {name, sha256, bytes}")
            need("name" in info, f"{where}.name", "missing")
            plain_name(info["name"], f"{path}: {where}.name")
            need(_is_sha(info.get("sha256")), f"{where}.sha256",
                 "must be a SHA-256 (64 lowercase hex digits)")
    files = m.get("files", {})
    need(isinstance(files, dict), "files", "must be an object {name: {sha256, bytes}}")
    for name, info in files.items():
        plain_name(name, f"{path}: files")
        need(isinstance(info, dict) and _is_sha(info.get("sha256")), f"files.{name}",
             "must be an object with a SHA-256 (64 lowercase hex digits)")
    spacers = m.get("spacers", [])
    need(is_list(spacers), "spacers", "must be a list")
    for i, sp in enumerate(spacers):
        need(isinstance(sp, dict) and "file" in sp, f"spacers[{i}]",
             "must be an object {file, sha256, ...}")
        plain_name(sp["file"], f"{path}: spacers[{i}].file")
        need(_is_sha(sp.get("sha256")), f"spacers[{i}].sha256",
             "must be a SHA-256 (64 lowercase hex digits)")
    need(is_list(m["levels"]), "levels", "must be a list (one level table per design layer)")
    for i, rows in enumerate(m["levels"]):
        need(is_list(rows), f"levels[{i}]", "must be a list of level rows")
        for j, row in enumerate(rows):
            where = f"levels[{i}][{j}]"
            need(isinstance(row, dict), where, "must be an object")
            need(is_list(row.get("t"), 2) and all(_is_number(v) for v in row["t"]),
                 f"{where}.t", "must be [re, im] numbers")
            for key in ("height", "size"):
                if key in row:
                    need(_is_number(row[key]), f"{where}.{key}", "must be a number (metres)")


def listed_files(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """``(name, sha256)`` of every file a (validated) manifest lists, itself excluded."""
    m = manifest
    entries: list[tuple[str, str]] = []
    for layer in m.get("layers", []):
        for info in layer.get("files", {}).values():
            entries.append((info["name"], info["sha256"]))
    for name, info in m.get("files", {}).items():
        entries.append((name, info["sha256"]))
    for sp in m.get("spacers", []):
        entries.append((sp["file"], sp["sha256"]))
    return entries


def check_files(fab_dir: str | Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Recompute the SHA-256 of every file the manifest lists.

    Returns:
        One line per problem (missing file or checksum mismatch); empty when all match.

    Raises:
        UserError: a listed name is not a plain file name inside the fab directory.
    """
    fab = Path(fab_dir)
    m = load_manifest(fab) if manifest is None else manifest
    if manifest is not None:
        validate_manifest(m, fab / "manifest.json")
    problems = []
    for name, sha in listed_files(m):
        f = fab / name
        if not f.is_file():
            problems.append(f"{f}: missing")
        elif sha256_file(f) != sha:
            problems.append(f"{f}: SHA-256 differs from the manifest (file changed)")
    return problems

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

:func:`load_manifest` reads and checks it; :func:`check_files` recomputes every checksum.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fileio import atomic_write_json, sha256_file

__all__ = ["FORMAT", "file_entry", "write_manifest", "load_manifest", "check_files"]

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
    """Read ``<fab_dir>/manifest.json`` (or the file itself) and check its format tag.

    Raises:
        UserError: missing, not JSON, or another format.
    """
    p = Path(fab_dir)
    if p.is_dir():
        p = p / "manifest.json"
    if not p.is_file():
        raise UserError(f"{p}: not found (run `optodesign export` to create a fab directory)")
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        got = m.get("format") if isinstance(m, dict) else type(m).__name__
        raise UserError(f"{p}: format {got!r} is not {FORMAT!r}")
    return m


def check_files(fab_dir: str | Path, manifest: dict[str, Any] | None = None) -> list[str]:
    """Recompute the SHA-256 of every file the manifest lists.

    Returns:
        One line per problem (missing file or checksum mismatch); empty when all match.
    """
    fab = Path(fab_dir)
    m = load_manifest(fab) if manifest is None else manifest
    entries: list[tuple[str, str]] = []
    for layer in m.get("layers", []):
        for info in layer.get("files", {}).values():
            entries.append((info["name"], info["sha256"]))
    for name, info in m.get("files", {}).items():
        entries.append((name, info["sha256"]))
    for sp in m.get("spacers", []):
        entries.append((sp["file"], sp["sha256"]))
    problems = []
    for name, sha in entries:
        f = fab / name
        if not f.is_file():
            problems.append(f"{f}: missing")
        elif sha256_file(f) != sha:
            problems.append(f"{f}: SHA-256 differs from the manifest (file changed)")
    return problems

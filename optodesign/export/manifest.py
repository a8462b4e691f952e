"""``manifest.json``: what a fab directory holds and how to read it back.

Layout of the JSON (``format = "optodesign.fab/1"``; lengths in metres unless a key says
otherwise; keys sorted, so equal inputs give equal bytes)::

    format, created_by
    process      {name, kind, file, sha256, toml, wavelength, n, kappa, n0, references}
    units        {length: "m", phase: "rad", gds_unit, gds_precision, stl: "mm" or "um"}
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
    conventions  how to re-simulate the files (:func:`conventions`): the frame and the face
                 towards the source, the viewing convention of every plot, the reference
                 planes of the distances, the model used to train, and the task setup
                 (input encoding, detector boxes, dataset and test split) from design.json

:class:`Manifest` is the typed record both sides use: ``optodesign export`` builds one and
writes :meth:`Manifest.to_dict` (the JSON above, unchanged), :func:`load_manifest` reads and
checks it (format tag, field types, every file name a plain name inside the fab directory:
``../x`` or ``/etc/passwd`` is refused) and returns one; :func:`check_files` recomputes every
checksum.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError
from ..fileio import atomic_write_json, sha256_file

__all__ = ["FORMAT", "Manifest", "FileRecord", "LayerRecord", "ProcessRecord", "SpacerRecord",
           "file_entry", "write_manifest", "load_manifest", "check_files", "validate_manifest",
           "listed_files", "plain_name"]

FORMAT = "optodesign.fab/1"


# ---------------------------------------------------------------------------- the record
@dataclass(frozen=True)
class FileRecord:
    """One written file: its name in the fab directory, SHA-256, size, STL triangles."""

    name: str
    sha256: str
    bytes: int | None = None
    triangles: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], name: str | None = None) -> FileRecord:
        return cls(name=str(d["name"] if name is None else name), sha256=d["sha256"],
                   bytes=d.get("bytes"), triangles=d.get("triangles"))

    def to_dict(self, *, with_name: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name} if with_name else {}
        out["sha256"] = self.sha256
        if self.bytes is not None:
            out["bytes"] = self.bytes
        if self.triangles is not None:
            out["triangles"] = self.triangles
        return out


@dataclass(frozen=True)
class LayerRecord:
    """One design layer: its top cell, its files by format, its DRC summary."""

    index: int
    top_cell: str
    files: Mapping[str, FileRecord]
    drc: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerRecord:
        return cls(index=d.get("index", 0), top_cell=d.get("top_cell", ""),
                   files={f: FileRecord.from_dict(v) for f, v in d.get("files", {}).items()},
                   drc=d.get("drc", {}))

    def to_dict(self) -> dict[str, Any]:
        out = {"index": self.index, "top_cell": self.top_cell,
               "files": {f: v.to_dict() for f, v in self.files.items()}}
        if self.drc:
            out["drc"] = dict(self.drc)
        return out


@dataclass(frozen=True)
class ProcessRecord:
    """The process a fab directory was made for, with the text of its file."""

    name: str = ""
    kind: str = ""
    file: str = ""
    sha256: str = ""
    toml: str = ""
    wavelength: float | None = None
    n: float | None = None
    kappa: float | None = None
    n0: float | None = None
    references: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ProcessRecord:
        return cls(name=d.get("name", ""), kind=d.get("kind", ""), file=d.get("file", ""),
                   sha256=d.get("sha256", ""), toml=d.get("toml", ""),
                   wavelength=d.get("wavelength"), n=d.get("n"), kappa=d.get("kappa"),
                   n0=d.get("n0"), references=tuple(d.get("references", ())))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "file": self.file, "sha256": self.sha256,
                "toml": self.toml, "wavelength": self.wavelength, "n": self.n,
                "kappa": self.kappa, "n0": self.n0, "references": list(self.references)}


@dataclass(frozen=True)
class SpacerRecord:
    """A spacer frame between two layers."""

    between: tuple[int, int]
    height: float
    rim: float
    file: str
    sha256: str
    convention: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SpacerRecord:
        return cls(between=tuple(d.get("between", (0, 0))), height=d.get("height", 0.0),
                   rim=d.get("rim", 0.0), file=d["file"], sha256=d["sha256"],
                   convention=d.get("convention", ""))

    def to_dict(self) -> dict[str, Any]:
        return {"between": list(self.between), "height": self.height, "rim": self.rim,
                "file": self.file, "sha256": self.sha256, "convention": self.convention}


@dataclass(frozen=True)
class Manifest:
    """``manifest.json`` as a typed record (see the module docstring for each field).

    Optional fields are ``None`` (or empty) when an older or hand-made manifest lacks them;
    :meth:`to_dict` writes exactly the JSON layout of the format.
    """

    shape: tuple[int, int]
    n_layers: int
    n_levels: int
    pitch: float
    wavelength: float
    distances: tuple[float, ...]
    layers: tuple[LayerRecord, ...]
    levels: tuple[tuple[Mapping[str, Any], ...], ...]
    files: Mapping[str, FileRecord] = field(default_factory=dict)
    process: ProcessRecord | None = None
    format: str = FORMAT
    created_by: str = ""
    units: Mapping[str, Any] = field(default_factory=dict)
    base_thickness: float | None = None
    origin: tuple[float, float] | None = None
    stl_offset: tuple[float, float] | None = None
    gds_layers: tuple[tuple[int, int], ...] = ()
    design: Mapping[str, Any] = field(default_factory=dict)
    drc: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    spacers: tuple[SpacerRecord, ...] = ()
    conventions: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, m: Mapping[str, Any], path: str | Path = "manifest.json") -> Manifest:
        """A validated manifest (:func:`validate_manifest`; one-line UserError)."""
        validate_manifest(m, path)

        def pair(key: str) -> tuple[float, float] | None:
            return (float(m[key][0]), float(m[key][1])) if key in m else None

        return cls(
            shape=(int(m["shape"][0]), int(m["shape"][1])),
            n_layers=int(m["n_layers"]), n_levels=int(m["n_levels"]),
            pitch=float(m["pitch"]), wavelength=float(m["wavelength"]),
            distances=tuple(float(v) for v in m["distances"]),
            layers=tuple(LayerRecord.from_dict(x) for x in m["layers"]),
            levels=tuple(tuple(rows) for rows in m["levels"]),
            files={n: FileRecord.from_dict(v, name=n) for n, v in m.get("files", {}).items()},
            process=ProcessRecord.from_dict(m["process"]) if "process" in m else None,
            format=m.get("format", FORMAT), created_by=m.get("created_by", ""),
            units=m.get("units", {}),
            base_thickness=(float(m["base_thickness"]) if "base_thickness" in m else None),
            origin=pair("origin"), stl_offset=pair("stl_offset"),
            gds_layers=tuple(tuple(x) for x in m.get("gds_layers", ())),  # type: ignore[misc]
            design=m.get("design", {}), drc=m.get("drc", {}),
            notes=tuple(m.get("notes", ())),
            spacers=tuple(SpacerRecord.from_dict(x) for x in m.get("spacers", ())),
            conventions=m.get("conventions", {}),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``manifest.json``."""
        out: dict[str, Any] = {
            "format": self.format,
            "created_by": self.created_by,
            "units": dict(self.units),
            "wavelength": self.wavelength,
            "pitch": self.pitch,
            "shape": list(self.shape),
            "n_layers": self.n_layers,
            "n_levels": self.n_levels,
            "distances": list(self.distances),
            "gds_layers": [list(x) for x in self.gds_layers],
            "levels": [[dict(r) for r in rows] for rows in self.levels],
            "layers": [x.to_dict() for x in self.layers],
            "files": {n: f.to_dict(with_name=False) for n, f in self.files.items()},
            "design": dict(self.design),
            "drc": dict(self.drc),
            "notes": list(self.notes),
        }
        if self.process is not None:
            out["process"] = self.process.to_dict()
        if self.base_thickness is not None:
            out["base_thickness"] = self.base_thickness
        if self.origin is not None:
            out["origin"] = list(self.origin)
        if self.stl_offset is not None:
            out["stl_offset"] = list(self.stl_offset)
        if self.spacers:
            out["spacers"] = [s.to_dict() for s in self.spacers]
        if self.conventions:
            out["conventions"] = dict(self.conventions)
        return out

    # ------------------------------------------------------------------ readers' views
    def files_of(self, fmt: str) -> list[str] | None:
        """The file of format ``fmt`` of every layer, or ``None`` when a layer has none."""
        names = []
        for layer in self.layers:
            info = layer.files.get(fmt)
            if info is None:
                return None
            names.append(info.name)
        return names

    def level_tables(self) -> np.ndarray:
        """Complex ``(K, L)`` level tables (the ``t`` of every level row)."""
        return np.array([[complex(*r["t"]) for r in rows] for rows in self.levels],
                        dtype=np.complex128)

    def level_values(self, key: str) -> np.ndarray:
        """``(K, L)`` per-level values of the rows (``"height"``, ``"size"``), metres.

        Raises:
            KeyError, TypeError, ValueError: a row lacks a numeric ``key``.
        """
        return np.array([[float(r[key]) for r in rows] for rows in self.levels])

    def listed(self) -> list[tuple[str, str]]:
        """``(name, sha256)`` of every file the manifest lists, itself excluded."""
        entries = [(f.name, f.sha256) for layer in self.layers for f in layer.files.values()]
        entries += [(n, f.sha256) for n, f in self.files.items()]
        entries += [(s.file, s.sha256) for s in self.spacers]
        return entries


# ---------------------------------------------------------------------------- files
#: the one viewing convention of every plot (training, verify) and of this record
VIEWING = ("looking from the source towards the detector: x (column j) to the right, "
           "y (row i) downwards, row 0 at the top")


#: what each ``pixels`` value of a design means, for a third party re-simulating it
PIXEL_MODELS = {
    "cells": ("each pixel a flat-topped cell: the input and every layer are low-passed to the "
              "grid's Nyquist zone with the spectrum sinc(pitch fx) sinc(pitch fy) (FFT on a "
              "window zero-padded 2x), then sampled at the pixel centres"),
    "points": "each pixel one point sample of the input and of every layer (no filter)",
}


#: the manifest's words for each :data:`optodesign.grid.METHODS`
PROPAGATION_METHODS = {
    "asm": "band-limited angular spectrum (Matsushima & Shimobaba 2009), zero-padded",
    "rs": ("first Rayleigh-Sommerfeld integral, z exp(ikr) (1/r - ik) / (2 pi r^2) times each "
           "sample's area, summed over the window's samples (FFT linear convolution, Shen & "
           "Wang 2006); light leaving the window is lost"),
}


def conventions(*, pad: float, setup: Mapping[str, Any], pixels: str = "cells",
                oversample: int = 1, propagation: str = "asm",
                test_split: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``conventions`` record of ``manifest.json``: what a third party needs besides the
    files to re-simulate them (docs/verify.md, "Re-simulating a fab directory").

    Args:
        pad: the zero-padding factor training propagated with.
        pixels: how training modelled a pixel (:data:`optodesign.design.PIXELS`).
        oversample: samples per pixel per axis training propagated (each layer and the input
            held over them, the output intensity averaged back onto the pixels).
        propagation: how training propagated (:attr:`optodesign.grid.Grid.method`).
        setup: the task setup of design.json (input encoding, detector boxes, dataset,
            test split), copied as is.
        test_split: ``{"count": N, "sha256": ...}`` of the test images a supervised task is
            scored on (:func:`optodesign.data.datasets.split_digest`), when the dataset could
            be read at export.
    """
    out = {
        "frame": ("right-handed (x, y, z): x along columns j, y along rows i, z the direction "
                  "of propagation, from the source to the detector; x = (j - nx // 2) * pitch, "
                  "y = (i - ny // 2) * pitch: the optical axis passes through the centre of "
                  "pixel (ny // 2, nx // 2); GDS and STL use this (x, y) (origin above)"),
        "faces": ("each file's +z (the STL relief on top of its base plate; the GDS seen from "
                  "above) points towards the detector: the light enters through the base "
                  "plate / substrate. Mounted the other way round the design is mirrored"),
        "viewing": VIEWING,
        "distances": ("distances[0]: input plane to layer 1; distances[k]: layer k to layer "
                      "k + 1; distances[K]: layer K to the detector plane. Each layer is one "
                      "thin-element plane (the relief's thickness is not a propagation)"),
        "training_model": {"method": PROPAGATION_METHODS[propagation],
                           "propagation": propagation, "pad": float(pad),
                           "samples_per_pixel": int(oversample), "pixels": pixels,
                           "pixel_model": PIXEL_MODELS[pixels],
                           "transmission": "thin element: exp(i 2 pi (n - n0) h / lambda) "
                                           "exp(-2 pi kappa h / lambda) per pixel"},
        "setup": dict(setup),
    }
    if test_split:
        out["test_split"] = dict(test_split)
    return out


def file_entry(path: Path) -> FileRecord:
    """The record of a written file (name relative to the fab directory)."""
    return FileRecord(name=path.name, sha256=sha256_file(path), bytes=path.stat().st_size)


def write_manifest(path: str | Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically with sorted keys (reproducible bytes)."""
    path = Path(path)
    atomic_write_json(path, manifest.to_dict())
    return path


def load_manifest(fab_dir: str | Path) -> Manifest:
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
    return Manifest.from_dict(m, p)


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


def listed_files(manifest: Manifest) -> list[tuple[str, str]]:
    """``(name, sha256)`` of every file a manifest lists, itself excluded."""
    return manifest.listed()


def check_files(fab_dir: str | Path, manifest: Manifest | None = None) -> list[str]:
    """Recompute the SHA-256 of every file the manifest lists.

    Returns:
        One line per problem (missing file or checksum mismatch); empty when all match.

    Raises:
        UserError: a listed name is not a plain file name inside the fab directory.
    """
    fab = Path(fab_dir)
    m = load_manifest(fab) if manifest is None else manifest
    problems = []
    for name, sha in m.listed():
        plain_name(name, f"{fab / 'manifest.json'}")
        f = fab / name
        if not f.is_file():
            problems.append(f"{f}: missing")
        elif sha256_file(f) != sha:
            problems.append(f"{f}: SHA-256 differs from the manifest (file changed)")
    return problems

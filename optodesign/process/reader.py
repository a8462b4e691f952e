"""Reading process files (``layouts/*.toml``) into a validated :class:`Process`.

Every value goes through :class:`optodesign.schema.Table`, so a bad value is one line naming
the file and the field (``proc.toml: material.n: must be > 0, got -1.5``). The kind-specific
section is read by the kind's structure class (:data:`optodesign.process.kinds.KINDS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fileio import read_toml_text
from ..schema import Table
from .atoms import inline_library
from .core import Process
from .kinds import KINDS
from .spec import GdsSpec, Material, Rules

__all__ = ["load_process", "process_from_dict", "shipped_processes"]

_TOP_KEYS = {"name", "description", "kind", "wavelength", "references"}
_SECTIONS = {
    "material": {"n", "kappa", "n0"},
    "pitch": {"min", "max"},
    "rules": {"min_feature", "max_aspect_ratio", "isolated_pixels", "diagonal_necks"},
    "gds": {"unit", "precision", "layers", "text_layer", "mark_layer", "alignment_marks",
            "mark_size"},
}
_SEVERITIES = ("ignore", "warn", "error")


def _layouts_dirs() -> list[Path]:
    import optodesign

    pkg = Path(optodesign.__file__).parent
    return [pkg / "_layouts", Path(__file__).resolve().parents[2] / "layouts"]


def shipped_processes() -> list[str]:
    """Names of the process files shipped with optodesign (``layouts/*.toml``)."""
    names: set[str] = set()
    for d in _layouts_dirs():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def load_process(name_or_path: str | Path) -> Process:
    """Read and validate a process file.

    Args:
        name_or_path: a path to a ``.toml`` file, or the bare name of a shipped process
            (``"thz-printed"``), looked up in the installed ``optodesign/_layouts`` and then in
            the repository's ``layouts/``.

    Raises:
        ConfigError: unknown name (lists the shipped ones), unreadable file, unknown key,
            missing or out-of-range value — one line naming the file and the field.
    """
    raw = str(name_or_path)
    path = Path(raw).expanduser()
    looks_like_path = (isinstance(name_or_path, Path) or path.suffix == ".toml" or "/" in raw
                       or "\\" in raw)
    if looks_like_path:
        if not path.is_file():
            raise ConfigError(f"process: file {raw} not found")
    else:  # a bare name: the shipped processes first, then a file of that name
        for d in _layouts_dirs():
            cand = d / f"{raw}.toml"
            if cand.is_file():
                path = cand
                break
        else:
            if not path.is_file():
                shipped = ", ".join(shipped_processes()) or "none found"
                raise ConfigError(
                    f"process: unknown process {raw!r} (shipped: {shipped}; or give a .toml "
                    "path)"
                )
    text, data = read_toml_text(path, what="process file")
    return process_from_dict(data, source=str(path), text=text)


def _layer_pair(t: Table, key: str, value: Any) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 65535
                       for x in value)):
        raise t.error(key, f"expected [layer, datatype] integers in 0..65535, got {value!r}")
    return int(value[0]), int(value[1])


def _read_gds(g: Table) -> GdsSpec:
    unit = g.length("unit", 1e-6)
    precision = g.length("precision", 1e-9)
    if precision > unit:
        raise g.error("precision", "database unit must not exceed the user unit")
    layers: tuple[tuple[int, int], ...] = ()
    if "layers" in g:
        lv = g.raw("layers")
        if not isinstance(lv, list) or not lv:
            raise g.error("layers", "expected a list of [layer, datatype] pairs")
        layers = tuple(_layer_pair(g, "layers", x) for x in lv)
        if len(set(layers)) != len(layers):
            raise g.error("layers", f"layers must be distinct, got {lv!r}")
    return GdsSpec(
        unit=unit,
        precision=precision,
        layers=layers,
        text_layer=(_layer_pair(g, "text_layer", g.raw("text_layer"))
                    if "text_layer" in g else (100, 0)),
        mark_layer=(_layer_pair(g, "mark_layer", g.raw("mark_layer"))
                    if "mark_layer" in g else (101, 0)),
        alignment_marks=g.boolean("alignment_marks", False),
        mark_size=g.length("mark_size", None),
    )


def process_from_dict(
    data: Mapping[str, Any], *, source: str = "<dict>", text: str = ""
) -> Process:
    """Validate a parsed process file (see :func:`load_process`)."""
    src = Path(source).name if source not in ("", "<dict>") else "<process>"
    from_file = source not in ("", "<dict>") and Path(source).is_file()
    data, text = inline_library(dict(data), text, src=src,
                                base_dir=Path(source).parent if from_file else None)
    top = Table(data, _TOP_KEYS | set(_SECTIONS) | set(KINDS), src=src)
    name = top.string("name")
    kind = top.choice("kind", tuple(KINDS))
    for sec in KINDS:
        if sec in data and sec != kind:
            raise ConfigError(f"{src}: section [{sec}] does not belong to kind = {kind!r}")
    description = top.raw("description", "")
    if not isinstance(description, str):
        raise top.error("description", f"expected a string, got {description!r}")
    refs = top.raw("references", [])
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise top.error("references", "expected a list of strings")
    wavelength = top.wavelength("wavelength")
    cls = KINDS[kind]

    m = top.table("material", _SECTIONS["material"])
    n = m.number("n", low=0.0, strict_low=True)
    kappa = m.number("kappa", 0.0, low=0.0)
    n0 = m.number("n0", 1.0, low=0.0, strict_low=True)
    if cls.needs_index_contrast and n <= n0:
        raise m.error("n", f"must exceed the medium index n0 = {n0:g} for a relief "
                           f"(more material = more phase), got {n:g}")

    r = top.table("rules", _SECTIONS["rules"])
    rules = Rules(
        min_feature=r.length("min_feature"),
        max_aspect_ratio=r.number("max_aspect_ratio", math.inf, low=0.0, strict_low=True),
        isolated_pixels=r.choice("isolated_pixels", _SEVERITIES, "warn"),
        diagonal_necks=r.choice("diagonal_necks", _SEVERITIES, "error"),
    )
    gds = _read_gds(top.table("gds", _SECTIONS["gds"]))
    spec = cls.read_spec(top.table(kind, cls.section_keys))  # type: ignore[attr-defined]

    p = top.table("pitch", _SECTIONS["pitch"])
    min_default, max_default = cls.pitch_defaults(spec)  # type: ignore[arg-type]
    pitch_min = p.length("min", min_default)
    pitch_max = p.length("max", max_default)
    if pitch_min > pitch_max:
        raise p.error("min", "must not exceed pitch.max")

    return Process(
        name=name.strip(),
        description=description,
        kind=kind,
        wavelength=wavelength,
        material=Material(n=n, kappa=kappa, n0=n0),
        pitch_min=pitch_min,
        pitch_max=pitch_max,
        rules=rules,
        gds=gds,
        spec=spec,
        references=tuple(refs),
        source=source if source != "<dict>" else "",
        text=text,
    )

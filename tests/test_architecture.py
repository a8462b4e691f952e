"""Import rules that keep the architecture visible (parsed from the source, not imported)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "optodesign"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved)."""
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


RULES = [
    # (files, forbidden module prefixes, why)
    (["optics/*.py", "grid.py", "units.py"],
     ("optodesign.train", "optodesign.quantize", "optodesign.models", "optodesign.export",
      "optodesign.verify"), "physics must not know about models, training or files"),
    (["design.py", "process/*.py", "variation/*.py", "raster.py", "export/*.py",
      "verify/gds_reader.py", "verify/stl_reader.py"],
     ("torch", "optodesign.train", "optodesign.models", "optodesign.quantize"),
     "export works from the Design and the process alone, never torch modules"),
    (["quantize/*.py"], ("optodesign.optics", "optodesign.train", "optodesign.export"),
     "quantizers do not know about optics or training"),
]


@pytest.mark.parametrize(("patterns", "forbidden", "why"), RULES)
def test_import_direction(patterns: list[str], forbidden: tuple[str, ...], why: str) -> None:
    files = [p for pattern in patterns for p in sorted(PKG.glob(pattern))]
    assert files, patterns
    bad = [f"{p.relative_to(PKG)} imports {m}" for p in files for m in imported_modules(p)
           if m.startswith(forbidden)]
    assert not bad, f"{why}: {bad}"

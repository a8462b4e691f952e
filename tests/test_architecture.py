"""Import rules and size limits that keep the architecture visible.

Parsed from the source, never imported. Every exception is on an allow-list with its reason;
an entry that no longer matches anything fails too, so the list cannot rot. See
docs/architecture.md for the picture these rules protect.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.property

PKG = Path(__file__).resolve().parents[1] / "optodesign"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved), including
    imports inside functions; ``if TYPE_CHECKING:`` blocks are annotations and do not count."""
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    package = parts[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` imports are annotations, not imports
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
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


FILES = sorted(PKG.rglob("*.py"))
MODULES = {_module_name(p): p for p in FILES}

RULES = [
    # (file globs, forbidden module prefixes, why)
    (["optics/*.py", "grid.py", "units.py", "schema.py"],
     ("optodesign.train", "optodesign.quantize", "optodesign.models", "optodesign.export",
      "optodesign.verify", "optodesign.refine", "optodesign.process", "optodesign.variation"),
     "physics and units must not know about models, training, fabrication or files"),
    (["design.py", "process/*.py", "variation/*.py", "raster.py", "fabrules.py", "export/*.py",
      "verify/gds_reader.py", "verify/stl_reader.py", "tasks/record.py"],
     ("torch", "optodesign.train", "optodesign.models", "optodesign.quantize",
      "optodesign.optics"),
     "the Design, the process and export work without torch: a fab reads them with numpy"),
    (["quantize/*.py"],
     ("optodesign.optics", "optodesign.train", "optodesign.export", "optodesign.verify",
      "optodesign.process", "optodesign.tasks"),
     "quantizers do not know about optics, tasks, fabrication or training"),
    (["verify/*.py"], ("optodesign.train",),
     "verify judges the files, never the training internals"),
    (["refine/*.py"], ("optodesign.train",),
     "refine works on a Design, not on a training run"),
    (["tasks/*.py", "evaluate.py"],
     ("optodesign.train", "optodesign.export", "optodesign.verify", "optodesign.refine"),
     "a task is physics plus scoring; train, verify and refine call it, not the other way"),
    (["process/*.py", "variation/*.py"],
     ("optodesign.export", "optodesign.verify", "optodesign.refine"),
     "fabrication physics sits below export and verify, which both call it"),
]

# (file, forbidden import it may make, why) -- each entry must still match something.
ALLOWED: list[tuple[str, str, str]] = [
]


def _allowed(rel: str, module: str) -> bool:
    return any(rel == f and module.startswith(m) for f, m, _ in ALLOWED)


@pytest.mark.parametrize(("patterns", "forbidden", "why"), RULES,
                         ids=[r[2][:40] for r in RULES])
def test_import_direction(patterns: list[str], forbidden: tuple[str, ...], why: str) -> None:
    files = [p for pattern in patterns for p in sorted(PKG.glob(pattern))]
    assert files, patterns
    bad = [f"{p.relative_to(PKG)} imports {m}" for p in files for m in imported_modules(p)
           if m.startswith(forbidden) and not _allowed(str(p.relative_to(PKG)), m)]
    assert not bad, f"{why}: {bad}"


def test_allow_list_entries_are_used() -> None:
    stale = [entry for entry in ALLOWED
             if not (PKG / entry[0]).exists()
             or not any(m.startswith(entry[1]) for m in imported_modules(PKG / entry[0]))]
    assert not stale, f"allow-list entries that match nothing (remove them): {stale}"


def _import_graph() -> dict[str, set[str]]:
    return {name: {m for m in imported_modules(path) if m in MODULES and m != name}
            for name, path in MODULES.items()}


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or through others (lazy imports count:
    a cycle hidden in a function is still two rooms that cannot be understood apart)."""
    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


# Modules allowed past the size limit, each one algorithm that reads best in one place.
LONG_MODULES = {
    "export/stl.py": "the STL mesher: merged top faces, walls and their T-junction repair",
}
MAX_LINES = 600


def test_module_size() -> None:
    long = {str(p.relative_to(PKG)): n for p in FILES
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    unexplained = {f: n for f, n in long.items() if f not in LONG_MODULES}
    assert not unexplained, (f"modules over {MAX_LINES} lines (split them by room, or add one "
                             f"algorithm to LONG_MODULES with a reason): {unexplained}")
    assert set(LONG_MODULES) <= set(long), "LONG_MODULES entries now short enough: remove"


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """Source lines without comments and docstrings (the AST knows which is which)."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    doc_lines: set[int] = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            doc_lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return [(i, line.split("#", 1)[0]) for i, line in enumerate(text.splitlines(), 1)
            if i not in doc_lines]


def _switches(pattern: str, outside: str) -> list[str]:
    rx = re.compile(pattern)
    return [f"{p.relative_to(PKG)}:{i}: {line.strip()}" for p in FILES
            if not str(p.relative_to(PKG)).startswith(outside)
            for i, line in _code_lines(p) if rx.search(line)]


def test_no_task_switch_outside_the_task_modules() -> None:
    """What differs between tasks lives in optodesign/tasks/, one module per task."""
    found = _switches(r"\btask\b\s*(==|!=|\bin\b|\bnot in\b)\s*[\"'(\[{]", "tasks/")
    assert not found, found


def test_no_process_kind_switch_outside_the_process_package() -> None:
    """What differs between etch, pillars and print lives in optodesign/process/."""
    found = _switches(r"process\.kind\s*(==|!=|\bin\b|\bnot in\b)|\bkind\s*(==|!=)\s*[\"']"
                      r"(etch|pillars|print)[\"']", "process/")
    assert not found, found

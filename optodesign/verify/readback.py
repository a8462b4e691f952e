"""Rebuild what gets made from a fab directory's files alone, as physics.

:func:`read_fab` reads ``manifest.json`` (units, grid, distances, the level → height / pillar
table, the process file's text), checks the SHA-256 of every file it lists, rebuilds each
layer from its written file and turns it into a :class:`Physical` description:

* thin-element processes (``etch``, ``print``): a relief height map in metres above the base
  plate / etch floor, ``(K, ny, nx)``;
* ``pillars``: the meta-atom index and pillar size of every lattice site.

Which file is read (``source``):

``gds``  the layout is rasterised at the design pitch (a pixel belongs to the polygon covering
         its centre) into a level map, which the manifest's level table turns into heights
         (or meta-atoms). Default for ``etch`` and ``pillars``: the masks are what a mask shop
         receives, and pillars have no STL.
``stl``  the top surface of each layer's solid is sampled at the pixel centres
         (:func:`optodesign.verify.stl_reader.read_stl_heights`), measured above the base
         plate of the manifest. Default for ``print``: the STL is what the printer receives.
         STL coordinates are float32 millimetres (~1e-7 relative), so heights within
         ``1e-4`` of the smallest level step of a level height are snapped to it (the level
         is recovered exactly); heights further off are kept as read and reported.

:func:`transmissions` then applies the process physics (``Process.transmission``: phase
``2π (n − n0) h / λ`` relative to the base, amplitude ``exp(−2π κ h / λ)``; pillars: the
meta-atom table's ``t``), so a freshly exported design reproduces its trained transmissions —
and, through :class:`optodesign.evaluate.Evaluator`, its trained hard-quantized metric.
"""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..design import Design
from ..errors import UserError
from ..process import PillarSpec, Process, load_process, process_from_dict
from .errors import Scales, dilate_heights, place

__all__ = ["Physical", "FabStack", "read_fab", "element_transmissions", "transmissions",
           "Source", "SNAP_FRACTION"]

log = logging.getLogger(__name__)

Source = Literal["auto", "gds", "stl"]
#: STL heights within this fraction of the smallest level step of a level height snap to it
SNAP_FRACTION = 1e-4
_UNIQUE_MAX = 4096


@dataclass(frozen=True, eq=False)
class Physical:
    """The physical description of one fabricated stack (nominal or perturbed).

    Attributes:
        kind: ``"thin"`` (relief heights) or ``"pillars"``.
        heights: float64 ``(K, ny, nx)`` metres: relief above the base plate / etch floor
            (thin), pillar height or 0 for an empty site (pillars).
        base: base plate / substrate thickness, metres (heights are clipped at ``−base``).
        n: material refractive index. n0: medium index.
        element_wavelength: wavelength of the element physics, metres (the process's, so the
            nominal transmissions equal the trained level table).
        wavelength: wavelength of the propagation, metres (the design's).
        distances: ``K + 1`` distances, metres.
        kappa_extra: extinction added to the material's κ.
        bias: line-width bias, metres per edge.
        oversample: sub-pixels per pixel for the bias.
        shifts: ``(K, 2)`` lateral ``(dy, dx)`` offsets, metres (``None``: none).
        rotations: ``(K,)`` rotations, radians (``None``: none).
        atoms: int ``(K, ny, nx)`` meta-atom of every site (pillars).
        sizes: float64 ``(K, ny, nx)`` pillar sizes, metres (pillars).
    """

    kind: Literal["thin", "pillars"]
    heights: np.ndarray
    base: float
    n: float
    n0: float
    element_wavelength: float
    wavelength: float
    distances: tuple[float, ...]
    kappa_extra: float = 0.0
    bias: float = 0.0
    oversample: int = 8
    shifts: np.ndarray | None = None
    rotations: np.ndarray | None = None
    atoms: np.ndarray | None = None
    sizes: np.ndarray | None = None

    def shift_array(self) -> np.ndarray:
        K = self.heights.shape[0]
        return np.zeros((K, 2)) if self.shifts is None else np.asarray(self.shifts, float)

    def rotation_array(self) -> np.ndarray:
        K = self.heights.shape[0]
        return np.zeros(K) if self.rotations is None else np.asarray(self.rotations, float)

    def element_key(self) -> tuple:
        """Identity of everything :func:`element_transmissions` depends on (for caching)."""
        return (id(self.heights), id(self.sizes), self.n, self.kappa_extra,
                self.element_wavelength, self.bias, self.oversample)


@dataclass(frozen=True, eq=False)
class FabStack:
    """A fab directory read back: the process, the Design it came from, the physical stack.

    Attributes:
        fab_dir: the directory.
        manifest: ``manifest.json`` as a dict.
        process: the process rebuilt from the text recorded in the manifest.
        design: the Design copy of the fab directory with its level maps replaced by the
            read-back ones and its level tables by the manifest's (what the files make).
        source: ``"gds"`` or ``"stl"``.
        levels: int16 ``(K, ny, nx)`` read-back level maps (STL: nearest level).
        physical: the nominal :class:`Physical` description.
        level_values: ``(K, L)`` per-level heights (thin) or pillar sizes (pillars), metres.
        trained_levels_equal: whether the read-back level maps equal the Design's.
        notes: what happened while reading, for the report.
    """

    fab_dir: Path
    manifest: dict[str, Any]
    process: Process
    design: Design
    source: Literal["gds", "stl"]
    levels: np.ndarray
    physical: Physical
    level_values: np.ndarray
    trained_levels_equal: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_layers(self) -> int:
        return int(self.levels.shape[0])

    def scales(self) -> Scales:
        """Natural scales of this stack (for default errors and sweep ranges)."""
        d, p = self.design, self.process
        nonzero = [x for x in d.distances if x > 0] or [d.wavelength]
        if isinstance(p.structure, PillarSpec):
            h2pi = p.structure.height
        else:
            h2pi = p.height_per_2pi
        return Scales(pitch=d.pitch, size=max(d.shape), wavelength=d.wavelength,
                      distance=float(np.mean(nonzero)),
                      index_contrast=abs(p.material.n - p.material.n0), height_2pi=h2pi)

    def transmissions(self, phys: Physical | None = None) -> np.ndarray:
        """Complex128 ``(K, ny, nx)`` transmissions of ``phys`` (default: the nominal)."""
        return transmissions(phys or self.physical, self.process, pitch=self.design.pitch)


# ---------------------------------------------------------------------------- reading
def _process_from_manifest(manifest: dict[str, Any], fab: Path) -> tuple[Process, str | None]:
    info = manifest.get("process", {})
    text = info.get("toml", "")
    if text:
        import hashlib

        sha = hashlib.sha256(text.encode("utf-8")).hexdigest()
        if info.get("sha256") and sha != info["sha256"]:
            raise UserError(f"{fab / 'manifest.json'}: process.toml does not match its "
                            "process.sha256 (manifest edited?)")
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{fab / 'manifest.json'}: process.toml is not valid TOML "
                            f"({e})") from None
        return process_from_dict(raw, source=info.get("file") or "<manifest>", text=text), None
    name = info.get("name")
    if not name:
        raise UserError(f"{fab / 'manifest.json'}: no process recorded (process.name)")
    note = (f"the manifest holds no process text; process {name!r} was loaded by name "
            "(it may differ from the one used for export)")
    return load_process(name), note


def _check_consistent(manifest: dict[str, Any], design: Design, fab: Path) -> None:
    m = manifest
    where = fab / "manifest.json"
    pairs = [("shape", list(m.get("shape", [])), list(design.shape)),
             ("n_layers", m.get("n_layers"), design.n_layers),
             ("n_levels", m.get("n_levels"), design.n_levels)]
    for key, a, b in pairs:
        if a != b:
            raise UserError(f"{where}: {key} {a} differs from design.json ({b})")
    for key in ("pitch", "wavelength"):
        a, b = m.get(key), getattr(design, key)
        if not isinstance(a, (int, float)) or not math.isclose(a, b, rel_tol=1e-12):
            raise UserError(f"{where}: {key} {a} differs from design.json ({b})")
    dm = m.get("distances", [])
    if len(dm) != len(design.distances) or not np.allclose(dm, design.distances, rtol=1e-12,
                                                           atol=0):
        raise UserError(f"{where}: distances {dm} differ from design.json "
                        f"({list(design.distances)})")
    if len(m.get("layers", [])) != design.n_layers or len(m.get("levels", [])) != \
            design.n_layers:
        raise UserError(f"{where}: lists {len(m.get('layers', []))} layers, the design has "
                        f"{design.n_layers}")


def _check_makes_design(levels: np.ndarray, design_levels: np.ndarray, values: np.ndarray,
                        files: list[str], fab: Path) -> None:
    """The files must make the checksummed design: every pixel read back must be the
    structure (height or pillar size, from the manifest's level table) of the design's level.

    Levels that the table maps to the same structure are interchangeable (the files cannot
    tell them apart); anything else means the files are not those of this design (layer
    entries swapped in the manifest, a file replaced and its checksum updated).

    Raises:
        UserError: one line naming the first file that differs, exit code 2 in the CLI.
    """
    for k in range(levels.shape[0]):
        made = values[k][levels[k]]
        wanted = values[k][design_levels[k]]
        bad = made != wanted
        if bad.any():
            n = int(bad.sum())
            raise UserError(
                f"{fab / files[k]}: does not make layer {k + 1} of design.npz ({n} of "
                f"{bad.size} pixels differ); the fab directory is inconsistent (layer entries "
                "of manifest.json swapped or files replaced?)")


def _files_of(manifest: dict[str, Any], fmt: str) -> list[str] | None:
    names = []
    for layer in manifest["layers"]:
        info = layer.get("files", {}).get(fmt)
        if info is None:
            return None
        names.append(info["name"])
    return names


def read_fab(fab_dir: str | Path, *, source: Source = "auto", oversample: int = 8) -> FabStack:
    """Read a fab directory written by ``optodesign export`` back into physics.

    Args:
        fab_dir: the directory holding ``manifest.json``.
        source: ``gds``, ``stl`` or ``auto`` (STL for print, GDS otherwise; see module doc).
        oversample: sub-pixels per pixel used later for line-width bias.

    Raises:
        UserError: missing manifest, a file whose SHA-256 differs from the manifest, a
            manifest that contradicts its design, unreadable or inconsistent GDS/STL files
            (one line, naming the file).
    """
    fab = Path(fab_dir)
    if not fab.exists():
        raise UserError(f"{fab}: fab directory not found")
    try:
        return _read_fab(fab, source, oversample)
    except UserError:
        raise
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        # a manifest missing or mangling a field that validate_manifest does not type-check
        raise UserError(f"{fab / 'manifest.json'}: malformed or incomplete "
                        f"({type(e).__name__}: {e})") from None


def _read_fab(fab: Path, source: Source, oversample: int) -> FabStack:
    from ..export.manifest import check_files, load_manifest

    manifest = load_manifest(fab)
    for name in ("design.json", "design.npz"):
        # the Design is the reference the files are checked against: it must be checksummed
        if name not in manifest.get("files", {}):
            raise UserError(f"{fab / 'manifest.json'}: files lists no {name} (its SHA-256 "
                            "is what makes the design of this fab directory trustworthy)")
    problems = check_files(fab, manifest)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(problems[0] + more)
    notes: list[str] = []
    process, note = _process_from_manifest(manifest, fab)
    if note:
        notes.append(note)
    trained = Design.load(fab)
    _check_consistent(manifest, trained, fab)
    K, L = trained.n_layers, trained.n_levels
    ny, nx = trained.shape
    pillars = isinstance(process.structure, PillarSpec)

    if source not in ("auto", "gds", "stl"):
        raise UserError(f"--source: must be auto, gds or stl, got {source!r}")
    stl_files, gds_files = _files_of(manifest, "stl"), _files_of(manifest, "gds")
    oas_files = _files_of(manifest, "oas")
    if source == "auto":
        source = "stl" if process.kind == "print" and stl_files else "gds"
    if source == "stl" and stl_files is None:
        raise UserError(f"--source stl: {fab} holds no STL file for every layer "
                        f"(process {process.name!r}, {process.kind}); use --source gds")
    if source == "gds" and gds_files is None:
        if oas_files is None:
            raise UserError(f"--source gds: {fab} holds no GDS or OASIS file for every layer; "
                            "use --source stl")
        gds_files = oas_files
        notes.append("read the OASIS files (no GDS files in the fab directory)")

    rows = manifest["levels"]
    tables = np.array([[complex(*r["t"]) for r in layer_rows] for layer_rows in rows],
                      dtype=np.complex128)
    if tables.shape != (K, L):
        raise UserError(f"{fab / 'manifest.json'}: levels table has shape {tables.shape}, "
                        f"expected ({K}, {L})")
    key = "size" if pillars else "height"
    try:
        values = np.array([[float(r[key]) for r in layer_rows] for layer_rows in rows])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{fab / 'manifest.json'}: levels rows lack a numeric {key!r}") from None

    levels = np.empty((K, ny, nx), dtype=np.int16)
    heights = np.empty((K, ny, nx), dtype=np.float64)
    if source == "gds":
        from .gds_reader import read_gds_levels

        origin = tuple(manifest.get("origin", ())) or None
        for k, name in enumerate(gds_files):  # type: ignore[arg-type]
            path = fab / name
            lv = read_gds_levels(path, process=process, shape=(ny, nx), pitch=trained.pitch,
                                 n_levels=L, level_tables=tables[k], origin=origin)
            if lv.shape[0] != 1:
                raise UserError(f"{path}: expected one top cell (layer {k + 1}), found "
                                f"{lv.shape[0]}")
            if lv.min() < 0 or lv.max() >= L:
                raise UserError(f"{path}: level {int(lv.max())} outside 0..{L - 1}")
            levels[k] = lv[0]
            heights[k] = values[k][lv[0]]
    else:
        from .stl_reader import read_stl_heights

        base = float(manifest["base_thickness"])
        offset = tuple(manifest.get("stl_offset", (0.0, 0.0)))
        worst = 0.0
        for k, name in enumerate(stl_files):  # type: ignore[arg-type]
            h = read_stl_heights(fab / name, shape=(ny, nx), pitch=trained.pitch, base=base,
                                 offset=offset)  # type: ignore[arg-type]
            lv, hk, dev = _snap_heights(h, values[k], total=base + float(values[k].max()))
            levels[k], heights[k] = lv, hk
            worst = max(worst, dev)
        if worst > 0:
            notes.append(f"STL heights deviate from the level table by up to {worst:.3g} m "
                         "(kept as read)")
    if pillars:
        atoms = np.stack([process.level_atoms(tables[k], layer=k + 1)[levels[k]]
                          for k in range(K)])
        sizes = np.stack([values[k][levels[k]] for k in range(K)])
        spec = process.structure
        heights = np.where(sizes > 0, spec.height, 0.0)  # type: ignore[union-attr]
    else:
        atoms = sizes = None
    read_files = stl_files if source == "stl" else gds_files
    _check_makes_design(levels, trained.levels, values, read_files, fab)  # type: ignore[arg-type]
    equal = bool(np.array_equal(levels, trained.levels))
    if not equal:
        notes.append(f"{int((levels != trained.levels).sum())} pixels of the files read back "
                     "as another level of the same height/size as the design's")
    design = trained.with_levels(levels, level_tables=tables)
    phys = Physical(
        kind="pillars" if pillars else "thin",
        heights=heights,
        base=float(process.base_thickness),
        n=process.material.n,
        n0=process.material.n0,
        element_wavelength=process.wavelength,
        wavelength=trained.wavelength,
        distances=tuple(trained.distances),
        oversample=int(oversample),
        atoms=atoms,
        sizes=sizes,
    )
    return FabStack(fab_dir=fab, manifest=manifest, process=process, design=design,
                    source=source, levels=levels, physical=phys, level_values=values,
                    trained_levels_equal=equal, notes=tuple(notes))


def _snap_heights(h: np.ndarray, level_heights: np.ndarray, *,
                  total: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Nearest level of every STL height; heights within tolerance snap to the level's.

    Returns:
        ``(levels, heights, worst)``: int16 nearest levels, heights (snapped where within
        tolerance, else as read) and the largest deviation of an unsnapped height (0 if all
        snapped).
    """
    lh = np.asarray(level_heights, dtype=np.float64)
    d = np.abs(h[..., None] - lh)
    lv = np.argmin(d, axis=-1)
    dev = np.take_along_axis(d, lv[..., None], axis=-1)[..., 0]
    steps = np.diff(np.unique(lh))
    step = float(steps.min()) if steps.size else float(abs(lh).max() or total)
    tol = max(SNAP_FRACTION * step, 1e-6 * total)
    ok = dev <= tol
    out = np.where(ok, lh[lv], h)
    worst = float(dev[~ok].max()) if (~ok).any() else 0.0
    return lv.astype(np.int16), out, worst


# ---------------------------------------------------------------------------- physics
def _thin(process: Process, h: np.ndarray, phys: Physical) -> np.ndarray:
    """Thin-element transmission of heights ``h`` (any shape) under ``phys``'s material."""
    n = None if phys.n == process.material.n else phys.n
    lam = None if phys.element_wavelength == process.wavelength else phys.element_wavelength
    flat = h.ravel()
    # few distinct heights (nominal, systematic errors): evaluate each once; the result is
    # bit-identical to evaluating every pixel, and much faster
    probe = np.unique(flat[:: max(1, flat.size // 8192)])
    uniq, inv = (np.unique(flat, return_inverse=True) if probe.size <= 256 else
                 (probe, None))
    if inv is not None and uniq.size <= _UNIQUE_MAX and uniq.size * 4 < flat.size:
        t = process.transmission(uniq, wavelength=lam, n=n)
        if phys.kappa_extra:
            t = t * np.exp(-2 * math.pi * phys.kappa_extra * uniq / phys.element_wavelength)
        return t[inv].reshape(h.shape)
    t = process.transmission(h, wavelength=lam, n=n)
    if phys.kappa_extra:
        t = t * np.exp(-2 * math.pi * phys.kappa_extra * h / phys.element_wavelength)
    return t


def _pillar_tables(process: Process) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Atom sizes sorted, their |t| and unwrapped phase along size; and the raw table."""
    spec = process.structure
    assert isinstance(spec, PillarSpec)
    table = process.pillar_table()
    sizes = np.asarray(spec.sizes, dtype=np.float64)
    order = np.argsort(sizes)
    phase = np.empty(table.size)
    phase[order] = np.unwrap(np.angle(table[order]))
    return sizes, np.abs(table), phase, table


def _pillars(process: Process, phys: Physical) -> np.ndarray:
    """Pillar transmissions: the atom table, with size changes interpolated (|t| and unwrapped
    phase linear in size between atoms) and height / index / wavelength changes scaling the
    phase (phase ∝ (n − n0) H / λ, the effective-index picture)."""
    spec = process.structure
    assert isinstance(spec, PillarSpec) and phys.atoms is not None and phys.sizes is not None
    sizes_t, amp_t, phase_t, table = _pillar_tables(process)
    atoms = phys.atoms
    m = process.material
    factor_scalar = ((phys.n - m.n0) / (m.n - m.n0)) * (process.wavelength /
                                                        phys.element_wavelength)
    height_nominal = np.where(phys.sizes > 0, spec.height, 0.0)
    heights_changed = not np.array_equal(phys.heights, height_nominal)
    if phys.bias == 0 and factor_scalar == 1 and not heights_changed and phys.kappa_extra == 0:
        return table[atoms]
    if phys.bias:
        s = np.where(phys.sizes > 0, np.maximum(phys.sizes + 2 * phys.bias, 0.0), 0.0)
        order = np.argsort(sizes_t)
        amp = np.interp(s, sizes_t[order], amp_t[order])
        phase = np.interp(s, sizes_t[order], phase_t[order])
    else:
        amp, phase = amp_t[atoms], phase_t[atoms]
    factor = factor_scalar * np.where(phys.sizes > 0, phys.heights / spec.height, 1.0)
    t = amp * np.exp(1j * phase * factor)
    if phys.kappa_extra:
        t = t * np.exp(-2 * math.pi * phys.kappa_extra * phys.heights / phys.element_wavelength)
    return t


def element_transmissions(phys: Physical, process: Process, *, pitch: float) -> np.ndarray:
    """Transmissions of the elements as made, before placement: complex128 ``(K, ny, nx)``.

    Thin elements: :meth:`Process.transmission` of the heights (with ``n``, ``λ`` of
    ``phys``) times ``exp(−2π κ_extra h / λ)``; with a line-width bias, evaluated on the
    sub-pixel grid of :func:`~optodesign.verify.errors.dilate_heights` and area-averaged.
    """
    if phys.kind == "pillars":
        return _pillars(process, phys)
    if not phys.bias:
        return _thin(process, phys.heights, phys)
    m = phys.oversample
    # the bias in sub-pixels, r = r0 + w: the pixel-averaged transmission is linear in the
    # area of the boundary strips, so mixing the r0 and r0 + 1 results with weight w makes it
    # continuous in the bias (exact along straight edges; corners to O(w (pitch/m)²))
    r = abs(phys.bias) * m / pitch
    r0 = math.floor(r + 1e-9)
    w = r - r0 if r - r0 > 1e-9 else 0.0
    sign = math.copysign(1.0, phys.bias)
    out = np.empty(phys.heights.shape, dtype=np.complex128)
    ny, nx = phys.heights.shape[1:]
    for k, h in enumerate(phys.heights):
        acc = np.zeros((ny, nx), dtype=np.complex128)
        for rr, weight in ((r0, 1.0 - w), (r0 + 1, w)):
            if weight == 0:
                continue
            fine = dilate_heights(h, bias=sign * rr * pitch / m, pitch=pitch, oversample=m)
            acc += weight * _thin(process, fine, phys).reshape(ny, m, nx, m).mean(axis=(1, 3))
        out[k] = acc
    return out


def transmissions(phys: Physical, process: Process, *, pitch: float) -> np.ndarray:
    """Complex128 ``(K, ny, nx)`` transmissions of a physical stack: the elements
    (:func:`element_transmissions`), then moved (:func:`~optodesign.verify.errors.place`)."""
    t = element_transmissions(phys, process, pitch=pitch)
    return place(t, pitch=pitch, shifts=phys.shifts, rotations=phys.rotations)

"""Training configuration: a TOML file validated once into frozen dataclasses.

Every section is read through :class:`optodesign.schema.Table` and the quantizer method and
options through :mod:`optodesign.quantize.registry`: unknown keys are rejected, lengths accept
units ("532 nm", "3 cm", "0.4 THz"), and every error is one line naming the ``section.key``.
See ``examples/*.toml`` and ``docs/training.md``.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..design import PIXELS
from ..errors import ConfigError, UserError
from ..fileio import read_toml
from ..grid import METHODS, Grid
from ..optics.cells import fine_grid
from ..optics.rayleigh import rs_stack_problems
from ..quantize import registry
from ..schema import Table
from ..tasks import TASKS, get_task
from ..units import UnitsWarning, format_length
from .robust import Robust

__all__ = ["Config", "load_config", "parse_config"]



@dataclass(frozen=True)
class Optics:
    wavelength: float
    pitch: float
    size: int
    layers: int
    distances: tuple[float, ...]  # K + 1: input -> layer 1, ..., layer K -> output
    pad: float = 2.0
    #: how a pixel is modelled (:data:`optodesign.design.PIXELS`): ``cells`` (flat-topped,
    #: band-limited to the grid) or ``points`` (the model before it existed)
    pixels: str = "cells"
    #: samples per pixel per axis the training model propagates (verify's ``oversample``)
    oversample: int = 1
    #: how every propagation is computed (:attr:`optodesign.grid.Grid.method`): ``asm``, the
    #: band-limited angular spectrum, or ``rs``, the Rayleigh–Sommerfeld convolution
    propagation: str = "asm"

    @property
    def grid(self) -> Grid:
        """The sampling of every layer and field: ``size`` x ``size`` at ``pitch``, padded by
        ``pad`` for propagation by ``propagation`` (:class:`optodesign.grid.Grid`)."""
        return Grid((self.size, self.size), self.pitch, pad=self.pad, method=self.propagation)


@dataclass(frozen=True)
class Quantization:
    method: str = "psq-li"
    levels: int = 4
    phases: tuple[float, ...] | None = None  # explicit level phases (radians)
    process: str | None = None  # take the level table from a process in layouts/
    codebook: str | None = None  # complex methods: "process", "polar:A,P", "square:N", "phase:L"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Data:
    dataset: str = "digits"
    path: str | None = None
    image_size: int = 32
    encoding: str = "amplitude"
    train_samples: int = 0
    test_samples: int = 0
    # held out of the training samples to choose the kept epoch (None: a tenth of them)
    validation_samples: int | None = None


@dataclass(frozen=True)
class Detectors:
    size: int = 6
    boxes: tuple[tuple[int, int, int, int], ...] = ()


@dataclass(frozen=True)
class Target:
    kind: str = "text"  # text | image | spots | focus
    text: str = "OPTO"
    image: str | None = None
    spots: tuple[int, int] = (3, 3)
    spacing: int = 12
    spot_size: int = 4
    # placement of an image target (data.targets.image_target): longer side, metres (None:
    # fit the plane, keeping the aspect ratio), and its centre (x, y) from the axis, metres
    size: float | None = None
    centre: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Train:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    loss: str = "ce"
    temperature: float = 10.0
    steps_per_epoch: int = 50
    qat_start: int = 0
    max_memory: int | None = None  # bytes; overrides the machine's (see train/memory.py)
    keep: str = "best"  # the epoch whose design is written: best on validation, or last
    lr_schedule: str = "constant"  # or "cosine": lr · ½(1 + cos(π · epoch / epochs))

    def lr_at(self, epoch: int, epochs: int) -> float:
        """The learning rate of ``epoch`` (0-based) of a fit of ``epochs``: a function of
        the epoch alone, so a resumed run follows the same schedule."""
        if self.lr_schedule == "constant" or epochs <= 0:
            return self.lr
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


@dataclass(frozen=True)
class Fabrication:
    """``[fabrication]``: the process whose design rules the trained design passes.

    Attributes:
        process: process name or .toml path (None: no rules).
        constraint: a name of :data:`optodesign.quantize.registry.CONSTRAINTS`.
        options: the constraint's options.
        legalize: make the hard design pass the process's DRC (default true with a process).
        penalty: weight of the differentiable rule count added to the loss, relative to the
            loss's own size (0: none).
        robust: error-aware training (:mod:`optodesign.train.robust`), or None.
    """

    process: str | None = None
    constraint: str = "none"
    options: dict[str, Any] = field(default_factory=dict)
    legalize: bool = True
    penalty: float = 0.0
    robust: Robust | None = None  # error-aware training (errors = FILE)


@dataclass(frozen=True)
class Config:
    task: str
    optics: Optics
    quantization: Quantization
    train: Train
    data: Data = Data()
    detectors: Detectors = Detectors()
    target: Target = Target()
    seed: int = 0
    source: dict[str, Any] = field(default_factory=dict)  # the parsed TOML, for the run dir
    fabrication: Fabrication = Fabrication()

    @property
    def is_complex(self) -> bool:
        return registry.family(self.quantization.method) == "complex"


def _check_propagation(optics: Optics, o: Table, spec: Any) -> Optics:
    """``propagation = "rs"`` only where the Rayleigh–Sommerfeld kernel is sampled for every
    distance the task propagates (:func:`~optodesign.optics.rayleigh.rs_problems`): asked
    for, an error naming the problem; the task's default, the angular spectrum instead."""
    if optics.propagation != "rs":
        return optics
    problems = rs_stack_problems(fine_grid(optics.grid, optics.oversample), optics.distances,
                                 optics.wavelength, task=spec)
    if not problems:
        return optics
    if "propagation" in o:
        raise o.error("propagation", f"rs: {problems[0]}")
    return replace(optics, propagation="asm")


def _check_wavelength(optics: Optics, given: Any) -> None:
    """Refuse a wavelength that makes the run meaningless for this grid (a unit slip).

    Two cases train to chance accuracy without a word: a wavelength as wide as the whole grid
    (only the straight-through plane wave propagates: "0.4 GHz" for "0.4 THz"), and one so
    short that light leaving a pixel spreads less than one pixel over the longest distance
    (the layers then act pixel by pixel and never couple: "750 nm" for "750 um").
    """
    lam, p, n = optics.wavelength, optics.pitch, optics.size
    src = f" (from {given!r})" if isinstance(given, str) else ""
    window = n * p
    if lam >= window:
        raise ConfigError(
            f"optics.wavelength: {format_length(lam)}{src} is not smaller than the whole grid "
            f"({n} px x {format_length(p)} = {format_length(window)}), so only the "
            f"straight-through plane wave propagates and no layer can steer light; check the "
            f"units"
        )
    z = max(optics.distances)
    sin_t = lam / (2 * p)
    spread = math.inf if sin_t >= 1 else z * sin_t / math.sqrt(1 - sin_t**2)
    if 0 < spread < p:
        raise ConfigError(
            f"optics.wavelength: at {format_length(lam)}{src} light leaving a "
            f"{format_length(p)} pixel spreads only {format_length(spread)} over the longest "
            f"distance {format_length(z)}, less than one pixel, so the layers cannot couple "
            f"pixels; check the units of optics.wavelength, optics.pitch and optics.distance"
        )


_CODEBOOK = re.compile(r"^(process|polar:\d+,\d+|square:\d+|phase:\d+)$")


def _check_process(name: str, optics: Optics, key: str = "quantization.process") -> None:
    """Load the process now and refuse one made for another wavelength or pitch, so the
    mismatch does not surface only at export, after training (errors name ``key``)."""
    from ..process import WAVELENGTH_TOLERANCE, load_process

    try:
        process = load_process(name)
        lam, lam_p = optics.wavelength, process.wavelength
        if abs(lam - lam_p) > WAVELENGTH_TOLERANCE * lam_p:
            raise ConfigError(
                f"{key}: {process.name!r} is made for {format_length(lam_p)} but "
                f"optics.wavelength is {format_length(lam)} ({abs(lam - lam_p) / lam_p:.1%} "
                f"apart, more than {WAVELENGTH_TOLERANCE:.0%}); export would refuse the design"
            )
        process.check_geometry(wavelength=lam, pitch=optics.pitch, field=key,
                               whose="the config")
    except UserError as e:
        msg = str(e)
        if not msg.startswith(key):
            msg = f"{key}: " + msg.removeprefix("process: ")
        raise ConfigError(msg) from None


def _check_detector_layout(size: int, det_size: int, n_classes: int) -> None:
    from ..models.functional import auto_detectors

    try:
        auto_detectors(n_classes, (size, size), det_size)
    except ValueError:
        raise ConfigError(
            f"detectors.size: {n_classes} detectors of {det_size} px (with gaps of one detector) "
            f"do not fit the {size}x{size} grid; use at most {size // 7} px or a larger "
            f"optics.size"
        ) from None


def parse_config(raw: dict[str, Any], *, units_required: bool = False,
                 base_dir: str | Path | None = None) -> Config:
    """Validate a parsed TOML mapping into a :class:`Config` (one-line ConfigErrors).

    Args:
        raw: the mapping (``tomllib.load`` output, or a dict built in Python).
        units_required: refuse bare numbers for lengths (``pitch = 0.0004``: metres or what?);
            :func:`load_config` sets it for files. Python callers may pass floats in metres.
        base_dir: relative paths (``data.path``, ``target.image``, a process or errors
            ``.toml``) are read from here; :func:`load_config` passes the config file's
            directory. ``None``: the working directory.

    Raises:
        ConfigError: one line naming ``section.key``: a wrong type, range or unit, a geometry
            that makes the run meaningless (a unit slip in the wavelength), detectors that do
            not fit the grid, a process made for another wavelength, or more memory than the
            machine has (:func:`optodesign.train.memory.check_memory`).
    """
    from .memory import check_lower_bound, check_memory, parse_bytes

    task_sections = {sec for t in TASKS.values() for sec in t.config_sections}
    top = Table(raw, {"task", "seed", "optics", "quantization", "train", "data", "detectors",
                      "target", "fabrication"} | task_sections, base_dir=base_dir)
    task = top.choice("task", tuple(TASKS), "d2nn")
    spec = get_task(task)
    for sec in sorted(task_sections - set(spec.config_sections)):
        if sec in top:
            users = ", ".join(n for n, t in TASKS.items() if sec in t.config_sections)
            raise top.error(sec, f"a section of task {users}, not of task {task!r}")
    seed = top.integer("seed", 0, low=0)

    o = top.table("optics", {"wavelength", "pitch", "size", "layers", "distance",
                             "input_distance", "output_distance", "distances", "pad",
                             "pixels", "oversample", "propagation"})
    t = top.table("train", {"epochs", "batch_size", "lr", "loss", "temperature",
                            "steps_per_epoch", "qat_start", "max_memory", "keep",
                            "lr_schedule"})
    max_memory = (None if t.raw("max_memory", None) is None else
                  parse_bytes(t.raw("max_memory"), field="train.max_memory"))
    units = {"require_unit": units_required}
    with warnings.catch_warnings(record=True) as wavelength_warnings:
        warnings.simplefilter("always", UnitsWarning)
        wavelength = o.wavelength("wavelength", **units)
    pitch = o.length("pitch", **units)
    size = o.integer("size", low=4)
    default_layers = spec.default_layers
    layers = o.integer("layers", default_layers)
    pad = o.number("pad", 2.0, low=1)
    oversample = o.integer("oversample", 1, low=1)
    if oversample > 8:
        raise o.error("oversample", f"must be 1 to 8 samples per pixel, got {oversample}")
    # before any list of `layers` entries exists: layers = 10**9 must not build one
    check_lower_bound(size=size * oversample, pad=pad, layers=layers, max_memory=max_memory)
    if "distances" in o:
        if "distance" in o:
            raise o.error("distances", "give either distances or distance, not both")
        distances = o.lengths("distances", count=layers + 1, allow_zero=True, **units,
                              hint=f" (input -> layer 1, ..., layer {layers} -> output)")
    else:
        if "distance" not in o:
            raise o.error("distance", "required (or optics.distances)")
        d = o.length("distance", **units)
        default_in = spec.default_input_distance(d)
        din = o.length("input_distance", default_in, allow_zero=True, **units)
        dout = o.length("output_distance", d, **units)
        distances = (din,) + (d,) * (layers - 1) + (dout,)
    optics = Optics(wavelength, pitch, size, layers, distances, pad,
                    o.choice("pixels", PIXELS, "cells"), oversample,
                    o.choice("propagation", METHODS, spec.default_propagation))
    optics = _check_propagation(optics, o, spec)
    _check_wavelength(optics, o.raw("wavelength"))
    for w in wavelength_warnings:  # plausible enough to train: pass the warning on
        warnings.warn(w.message, UnitsWarning, stacklevel=2)

    q = top.table("quantization", {"method", "levels", "phases", "process", "codebook",
                                   "options"})
    method = q.choice("method", registry.method_names(), "psq-li")
    levels = q.integer("levels", 4, low=2)
    phases = q.numbers("phases", None, min_len=2)
    levels = len(phases) if phases is not None else levels
    options = q.table("options", None)
    process = q.path("process", None, names=True,
                     what="a process name (e.g. 'thz-printed') or a .toml path")
    codebook = q.string("codebook", None, what="process, polar:A,P, square:N or phase:L")
    fab = _read_fabrication(top, process)
    if fab.robust is not None and optics.oversample > 1:
        raise top.error("fabrication", "errors: not supported with optics.oversample > 1 yet "
                                       "(the error models act on the design's pixels)")
    quant_named = process is not None
    if process is None and fab.process is not None:
        process = fab.process  # train on the level table of the process it is made by
    if codebook is not None:
        if not _CODEBOOK.match(codebook):
            raise q.error("codebook", f"cannot read {codebook!r} (allowed: process, "
                                      f"polar:A,P, square:N, phase:L)")
        if codebook == "process" and process is None:
            raise q.error("codebook", "'process' needs quantization.process or "
                                      "fabrication.process")
    quant = Quantization(method, levels, phases, process, codebook, dict(options.data))
    if process is not None:
        _check_process(process, optics, "quantization.process" if quant_named
                       else "fabrication.process")
    registry.check_options(method, options.data, levels=levels, phases=phases,
                           section=options.section)

    train = Train(
        epochs=t.integer("epochs", 10),
        batch_size=t.integer("batch_size", 64),
        lr=t.number("lr", 0.05, low=0, strict_low=True),
        loss=t.choice("loss", ("ce", "mse"), "ce"),
        temperature=t.number("temperature", 10.0, low=0, strict_low=True),
        steps_per_epoch=t.integer("steps_per_epoch", 50),
        qat_start=t.integer("qat_start", 0, low=0),
        max_memory=max_memory,
        keep=t.choice("keep", ("best", "last"), "best"),
        lr_schedule=t.choice("lr_schedule", ("constant", "cosine"), "constant"),
    )

    dd = top.table("data", {"dataset", "path", "image_size", "encoding", "train_samples",
                            "test_samples", "validation_samples"})
    data = Data(
        dataset=dd.choice("dataset", ("digits", "mnist", "fashion"), "digits"),
        path=dd.path("path", None, what="the directory holding the IDX files"),
        image_size=dd.integer("image_size", min(32, size)),
        encoding=dd.choice("encoding", ("amplitude", "phase"), "amplitude"),
        train_samples=dd.integer("train_samples", 0, low=0),
        test_samples=dd.integer("test_samples", 0, low=0),
        validation_samples=dd.integer("validation_samples", None, low=0),
    )
    if data.image_size > size:
        raise dd.error("image_size", f"{data.image_size} px exceeds optics.size {size}")

    de = top.table("detectors", {"size", "boxes"})
    boxes = de.pixel_boxes("boxes", (), shape=(size, size))
    detectors = Detectors(de.integer("size", max(2, size // 12)), boxes)
    if spec.needs_detectors and not boxes:
        from ..data.datasets import N_CLASSES

        _check_detector_layout(size, detectors.size, N_CLASSES[data.dataset])

    tg = top.table("target", {"kind", "text", "image", "spots", "spacing", "spot_size",
                              "size", "centre"})
    from ..data.targets import read_placement

    target_size, target_centre = read_placement(tg, require_unit=units_required)
    default_kind = spec.default_target_kind
    target = Target(
        kind=tg.choice("kind", ("text", "image", "spots", "focus"), default_kind),
        text=tg.string("text", "OPTO"),
        image=tg.path("image", None, what="the path of a PNG/JPEG or .npy image"),
        spots=tg.integers("spots", (3, 3), count=2, hint=" ([rows, cols])"),
        spacing=tg.integer("spacing", max(4, size // 6)),
        spot_size=tg.integer("spot_size", max(2, size // 24)),
        size=target_size, centre=target_centre,
    )
    cfg = Config(task, optics, quant, train, data, detectors, target, seed, raw, fab)
    spec.check_config(cfg)  # the task's own rules (a hologram's image, a single-layer lens)
    check_memory(cfg)
    return cfg


def _read_fabrication(top: Table, quant_process: str | None) -> Fabrication:
    """``[fabrication]``: the process (the same as ``quantization.process`` when both are
    given), a constraint from the registry and its options."""
    f = top.table("fabrication", {"process", "constraint", "options", "legalize", "penalty",
                                  "errors", "error_samples", "error_strength", "error_ramp",
                                  "error_statistic"})
    process = f.path("process", None, names=True,
                     what="a process name (e.g. 'fused-silica-etch4') or a .toml path")
    if process is not None and quant_process is not None and process != quant_process:
        raise f.error("process", f"{process!r} differs from quantization.process "
                                 f"{quant_process!r}; give one (or the same) process")
    constraint = f.choice("constraint", tuple(registry.CONSTRAINTS), "none")
    options = f.table("options", None)
    registry.read_options_of(constraint, options.data, section=options.section)
    robust = None
    errors = f.path("errors", None, what="an errors .toml file (verify's format)")
    if errors is not None:
        from ..variation.spec import load_errors

        if process is None and quant_process is None:
            raise f.error("errors", "needs fabrication.process (the relief the errors act on)")
        try:
            load_errors(errors)
        except UserError as e:
            raise f.error("errors", str(e)) from None
        robust = Robust(errors=errors, samples=f.integer("error_samples", 4, low=1, high=256),
                        strength=f.number("error_strength", 1.0, low=0),
                        ramp=f.number("error_ramp", 0.5, low=0, high=1),
                        statistic=f.choice("error_statistic", ("mean", "p5"), "mean"))
    else:
        for key in ("error_samples", "error_strength", "error_ramp", "error_statistic"):
            if key in f:
                raise f.error(key, "needs fabrication.errors")
    fab = Fabrication(process=process, constraint=constraint, options=dict(options.data),
                      legalize=f.boolean("legalize", True),
                      penalty=f.number("penalty", 0.0, low=0), robust=robust)
    if process is None and (fab.penalty > 0 or "legalize" in f):
        raise f.error("penalty" if fab.penalty > 0 else "legalize",
                      "needs fabrication.process (whose design rules to apply)")
    return fab


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file (lengths need units; see :func:`parse_config`).

    Any error is one line starting with the file name and naming ``section.key``.
    """
    path = Path(path)
    raw = read_toml(path, what="config file")
    try:
        return parse_config(raw, units_required=True, base_dir=path.parent)
    except UserError as e:
        raise ConfigError(f"{path.name}: {e}") from None

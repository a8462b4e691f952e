"""Training configuration: a TOML file validated once into frozen dataclasses.

Unknown keys are rejected, lengths accept units ("532 nm", "3 cm", "0.4 THz"), and every error
is one line naming the ``section.key``. See ``examples/*.toml`` and ``docs/training.md``.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UserError
from ..fileio import read_toml
from ..units import UnitsWarning, format_length, parse_length, parse_quantity

__all__ = ["Config", "load_config", "parse_config"]

TASKS = ("d2nn", "hologram", "lens", "splitter")
PHASE_METHODS = ("fp32", "pq", "ste", "gs", "dsq", "psq-ft", "psq-li", "psq-lt", "binary")
COMPLEX_METHODS = ("joint", "joint-learned", "reim", "ampphase")


@dataclass(frozen=True)
class Optics:
    wavelength: float
    pitch: float
    size: int
    layers: int
    distances: tuple[float, ...]  # K + 1: input -> layer 1, ..., layer K -> output
    pad: float = 2.0


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

    @property
    def is_complex(self) -> bool:
        return self.quantization.method in COMPLEX_METHODS


def _take(table: dict[str, Any], section: str, allowed: set[str]) -> dict[str, Any]:
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f"{section}." if section else ""
        raise ConfigError(
            f"{where}{unknown[0]}: unknown key (allowed in [{section or 'top level'}]: "
            f"{', '.join(sorted(allowed))})"
        )
    return table


def _section(raw: dict[str, Any], name: str, allowed: set[str]) -> dict[str, Any]:
    """``raw[name]`` as a table with only ``allowed`` keys (``optics = 5`` is refused)."""
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: must be a table (a [{name}] section of keys), got {value!r}")
    return _take(dict(value), name, allowed)


def _int(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name}: must be an integer >= {low}, got {value!r}")
    return value


def _float(value: Any, name: str, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}: must be a number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{name}: must be > 0, got {value!r}")
    return float(value)


def _choice(value: Any, name: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _str(value: Any, name: str, *, what: str = "a non-empty string") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name}: must be {what}, got {value!r}")
    return value


def _optional_str(value: Any, name: str, *, what: str = "a non-empty string") -> str | None:
    return None if value is None else _str(value, name, what=what)


def _length(value: Any, name: str, *, allow_zero: bool = False, units: bool = False) -> float:
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{name}: expected a length such as '2 cm', got {value!r}")
    return parse_length(value, field=name, allow_zero=allow_zero, require_unit=units)


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


def _check_process(quant: Quantization, optics: Optics) -> None:
    """Load the process now and refuse one made for another wavelength or pitch, so the
    mismatch does not surface only at export, after training."""
    from ..process import WAVELENGTH_TOLERANCE, load_process

    assert quant.process is not None
    try:
        process = load_process(quant.process)
        lam, lam_p = optics.wavelength, process.wavelength
        if abs(lam - lam_p) > WAVELENGTH_TOLERANCE * lam_p:
            raise ConfigError(
                f"quantization.process: {process.name!r} is made for {format_length(lam_p)} but "
                f"optics.wavelength is {format_length(lam)} ({abs(lam - lam_p) / lam_p:.1%} "
                f"apart, more than {WAVELENGTH_TOLERANCE:.0%}); export would refuse the design"
            )
        process.check_geometry(wavelength=lam, pitch=optics.pitch,
                               field="quantization.process", whose="the config")
    except UserError as e:
        msg = str(e)
        if not msg.startswith("quantization.process"):
            msg = "quantization.process: " + msg.removeprefix("process: ")
        raise ConfigError(msg) from None


def _option_error(message: str, options: dict[str, Any]) -> ConfigError:
    for prefix in ("quantizer.method: ", "quantizer: ", "method: "):
        message = message.removeprefix(prefix)
    key = message.split(":", 1)[0]
    if key in options:
        return ConfigError(f"quantization.options.{message}")
    return ConfigError(f"quantization.options: {message}")


def _check_options(quant: Quantization) -> None:
    """Build one quantizer from ``quantization.options`` so a wrong option or value is
    refused here, naming ``quantization.options.<key>``, instead of when training starts."""
    options = dict(quant.options)
    try:
        if quant.method in COMPLEX_METHODS:
            from ..quantize import codebooks
            from ..quantize.complex import make_complex_quantizer

            cb = (codebooks.phase_codebook(max(quant.levels, 2))
                  if quant.method.startswith("joint") else None)
            make_complex_quantizer(quant.method, cb, **options)  # type: ignore[arg-type]
        elif quant.method == "binary":
            from ..quantize.binary import BinaryQuantizer

            structural = options.pop("structural", True)
            if not isinstance(structural, bool):
                raise ConfigError(f"structural: must be true or false, got {structural!r}")
            BinaryQuantizer(**options)
        else:
            from ..quantize.phase import make_phase_quantizer

            make_phase_quantizer(quant.method, list(quant.phases) if quant.phases else
                                 quant.levels, **options)
    except TypeError as e:
        raise ConfigError(f"quantization.options: {e}") from None
    except (UserError, ValueError) as e:
        raise _option_error(str(e), quant.options) from None


def _check_boxes(value: Any, size: int) -> tuple[tuple[int, int, int, int], ...]:
    if not isinstance(value, list):
        raise ConfigError(f"detectors.boxes: must be a list of [y0, x0, h, w] boxes in pixels, "
                          f"got {value!r}")
    boxes = []
    for i, b in enumerate(value):
        if not (isinstance(b, list) and len(b) == 4):
            raise ConfigError(f"detectors.boxes: each box is [y0, x0, h, w] in pixels, box {i} "
                              f"is {b!r}")
        y0, x0, h, w = (_int(v, "detectors.boxes", low=0) for v in b)
        if h < 1 or w < 1:
            raise ConfigError(f"detectors.boxes: box {i} {b} is empty (h and w must be >= 1)")
        if y0 + h > size or x0 + w > size:
            raise ConfigError(f"detectors.boxes: box {i} {b} lies outside the {size}x{size} grid")
        boxes.append((y0, x0, h, w))
    return tuple(boxes)


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


def parse_config(raw: dict[str, Any], *, units_required: bool = False) -> Config:
    """Validate a parsed TOML mapping into a :class:`Config` (one-line ConfigErrors).

    Args:
        raw: the mapping (``tomllib.load`` output, or a dict built in Python).
        units_required: refuse bare numbers for lengths (``pitch = 0.0004``: metres or what?);
            :func:`load_config` sets it for files. Python callers may pass floats in metres.

    Raises:
        ConfigError: one line naming ``section.key``: a wrong type, range or unit, a geometry
            that makes the run meaningless (a unit slip in the wavelength), detectors that do
            not fit the grid, a process made for another wavelength, or more memory than the
            machine has (:func:`optodesign.train.memory.check_memory`).
    """
    from .memory import check_lower_bound, check_memory, parse_bytes

    if not isinstance(raw, dict):
        raise ConfigError(f"config: must be a table of sections, got {raw!r}")
    _take(raw, "", {"task", "seed", "optics", "quantization", "train", "data", "detectors",
                    "target"})
    task = _choice(raw.get("task", "d2nn"), "task", TASKS)
    seed = _int(raw.get("seed", 0), "seed", low=0)

    o = _section(raw, "optics", {"wavelength", "pitch", "size", "layers", "distance",
                                 "input_distance", "output_distance", "distances", "pad"})
    t = _section(raw, "train", {"epochs", "batch_size", "lr", "loss", "temperature",
                                "steps_per_epoch", "qat_start", "max_memory"})
    max_memory = (None if t.get("max_memory") is None else
                  parse_bytes(t["max_memory"], field="train.max_memory"))
    for key in ("wavelength", "pitch", "size"):
        if key not in o:
            raise ConfigError(f"optics.{key}: required")
    with warnings.catch_warnings(record=True) as wavelength_warnings:
        warnings.simplefilter("always", UnitsWarning)
        if isinstance(o["wavelength"], (list, dict)):
            raise ConfigError(f"optics.wavelength: expected a length or a frequency such as "
                              f"'532 nm' or '0.4 THz', got {o['wavelength']!r}")
        wavelength = parse_quantity(o["wavelength"], field="optics.wavelength",
                                    require_unit=units_required)
    pitch = _length(o["pitch"], "optics.pitch", units=units_required)
    size = _int(o["size"], "optics.size", low=4)
    default_layers = 1 if task != "d2nn" else 5
    layers = _int(o.get("layers", default_layers), "optics.layers")
    pad = _float(o.get("pad", 2.0), "optics.pad")
    if pad < 1:
        raise ConfigError(f"optics.pad: must be >= 1, got {pad}")
    # before any list of `layers` entries exists: layers = 10**9 must not build one
    check_lower_bound(size=size, pad=pad, layers=layers, max_memory=max_memory)
    if "distances" in o:
        if "distance" in o:
            raise ConfigError("optics.distances: give either distances or distance, not both")
        ds = o["distances"]
        if not isinstance(ds, list) or len(ds) != layers + 1:
            raise ConfigError(f"optics.distances: need a list of {layers + 1} lengths (input -> "
                              f"layer 1, ..., layer {layers} -> output)")
        distances = tuple(_length(d, f"optics.distances[{i}]", allow_zero=True,
                                  units=units_required) for i, d in enumerate(ds))
    else:
        if "distance" not in o:
            raise ConfigError("optics.distance: required (or optics.distances)")
        d = _length(o["distance"], "optics.distance", units=units_required)
        default_in = 0.0 if task != "d2nn" else d
        din = (_length(o["input_distance"], "optics.input_distance", allow_zero=True,
                       units=units_required) if "input_distance" in o else default_in)
        dout = (_length(o["output_distance"], "optics.output_distance", units=units_required)
                if "output_distance" in o else d)
        distances = (din,) + (d,) * (layers - 1) + (dout,)
    optics = Optics(wavelength, pitch, size, layers, distances, pad)
    _check_wavelength(optics, o["wavelength"])
    for w in wavelength_warnings:  # plausible enough to train: pass the warning on
        warnings.warn(w.message, UnitsWarning, stacklevel=2)

    q = _section(raw, "quantization", {"method", "levels", "phases", "process", "codebook",
                                       "options"})
    method = _choice(q.get("method", "psq-li"), "quantization.method",
                     PHASE_METHODS + COMPLEX_METHODS)
    levels = _int(q.get("levels", 4), "quantization.levels", low=2)
    phases = q.get("phases")
    if phases is not None:
        if not isinstance(phases, list) or len(phases) < 2:
            raise ConfigError("quantization.phases: need a list of at least 2 phases (radians)")
        phases = tuple(_float(p, "quantization.phases", positive=False) for p in phases)
        levels = len(phases)
    options = q.get("options", {})
    if not isinstance(options, dict):
        raise ConfigError(f"quantization.options: must be a table, got {options!r}")
    process = _optional_str(q.get("process"), "quantization.process",
                            what="a process name (e.g. 'thz-printed') or a .toml path")
    codebook = _optional_str(q.get("codebook"), "quantization.codebook",
                             what="process, polar:A,P, square:N or phase:L")
    if codebook is not None:
        if not _CODEBOOK.match(codebook):
            raise ConfigError(f"quantization.codebook: cannot read {codebook!r} (allowed: "
                              f"process, polar:A,P, square:N, phase:L)")
        if codebook == "process" and process is None:
            raise ConfigError("quantization.codebook: 'process' needs quantization.process")
    quant = Quantization(method, levels, phases, process, codebook, dict(options))
    if process is not None:
        _check_process(quant, optics)
    _check_options(quant)

    train = Train(
        epochs=_int(t.get("epochs", 10), "train.epochs"),
        batch_size=_int(t.get("batch_size", 64), "train.batch_size"),
        lr=_float(t.get("lr", 0.05), "train.lr"),
        loss=_choice(t.get("loss", "ce"), "train.loss", ("ce", "mse")),
        temperature=_float(t.get("temperature", 10.0), "train.temperature"),
        steps_per_epoch=_int(t.get("steps_per_epoch", 50), "train.steps_per_epoch"),
        qat_start=_int(t.get("qat_start", 0), "train.qat_start", low=0),
        max_memory=max_memory,
    )

    dd = _section(raw, "data", {"dataset", "path", "image_size", "encoding", "train_samples",
                                "test_samples"})
    data = Data(
        dataset=_choice(dd.get("dataset", "digits"), "data.dataset",
                        ("digits", "mnist", "fashion")),
        path=_optional_str(dd.get("path"), "data.path",
                           what="the directory holding the IDX files"),
        image_size=_int(dd.get("image_size", min(32, size)), "data.image_size"),
        encoding=_choice(dd.get("encoding", "amplitude"), "data.encoding",
                         ("amplitude", "phase")),
        train_samples=_int(dd.get("train_samples", 0), "data.train_samples", low=0),
        test_samples=_int(dd.get("test_samples", 0), "data.test_samples", low=0),
    )
    if data.image_size > size:
        raise ConfigError(f"data.image_size: {data.image_size} px exceeds optics.size {size}")

    de = _section(raw, "detectors", {"size", "boxes"})
    boxes = _check_boxes(de.get("boxes", []), size)
    detectors = Detectors(_int(de.get("size", max(2, size // 12)), "detectors.size"), boxes)
    if task == "d2nn" and not boxes:
        from ..data.datasets import N_CLASSES

        _check_detector_layout(size, detectors.size, N_CLASSES[data.dataset])

    tg = _section(raw, "target", {"kind", "text", "image", "spots", "spacing", "spot_size"})
    default_kind = {"hologram": "text", "lens": "focus", "splitter": "spots"}.get(task, "text")
    spots = tg.get("spots", [3, 3])
    if not (isinstance(spots, list) and len(spots) == 2):
        raise ConfigError(f"target.spots: must be [rows, cols], got {spots!r}")
    target = Target(
        kind=_choice(tg.get("kind", default_kind), "target.kind",
                     ("text", "image", "spots", "focus")),
        text=_str(tg.get("text", "OPTO"), "target.text"),
        image=_optional_str(tg.get("image"), "target.image",
                            what="the path of a PNG/JPEG or .npy image"),
        spots=(_int(spots[0], "target.spots"), _int(spots[1], "target.spots")),
        spacing=_int(tg.get("spacing", max(4, size // 6)), "target.spacing"),
        spot_size=_int(tg.get("spot_size", max(2, size // 24)), "target.spot_size"),
    )
    if task == "hologram" and target.kind == "image" and target.image is None:
        raise ConfigError("target.image: required when target.kind = 'image' (a PNG/JPEG or "
                          ".npy path)")
    if task != "d2nn" and layers != 1 and task in ("lens",):
        raise ConfigError("optics.layers: a lens is a single layer (layers = 1)")

    cfg = Config(task, optics, quant, train, data, detectors, target, seed, raw)
    check_memory(cfg)
    return cfg


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file (lengths need units; see :func:`parse_config`).

    Any error is one line starting with the file name and naming ``section.key``.
    """
    path = Path(path)
    raw = read_toml(path, what="config file")
    try:
        return parse_config(raw, units_required=True)
    except UserError as e:
        raise ConfigError(f"{path.name}: {e}") from None

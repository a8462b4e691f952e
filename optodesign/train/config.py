"""Training configuration: a TOML file validated once into frozen dataclasses.

Unknown keys are rejected, lengths accept units ("532 nm", "3 cm", "0.4 THz"), and every error
is one line naming the ``section.key``. See ``examples/*.toml`` and ``docs/training.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..fileio import read_toml
from ..units import parse_length, parse_quantity

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
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _length(value: Any, name: str, *, allow_zero: bool = False) -> float:
    return parse_length(value, field=name, allow_zero=allow_zero)


def parse_config(raw: dict[str, Any]) -> Config:
    """Validate a parsed TOML mapping into a :class:`Config` (one-line ConfigErrors)."""
    _take(raw, "", {"task", "seed", "optics", "quantization", "train", "data", "detectors",
                    "target"})
    task = _choice(raw.get("task", "d2nn"), "task", TASKS)
    seed = _int(raw.get("seed", 0), "seed", low=0)

    o = _take(dict(raw.get("optics", {})), "optics",
              {"wavelength", "pitch", "size", "layers", "distance", "input_distance",
               "output_distance", "distances", "pad"})
    for key in ("wavelength", "pitch", "size"):
        if key not in o:
            raise ConfigError(f"optics.{key}: required")
    wavelength = parse_quantity(o["wavelength"], field="optics.wavelength")
    pitch = _length(o["pitch"], "optics.pitch")
    size = _int(o["size"], "optics.size", low=4)
    default_layers = 1 if task != "d2nn" else 5
    layers = _int(o.get("layers", default_layers), "optics.layers")
    if "distances" in o:
        if "distance" in o:
            raise ConfigError("optics.distances: give either distances or distance, not both")
        ds = o["distances"]
        if not isinstance(ds, list) or len(ds) != layers + 1:
            raise ConfigError(f"optics.distances: need a list of {layers + 1} lengths (input -> "
                              f"layer 1, ..., layer {layers} -> output)")
        distances = tuple(_length(d, f"optics.distances[{i}]", allow_zero=True)
                          for i, d in enumerate(ds))
    else:
        if "distance" not in o:
            raise ConfigError("optics.distance: required (or optics.distances)")
        d = _length(o["distance"], "optics.distance")
        default_in = 0.0 if task != "d2nn" else d
        din = _length(o.get("input_distance", default_in), "optics.input_distance",
                      allow_zero=True)
        dout = _length(o.get("output_distance", d), "optics.output_distance")
        distances = (din,) + (d,) * (layers - 1) + (dout,)
    pad = _float(o.get("pad", 2.0), "optics.pad")
    if pad < 1:
        raise ConfigError(f"optics.pad: must be >= 1, got {pad}")
    optics = Optics(wavelength, pitch, size, layers, distances, pad)

    q = _take(dict(raw.get("quantization", {})), "quantization",
              {"method", "levels", "phases", "process", "codebook", "options"})
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
        raise ConfigError("quantization.options: must be a table")
    quant = Quantization(method, levels, phases, q.get("process"), q.get("codebook"),
                         dict(options))

    t = _take(dict(raw.get("train", {})), "train",
              {"epochs", "batch_size", "lr", "loss", "temperature", "steps_per_epoch",
               "qat_start"})
    train = Train(
        epochs=_int(t.get("epochs", 10), "train.epochs"),
        batch_size=_int(t.get("batch_size", 64), "train.batch_size"),
        lr=_float(t.get("lr", 0.05), "train.lr"),
        loss=_choice(t.get("loss", "ce"), "train.loss", ("ce", "mse")),
        temperature=_float(t.get("temperature", 10.0), "train.temperature"),
        steps_per_epoch=_int(t.get("steps_per_epoch", 50), "train.steps_per_epoch"),
        qat_start=_int(t.get("qat_start", 0), "train.qat_start", low=0),
    )

    dd = _take(dict(raw.get("data", {})), "data",
               {"dataset", "path", "image_size", "encoding", "train_samples", "test_samples"})
    data = Data(
        dataset=_choice(dd.get("dataset", "digits"), "data.dataset",
                        ("digits", "mnist", "fashion")),
        path=dd.get("path"),
        image_size=_int(dd.get("image_size", min(32, size)), "data.image_size"),
        encoding=_choice(dd.get("encoding", "amplitude"), "data.encoding",
                         ("amplitude", "phase")),
        train_samples=_int(dd.get("train_samples", 0), "data.train_samples", low=0),
        test_samples=_int(dd.get("test_samples", 0), "data.test_samples", low=0),
    )
    if data.image_size > size:
        raise ConfigError(f"data.image_size: {data.image_size} px exceeds optics.size {size}")

    de = _take(dict(raw.get("detectors", {})), "detectors", {"size", "boxes"})
    boxes = tuple(tuple(_int(v, "detectors.boxes", low=0) for v in b)
                  for b in de.get("boxes", []))
    if any(len(b) != 4 for b in boxes):
        raise ConfigError("detectors.boxes: each box is [y0, x0, h, w] in pixels")
    detectors = Detectors(_int(de.get("size", max(2, size // 12)), "detectors.size"), boxes)

    tg = _take(dict(raw.get("target", {})), "target",
               {"kind", "text", "image", "spots", "spacing", "spot_size"})
    default_kind = {"hologram": "text", "lens": "focus", "splitter": "spots"}.get(task, "text")
    spots = tg.get("spots", [3, 3])
    if not (isinstance(spots, list) and len(spots) == 2):
        raise ConfigError("target.spots: must be [rows, cols]")
    target = Target(
        kind=_choice(tg.get("kind", default_kind), "target.kind",
                     ("text", "image", "spots", "focus")),
        text=str(tg.get("text", "OPTO")),
        image=tg.get("image"),
        spots=(_int(spots[0], "target.spots"), _int(spots[1], "target.spots")),
        spacing=_int(tg.get("spacing", max(4, size // 6)), "target.spacing"),
        spot_size=_int(tg.get("spot_size", max(2, size // 24)), "target.spot_size"),
    )
    if task != "d2nn" and layers != 1 and task in ("lens",):
        raise ConfigError("optics.layers: a lens is a single layer (layers = 1)")

    return Config(task, optics, quant, train, data, detectors, target, seed, raw)


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML config file."""
    path = Path(path)
    raw = read_toml(path, what="config file")
    try:
        return parse_config(raw)
    except ConfigError as e:
        raise ConfigError(f"{path.name}: {e}") from None

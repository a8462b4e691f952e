"""The one registry of quantizer methods: name → family, options (with defaults) and builder.

Every quantizer a config, a benchmark or a test asks for by name is built here::

    q = build_quantizer("psq-li", levels=4, options={"t_end": 80.0})
    q = build_quantizer("joint", codebook=phase_codebook(8))
    q = build_quantizer("binary", fixed_mask=mask, options={"soft": False})

Each method belongs to a family: ``phase`` (a real phase map, a phase table of ``L`` levels:
:mod:`.phase`), ``binary`` (two levels ``{0, α}`` with a learned ``α`` and structural zeros:
:mod:`.binary`) or ``complex`` (``(Re, Im)`` raw weights and a complex codebook:
:mod:`.complex`). Option names and types are checked here, through
:class:`optodesign.schema.Table`; the constructors own the ranges and the interplay of options
(``lt_lambda_end >= lt_lambda``), and a ConfigError they raise is named
``<section>.<option>`` like the others. ``docs/quantizers.md`` shows :func:`methods_table`
(a test keeps the two equal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..errors import ConfigError
from ..schema import Table
from .base import Quantizer
from .binary import BinaryQuantizer
from .codebooks import phase_codebook
from .complex import complex_quantizer
from .phase import FT_T, phase_quantizer

__all__ = ["Family", "Option", "Method", "METHODS", "CONSTRAINTS", "family", "method_names",
           "read_options", "check_options", "build_quantizer", "constrain", "methods_table",
           "constraints_table"]

Family = Literal["phase", "binary", "complex"]


@dataclass(frozen=True)
class Option:
    """One keyword option of a method.

    Attributes:
        name: the key in ``[quantization.options]`` (and the builder's keyword).
        kind: ``"number"``, ``"integer"``, ``"boolean"`` or a tuple of the allowed strings.
        default: the value used when the option is not given; ``None`` where the constructor
            derives it (from the level gap ``Δ``, say), as ``shown`` says.
        help: one line for the docs.
        shown: how the docs show the default (``"2/Δ"``); ``""`` shows ``default``.
    """

    name: str
    kind: str | tuple[str, ...]
    default: Any
    help: str
    shown: str = ""

    def read(self, table: Table) -> Any:
        if isinstance(self.kind, tuple):
            return table.choice(self.name, self.kind)
        if self.kind == "integer":
            return table.integer(self.name, low=None)
        return table.boolean(self.name) if self.kind == "boolean" else table.number(self.name)

    @property
    def default_text(self) -> str:
        if self.shown:
            return self.shown
        if isinstance(self.default, bool):
            return str(self.default).lower()
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)


@dataclass(frozen=True)
class Method:
    """A quantizer method: its name, family, one-line description and options."""

    name: str
    family: Family
    help: str
    options: tuple[Option, ...] = ()

    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)


_WARMUP = Option("warmup_epochs", "integer", 0, "full-precision epochs before QAT")
_T_START = Option("t_start", "number", None, "first temperature, 1/rad", "2/Δ")
_JOINT = (
    Option("t_start", "number", 2.0, "relative temperature at the first QAT epoch"),
    Option("t_end", "number", 200.0, "relative temperature at the last epoch"),
    Option("schedule", ("geometric", "linear", "fixed"), "geometric",
           "how the temperature goes from t_start to t_end (fixed: t_end throughout)"),
    _WARMUP,
    Option("straight_through", "boolean", False,
           "hard codeword forward, the soft assignment's gradient"),
    Option("init", ("phase", "codewords"), "phase",
           "fresh weights: random phases at amplitude 0.9, or random codewords"),
)

#: Every method, in the order the docs list them.
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("fp32", "phase", "full precision `exp(i·raw)`; evaluation and export use `hard`"),
    Method("pq", "phase", "post-training quantization: trains as `fp32`, `hard` rounds"),
    Method("ste", "phase", "nearest level, straight-through gradient (identity)"),
    Method("gs", "phase", "Gumbel-softmax over the levels, `Σ p_k t_k` (mixes transmissions)", (
        Option("gs_tau_start", "number", None, "first τ, rad", "Δ"),
        Option("gs_tau_end", "number", None, "last τ, rad", "Δ/50"),
    )),
    Method("dsq", "phase", "DSQ (Gong et al. 2019): hard value, tanh soft-step gradient", (
        Option("dsq_alpha_start", "number", 0.2, "first α in (0, 1)"),
        Option("dsq_alpha_end", "number", 0.01, "last α in (0, 1); smaller is sharper"),
        Option("dsq_hard_forward", "boolean", True, "hard value forward (false: soft)"),
    )),
    Method("psq-ft", "phase", "PSQ soft staircase at a fixed temperature T", (
        Option("t", "number", None, "the temperature, 1/rad (for every L)", f"{FT_T:g}"),
        _WARMUP,
    )),
    Method("psq-li", "phase", "PSQ, T rising linearly per epoch", (
        _T_START, Option("t_end", "number", None, "last temperature, 1/rad", "64/Δ"), _WARMUP,
    )),
    Method("psq-lt", "phase", "PSQ, learnable T (capped at 1/ε) pulled up by a growing "
           "regulariser", (
        _T_START,
        Option("lt_lambda", "number", 1e-3, "first regulariser weight λ"),
        Option("lt_lambda_end", "number", 1e4, "last regulariser weight λ"),
        Option("lt_eps", "number", None, "ε, caps T at 1/ε", "Δ/1000"),
        _WARMUP,
    )),
    Method("binary", "binary", "two levels {0, α}, one learned α per layer, structural zeros", (
        Option("structural", "boolean", True,
               "fix the pixels light cannot reach or use (quantize/structural.py)"),
        Option("alpha_init", "number", math.pi, "first α, rad in (0, 2π)", "π"),
        Option("fixed_level", "integer", 0, "level (0 or 1) of fixed pixels"),
        Option("opaque", "boolean", False, "fixed pixels transmit 0 instead"),
        Option("learn_alpha", "boolean", True, "α is trained (false: fixed)"),
        Option("soft", "boolean", True, "progressive-sigmoid path (false: straight-through)"),
        Option("t_start", "number", None, "first temperature, 1/rad", "2/Δ"),
        Option("t_end", "number", None, "last temperature, 1/rad", "64/Δ"),
    )),
    Method("joint", "complex", "nearest codeword in the complex plane, soft assignment "
           "hardening over the epochs (needs a codebook)", _JOINT),
    Method("joint-learned", "complex", "`joint` with the codewords trained too", _JOINT + (
        Option("squash", ("clip", "tanh"), "clip", "how codewords stay inside the unit disk"),
    )),
    Method("reim", "complex", "baseline: Re and Im rounded apart on a uniform grid", (
        Option("bits", "integer", 4, "bits per pixel: ceil(b/2) for Re, floor(b/2) for Im"),
        Option("extent", "number", 1 / math.sqrt(2),
               "half-width of the grid; 1/√2 keeps every codeword passive", "1/√2"),
    )),
    Method("ampphase", "complex", "baseline: amplitude and phase rounded apart", (
        Option("amp_bits", "integer", 2, "amplitude bits (0: phase only)"),
        Option("phase_bits", "integer", 2, "phase bits"),
        Option("min_amplitude", "number", None, "smallest amplitude in (0, 1)",
               "2^−amp_bits"),
    )),
)}


#: Fabrication constraints: layers around any method's quantizer
#: (:class:`optodesign.quantize.constraints.Constrained`), read from ``[fabrication]``.
CONSTRAINTS: dict[str, Method] = {m.name: m for m in (
    Method("none", "phase", "no length scale (the legalizer and the rule penalty still act "
           "when a process is given)"),
    Method("filter", "phase", "filter-and-project: cone density filter of radius R before the "
           "quantizer, whose rising temperature is the projection", (
        Option("radius", "number", 2.0, "filter radius R, pixels (>= 1)"),
    )),
    Method("superpixel", "phase", "size x size blocks share one raw value (grid or running-bond "
           "brick layout; brick has no diagonal necks by construction)", (
        Option("size", "integer", 2, "block edge, pixels"),
        Option("layout", ("brick", "grid"), "brick", "block layout"),
    )),
)}


def read_options_of(constraint: str, options: Mapping[str, Any] | None, *, src: str = "",
                    section: str = "options") -> dict[str, Any]:
    """A constraint's options checked by name and type, defaults filled in."""
    if constraint not in CONSTRAINTS:
        raise ConfigError(f"constraint: unknown {constraint!r} (allowed: "
                          f"{', '.join(CONSTRAINTS)})")
    return _read(CONSTRAINTS[constraint], options, src, section)[1]


def constrain(inner: Quantizer, constraint: str = "none",
              options: Mapping[str, Any] | None = None, *, legalize: Any = None,
              rules: Any = None, penalty: float = 0.0, src: str = "",
              section: str = "options") -> Quantizer:
    """Wrap any quantizer in a fabrication constraint (:data:`CONSTRAINTS`).

    Args:
        inner: a quantizer from :func:`build_quantizer` (any family).
        constraint: a name of :data:`CONSTRAINTS`.
        options: the constraint's options (checked by name and type here, ranges by
            :class:`~optodesign.quantize.constraints.Constrained`).
        legalize: ``levels -> levels`` making a level map pass the process's rules, or None.
        rules: a :class:`~optodesign.quantize.constraints.SoftRules` for the rule penalty.
        penalty: weight of the rule penalty (0: none).
    """
    from .constraints import Constrained

    if constraint not in CONSTRAINTS:
        raise ConfigError(f"constraint: unknown {constraint!r} (allowed: "
                          f"{', '.join(CONSTRAINTS)})")
    table, opts = _read(CONSTRAINTS[constraint], options, src, section)
    if constraint == "none" and legalize is None and not (rules is not None and penalty > 0):
        return inner
    try:
        return Constrained(inner, kind=constraint, legalize=legalize, rules=rules,
                           weight=penalty, **opts)
    except ConfigError as e:
        key, sep, what = str(e).partition(": ")
        if sep and key in table:
            raise table.error(key, what) from None
        raise


def method_names(kind: Family | None = None) -> tuple[str, ...]:
    """The method names of one family (all of them for ``None``), in the docs' order."""
    return tuple(n for n, m in METHODS.items() if kind is None or m.family == kind)


def _method(name: Any) -> Method:
    if not isinstance(name, str) or name not in METHODS:
        raise ConfigError(f"method: unknown quantizer {name!r} (allowed: "
                          f"{', '.join(METHODS)})")
    return METHODS[name]


def family(method: str) -> Family:
    """``"phase"``, ``"binary"`` or ``"complex"``; a ConfigError for an unknown method."""
    return _method(method).family


def _read(spec: Method, options: Mapping[str, Any] | None, src: str,
          section: str) -> tuple[Table, dict[str, Any]]:
    options = {} if options is None else options
    if not spec.options and isinstance(options, Mapping) and options:
        raise Table({}, None, src=src, section=section).error(
            sorted(options)[0], f"unknown key (method {spec.name!r} takes no options)")
    table = Table(options, set(spec.option_names()), src=src, section=section)
    return table, {o.name: o.read(table) if o.name in table else o.default
                   for o in spec.options}


def read_options(method: str, options: Mapping[str, Any] | None = None, *, src: str = "",
                 section: str = "options") -> dict[str, Any]:
    """``options`` checked by name and type, with every default filled in.

    Args:
        method: a name of :data:`METHODS`.
        options: the given options (``[quantization.options]``); None = none.
        src, section: how errors name the table (``"quantization.options"``).

    Raises:
        ConfigError: unknown method or option (naming the allowed ones), a value of the
            wrong type.
    """
    return _read(_method(method), options, src, section)[1]


def build_quantizer(method: str, *, levels: int | None = None,
                    phases: np.ndarray | Sequence[float] | None = None,
                    codebook: Any = None, fixed_mask: Any = None,
                    options: Mapping[str, Any] | None = None, src: str = "",
                    section: str = "options") -> Quantizer:
    """Build any quantizer by name: the one way to make one from a method and its options.

    Args:
        method: a name of :data:`METHODS`.
        levels: phase family: ``L`` uniform levels (when ``phases`` is None).
        phases: phase family: an explicit ``(L,)`` phase table, radians.
        codebook: ``joint`` methods: the complex ``(L,)`` codebook (required); the other
            complex methods build their own table and refuse one.
        fixed_mask: ``binary``: bool ``(ny, nx)``, True where physics fixes the pixel.
        options: the method's options (:data:`METHODS` lists them with their defaults;
            ``binary``'s ``structural`` tells the caller whether to compute ``fixed_mask``
            and is not passed on).
        src, section: how errors name the options table.

    Raises:
        ConfigError: unknown method or option, a bad value (named ``section.option``), a
            missing level table or codebook.
    """
    spec = _method(method)
    table, opts = _read(spec, options, src, section)
    joint = method in ("joint", "joint-learned")
    if spec.family == "phase" and phases is None and levels is None:
        raise ConfigError(f"levels: method {method!r} needs levels or phases")
    if joint and codebook is None:
        raise ConfigError(f"codebook: method {method!r} needs a codebook (complex table)")
    if spec.family == "complex" and not joint and codebook is not None:
        raise ConfigError(f"codebook: method {method!r} builds its own table; give none")
    try:
        if spec.family == "phase":
            return phase_quantizer(method, phases if phases is not None else levels,
                                        **opts)
        if spec.family == "binary":
            opts.pop("structural")
            return BinaryQuantizer(fixed_mask=fixed_mask, **opts)
        return complex_quantizer(method, codebook, **opts)  # type: ignore[arg-type]
    except ConfigError as e:  # the constructors name the option: "t_start: must be ..."
        key, sep, what = str(e).partition(": ")
        if sep and key in table:
            raise table.error(key, what) from None
        # an option's default that another one rules out (lt_eps given, t_start not)
        prefix = f"{src}: " if src else ""
        raise ConfigError(f"{prefix}{section}: {e}") from None


def check_options(method: str, options: Mapping[str, Any] | None, *, levels: int = 4,
                  phases: Sequence[float] | None = None, src: str = "",
                  section: str = "options") -> None:
    """Refuse bad ``options`` now rather than when training starts: build one quantizer on
    a stand-in table (``levels`` uniform phases, or a ``levels``-point phase codebook for the
    ``joint`` methods), so the constructors' ranges and the interplay of options are
    checked too. Errors as :func:`build_quantizer`."""
    codebook = phase_codebook(levels) if method in ("joint", "joint-learned") else None
    build_quantizer(method, levels=levels, phases=phases, codebook=codebook, options=options,
                    src=src, section=section)


def methods_table() -> str:
    """Two Markdown tables, the methods and their options (docs/quantizers.md shows exactly
    this; ``Δ`` is the smallest level gap)."""
    rows = ["| method | family | what it does | options |", "| --- | --- | --- | --- |"]
    options: dict[tuple[str, str, str], list[str]] = {}
    for m in METHODS.values():
        names = ", ".join(f"`{o.name}`" for o in m.options) or "—"
        rows.append(f"| `{m.name}` | {m.family} | {m.help} | {names} |")
        for o in m.options:
            options.setdefault((o.name, o.default_text, o.help), []).append(f"`{m.name}`")
    rows += ["", "| option | of | default | meaning |", "| --- | --- | --- | --- |"]
    rows += [f"| `{name}` | {', '.join(ms)} | {default} | {what} |"
             for (name, default, what), ms in options.items()]
    return "\n".join(rows) + "\n"


def constraints_table() -> str:
    """A Markdown table of the fabrication constraints and their options (docs/quantizers.md
    shows exactly this)."""
    rows = ["| constraint | what it does | option | default | meaning |",
            "| --- | --- | --- | --- | --- |"]
    for m in CONSTRAINTS.values():
        if not m.options:
            rows.append(f"| `{m.name}` | {m.help} | — | | |")
        for i, o in enumerate(m.options):
            head = f"`{m.name}` | {m.help}" if i == 0 else " | "
            rows.append(f"| {head} | `{o.name}` | {o.default_text} | {o.help} |")
    return "\n".join(rows) + "\n"

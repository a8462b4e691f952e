"""What a config builds before training: the process's level table, the codebook, one
quantizer per layer (through the registry) and the design-rule deck."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, UserError
from ..fabrules import Deck
from ..optics.propagation import check_sampling
from ..quantize.base import Quantizer
from ..units import wrap_phase
from .config import Config

__all__ = ["build_quantizers", "check_optics", "fabrication_deck", "process_table"]


def check_optics(cfg: Config) -> None:
    """Refuse geometries the sampling checks call meaningless (an aliased grid)."""
    from ..tasks import get_task

    o, grid = cfg.optics, cfg.optics.grid
    far = get_task(cfg.task).output_plane != "near"  # the last hop is not propagated
    for i, d in enumerate(o.distances):
        if d == 0 or (far and i == len(o.distances) - 1):
            continue
        rep = check_sampling(grid, d, wavelength=o.wavelength)
        if rep.fatal:
            raise ConfigError(f"optics.distances[{i}]: {rep.problems[0]}")


def process_table(cfg: Config) -> np.ndarray | None:
    q = cfg.quantization
    if q.process is None:
        return None
    from ..process import load_process

    process = load_process(q.process)
    if cfg.is_complex and "levels" not in cfg.source.get("quantization", {}):
        return np.asarray(process.level_table(None), dtype=np.complex128)  # every meta-atom
    if q.phases is not None:
        return np.asarray(process.level_table(np.asarray(q.phases)), dtype=np.complex128)
    return np.asarray(process.level_table(q.levels), dtype=np.complex128)


def _codebook(cfg: Config, process_table: np.ndarray | None) -> np.ndarray:
    from ..quantize import codebooks

    spec = cfg.quantization.codebook or ("process" if process_table is not None else
                                         f"phase:{cfg.quantization.levels}")
    kind, _, args = spec.partition(":")
    try:
        nums = [int(a) for a in args.split(",")] if args else []
        if kind == "process":
            if process_table is None:
                raise ConfigError("quantization.codebook: 'process' needs quantization.process")
            return codebooks.table_codebook(process_table)
        if kind == "polar":
            return codebooks.polar_codebook(nums[0], nums[1])
        if kind == "square":
            return codebooks.square_codebook(nums[0])
        if kind == "phase":
            return codebooks.phase_codebook(nums[0])
    except (IndexError, ValueError):
        pass
    raise ConfigError(f"quantization.codebook: cannot read {spec!r} (allowed: process, "
                      f"polar:A,P, square:N, phase:L)")


def build_quantizers(cfg: Config, process_table: np.ndarray | None,
                     fixed_masks: np.ndarray | None = None) -> list[Quantizer]:
    """One quantizer per layer, from the config (and the process's level table), inside the
    ``[fabrication]`` constraint (:func:`optodesign.quantize.registry.constrain`)."""
    from ..quantize.registry import build_quantizer, constrain, family

    q = cfg.quantization
    phases: Any = None
    if family(q.method) == "phase" and process_table is not None:
        phases = wrap_phase(np.angle(process_table))
        phases[phases > 2 * np.pi - 1e-9] = 0.0
    elif family(q.method) == "phase" and q.phases is not None:
        phases = np.asarray(q.phases)
    inner = [build_quantizer(
        q.method, levels=q.levels, phases=phases,
        codebook=_codebook(cfg, process_table) if q.method.startswith("joint") else None,
        fixed_mask=None if fixed_masks is None else fixed_masks[layer],
        options=q.options, section="quantization.options",
    ) for layer in range(cfg.optics.layers)]
    fab = cfg.fabrication
    legalize, rules = None, None
    if fab.process is not None:
        from ..quantize.constraints import SoftRules

        deck = fabrication_deck(cfg, process_table)
        legalize = deck.legalize if fab.legalize else None
        rules = SoftRules(deck.label_matrices(), isolated=deck.checks_isolated(),
                          necks=deck.checks_necks()) if fab.penalty > 0 else None
    return [constrain(qz, fab.constraint, fab.options, legalize=legalize, rules=rules,
                      penalty=fab.penalty, section="fabrication.options") for qz in inner]


def fabrication_deck(cfg: Config, process_table: np.ndarray | None) -> Deck:
    """The design rules of ``[fabrication] process`` for this config's layers
    (:class:`optodesign.fabrules.Deck`)."""
    from ..process import load_process

    fab = cfg.fabrication
    assert fab.process is not None
    process = load_process(fab.process)
    table = process_table
    if table is None:
        try:
            table = np.asarray(process.level_table(cfg.quantization.levels))
        except UserError as e:
            raise ConfigError(f"fabrication.process: {e}") from None
    return Deck.of(process, pitch=cfg.optics.pitch, level_table=table)

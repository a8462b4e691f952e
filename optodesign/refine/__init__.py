"""Discrete refinement of a trained Design's integer level maps (DBS, simulated annealing).

See ``docs/refine.md``. The objective is the hard-quantized task loss
(:class:`~optodesign.refine.objective.Objective`); the solvers live in
:mod:`optodesign.refine.solvers`.
"""

from __future__ import annotations

from .objective import LayerState, Objective
from .rules import change_allowed, satisfies_min_feature
from .solvers import (
    METHODS,
    Method,
    RefineResult,
    direct_binary_search,
    refine,
    simulated_annealing,
)

__all__ = [
    "METHODS",
    "LayerState",
    "Method",
    "Objective",
    "RefineResult",
    "change_allowed",
    "direct_binary_search",
    "refine",
    "satisfies_min_feature",
    "simulated_annealing",
]

"""Fabrication processes: what a design level becomes physically (``layouts/*.toml``).

A process file states, for one fabrication route, the wavelength it is made for, the material
(index ``n``, extinction ``kappa``, surrounding medium ``n0``), the pixel pitch it can make, its
design rules, the GDS layer map and units, and how a level becomes a structure. One
:class:`~optodesign.process.structure.Structure` per kind holds that physics:

``etch`` (:mod:`~optodesign.process.etch`)
    Multi-level surface relief: binary masks (``2**m`` levels) or one layer per level.
``pillars`` (:mod:`~optodesign.process.pillars`)
    A meta-atom table: pillar size (diameter or side) → complex transmission ``t``
    (an example table can come from the model in :mod:`~optodesign.process.atoms`).
``print`` (:mod:`~optodesign.process.printed`)
    A thickness map ``h = h_base + φ λ / (2π (n − n0))`` printed on a base plate.

Sign convention (DESIGN.md): time dependence ``exp(−iωt)``, a plane wave going +z is
``exp(ikz)``, so a lossy material has the complex index ``n + iκ`` (κ >= 0). Replacing a
thickness ``Δh`` of medium ``n0`` by material multiplies the field by
``exp(i 2π (n − n0) Δh / λ) · exp(−2π κ Δh / λ)``: more material = more phase delay = a
*larger* phase, and never gain. Every transmission here is *relative to the base plate*
(relief height 0), so ``|t| <= 1`` and a level-0 relief of zero has ``t = 1``.

All lengths are metres, phases radians. The modules:

``spec``       the frozen records of a process file (no physics);
``reader``     :func:`load_process`: the file, validated through :class:`optodesign.schema.Table`;
``core``       :class:`Process`: the record plus ``process.structure``;
``structure``  the :class:`~optodesign.process.structure.Structure` protocol and the one
               thin-element transmission; ``etch``, ``pillars``, ``printed`` implement it and
               ``kinds`` registers them;
``physical``   :class:`~optodesign.process.physical.Physical`, a fabricated stack as physics;
``atoms``      the meta-atom model.
"""

from .atoms import effective_index_atom
from .core import Process
from .physical import Physical
from .reader import load_process, process_from_dict, shipped_processes
from .spec import (
    WAVELENGTH_TOLERANCE,
    EtchSpec,
    GdsSpec,
    Material,
    PillarSpec,
    PrintSpec,
    Rules,
)
from .structure import Structure, thin_transmission

__all__ = [
    "Process",
    "Material",
    "Rules",
    "GdsSpec",
    "EtchSpec",
    "PillarSpec",
    "PrintSpec",
    "Structure",
    "Physical",
    "WAVELENGTH_TOLERANCE",
    "load_process",
    "process_from_dict",
    "shipped_processes",
    "effective_index_atom",
    "thin_transmission",
]

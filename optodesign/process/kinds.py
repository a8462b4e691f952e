"""The registry of process kinds: ``kind`` of a process file → its structure class.

A new process kind is one new module implementing
:class:`~optodesign.process.structure.Structure` and one line here.
"""

from __future__ import annotations

from .etch import Etch
from .pillars import Pillars
from .printed import Print

__all__ = ["KINDS"]

KINDS: dict[str, type[Etch] | type[Pillars] | type[Print]] = {
    "etch": Etch,
    "pillars": Pillars,
    "print": Print,
}

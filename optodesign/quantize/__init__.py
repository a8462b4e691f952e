"""Quantizers: map a layer's raw parameter to a transmission the fab can make.

* phase-only layers: PSQ (FT / LI / LT) and the PQ / STE / GS / DSQ baselines
  (:mod:`.phase`), the binary quantizer with structural zeros (:mod:`.binary`,
  :mod:`.structural`);
* complex layers: the joint codebook quantizer and the independent Re/Im and
  amplitude/phase baselines (:mod:`.complex`, codebooks in :mod:`.codebooks`).

All share :class:`~optodesign.quantize.base.Quantizer`. Every method is built by name
through :func:`optodesign.quantize.registry.build_quantizer`, which lists each method's
family and options; see ``docs/quantizers.md`` and ``docs/complex_quantization.md``.
"""

from .base import Quantizer

__all__ = ["Quantizer"]

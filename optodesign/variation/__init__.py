"""Process variation: the fabrication errors a design meets, as models verify applies and
training can sample.

``spec``      the variation file (``--errors``): :class:`~optodesign.variation.spec.ErrorModel`,
              :class:`~optodesign.variation.spec.Tolerance`,
              :class:`~optodesign.variation.spec.SweepSpec`, default magnitudes;
``perturb``   perturbation physics: one realisation of a
              :class:`~optodesign.process.physical.Physical` stack per (seed, sample);

Moving layers on the pixel grid (misalignment, rotation about the optical axis) is torch
geometry, :mod:`optodesign.optics.placement` (verify and training call the one
implementation; this package stays numpy-only).

The per-kind parts (what a perturbed stack transmits) belong to the process's structure
(:mod:`optodesign.process.structure`).
"""

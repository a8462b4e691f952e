"""The hard-quantized task loss of a Design's level maps, and its exact incremental update.

:class:`Objective` scores integer level maps ``levels (K, ny, nx)`` through
``level_tables[k, levels[k]]`` with the Evaluator's forward model
(:func:`optodesign.models.functional.forward_stack`): a supervised task (D2NN) its loss on a
fixed subset of the training split, a plane-wave task (hologram, lens, splitter) its loss under
unit plane-wave illumination. The loss is the task's own (:meth:`optodesign.tasks.Task.loss_of`,
read from the observed pixels by :meth:`~optodesign.tasks.Task.read_observed`), reduced per
candidate so that many candidates are scored in one call, with the settings the design was
trained with (its setup record: loss, temperature, uniformity weight).

Fast candidate scoring (why this is exact). Fields are linear in every single layer's
transmission. Changing pixels ``p`` of layer ``k`` from ``t_p`` to ``t'_p`` changes the output
field of input ``b`` by

    Δu_b(r) = Σ_p a_b(p) (t'_p − t_p) G_p(r),

with ``a_b`` the field incident on layer ``k`` (unchanged, as it only depends on earlier
layers) and ``G_p`` the response of the rest of the stack to a unit point source at ``p``
right after layer ``k``. ``G_p`` does not depend on the input, so a candidate costs one point
source through the remaining layers instead of the whole input batch through them; for the
last layer ``G_p`` is the padded angular-spectrum kernel shifted to ``p`` (a gather, no FFT at
all). Only the "observed" output pixels that the loss reads are kept (detector boxes, focal
disk, spot boxes; the whole plane for a hologram). Candidates are stacked along a leading
dimension and scored together (on the GPU when the Objective lives there).

A fan-out grating (output plane ``orders``) is read the same way: its order amplitudes,
``far_field`` of one period times the square root of the pixel envelope, are linear in every
pixel, so ``G_p`` is the period's Fourier kernel at the target orders. The far-field hologram
(``far_field``) is not: its output cells integrate the intensity over each cell, which no
single amplitude per cell reproduces, so refine refuses it in one line (its task's
``observed``).

By default the search runs on **point samples** (``pixels = "points"``, one sample per
pixel): only there is a pixel's change a point source, and the last layer's ``G_p`` a gather.
Under the cells model of a design trained with ``pixels = "cells"``
(:func:`~optodesign.optics.cells.cell_band_limit`), or at several samples per pixel, a changed
pixel is a band-limited drawing of its cell that reaches every sample of the layer.

**Drawn search model** (``model``, a :class:`~optodesign.verify.model.SimModel`; plane-wave
near-field tasks: hologram, lens, splitter). The search then runs on the drawing verify
simulates: ``s × s`` samples per pixel, cells band-limited, the model's padding and method. A
layer is linear in its pixels there too: ``Δu(r) = Σ_p (t'_p − t_p) G_p(r)`` with ``G_p`` the
rest of the stack's response to ``a · f_p`` (``a`` the drawn incident field, ``f_p`` the
drawing of pixel ``p``'s cell), one propagation per changed pixel (shared by the candidates
that change it), read at the ``s²`` samples of every observed pixel; the loss reads their
mean, as :meth:`~optodesign.evaluate.Evaluator.output_intensity` does. The update stays exact
under that model; it costs a propagation of the fine grid per pixel instead of a gather.
``refine`` reports the metric before and after under the search model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from ..design import Design
from ..errors import UserError
from ..evaluate import Evaluator
from ..optics.farfield import far_field, pixel_envelope
from ..optics.propagation import propagate, transfer_function
from ..optics.rayleigh import rs_transfer
from ..verify.model import SimModel, evaluator_for

log = logging.getLogger(__name__)

__all__ = ["Objective", "LayerState", "check_seed"]

#: complex entries per chunk of candidate fields (memory bound of one scoring call)
_CHUNK_ELEMENTS = 1 << 23


def check_seed(seed: object) -> int:
    """A seed as an int >= 0 (what numpy's generators accept), else a one-line UserError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed: must be an integer >= 0, got {seed!r}")
    return int(seed)


@dataclass
class LayerState:
    """What the incremental update of one layer needs (mutable; owned by one solver).

    Attributes:
        layer: 0-based layer index ``k``.
        incident: complex ``(B, ny*nx)``: field arriving on layer ``k`` per input.
        transmission: complex ``(ny*nx,)``: current transmission of layer ``k``.
        output: complex ``(B, P)``: current output field at the observed pixels.
        loss: current loss (from ``output``).
        later: complex ``(ny, nx)`` transmissions of layers ``k+1..K-1``.
    """

    layer: int
    incident: Tensor
    transmission: Tensor
    output: Tensor
    loss: float
    later: list[Tensor]

    def snapshot(self) -> tuple[Tensor, Tensor, float]:
        return self.transmission.clone(), self.output.clone(), self.loss

    def restore(self, snap: tuple[Tensor, Tensor, float]) -> None:
        self.transmission, self.output, self.loss = snap[0].clone(), snap[1].clone(), snap[2]


class Objective:
    """Hard-quantized task loss of level maps, with batched exact scoring of level changes.

    Args:
        design: the Design (its level tables, optics, task setup, target, dataset).
        evaluator: an :class:`~optodesign.evaluate.Evaluator` of the design (built with
            ``device`` when None; a supervised task loads the design's dataset); its device
            and dataset are used with point-sampled pixels (module docstring).
        device: torch device for all computation ("cpu", "cuda").
        train_samples: supervised tasks: number of training images the loss averages over (a
            fixed random subset of the train split, drawn with ``seed``).
        seed: seed of that subset.
    """

    def __init__(self, design: Design, *, evaluator: Evaluator | None = None,
                 device: str | torch.device = "cpu", train_samples: int = 256,
                 seed: int = 0, model: SimModel | None = None) -> None:
        seed = check_seed(seed)
        self.design = design
        evaluator = evaluator or Evaluator.from_design(design, device=device)
        #: the search runs on verify's drawing (module docstring), else on point samples
        self.model = model
        if model is not None:
            task = evaluator.task
            if task.supervised or task.output_plane != "near":
                raise UserError(f"--oversample: the drawn search model is for plane-wave "
                                f"near-field tasks (hologram, lens, splitter), not {design.task!r}")
            bad = model.problems(design)
            if bad:
                raise UserError(f"--oversample: {bad[0]}")
            evaluator = evaluator_for(evaluator, model)
        elif design.pixels != "points" or design.oversample != 1:  # the search model
            evaluator = Evaluator(replace(design, pixels="points", oversample=1),
                                  evaluator.device, evaluator.dataset)
        self.evaluator = evaluator
        #: samples per pixel per axis of the search model
        self.s = evaluator.oversample if model is not None else 1
        self.device = self.evaluator.device
        self.task = self.evaluator.task
        #: the design's sampling (shape, pitch, zero padding) every propagation runs on
        self.grid = self.evaluator.grid
        d = design
        ny, nx = d.shape
        self.tables = torch.as_tensor(d.level_tables.astype(np.complex64), device=self.device)
        # ---- inputs
        self.labels: Tensor | None = None
        if self.task.supervised:
            ds = self.evaluator.dataset
            assert ds is not None
            n = len(ds.train_labels)
            if train_samples < 1:
                raise UserError(f"train_samples: must be >= 1, got {train_samples}")
            idx = np.sort(np.random.default_rng(seed).permutation(n)[:min(train_samples, n)])
            self.field = self.evaluator.images_to_field(ds.train_images[idx])
            self.labels = torch.as_tensor(ds.train_labels[idx], device=self.device)
        else:
            self.field = self.evaluator.plane_wave()
        # ---- the output pixels the loss reads (detector boxes, focal disk, spot boxes; the
        # whole plane for a hologram)
        obs = self.task.observed()
        self.obs = torch.as_tensor(obs, dtype=torch.long, device=self.device)
        self.obs_y = self.obs // nx
        self.obs_x = self.obs % nx
        #: flat indices of the samples read: the observed pixels, each as its s² samples
        # ((P, s²) in that order, so that a reshape averages them back onto the pixels)
        s = self.s
        i = torch.arange(s, device=self.device)
        fy = (self.obs_y[:, None, None] * s + i[None, :, None]).expand(-1, s, s)
        fx = (self.obs_x[:, None, None] * s + i[None, None, :]).expand(-1, s, s)
        self.obs_fine = (fy * (nx * s) + fx).reshape(-1)
        self._kernel: Tensor | None = None

    # ------------------------------------------------------------------ basics
    @property
    def n_layers(self) -> int:
        return self.design.n_layers

    @property
    def shape(self) -> tuple[int, int]:
        return self.design.shape

    @property
    def n_inputs(self) -> int:
        return int(self.field.shape[0])

    def transmissions(self, levels: np.ndarray) -> list[Tensor]:
        """Complex64 ``(ny, nx)`` transmission per layer: ``level_tables[k, levels[k]]``."""
        lv = torch.as_tensor(np.asarray(levels).astype(np.int64), device=self.device)
        return [self.tables[k][lv[k]] for k in range(self.n_layers)]

    def _drawn(self, layers: Sequence[Tensor]) -> list[Tensor]:
        """The layers as the search model propagates them (drawn cells; else unchanged)."""
        if self.model is None:
            return list(layers)
        return [t.to(torch.complex64) for t in self.evaluator.layers(list(layers))]

    def _propagate(self, u: Tensor, distance: float) -> Tensor:
        return propagate(u, distance, grid=self.grid, wavelength=self.design.wavelength)

    def _readout(self, v: Tensor) -> Tensor:
        """The output amplitudes ``(..., ny*nx)`` of the fields ``v`` leaving the last layer
        and its distance: the field itself, or a grating's order amplitudes (their squared
        moduli are the order cells of :func:`~optodesign.optics.farfield.far_field_intensity`)."""
        if self.task.output_plane == "near":
            return v.flatten(-2)
        ny, nx = self.shape
        env = self.task.tensor("order_envelope", lambda: torch.as_tensor(
            np.sqrt(np.outer(pixel_envelope(ny), pixel_envelope(nx))), dtype=torch.float32,
            device=self.device))
        return (far_field(v, self.grid, pad=1) * env).flatten(-2)

    # ------------------------------------------------------------------ loss
    def _score(self, out: Tensor) -> Tensor:
        """Loss from the output amplitudes ``(..., B, P·s²)`` at the samples read: their
        intensity averaged over each pixel's samples, then :meth:`reduce`."""
        inten = out.real**2 + out.imag**2
        if self.s > 1:
            inten = inten.reshape(*inten.shape[:-1], -1, self.s**2).mean(-1)
        return self.reduce(inten)

    def reduce(self, intensity: Tensor) -> Tensor:
        """Loss from observed output intensities.

        Args:
            intensity: real ``(..., B, P)``: intensity at the observed pixels, per input.

        Returns:
            ``(...)`` loss per leading index (one per candidate): the task's training loss
            (:meth:`optodesign.tasks.Task.observed_loss`), equal to it on the full plane.
        """
        return self.task.observed_loss(intensity, self.labels)

    @torch.no_grad()
    def loss(self, levels: np.ndarray) -> float:
        """Loss of the level maps ``(K, ny, nx)`` through the Evaluator's forward model."""
        inten = self.evaluator.output_intensity(self.field, self.transmissions(levels))
        return float(self.reduce(inten.flatten(-2)[..., self.obs]))

    # ------------------------------------------------------------------ incremental scoring
    @torch.no_grad()
    def state(self, levels: np.ndarray, layer: int) -> LayerState:
        """Forward all inputs once and keep what scoring changes of ``layer`` needs."""
        d = self.design
        if not 0 <= layer < self.n_layers:
            raise UserError(f"layer: must lie in 0..{self.n_layers - 1}, got {layer}")
        raw = self.transmissions(levels)
        ts = self._drawn(raw)
        u = self._propagate(self.field, d.distances[0])
        for j in range(layer):
            u = self._propagate(u * ts[j], d.distances[j + 1])
        incident = u
        v = self._propagate(incident * ts[layer], d.distances[layer + 1])
        for j in range(layer + 1, self.n_layers):
            v = self._propagate(v * ts[j], d.distances[j + 1])
        out = self._readout(v)[:, self.obs_fine]
        loss = float(self._score(out))
        return LayerState(layer, incident.flatten(-2), raw[layer].flatten().clone(), out, loss,
                          ts[layer + 1:])

    def _last_kernel(self) -> Tensor:
        """Padded-grid impulse response of the last distance (FFT order), complex64."""
        if self._kernel is None:
            d = self.design
            nyp, nxp = self.grid.padded().shape
            dist = d.distances[-1]
            if dist == 0:
                k = torch.zeros((nyp, nxp), dtype=torch.complex64, device=self.device)
                k[0, 0] = 1
            else:
                # 1/(nyp nxp) folded into H and an unnormalised inverse, as propagate() does
                # (some MKL builds mis-scale a single complex64 ifft2 at 2048², see README);
                # complex128 here, once per design, so no platform check is needed
                make = rs_transfer if self.grid.method == "rs" else transfer_function
                h = make((nyp, nxp), dist, pitch=self.grid.pitch, wavelength=d.wavelength,
                         device=self.device, dtype=torch.complex128, scale=1.0 / (nyp * nxp))
                k = torch.fft.ifft2(h, norm="forward").to(torch.complex64)
            self._kernel = k
        return self._kernel

    def responses(self, state: LayerState, pixels: Tensor) -> Tensor:
        """``G_p`` at the observed pixels for flat pixel indices ``pixels (Q,)``: ``(Q, P)``
        (under a drawn search model ``(Q, P·s²)`` at the samples read, with the incident field
        folded in: each pixel's drawn cell times that field, through the rest)."""
        ny, nx = self.shape
        near = self.task.output_plane == "near"
        if self.model is None and state.layer == self.n_layers - 1 and near:
            k = self._last_kernel()
            nyp, nxp = k.shape
            py, px = pixels // nx, pixels % nx
            iy = torch.remainder(self.obs_y[None, :] - py[:, None], nyp)
            ix = torch.remainder(self.obs_x[None, :] - px[:, None], nxp)
            return k[iy, ix]
        d = self.design
        out = []
        nyp, nxp = self.grid.padded().shape
        step = max(1, _CHUNK_ELEMENTS // (nyp * nxp))
        for i in range(0, pixels.numel(), step):
            p = pixels[i:i + step]
            v = torch.zeros((p.numel(), ny * nx), dtype=torch.complex64, device=self.device)
            v[torch.arange(p.numel(), device=self.device), p] = 1
            v = v.view(-1, ny, nx)
            if self.model is not None:
                v = self._drawn([v])[0] * state.incident[0].view(ny * self.s, nx * self.s)
            v = self._propagate(v, d.distances[state.layer + 1])
            for j, t in enumerate(state.later):
                v = self._propagate(v * t, d.distances[state.layer + 2 + j])
            out.append(self._readout(v)[:, self.obs_fine])
        return torch.cat(out)

    def _delta(self, state: LayerState, pixels: Tensor, new: Tensor) -> Tensor:
        """Output-field change ``(M, B, P·s²)`` of candidates ``pixels, new (M, S)``."""
        m, s = pixels.shape
        c = self.tables[state.layer][new] - state.transmission[pixels]  # (M, S)
        if self.model is not None:  # one input; its field is folded into G_p
            coef = c[..., None]
        else:
            coef = state.incident[:, pixels].permute(1, 2, 0) * c[..., None]  # (M, S, B)
        # each pixel's response once, however many candidates change it
        uniq, inv = torch.unique(pixels.reshape(-1), return_inverse=True)
        g = self.responses(state, uniq)[inv].view(m, s, -1)
        if s == 1:
            return coef[:, 0, :, None] * g[:, 0, None, :]
        return torch.einsum("msb,msp->mbp", coef, g)

    @torch.no_grad()
    def candidate_losses(self, state: LayerState, pixels: Tensor | np.ndarray,
                         new: Tensor | np.ndarray) -> Tensor:
        """Loss after each candidate change of ``state.layer``, each relative to the state.

        Args:
            state: from :meth:`state` (and :meth:`apply`).
            pixels: int ``(M, S)`` flat pixel indices ``y * nx + x``; the S pixels of one
                candidate must be distinct (a slot with ``new`` equal to the current level
                changes nothing, so it pads a shorter candidate).
            new: int ``(M, S)`` new level of each pixel.

        Returns:
            float ``(M,)`` on the Objective's device.
        """
        pixels = torch.as_tensor(pixels, dtype=torch.long, device=self.device)
        new = torch.as_tensor(new, dtype=torch.long, device=self.device)
        if pixels.ndim == 1:
            pixels, new = pixels[:, None], new[:, None]
        m, s = pixels.shape
        per = max(1, s * self.n_inputs * self.obs_fine.numel())
        step = max(1, _CHUNK_ELEMENTS // per)
        out = []
        for i in range(0, m, step):
            u = state.output[None] + self._delta(state, pixels[i:i + step], new[i:i + step])
            out.append(self._score(u))
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    @torch.no_grad()
    def apply(self, state: LayerState, pixels: Sequence[int] | np.ndarray | Tensor,
              new: Sequence[int] | np.ndarray | Tensor) -> float:
        """Make one change (distinct flat ``pixels`` of ``state.layer`` to levels ``new``) in the
        state; returns the new loss."""
        p = torch.as_tensor(np.asarray(pixels), dtype=torch.long, device=self.device).reshape(1, -1)
        v = torch.as_tensor(np.asarray(new), dtype=torch.long, device=self.device).reshape(1, -1)
        state.output = state.output + self._delta(state, p, v)[0]
        state.transmission[p[0]] = self.tables[state.layer][v[0]]
        state.loss = float(self._score(state.output))
        if not math.isfinite(state.loss):
            raise FloatingPointError("refine: the loss became non-finite")
        return state.loss

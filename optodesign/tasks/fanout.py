"""Fan-out grating: one period of a multi-level (Dammann-style) phase grating that splits a
unit plane wave into a set of diffraction orders of equal power.

**The design is one period**: ``n × n`` pixels of pitch ``p = Λ / n`` for a period ``Λ``; the
fabricated element repeats it (export writes the single period: a user arrays it). Under a
unit plane wave a thin periodic element sends the fraction

    η(mx, my) = |c(mx, my)|²,   c = (1 / n²) Σ t(x, y) exp(−2πi (mx x + my y) / Λ),

of the incident power into order ``(mx, my)``, at the angles ``sin θx = mx λ / Λ``,
``sin θy = my λ / Λ``: the squared DFT coefficients of one period, read exactly from the
unpadded FFT of the period (:attr:`FanOut.output_plane` ``"orders"``, one output pixel per order,
order ``(0, 0)`` at pixel ``(n // 2, n // 2)``; ``pad`` plays no part, see
:mod:`optodesign.optics.farfield`).

Orders come from the config as ``[target] spots = [rows, cols]`` and ``spacing`` (in orders:
``spots = [3, 3]``, ``spacing = 1`` is orders −1, 0, 1 along each axis; an even count needs an
even spacing, ``[1, 2]`` at spacing 2 is orders ±1), the period ``Λ = optics.size ×
optics.pitch``. :meth:`FanOut.read_grating` reads the explicit form, a ``[grating]`` table:
``period`` (a length, which must equal ``size × pitch``), and ``orders`` (a list of
``[mx, my]``) or ``angles`` (a list of ``[θx, θy]`` in degrees, each within 0.5 % of an order's
angle).

The loss is the splitter's: ``−Σ η + w · std(η) / mean(η)``; the metrics are the efficiency
``Σ η`` (primary), the uniformity ``1 − (max − min) / (max + min)`` and its error
``(max − min) / (max + min)``, and per order its efficiency and angles in degrees.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import ConfigError, UserError
from .base import Prepared, SetupError, Task, TaskSetup, read_number

if TYPE_CHECKING:
    from torch import Tensor

    from ..grid import Grid
    from ..schema import Table
    from ..train.config import Config

__all__ = ["FanOut", "FanOutSetup", "order_angles", "orders_from_angles", "orders_from_spots",
           "ANGLE_TOLERANCE"]

#: an angle given for an order must lie within this fraction of the order's angle
ANGLE_TOLERANCE = 0.005

Order = tuple[int, int]


def order_angles(orders: Sequence[Order], *, period: float, wavelength: float
                 ) -> list[tuple[float, float]]:
    """Angles ``(θx, θy)`` in degrees of orders ``(mx, my)``: ``sin θ = m λ / Λ``."""
    out = []
    for mx, my in orders:
        sx, sy = mx * wavelength / period, my * wavelength / period
        if abs(sx) >= 1 or abs(sy) >= 1:
            raise UserError(f"orders: order ({mx}, {my}) is evanescent at period "
                            f"{period:.4g} m and wavelength {wavelength:.4g} m")
        out.append((math.degrees(math.asin(sx)), math.degrees(math.asin(sy))))
    return out


def orders_from_spots(spots: tuple[int, int], spacing: int, *, field: str = "target.spacing"
                      ) -> list[Order]:
    """Orders ``(mx, my)`` of a ``rows × cols`` array ``spacing`` orders apart, centred on
    order 0 (row-major, rows along y)."""
    rows, cols = spots
    out = []
    for i in range(rows):
        for j in range(cols):
            my, mx = (i - (rows - 1) / 2) * spacing, (j - (cols - 1) / 2) * spacing
            if not (float(mx).is_integer() and float(my).is_integer()):
                raise ConfigError(f"{field}: a {rows}x{cols} array at spacing {spacing} lands "
                                  f"between orders; an even count needs an even spacing")
            out.append((int(mx), int(my)))
    return out


def orders_from_angles(angles: Sequence[Sequence[float]], *, period: float, wavelength: float,
                       field: str = "grating.angles") -> list[Order]:
    """Orders of angles ``[θx, θy]`` in degrees; a ``ConfigError`` naming ``field`` and the
    nearest achievable angle for one more than :data:`ANGLE_TOLERANCE` away from every order."""
    step = math.degrees(math.asin(min(1.0, wavelength / period)))  # order 1's angle
    out = []
    for k, pair in enumerate(angles):
        if (isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2
                or not all(isinstance(a, (int, float)) and not isinstance(a, bool)
                           and math.isfinite(a) for a in pair)):
            raise ConfigError(f"{field}[{k}]: need [theta_x, theta_y] in degrees, got {pair!r}")
        order = []
        for axis, a in zip("xy", pair):
            m = round(period * math.sin(math.radians(a)) / wavelength)
            s = m * wavelength / period
            if abs(s) >= 1:
                raise ConfigError(f"{field}[{k}]: {a:g} deg along {axis} is beyond the last "
                                  f"propagating order")
            near = math.degrees(math.asin(s))
            if abs(a - near) > ANGLE_TOLERANCE * max(abs(near), step):
                raise ConfigError(
                    f"{field}[{k}]: {a:g} deg along {axis} is not an order of period "
                    f"{period * 1e6:.4g} um at {wavelength * 1e9:.4g} nm; the nearest is order "
                    f"{m} at {near:.4f} deg")
            order.append(m)
        out.append((order[0], order[1]))
    return out


def _check_orders(orders: Sequence[Order], shape: tuple[int, int], name: str) -> None:
    ny, nx = shape
    if not orders:
        raise SetupError(f"{name}: needs at least one order")
    for mx, my in orders:
        if not (-(nx // 2) <= mx < nx - nx // 2 and -(ny // 2) <= my < ny - ny // 2):
            raise SetupError(f"{name}: order ({mx}, {my}) is beyond the {ny}x{nx} period's "
                             f"orders (|m| <= n / 2): use more pixels per period")
    if len(set(orders)) != len(orders):
        raise SetupError(f"{name}: an order appears twice")


@dataclass(frozen=True)
class FanOutSetup(TaskSetup):
    """Attributes:
        period: metres (``n × pitch``).
        orders: the target orders ``(mx, my)``.
        angles: their angles ``(θx, θy)`` in degrees (informational, from the wavelength).
        uniformity_weight: weight of the std/mean term of the loss.
    """

    name: ClassVar[str] = "fanout"

    period: float
    orders: tuple[Order, ...]
    angles: tuple[tuple[float, float], ...] = ()
    uniformity_weight: float = 1.0

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, shape: tuple[int, int]) -> FanOutSetup:
        raw = data.get("orders")
        try:
            orders = tuple((int(a), int(b)) for a, b in raw)  # type: ignore[union-attr]
            ok = all(float(a) == int(a) and float(b) == int(b) for a, b in raw)  # type: ignore
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise SetupError(f"setup.orders: must be a list of [mx, my] whole numbers, got "
                             f"{raw!r}")
        _check_orders(orders, shape, "setup.orders")
        try:
            angles = tuple((float(a), float(b)) for a, b in data.get("angles", ()))
        except (TypeError, ValueError):
            raise SetupError(f"setup.angles: must be a list of [theta_x, theta_y], got "
                             f"{data.get('angles')!r}") from None
        return cls(read_number(data.get("period"), "setup.period"), orders, angles,
                   read_number(data.get("uniformity_weight", 1.0), "setup.uniformity_weight",
                               positive=False))

    @classmethod
    def from_v1(cls, meta: Mapping[str, Any], *, shape: tuple[int, int]) -> FanOutSetup:
        raise SetupError("setup: a fan-out grating has no format-1 design files")


class FanOut(Task):
    """One period of a grating splitting a plane wave into equal diffraction orders."""

    setup_type = FanOutSetup
    name = setup_type.name
    output_plane = "orders"
    periodic = True
    config_sections = ("grating",)
    loss_kind = "fan-out (-efficiency + std/mean of the order efficiencies)"
    primary_metric = "efficiency"
    metric_names = ("efficiency", "uniformity")
    default_drop: ClassVar[dict[str, float]] = {"efficiency": 0.02, "uniformity": 0.05}
    default_target_kind = "spots"

    setup: FanOutSetup

    # ------------------------------------------------------------------ config
    @classmethod
    def check_config(cls, cfg: Config) -> None:
        if cfg.optics.layers != 1:
            raise ConfigError("optics.layers: a fan-out grating is one thin layer (layers = 1)")
        if cfg.optics.distances[0] != 0:
            raise ConfigError("optics.input_distance: a fan-out grating is lit by a plane wave "
                              "on the layer (0)")
        cls.setup_from_config(cfg)  # orders inside the period, propagating

    @classmethod
    def read_grating(cls, table: Table, *, size: int, pitch: float, wavelength: float
                     ) -> tuple[float, list[Order]]:
        """``[grating]``: ``period`` (default ``size × pitch``; must equal it) and ``orders``
        (``[[mx, my], ...]``) or ``angles`` (``[[θx, θy], ...]`` degrees)."""
        period = table.length("period", size * pitch)
        if not math.isclose(period, size * pitch, rel_tol=1e-6):
            raise table.error("period", f"{period * 1e6:.6g} um is not optics.size x "
                                        f"optics.pitch = {size * pitch * 1e6:.6g} um (the "
                                        f"design is one period: set pitch = period / size)")
        if ("orders" in table.data) == ("angles" in table.data):
            raise table.error("orders", "give either orders or angles")
        if "angles" in table.data:
            raw = table.raw("angles")
            if not isinstance(raw, list) or not raw:
                raise table.error("angles", f"need a list of [theta_x, theta_y] in degrees, "
                                            f"got {raw!r}")
            return period, orders_from_angles(raw, period=period, wavelength=wavelength,
                                              field=table.field("angles"))
        raw = table.raw("orders")
        ok = isinstance(raw, list) and bool(raw) and all(
            isinstance(o, list) and len(o) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in o) for o in raw)
        if not ok:
            raise table.error("orders", f"need a list of [mx, my] integer orders, got {raw!r}")
        return period, [(int(a), int(b)) for a, b in raw]

    @classmethod
    def setup_from_config(cls, cfg: Config) -> Prepared:
        o, t = cfg.optics, cfg.target
        grating = cfg.source.get("grating") if isinstance(cfg.source, Mapping) else None
        if grating is not None:
            from ..schema import Table

            period, orders = cls.read_grating(
                Table(grating, {"period", "orders", "angles"}, section="grating"),
                size=o.size, pitch=o.pitch, wavelength=o.wavelength)
        else:
            period, orders = o.size * o.pitch, orders_from_spots(t.spots, t.spacing)
        shape = (o.size, o.size)
        try:
            _check_orders(orders, shape, "target.spots" if grating is None else "grating")
            angles = order_angles(orders, period=period, wavelength=o.wavelength)
        except UserError as e:
            raise ConfigError(str(e)) from None
        target = np.zeros(shape)
        for mx, my in orders:
            target[o.size // 2 + my, o.size // 2 + mx] = 1.0
        setup = FanOutSetup(period, tuple(orders), tuple(angles))
        return Prepared(setup, target)

    def initial_phase(self, grid: Grid, wavelength: float) -> np.ndarray:
        """The kinoform of the target orders: the phase of the sum of their plane waves with
        fixed pseudo-random phases (seed 0), a start that already puts most of the light
        into them (a random start spreads it over all n² orders and learns slowly)."""
        from ..units import wrap_phase

        ny, nx = grid.shape
        yy, xx = np.mgrid[0:ny, 0:nx]
        psi = np.random.default_rng(0).random(len(self.setup.orders)) * 2 * np.pi
        u = sum(np.exp(1j * (2 * np.pi * (mx * xx / nx + my * yy / ny) + s))
                for (mx, my), s in zip(self.setup.orders, psi))
        return wrap_phase(np.angle(u))

    @classmethod
    def export_notes(cls, setup: TaskSetup) -> list[str]:
        assert isinstance(setup, FanOutSetup)
        return [f"fanout: each layer file is ONE period ({setup.period * 1e6:.6g} um) of the "
                f"grating; array it (pitch = the period) over the aperture to be lit"]

    # ------------------------------------------------------------------ reading
    def pixels(self) -> np.ndarray:
        """Flat output indices of the target orders."""
        ny, nx = self.shape
        return np.array([(ny // 2 + my) * nx + nx // 2 + mx for mx, my in self.setup.orders])

    def zoom_box(self) -> list[int] | None:
        """The target orders and two more on every side, enlarged in plots (None when that
        is the whole order plane)."""
        ny, nx = self.shape
        m = max(max(abs(mx), abs(my)) for mx, my in self.setup.orders) + 2
        if 2 * m + 1 >= min(ny, nx):
            return None
        return [ny // 2 - m, nx // 2 - m, 2 * m + 1, 2 * m + 1]

    def boxes(self) -> list[list[int]]:
        ny, nx = self.shape
        return [[ny // 2 + my, nx // 2 + mx, 1, 1] for mx, my in self.setup.orders]

    def observed(self) -> np.ndarray:
        """The target orders' cells, in the order of ``setup.orders`` (refine reads their
        amplitudes, which are linear in every pixel of the period)."""
        return self.pixels()

    def read(self, intensity: Tensor) -> Tensor:
        """Order efficiencies ``(..., B, C)`` of order planes ``(..., B, ny, nx)``."""
        from .base import _long

        idx = self.tensor("orders", lambda: _long(self.pixels(), self.device))
        return intensity.flatten(-2)[..., idx] / self.incident

    def read_observed(self, intensity: Tensor) -> Tensor:
        return intensity / self.incident

    def loss_of(self, reading: Tensor, labels: Tensor | None = None) -> Tensor:
        """−(efficiency) + w · std / mean of the order efficiencies: ``(..., B, C)`` ->
        ``(...)``."""
        e = reading
        spread = e.std(-1, unbiased=False) / e.mean(-1).clamp_min(1e-20) if e.shape[-1] > 1 \
            else e.sum(-1) * 0
        return (-e.sum(-1) + self.setup.uniformity_weight * spread).mean(-1)

    def metrics(self, intensity: Tensor) -> dict[str, Any]:
        """Efficiency (target orders / incident), uniformity and its error, per order."""
        e = self.read(intensity[None])[0].double()
        hi, lo = e.max().item(), e.min().item()
        err = (hi - lo) / max(hi + lo, 1e-30)
        return {"efficiency": e.sum().item(), "uniformity": 1 - err, "uniformity_error": err,
                "order_efficiencies": [round(v, 6) for v in e.tolist()],
                "orders": [list(m) for m in self.setup.orders],
                "angles_deg": [[round(a, 4), round(b, 4)] for a, b in self.setup.angles]}

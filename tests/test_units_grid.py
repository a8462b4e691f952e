"""Units at the edges, and the immutable grid."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from optodesign.errors import UserError
from optodesign.grid import Grid, GridMismatchError, padded_shape
from optodesign.units import (
    UnitsError,
    UnitsWarning,
    format_length,
    parse_length,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "metres"),
    [
        ("532 nm", 532e-9),
        ("0.4 mm", 0.4e-3),
        ("36 um", 36e-6),
        ("36 µm", 36e-6),
        ("36 μm", 36e-6),
        (3e-6, 3e-6),
        ("3 cm", 0.03),
        ("1.5E-3 m", 1.5e-3),
        (0.25, 0.25),
        ("  750um ", 750e-6),
    ],
)
def test_parse_length(text: str | float, metres: float) -> None:
    assert parse_length(text) == pytest.approx(metres, rel=1e-12)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("-532 nm", "wavelength: must be > 0"),
        ("0 nm", "wavelength: must be > 0"),
        ("532 furlongs", "wavelength: unknown length unit 'furlongs'"),
        ("nm", "wavelength: cannot read 'nm'"),
        ("", "wavelength: cannot read"),
        (True, "wavelength: expected a number"),
        ([1], "wavelength: expected a number or a string"),
        ("inf m", "wavelength: cannot read"),
        ("3e-6", "wavelength: give a unit, e.g. \"3 um\" if '3e-6' means metres"),
        ("1 Mm", "wavelength: unknown length unit 'Mm'.*did you mean 'mm'"),
        ("0.4 MM", "wavelength: unknown length unit 'MM'.*case-sensitive"),
        ("750 NM", "wavelength: unknown length unit 'NM'.*did you mean 'nm'"),
        ("2 M", "wavelength: unknown length unit 'M'"),
    ],
)
def test_parse_length_errors_name_the_field(text: object, match: str) -> None:
    with pytest.raises(UnitsError, match=match) as e:
        parse_length(text, field="wavelength")  # type: ignore[arg-type]
    assert "\n" not in str(e.value)


def test_bare_numbers_refused_when_a_unit_is_required() -> None:
    with pytest.raises(UnitsError, match=r'^optics.pitch: give a unit, e.g. "400 um"'):
        parse_length(0.0004, field="optics.pitch", require_unit=True)
    assert parse_length(0, field="d", allow_zero=True, require_unit=True) == 0.0
    assert parse_length("0.4 mm", field="d", require_unit=True) == pytest.approx(4e-4)


@pytest.mark.parametrize(
    ("text", "hz"),
    [("0.4 THz", 0.4e12), ("0.4 GHz", 0.4e9), ("3 MHz", 3e6), ("5 kHz", 5e3), ("7 Hz", 7.0),
     ("1 PHz", 1e15)],
)
def test_frequencies_are_case_sensitive(text: str, hz: float) -> None:
    from optodesign.units import parse_frequency

    assert parse_frequency(text) == pytest.approx(hz, rel=1e-12)
    for wrong in (text.lower(), text.upper()):
        if wrong != text:
            with pytest.raises(UnitsError, match="case-sensitive: did you mean"):
                parse_frequency(wrong, field="f")


def test_a_frequency_unit_in_any_case_is_read_as_a_frequency() -> None:
    with pytest.raises(UnitsError, match="unknown frequency unit 'thz'.*did you mean 'THz'"):
        parse_quantity("0.4 thz", field="wavelength")
    with pytest.raises(UnitsError, match="unknown frequency unit 'mHz'"):
        parse_quantity("400 mHz", field="wavelength")


def test_implausible_frequency_warns_like_an_implausible_length() -> None:
    with pytest.warns(UnitsWarning, match=r"wavelength = 749.481 mm \(0.4 GHz\)"):
        parse_quantity("0.4 GHz", field="wavelength")


def test_zero_allowed_when_asked_and_implausible_values_warn() -> None:
    assert parse_length("0 mm", allow_zero=True) == 0.0
    with pytest.warns(UnitsWarning, match="wavelength = 532 m"):
        parse_quantity("532 m", field="wavelength")
    assert parse_quantity("0.4 THz", field="wavelength") == pytest.approx(7.49481145e-4)


def test_format_length() -> None:
    assert format_length(532e-9) == "532 nm"
    assert format_length(0.4e-3) == "400 um"
    assert format_length(0.03) == "30 mm"


def test_grid_is_frozen_and_derives_coordinates() -> None:
    g = Grid((4, 6), 2e-6)
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.pitch = 1.0  # type: ignore[misc]
    # the optical axis through the centre of pixel (ny // 2, nx // 2)
    np.testing.assert_allclose(g.x(), [-6e-6, -4e-6, -2e-6, 0.0, 2e-6, 4e-6])
    np.testing.assert_allclose(g.y(), [-4e-6, -2e-6, 0.0, 2e-6])
    np.testing.assert_allclose(Grid((3, 5), 1.0).x(), [-2, -1, 0, 1, 2])  # odd: the middle
    assert g.fx()[1] == pytest.approx(1 / (6 * 2e-6))
    assert g.extent == pytest.approx((8e-6, 12e-6))
    assert g.pad == 2.0 and g.padded() == Grid((8, 12), 2e-6, pad=1)
    assert Grid((5, 5), 1.0, pad=1.5).padded().shape == (8, 8)
    assert Grid((5, 5), 1.0, pad=1).padded().shape == (5, 5)  # no padding
    assert padded_shape((5, 5), 1.5) == (8, 8)  # ceil(7.5) = 8, even


def test_grid_validation_and_mismatch_names_both_geometries() -> None:
    with pytest.raises(ValueError, match="pitch"):
        Grid((4, 4), -1.0)
    with pytest.raises(ValueError, match="shape"):
        Grid((0, 4), 1e-6)
    for bad in (0.5, math.nan, math.inf, True, "2"):
        with pytest.raises(UserError, match=r"^pad: must be a finite number >= 1") as e:
            Grid((4, 4), 1e-6, pad=bad)  # type: ignore[arg-type]
        assert "\n" not in str(e.value)
    # pad is how a propagation pads, not how a field is sampled: the sampling still agrees
    Grid((4, 4), 1e-6, pad=1).check_same(Grid((4, 4), 1e-6, pad=3))
    with pytest.raises(GridMismatchError,
                       match=r"\(4, 4\) at pitch 1e-06 m vs \(4, 4\) at pitch 2e-06"):
        Grid((4, 4), 1e-6).check_same(Grid((4, 4), 2e-6))


def test_show_plane_draws_in_the_viewing_convention_in_physical_units() -> None:
    """Every plane plot: x to the right, row 0 at the top (y grows downwards), the centre of
    pixel (ny // 2, nx // 2) at (0, 0), axes in mm (or um for micrometre planes)."""
    from optodesign.plotting import new_figure, show_plane

    img = np.zeros((4, 6))
    img[0, 0] = 1.0  # the top-left pixel as the source sees it
    fig = new_figure(3, 3)
    ax = fig.add_subplot(1, 1, 1)
    im = show_plane(ax, img, pitch=1e-3, colorbar="intensity")
    left, right, bottom, top = im.get_extent()
    assert (left, right) == (-3.5, 2.5) and (top, bottom) == (-2.5, 1.5)
    y_top, y_bottom = ax.get_ylim()[1], ax.get_ylim()[0]
    assert y_top < y_bottom  # row 0 at the top: y increases downwards
    assert ax.get_xlabel() == "x (mm)" and ax.get_ylabel() == "y (mm)"
    assert len(fig.axes) == 2  # the colorbar
    fig2 = new_figure(3, 3)
    ax2 = fig2.add_subplot(1, 1, 1)
    show_plane(ax2, img, pitch=2e-6)
    assert ax2.get_xlabel() == "x (µm)"

"""Your own meta-atom library: a CSV or NPZ of (size -> complex t) named in a process file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optodesign.cli import main
from optodesign.design import Design
from optodesign.errors import ConfigError
from optodesign.fileio import parse_toml
from optodesign.process import load_process, process_from_dict
from optodesign.tasks import D2NNSetup
from optodesign.verify.readback import read_fab

SHIPPED = Path(__file__).resolve().parents[1] / "layouts" / "tio2-pillars.toml"
# an uneven "simulated" library: phases with a gap, amplitudes dipping near a resonance
SIZES_NM = [0, 90, 120, 150, 185, 230]
AMPS = [1.0, 0.97, 0.62, 0.88, 0.93, 0.9]
PHASES_DEG = [0.0, 52.5, 131.0, 190.25, 262.0, 318.5]


def own_process(tmp_path: Path, library: str, *, rel: str = "lib/atoms.csv") -> Path:
    """tio2-pillars with its atoms replaced by ``library = rel`` (relative to the file)."""
    text = SHIPPED.read_text(encoding="utf-8")
    text = re.sub(r"atoms = \[.*?\n\]\n", f'library = "{rel}"\n', text, flags=re.S)
    text = text.replace('name = "tio2-pillars"', 'name = "my-pillars"')
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text(library)
    proc = tmp_path / "my-pillars.toml"
    proc.write_text(text)
    return proc


def csv_polar() -> str:
    rows = [f"{s},{a},{p}" for s, a, p in zip(SIZES_NM, AMPS, PHASES_DEG)]
    return "# RCWA, 600 nm TiO2 on glass, 532 nm\nsize_nm,amplitude,phase_deg\n" + \
        "\n".join(rows) + "\n"


def test_a_csv_library_becomes_the_process_atoms_and_the_manifest_copy_is_whole(
        tmp_path: Path) -> None:
    proc = own_process(tmp_path, csv_polar())
    p = load_process(proc)
    want = np.array(AMPS) * np.exp(1j * np.deg2rad(PHASES_DEG))
    assert np.allclose(p.spec.sizes, np.array(SIZES_NM) * 1e-9, rtol=0, atol=1e-18)
    assert np.array_equal(np.array(p.spec.atoms), want)
    # the text export embeds in the manifest holds the atoms, not the library's path
    assert "library" not in p.text.split("atoms from")[0].split("[pillars]")[1]
    again = process_from_dict(parse_toml(p.text, where="copy"), source="<manifest>",
                              text=p.text)
    assert again.spec.sizes == p.spec.sizes and again.spec.atoms == p.spec.atoms


def test_an_npz_library_and_re_im_columns(tmp_path: Path) -> None:
    t = np.array(AMPS) * np.exp(1j * np.deg2rad(PHASES_DEG))
    lib = tmp_path / "lib.npz"
    np.savez(lib, size_m=np.array(SIZES_NM) * 1e-9, t=t)
    proc = own_process(tmp_path, "", rel="unused.csv")
    proc.write_text(proc.read_text().replace('library = "unused.csv"', 'library = "lib.npz"'))
    assert np.array_equal(np.array(load_process(proc).spec.atoms), t)
    rows = "\n".join(f"{s},{float(v.real)!r},{float(v.imag)!r}" for s, v in zip(SIZES_NM, t))
    proc = own_process(tmp_path / "b", "size_nm,re,im\n" + rows + "\n")
    assert np.array_equal(np.array(load_process(proc).spec.atoms), t)


def test_a_design_on_your_library_exports_and_reads_back_exactly(tmp_path: Path) -> None:
    proc = own_process(tmp_path, csv_polar())
    p = load_process(proc)
    rng = np.random.default_rng(1)
    d = Design(setup=D2NNSetup(detectors=((0, 0, 1, 1),), image_size=1),
               wavelength=p.wavelength, pitch=p.spec.lattice,
               levels=rng.integers(0, len(SIZES_NM), (1, 10, 12)),
               level_tables=p.level_table(), distances=(0.0, 5e-6))
    d.save(tmp_path / "run")
    fab = tmp_path / "fab"
    res = CliRunner().invoke(main, ["export", str(tmp_path / "run"), "--process", str(proc),
                                    "--out", str(fab), "--format", "gds"])
    assert res.exit_code == 0, res.output
    (tmp_path / "lib" / "atoms.csv").unlink()  # verify needs only the fab directory
    back = read_fab(fab, source="gds")
    assert np.array_equal(back.levels, d.levels)
    assert back.process.spec.atoms == p.spec.atoms


@pytest.mark.parametrize(("library", "message"), [
    ("size_nm,amplitude,phase_deg\n0,1,0\n90,1.2,40\n", r"line 3: \|t\| = 1.2000 > 1"),
    ("size_nm,amplitude\n0,1\n90,1\n", "missing phase_deg"),
    ("diameter,re,im\n0,1,0\n", "one of size_m, size_um, size_nm"),
    ("size_nm,re,im\n0,1,0\n90,x,0\n", "line 3: not a number"),
    ("size_nm,re,im\n0,1,0\n", "at least 2 atoms"),
])
def test_a_bad_library_is_one_line_naming_file_and_row(tmp_path: Path, library: str,
                                                       message: str) -> None:
    proc = own_process(tmp_path, library)
    with pytest.raises(ConfigError, match=message) as e:
        load_process(proc)
    assert "\n" not in str(e.value) and "my-pillars.toml: pillars.library: atoms.csv" in str(
        e.value)


def test_library_and_atoms_together_are_refused(tmp_path: Path) -> None:
    proc = own_process(tmp_path, csv_polar())
    proc.write_text(proc.read_text().replace(
        'library = "lib/atoms.csv"',
        'library = "lib/atoms.csv"\natoms = [{ size = "0 nm", t = [1.0, 0.0] }]'))
    with pytest.raises(ConfigError, match="give either library or atoms"):
        load_process(proc)

"""Export and verify never lose or trust what they should not (issue 10).

* ``export --out`` replaces only a previous fab directory (our manifest, unchanged files);
  what a user added there (a verify report) is carried over; two exports cannot race; killed
  runs leave nothing that the next run does not clean.
* ``verify --report`` swaps a whole report in atomically, with the same rules.
* verify refuses files that do not make the checksummed design (exit 2) and fails a read-back
  that scores below the trained metric (exit 1); manifest names stay inside the fab directory.
* malformed design.json / manifest.json and bad options are one line, exit 2.

Tiny designs only (a 16x16 lens, a 2-layer 10x12 hologram), built directly as Designs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optodesign.cli import main
from optodesign.design import Design, DesignError
from optodesign.export.fab import export_design
from optodesign.export.manifest import FORMAT
from optodesign.fileio import sha256_file
from optodesign.process import load_process
from optodesign.tasks import D2NNSetup, HologramSetup

from .test_export_cli import make_run

pytestmark = pytest.mark.filterwarnings(
    "ignore::optodesign.optics.propagation.SamplingWarning")

ZERO_ERRORS = "[errors]\n[tolerance]\nmax_drop = 0.05\n"


# ---------------------------------------------------------------------------- helpers
def run_cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(res, needle: str = "") -> str:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert needle in lines[0], lines[0]
    return lines[0]


def hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def lens(process, *, n: int = 16, L: int = 4, uniform: bool = False) -> Design:
    """A quantized lens with its Strehl as the trained metric; ``uniform``: trained on the
    uniform levels 2πk/L instead of the process's (absorbing) level table."""
    from .test_verify import lens_design

    table = np.exp(2j * np.pi * np.arange(L) / L) if uniform else None
    return lens_design(process, n=n, L=L, table=table)


def hologram2(process) -> Design:
    """Two different random layers (so swapping their files changes what is made)."""
    rng = np.random.default_rng(5)
    return Design(setup=HologramSetup(), wavelength=process.wavelength, pitch=0.4e-3,
                  levels=rng.integers(0, 4, (2, 10, 12)), level_tables=process.level_table(4),
                  distances=(0.0, 0.02, 0.02), target=np.ones((10, 12)))


def exported(design: Design, process, root: Path, formats: str = "gds,stl") -> Path:
    run = root / "run"
    design.save(run)
    export_design(design, process, root / "fab", formats=formats, design_dir=run, plot=False)
    return root / "fab"


def edit_manifest(fab: Path, fn) -> None:
    """``fn`` edits the manifest in place (returns None) or returns what replaces it."""
    m = json.loads((fab / "manifest.json").read_text())
    r = fn(m)
    m = m if r is None else r
    (fab / "manifest.json").write_text(json.dumps(m))


# ---------------------------------------------------------------------------- export --out
@pytest.mark.parametrize("manifest", ["{}", '{"format": "webapp/1", "name": "my app"}',
                                      "not json", json.dumps({"format": FORMAT})])
def test_export_refuses_a_directory_that_only_has_a_manifest_json(tmp_path: Path,
                                                                  manifest: str) -> None:
    run, _ = make_run(tmp_path, "thz-printed", L=4, layers=1)
    web = tmp_path / "webapp"
    (web / "src").mkdir(parents=True)
    (web / "manifest.json").write_text(manifest)
    (web / "index.html").write_text("keep")
    before = snapshot(web)
    res = run_cli("export", run, "--process", "thz-printed", "--out", web)
    one_line_error(res, "refusing")
    assert snapshot(web) == before and (web / "src").is_dir()
    assert hidden(tmp_path) == []
    from optodesign.errors import UserError
    from optodesign.export.fab import check_out_dir

    with pytest.raises(UserError, match="refusing"):
        check_out_dir(web)


def test_readme_flow_export_verify_reexport_keeps_the_report(tmp_path: Path) -> None:
    """`export`, `verify --report FAB/verify`, re-export, verify again: nothing is lost."""
    p = load_process("thz-printed")
    run = tmp_path / "run"
    lens(p).save(run)
    fab = tmp_path / "fab"
    export_args = ["export", run, "--process", "thz-printed", "--out", fab, "--format",
                   "gds,stl"]
    assert run_cli(*export_args).exit_code == 0
    errors = tmp_path / "errors.toml"
    errors.write_text(ZERO_ERRORS)
    verify_args = ["verify", fab, "--report", fab / "verify", "--errors", errors, "--samples",
                   "1", "--no-sweep", "--quiet"]
    res = run_cli(*verify_args)
    assert res.exit_code == 0, res.output
    (fab / "verify" / "my-notes.txt").write_text("mine")
    (fab / "README.fab").write_text("for the fab")
    report = snapshot(fab / "verify")
    inode = (fab / "verify" / "report.json").stat().st_ino

    res = run_cli(*export_args)
    assert res.exit_code == 0, res.output
    assert "kept" in res.stdout and "verify/" in res.stdout and "README.fab" in res.stdout
    from optodesign.export.fab import check_out_dir

    check_out_dir(fab)  # a previous fab directory: fine to replace
    assert snapshot(fab / "verify") == report  # carried over unchanged (hard links here)
    assert (fab / "verify" / "report.json").stat().st_ino == inode
    assert (fab / "README.fab").read_text() == "for the fab"
    assert hidden(tmp_path) == []

    res = run_cli(*verify_args)  # the report is replaced, the user's file in it kept
    assert res.exit_code == 0, res.output
    assert (fab / "verify" / "my-notes.txt").read_text() == "mine"
    assert json.loads((fab / "verify" / "report.json").read_text())["passed"] is True
    assert hidden(fab) == [] and hidden(tmp_path) == []


def test_reexport_refuses_when_a_listed_file_was_changed(tmp_path: Path) -> None:
    run, d = make_run(tmp_path, "thz-printed", L=4, layers=1)
    fab = tmp_path / "fab"
    args = ["export", run, "--process", "thz-printed", "--out", fab, "--format", "gds"]
    assert run_cli(*args).exit_code == 0
    with open(fab / "layer1.gds", "ab") as f:
        f.write(b"edited by hand")
    edited = (fab / "layer1.gds").read_bytes()
    one_line_error(run_cli(*args), "layer1.gds changed after export")
    assert (fab / "layer1.gds").read_bytes() == edited and hidden(tmp_path) == []


def test_reexport_refuses_a_kept_entry_it_would_overwrite(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, "thz-printed", L=4, layers=1)
    fab = tmp_path / "fab"
    base = ["export", run, "--process", "thz-printed", "--out", fab]
    assert run_cli(*base, "--format", "gds").exit_code == 0
    (fab / "layer1.stl").write_text("the user's own STL")
    before = snapshot(fab)
    one_line_error(run_cli(*base, "--format", "gds,stl"), "writes layer1.stl too")
    assert snapshot(fab) == before and hidden(tmp_path) == []


def test_staging_left_by_killed_runs_is_cleaned(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, "thz-printed", L=4, layers=1)
    fab = tmp_path / "fab"
    args = ["export", run, "--process", "thz-printed", "--out", fab, "--format", "gds"]
    assert run_cli(*args).exit_code == 0
    stale = [tmp_path / ".fab.k1ll3d_x.tmp", tmp_path / ".fab.abcdefgh.old"]
    for s in stale:
        (s / "deep").mkdir(parents=True)
        (s / "deep" / "layer1.stl").write_bytes(b"\0" * 1000)
    (tmp_path / ".fab.lock").write_text("")  # a killed run's lock file (no lock held)
    other = tmp_path / ".fab.x.abcdefgh.tmp"  # staging of another directory, "fab.x"
    other.mkdir()
    assert run_cli(*args).exit_code == 0
    assert hidden(tmp_path) == [other.name]


def test_swap_killed_between_its_renames_is_rolled_back(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, "thz-printed", L=4, layers=1)
    fab = tmp_path / "fab"
    args = ["export", run, "--process", "thz-printed", "--out", fab, "--format", "gds"]
    assert run_cli(*args).exit_code == 0
    (fab / "verify").mkdir()
    (fab / "verify" / "report.md").write_text("old report")
    fab.rename(tmp_path / ".fab.q1w2e3r4.old")  # the previous directory, moved aside
    assert run_cli(*args).exit_code == 0
    assert (fab / "verify" / "report.md").read_text() == "old report"
    assert hidden(tmp_path) == []


def test_a_second_export_to_the_same_out_fails_while_the_first_runs(tmp_path: Path) -> None:
    import fcntl

    run, _ = make_run(tmp_path, "thz-printed", L=4, layers=1)
    fab = tmp_path / "fab"
    args = ["export", run, "--process", "thz-printed", "--out", fab, "--format", "gds"]
    with open(tmp_path / ".fab.lock", "w") as held:  # what a running export holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        one_line_error(run_cli(*args), "being written by another process")
        assert not fab.exists()
    assert run_cli(*args).exit_code == 0 and hidden(tmp_path) == []


# ---------------------------------------------------------------------------- verify --report
def test_interrupted_report_leaves_the_previous_one_whole(tmp_path: Path, monkeypatch) -> None:
    from optodesign.variation.spec import ErrorConfig, ErrorModel, SweepSpec, Tolerance
    from optodesign.verify import report as report_module
    from optodesign.verify.montecarlo import verify_fab

    p = load_process("thz-printed")
    fab = exported(lens(p), p, tmp_path)
    zero = ErrorConfig(ErrorModel(), Tolerance(), SweepSpec())
    r = verify_fab(fab, errors=zero, samples=1, sweep=False)
    rep = tmp_path / "rep"
    report_module.write_report(r, rep, plots=False)
    before = snapshot(rep)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    # a re-run with figures, killed after its first figure
    monkeypatch.setattr(report_module, "_plot_outputs", killed)
    with pytest.raises(KeyboardInterrupt):
        report_module.write_report(r, rep, plots=True)
    assert snapshot(rep) == before  # no new PNG beside the old report.json
    assert hidden(tmp_path) == []
    # what a killed write of an older version left inside is ours to drop, not to carry
    (rep / ".sweep.abcdefgh.png").write_bytes(b"partial")
    monkeypatch.undo()
    report_module.write_report(r, rep, plots=True)
    assert hidden(rep) == [] and (rep / "outputs.png").is_file()


def test_report_dir_is_checked_before_any_simulation(lens_fab: Path, tmp_path: Path,
                                                     monkeypatch) -> None:
    from optodesign.verify import montecarlo

    def never(*args, **kwargs):
        raise AssertionError("simulated before checking --report")

    monkeypatch.setattr(montecarlo, "verify_fab", never)
    fab = lens_fab
    afile = tmp_path / "afile"
    afile.write_text("x")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep")
    cases = [(afile, "--report: "), (afile / "rep", "--report: "),
             (mine, "holds no verify report"), (fab, "holds no verify report")]
    for report, needle in cases:
        one_line_error(run_cli("verify", fab, "--report", report), needle)
    assert (mine / "thesis.tex").read_text() == "keep" and afile.read_text() == "x"


@pytest.fixture(scope="module")
def lens_fab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid fab directory (read only: tests that edit one make their own)."""
    p = load_process("thz-printed")
    return exported(lens(p), p, tmp_path_factory.mktemp("lens"), formats="gds")


@pytest.mark.parametrize("args,needle", [
    (["--seed", "-1"], "--seed"), (["--samples", "0"], "--samples"),
    (["--test-samples", "0"], "--test-samples"), (["--sweep-samples", "0"], "--sweep-samples"),
    (["--fab-is-a-file"], "not a directory"),
])
def test_bad_verify_options_are_one_line(lens_fab: Path, tmp_path: Path, args: list[str],
                                         needle: str) -> None:
    fab = lens_fab
    if args == ["--fab-is-a-file"]:
        fab, args = lens_fab / "manifest.json", []
    one_line_error(run_cli("verify", fab, "--report", tmp_path / "rep", "--no-sweep",
                           "--samples", "2", *args), needle)
    assert not (tmp_path / "rep").exists()


# ---------------------------------------------------------------------------- verify gates
def test_swapped_layer_entries_are_inconsistent_exit_2(tmp_path: Path) -> None:
    p = load_process("thz-printed")
    fab = exported(hologram2(p), p, tmp_path)

    def swap(m):
        m["layers"][0]["files"], m["layers"][1]["files"] = (m["layers"][1]["files"],
                                                            m["layers"][0]["files"])

    edit_manifest(fab, swap)  # every SHA-256 is still valid
    for source in ("gds", "stl"):
        line = one_line_error(run_cli("verify", fab, "--source", source, "--report",
                                      tmp_path / "rep", "--samples", "1", "--no-sweep"),
                              "does not make layer 1 of design.npz")
        assert f"layer2.{source}" in line
    assert not (tmp_path / "rep").exists()


def test_files_scoring_below_the_trained_metric_fail_exit_1(tmp_path: Path) -> None:
    # trained on uniform lossless levels, made in the absorbing THz resin: the files make the
    # design's level maps exactly, but score a Strehl ratio 0.18 below the trained one
    p = load_process("thz-printed")
    d = lens(p, uniform=True)
    fab = exported(d, p, tmp_path)
    errors = tmp_path / "errors.toml"
    errors.write_text(ZERO_ERRORS)
    res = run_cli("verify", fab, "--errors", errors, "--report", tmp_path / "rep",
                  "--samples", "1", "--no-sweep", "--quiet")
    assert res.exit_code == 1, res.output
    assert "FAIL" in res.stdout and "below the trained strehl" in res.stdout
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert rep["passed"] is False and rep["trained"]["passed"] is False
    assert rep["tolerance"]["passed"] is True  # no errors: the old gate alone passed
    assert rep["trained"]["drop"] == pytest.approx(
        d.metrics["strehl"] - rep["readback"]["training_model"]["strehl"])
    assert rep["trained"]["drop"] > 0.05
    assert "FAIL" in (tmp_path / "rep" / "report.md").read_text()


@pytest.mark.parametrize("name", ["../x.gds", "/etc/passwd", "sub/layer1.gds", "..", ""])
def test_manifest_file_names_stay_inside_the_fab_dir(tmp_path: Path, name: str) -> None:
    p = load_process("thz-printed")
    fab = exported(lens(p), p, tmp_path / "a", formats="gds")
    outside = tmp_path / "a" / "x.gds"
    shutil.copyfile(fab / "layer1.gds", outside)
    sha = sha256_file(outside)

    def point(m):
        m["layers"][0]["files"]["gds"].update(name=name, sha256=sha)

    edit_manifest(fab, point)
    one_line_error(run_cli("verify", fab, "--report", tmp_path / "rep"),
                   "is not a plain file name inside the fab directory")


@pytest.mark.parametrize("edit,needle", [
    (lambda m: [], "format"),
    (lambda m: {"format": FORMAT}, "missing"),
    (lambda m: m.update(layers="layer1.gds"), "layers"),
    (lambda m: m["layers"][0].update(files=["layer1.gds"]), "layers[0].files"),
    (lambda m: m["layers"][0]["files"]["gds"].update(sha256=5), "sha256"),
    (lambda m: m["levels"][0][0].update(t="0.5"), "levels[0][0].t"),
    (lambda m: m.update(shape="16x16"), "shape"),
    (lambda m: m.update(pitch="0.4 mm"), "pitch"),
    (lambda m: m.update(process=["thz-printed"]), "process"),
    (lambda m: m["files"].__delitem__("design.npz"), "design.npz"),
])
def test_malformed_manifest_is_one_line(tmp_path: Path, edit, needle: str) -> None:
    p = load_process("thz-printed")
    fab = exported(lens(p), p, tmp_path, formats="gds")
    edit_manifest(fab, edit)
    one_line_error(run_cli("verify", fab, "--report", tmp_path / "rep"), needle)


# ---------------------------------------------------------------------------- Design.load
def saved(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    Design(setup=D2NNSetup(detectors=((0, 0, 2, 2),), image_size=4), wavelength=0.75e-3,
           pitch=0.4e-3, levels=rng.integers(0, 4, (2, 8, 8)),
           level_tables=np.exp(2j * np.pi * np.arange(4) / 4),
           distances=(0.03,) * 3).save(tmp_path / "run")
    return tmp_path / "run"


def rewrite_json(run: Path, fn) -> None:
    meta = json.loads((run / "design.json").read_text())
    r = fn(meta)
    meta = meta if r is None else r
    (run / "design.json").write_text(json.dumps(meta))


def rewrite_npz(run: Path, **arrays) -> None:
    with np.load(run / "design.npz") as z:
        data = {k: z[k] for k in z.files}
    data.update(arrays)
    np.savez(run / "design.npz", **data)


@pytest.mark.parametrize("edit,needle", [
    (lambda m: m.update(shape=[8, 9]), "shape"),
    (lambda m: m.update(n_layers=3), "n_layers"),
    (lambda m: m.update(n_levels=8), "n_levels"),
    (lambda m: m["level_phases"][1].__setitem__(2, 0.5), "level_phases[1][2]"),
    (lambda m: m.update(level_phases="none"), "level_phases"),
])
def test_design_json_must_describe_design_npz(tmp_path: Path, edit, needle: str) -> None:
    run = saved(tmp_path)
    rewrite_json(run, edit)
    with pytest.raises(DesignError, match="disagrees with design.npz") as e:
        Design.load(run)
    assert needle in str(e.value)


@pytest.mark.parametrize("levels,needle", [
    (np.full((2, 8, 8), 65538, dtype=np.int32), "values must lie in 0..3"),  # int16 wraps to 2
    (np.full((2, 8, 8), 1.0), "integer array"),
    (np.full((2, 8, 8), True), "integer array"),
])
def test_design_levels_checked_before_the_cast(tmp_path: Path, levels, needle: str) -> None:
    run = saved(tmp_path)
    rewrite_npz(run, levels=levels)
    with pytest.raises(DesignError, match=needle):
        Design.load(run)


@pytest.mark.parametrize("edit,needle", [
    (lambda m: [1, 2], "JSON object"),
    (lambda m: m.update(pad=0.5), "pad"),
    (lambda m: m.update(pad="2"), "pad"),
    (lambda m: m.update(pad=float("nan")), "pad"),
    (lambda m: m.update(distances=5), "distances"),
    (lambda m: m.update(distances=["3 cm", 0.03, 0.03]), "distances"),
    (lambda m: m["setup"].update(detectors="all"), "setup.detectors"),
    (lambda m: m["setup"].update(detectors=[[0, 0, 2]]), "setup.detectors"),
    (lambda m: m.update(metrics=[0.9]), "metrics"),
    (lambda m: m.update(setup=3), "setup"),
    (lambda m: m["setup"].update(image_size=0), "setup.image_size"),
    (lambda m: m.update(wavelength="0.75 mm"), "wavelength"),
])
def test_malformed_design_json_is_one_line_exit_2(tmp_path: Path, edit, needle: str) -> None:
    run = saved(tmp_path)
    rewrite_json(run, edit)
    res = run_cli("export", run, "--process", "thz-printed", "--out", tmp_path / "fab")
    line = one_line_error(res, needle)
    assert "design.json" in line
    assert not (tmp_path / "fab").exists()


def test_malformed_design_json_in_a_fab_dir_is_one_line_for_verify(tmp_path: Path) -> None:
    p = load_process("thz-printed")
    fab = exported(lens(p), p, tmp_path, formats="gds")
    rewrite_json(fab, lambda m: m["setup"].__delitem__("focus_radius"))

    def refresh(m):
        m["files"]["design.json"]["sha256"] = sha256_file(fab / "design.json")

    edit_manifest(fab, refresh)
    one_line_error(run_cli("verify", fab, "--report", tmp_path / "rep"), "setup.focus_radius")


def test_symlinked_manifest_entries_are_still_checked(tmp_path: Path) -> None:
    """A listed name may not escape; a kept symbolic link is carried as a link, not followed."""
    run, _ = make_run(tmp_path, "thz-printed", L=4, layers=1)
    fab = tmp_path / "fab"
    args = ["export", run, "--process", "thz-printed", "--out", fab, "--format", "gds"]
    assert run_cli(*args).exit_code == 0
    target = tmp_path / "elsewhere.txt"
    target.write_text("not in the fab dir")
    os.symlink(target, fab / "link.txt")
    assert run_cli(*args).exit_code == 0
    assert (fab / "link.txt").is_symlink() and os.readlink(fab / "link.txt") == str(target)
    assert target.read_text() == "not in the fab dir"

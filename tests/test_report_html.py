"""The verify report as people read it: ``report.html``, one self-contained page, checked as
text and in a real browser (headless Chromium from the system's packages; skipped, with the
reason, where there is none); and the lens's output figures, which show the focus enlarged.

The report comes from the smallest design verify takes: a 16x16 single-layer lens on a
lossless printed relief (``tests/test_verify.py``), verified under the converged model (so
the convergence table is in it) with a short sweep.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from optodesign.process import load_process
from optodesign.variation.spec import ErrorConfig, ErrorModel, SweepSpec, Tolerance
from optodesign.verify.html import CSP
from optodesign.verify.montecarlo import verify_fab
from optodesign.verify.report import REPORT_FILES, write_report

from .test_verify import LOSSLESS, export, lens_design

pytestmark = pytest.mark.filterwarnings(
    "ignore::optodesign.optics.propagation.SamplingWarning")

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("html")
    (root / "proc.toml").write_text(LOSSLESS)
    process = load_process(root / "proc.toml")
    fab = export(lens_design(process, n=16), process, root)
    errors = ErrorConfig(ErrorModel(height_sigma=20e-6, misalignment=0.2e-3), Tolerance(),
                         SweepSpec(errors=("height_sigma", "misalignment"), factors=(0, 1, 2),
                                   samples=1))
    r = verify_fab(fab, errors=errors, samples=2)
    write_report(r, root / "rep")
    return root / "rep"


def _text(page: str) -> str:
    """The page's visible text, whitespace collapsed."""
    body = re.sub(r"</?(strong|code)\b[^>]*>", "", page.split("<body>", 1)[1])
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def _plain(md: str) -> str:
    return " ".join(md.replace("**", "").replace("`", "").split())


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


# ---------------------------------------------------------------------------- as text
def test_html_says_what_the_markdown_says(report: Path) -> None:
    """Every paragraph and every table cell of report.md is in report.html's text, and every
    figure report.json lists is embedded, byte for byte, in report.json's order."""
    assert "report.html" in REPORT_FILES
    page = (report / "report.html").read_text(encoding="utf-8")
    md = (report / "report.md").read_text(encoding="utf-8")
    text = _text(page)
    cells = paras = 0
    for block in md.strip().split("\n\n"):
        lines = block.splitlines()
        if lines[0].startswith("|"):
            for row in lines[:1] + lines[2:]:
                for cell in row.strip("|").split("|"):
                    if cell.strip():
                        assert _plain(cell) in text, cell
                        cells += 1
        elif lines[0].startswith("Figures: "):
            continue
        else:
            assert _plain(block.lstrip("#- ")) in text, block
            paras += 1
    assert cells > 40 and paras >= 6  # the tables (metrics, model ladder, sweep) and prose
    for word in ("PASS" if json.loads((report / "report.json").read_text())["passed"]
                 else "FAIL", "Design-rule check at export", "Simulation model",
                 "Tolerance sweep"):
        assert word in text

    figures = json.loads((report / "report.json").read_text())["figures"]
    assert {"sweep.png", "histogram.png", "outputs.png", "layers.png"} <= set(figures)
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert [base64.b64decode(e) for e in embedded] == [
        (report / f).read_bytes() for f in figures]


def test_html_loads_nothing_from_elsewhere(report: Path) -> None:
    """No URL, link, script, frame, font or CSS import: the only sources are data: URIs,
    and the page's Content-Security-Policy forbids anything else."""
    page = (report / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == len(
        json.loads((report / "report.json").read_text())["figures"])
    page = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:image/png;base64,", page)
    assert not re.search(r"(?i)https?:|ftp:|file:|//[a-z0-9]", page)
    assert not re.search(r"(?i)<\s*(script|link|iframe|object|embed|base|source|video|audio)\b",
                         page)
    assert not re.search(r"(?i)url\s*\(|@import|@font-face", page)
    sources = re.findall(r"(?i)\b(?:src|href|srcset|action|poster|data)\s*=\s*[\"']?([^\"'\s>]*)",
                         page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in page
    assert "default-src 'none'" in CSP and "img-src data:" in CSP and "script" not in CSP


# ---------------------------------------------------------------------------- in a browser
#: written into the page copied for the browser: after the load event, the count of images,
#: their natural widths, and every failure (resource and script errors, CSP violations,
#: console errors and warnings, resources fetched) as attributes of <body>
PROBE = """<script>
var fails = [];
window.addEventListener("error", function (e) {
  fails.push("error " + ((e.target && e.target.tagName) || "") + " " + (e.message || ""));
}, true);
document.addEventListener("securitypolicyviolation", function (e) {
  fails.push("csp " + e.violatedDirective + " " + e.blockedURI);
});
["error", "warn"].forEach(function (k) {
  var f = console[k];
  console[k] = function () { fails.push("console." + k); f.apply(console, arguments); };
});
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  performance.getEntriesByType("resource").forEach(function (e) {
    fails.push("fetched " + e.name);
  });
  var b = document.body.dataset;
  b.images = imgs.length;
  b.widths = imgs.map(function (i) { return i.complete ? i.naturalWidth : -1; }).join(",");
  b.failures = fails.join("|");
  b.done = "yes";
});
</script>
"""


def _browser() -> str:
    for name in BROWSERS:
        exe = shutil.which(name)
        if exe:
            return exe
    pytest.skip(f"no Chromium on PATH ({', '.join(BROWSERS)}): install the system's package "
                "(Debian: apt-get install chromium; .ci/run does) to open report.html in a "
                "browser")


def _open(page: str, tmp: Path) -> tuple[dict[str, str], list[str]]:
    """Load ``page`` (with :data:`PROBE`) in headless Chromium from a file:// URL; the
    probe's <body> attributes and the browser's console lines."""
    assert f'content="{CSP}"' in page
    probe = page.replace(f'content="{CSP}"', f"content=\"{CSP}; script-src 'unsafe-inline'\"")
    probe = probe.replace("</body>", PROBE + "</body>")
    (tmp / "probe.html").write_text(probe, encoding="utf-8")
    cmd = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
           "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--disable-extensions", "--disable-default-apps",
           f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=10000", "--dump-dom", (tmp / "probe.html").as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", res.stdout)
    assert body, res.stdout[:500] + res.stderr[-2000:]
    attrs = {k: html.unescape(v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"',
                                                         body.group(1))}
    assert attrs.get("done") == "yes", (attrs, res.stderr[-2000:])
    return attrs, [ln for ln in res.stderr.splitlines() if ":CONSOLE" in ln]


@pytest.fixture
def browser() -> str:
    """Chromium's executable (the test skips, before building a report, without one)."""
    return _browser()


@pytest.mark.slow
def test_report_html_in_a_real_browser(browser: str, report: Path, tmp_path: Path) -> None:
    """Headless Chromium opens report.html from disk: every figure decodes at the width of
    its PNG, nothing fails (no error event, CSP violation, fetched resource or console
    message). The same probe on a damaged copy (one corrupt image, one external image)
    reports both, so the check can fail."""
    page = (report / "report.html").read_text(encoding="utf-8")
    figures = json.loads((report / "report.json").read_text())["figures"]
    attrs, console = _open(page, tmp_path)
    assert int(attrs["images"]) == len(figures) >= 4
    assert [int(w) for w in attrs["widths"].split(",")] == [
        _png_size((report / f).read_bytes())[0] for f in figures]
    assert attrs["failures"] == "" and console == [], (attrs["failures"], console)

    first = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert first
    damaged = page.replace(first.group(1), "iVBORw0KGgoAAAANSUhEUgAA", 1).replace(
        "</main>", '<img src="https://example.invalid/x.png" alt="external"></main>')
    (tmp_path / "damaged").mkdir()
    attrs, console = _open(damaged, tmp_path / "damaged")
    widths = [int(w) for w in attrs["widths"].split(",")]
    assert widths[0] <= 0 and widths[-1] <= 0 and min(widths[1:-1]) > 0
    assert "csp img-src https://example.invalid/x.png" in attrs["failures"]
    assert attrs["failures"].count("error IMG") == 2 and console


# ---------------------------------------------------------------------------- lens focus zoom
def _ideal_lens(n: int, pitch: float, lam: float, f: float):
    """The ideal lens's task and output intensity (plane wave in)."""
    import torch

    from optodesign.grid import Grid
    from optodesign.models.functional import forward_stack
    from optodesign.tasks import LensSetup
    from optodesign.tasks.lens import Lens, focus_radius, ideal_lens_phase

    grid = Grid((n, n), pitch)
    phase = ideal_lens_phase(grid, wavelength=lam, focal_length=f)
    t = torch.polar(torch.ones(n, n), torch.as_tensor(phase, dtype=torch.float32))
    u = forward_stack(torch.ones((1, n, n), dtype=torch.complex64), [t], (0.0, f), grid=grid,
                      wavelength=lam)
    radius = focus_radius(wavelength=lam, focal_length=f, aperture=n * pitch, pitch=pitch)
    task = Lens(LensSetup(focal_length=f, focus_radius=radius, ideal_peak=1.0), shape=(n, n))
    return task, (u.abs() ** 2)[0].numpy()


@pytest.mark.parametrize(("n", "pitch", "lam", "f"), [
    (128, 2e-6, 633e-9, 3e-3),   # examples/lens.toml
    (64, 0.4e-3, 0.75e-3, 0.05),  # terahertz, the plots below
])
def test_lens_zoom_box_spans_a_few_airy_radii(n: int, pitch: float, lam: float,
                                              f: float) -> None:
    """The lens's zoom box is a square centred on the focus pixel reaching about three Airy
    radii (1.22 λ f / D, D the aperture) to each side, and it holds > 90 % of the ideal
    lens's output energy; the other tasks and planes too small to zoom have none."""
    task, inten = _ideal_lens(n, pitch, lam, f)
    y0, x0, h, w = task.zoom_box()
    assert h == w and h % 2 == 1 and (y0 + h // 2, x0 + w // 2) == (n // 2, n // 2)
    airy = 1.22 * lam * f / (n * pitch)
    assert 2.5 <= (h // 2) * pitch / airy <= 4.0
    assert inten[y0:y0 + h, x0:x0 + w].sum() / inten.sum() > 0.9
    from optodesign.tasks import LensSetup
    from optodesign.tasks.lens import Lens

    assert Lens(LensSetup(focal_length=f, focus_radius=4, ideal_peak=1.0),
                shape=(24, 24)).zoom_box() is None  # 31 px would cover the plane
    from optodesign.tasks.base import Task

    assert Task.zoom_box(task) is None  # every other task: nothing to zoom


def _figures(monkeypatch: pytest.MonkeyPatch, module: object) -> dict[str, object]:
    """The figures ``module`` saves (by file name), kept instead of written."""
    saved: dict[str, object] = {}

    def keep(fig: object, path: str | Path, **_: object) -> Path:
        saved[Path(path).name] = fig
        return Path(path)

    monkeypatch.setattr(module, "save_png", keep)
    return saved


def _planes(fig) -> list:
    return [ax for ax in fig.axes if ax.images]


@pytest.mark.slow
def test_lens_output_plots_show_the_focus_enlarged(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    """Training's and verify's outputs.png of a 64x64 lens add panels of the zoom box: axes
    in the plane's coordinates spanning just the box, the peak inside, a colorbar; the full
    plane outlines the box. A lens too small to zoom keeps one panel per plane."""
    import torch

    import optodesign.train.plots as train_plots
    import optodesign.verify.report as report_mod
    from optodesign.evaluate import Evaluator
    from optodesign.tasks import task_of

    (tmp_path / "proc.toml").write_text(LOSSLESS)
    process = load_process(tmp_path / "proc.toml")
    for n, zoomed in ((64, True), (16, False)):
        d = lens_design(process, n=n, focal=0.05 if n == 64 else 0.02)
        box = task_of(d).zoom_box()
        assert (box is not None) == zoomed
        saved = _figures(monkeypatch, train_plots)
        (tmp_path / f"run{n}").mkdir()
        train_plots.plot_run(tmp_path / f"run{n}", d, [], Evaluator.from_design(d),
                             [torch.as_tensor(t) for t in d.transmissions()])
        train = _planes(saved["outputs.png"])
        root = tmp_path / f"v{n}"
        r = verify_fab(export(d, process, root), samples=1, fast=True, sweep=False)
        saved = _figures(monkeypatch, report_mod)
        report_mod._plot_outputs(r, root / "outputs.png")
        fig = saved["outputs.png"]
        planes = _planes(fig)
        assert (len(train), len(planes)) == ((2, 4) if zoomed else (1, 2))
        if not zoomed:
            continue
        colorbars = [ax for ax in fig.axes if ax not in planes]
        assert len(colorbars) == 1 and "intensity" in colorbars[0].get_ylabel()
        half = box[2] / 2 * d.pitch * 1e3  # mm, as the plane's axes
        for ax in (train[1], planes[2], planes[3]):
            assert ax.get_xlim() == pytest.approx((-half, half))
            assert ax.get_ylim() == pytest.approx((half, -half))  # row 0 at the top
            img = ax.images[0].get_array()
            assert img.shape == (box[2], box[3])
            assert np.unravel_index(np.argmax(img), img.shape) == (box[2] // 2, box[3] // 2)
        for ax in (train[0], planes[0], planes[1]):
            assert len(ax.patches) == 1  # the zoom box outlined on the full plane

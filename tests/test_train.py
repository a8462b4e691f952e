"""Training: config validation, resume equivalence, gradients, end to end through the CLI."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from optodesign.cli import main
from optodesign.data.datasets import load_dataset, read_idx
from optodesign.design import Design
from optodesign.errors import ConfigError, UserError
from optodesign.evaluate import Evaluator
from optodesign.grid import Grid
from optodesign.models.stack import DiffractiveStack
from optodesign.train.build import build_quantizers
from optodesign.train.config import load_config, parse_config

from .conftest import SHARED_MNIST


def run_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_train_end_to_end_writes_design_metrics_and_plots(tiny_d2nn_config, tmp_path) -> None:
    out = tmp_path / "run"
    code, text = run_cli("train", str(tiny_d2nn_config()), "--out", str(out), "--quiet")
    assert code == 0, text
    design = Design.load(out)
    assert design.levels.shape == (2, 32, 32) and design.n_levels == 4
    assert set(np.unique(design.levels)) <= {0, 1, 2, 3}
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,train_loss") and len(rows) == 3
    for name in ("levels", "curves", "outputs", "confusion"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 1000
    # the saved design, rebuilt from files alone, scores exactly what training reported
    ev = Evaluator.from_design(design)
    assert ev.evaluate(design.transmissions())["accuracy"] == design.metrics["accuracy"]
    assert design.metrics["accuracy"] > 0.3  # 10 classes: chance is 0.1
    # the latent phases' metric is named for what it is, not as a full-precision baseline
    assert "accuracy_latent" in design.metrics
    assert not any(k.endswith("full_precision") for k in design.metrics)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["psq-li", "gs"])
def test_resume_reaches_the_same_result_as_an_uninterrupted_run(
        tiny_d2nn_config, tmp_path, method) -> None:
    cfg = str(tiny_d2nn_config(method))
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_cli("train", cfg, "--out", str(whole), "--quiet")[0] == 0
    assert run_cli("train", cfg, "--out", str(part), "--quiet", "--epochs", "1")[0] == 0
    assert run_cli("train", cfg, "--out", str(part), "--quiet", "--resume")[0] == 0
    a, b = Design.load(whole), Design.load(part)
    assert np.array_equal(a.levels, b.levels)
    assert a.metrics == b.metrics
    assert (whole / "metrics.csv").read_text() == (part / "metrics.csv").read_text()


def test_cosine_lr_schedule_decays_and_resumes_on_the_same_schedule(tiny_d2nn_config,
                                                                     tmp_path) -> None:
    p = tiny_d2nn_config()
    constant = tmp_path / "constant"
    assert run_cli("train", str(p), "--out", str(constant), "--quiet")[0] == 0
    p.write_text(p.read_text().replace("[train]", '[train]\nlr_schedule = "cosine"'))
    cfg = load_config(p).train
    assert cfg.lr_at(0, 4) == cfg.lr and cfg.lr_at(2, 4) == pytest.approx(cfg.lr / 2)
    assert cfg.lr_at(3, 4) == pytest.approx(cfg.lr * (1 + math.cos(0.75 * math.pi)) / 2)
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert run_cli("train", str(p), "--out", str(whole), "--quiet")[0] == 0
    assert run_cli("train", str(p), "--out", str(part), "--quiet", "--epochs", "1")[0] == 0
    assert run_cli("train", str(p), "--out", str(part), "--quiet", "--resume")[0] == 0
    assert (whole / "metrics.csv").read_text() == (part / "metrics.csv").read_text()
    # epoch 1 is the same as a constant rate's, epoch 2 steps at half the rate
    c, w = ((d / "metrics.csv").read_text().splitlines() for d in (constant, whole))
    assert c[1] == w[1] and c[2] != w[2]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[train]", "[train]\nspeed = 3"), "train.speed: unknown key"),
        (('distance = "2 cm"', 'distance = "-2 cm"'), "optics.distance: must be > 0"),
        (("levels = 4", "levels = 1"), "quantization.levels: must be an integer >= 2"),
        (('method = "psq-li"', 'method = "magic"'), "quantization.method: 'magic' is not one"),
        (('distance = "2 cm"', 'distance = "200 m"'), "optics.distances[0]: the padded window"),
        (('wavelength = "0.75 mm"', 'wavelength = "-0.75 mm"'), "optics.wavelength: must be"),
        (('dataset = "digits"', 'dataset = "mnist"\npath = "no-such-mnist-dir"'), "data.path"),
        (("[train]", '[train]\nlr_schedule = "step"'), "train.lr_schedule: 'step' is not one"),
    ],
)
def test_config_errors_are_one_line_and_exit_2(tiny_d2nn_config, tmp_path, edit,
                                               message) -> None:
    p = tiny_d2nn_config()
    p.write_text(p.read_text().replace(*edit))
    code, text = run_cli("train", str(p), "--out", str(tmp_path / "x"), "--quiet")
    assert code == 2
    line = text.strip()
    assert line.startswith("error: ") and message in line and "\n" not in line


@pytest.mark.parametrize("method", ["pq", "ste", "gs", "dsq", "psq-ft", "psq-li", "psq-lt",
                                    "binary", "joint", "reim", "ampphase"])
def test_gradients_reach_every_parameter(tiny_d2nn_config, method) -> None:
    extra = '\ncodebook = "polar:2,4"' if method == "joint" else ""
    p = tiny_d2nn_config(method)
    text = p.read_text()
    if extra:
        text = text.replace("levels = 4", "levels = 4" + extra)
    p.write_text(text)
    cfg = load_config(p)
    stack = DiffractiveStack(build_quantizers(cfg, None), (32, 32),
                             generator=torch.Generator().manual_seed(0))
    stack.train()
    stack.set_progress(0, 2)
    field = torch.ones(2, 32, 32, dtype=torch.complex64)
    from optodesign.models.functional import forward_stack

    u = forward_stack(field, stack.transmissions("train"), cfg.optics.distances,
                      grid=cfg.optics.grid, wavelength=cfg.optics.wavelength)
    loss = (u.abs() ** 2)[..., 10:14, 10:14].sum() + stack.regularization()
    loss.backward()
    for name, param in stack.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_quantized_lens_strehl_matches_scalar_diffraction_theory(tmp_path) -> None:
    """An L-level staircase of an ideal lens puts sinc²(1/L) of the light into the first
    order (Swanson, MIT Lincoln Lab TR 854, 1989): 0.811 for L = 4, 0.950 for L = 8."""
    from optodesign.tasks.lens import ideal_lens_phase

    n, pitch, wl, f = 256, 2e-6, 633e-9, 2e-3
    phase = ideal_lens_phase(Grid((n, n), pitch), wavelength=wl, focal_length=f)
    raw = {"task": "lens", "optics": {"wavelength": wl, "pitch": pitch, "size": n, "layers": 1,
                                      "distance": f},
           "quantization": {"method": "pq", "levels": 4}, "train": {"epochs": 1}}
    from optodesign.train.trainer import Trainer

    trainer = Trainer(parse_config(raw), tmp_path, progress=False)
    design = Design(levels=np.zeros((1, n, n), int), level_tables=np.ones(2), **trainer.template)
    assert design.grid == trainer.grid == Grid((n, n), pitch, pad=2)  # one grid, config to Design
    ev = Evaluator.from_design(design)
    ideal = ev.evaluate(np.exp(1j * phase)[None])
    assert ideal["strehl"] == pytest.approx(1.0, rel=1e-5)
    for levels in (4, 8):
        q = np.round(phase / (2 * np.pi / levels)) * (2 * np.pi / levels)
        strehl = ev.evaluate(np.exp(1j * q)[None])["strehl"]
        expected = np.sinc(1 / levels) ** 2
        assert strehl == pytest.approx(expected, rel=0.03), (levels, strehl, expected)


def test_lens_strehl_is_the_peak_in_the_focal_disk_and_the_loss_is_its_negative(tmp_path):
    """A focus moved sideways by a pixel keeps its Strehl ratio (the peak in the focal disk,
    not the on-axis value); the training loss is exactly minus that Strehl ratio; training
    starts from the ideal lens, whose rounding to 4 levels is the sinc²(1/4) bound."""
    from optodesign.tasks.lens import ideal_lens_phase
    from optodesign.train.trainer import Trainer

    n, pitch, wl, f = 64, 2e-6, 633e-9, 1e-3
    raw = {"task": "lens", "optics": {"wavelength": wl, "pitch": pitch, "size": n, "layers": 1,
                                      "distance": f},
           "quantization": {"method": "pq", "levels": 4}, "train": {"epochs": 1}}
    trainer = Trainer(parse_config(raw), tmp_path, progress=False)
    design = Design(levels=np.zeros((1, n, n), int), level_tables=np.ones(2), **trainer.template)
    ev = Evaluator.from_design(design)
    grid = trainer.grid
    phase = ideal_lens_phase(grid, wavelength=wl, focal_length=f)
    # tilt the ideal lens so the focus lands one pixel off the axis
    tilt = 2 * np.pi * grid.x()[None, :] * (pitch / f) / wl
    on, off = (ev.evaluate(np.exp(1j * (phase + t))[None]) for t in (0.0, tilt))
    assert on["strehl"] == pytest.approx(1.0, rel=1e-5)
    assert off["strehl"] == pytest.approx(1.0, rel=0.02)
    inten = ev.output_intensity(ev.plane_wave(), [torch.as_tensor(
        np.exp(1j * (phase + tilt)).astype(np.complex64))])
    assert float(inten[0, n // 2, n // 2]) / design.setup.ideal_peak < 0.9  # off the axis
    loss = float(ev.task.loss(inten))
    assert loss == pytest.approx(-off["strehl"], rel=1e-5)
    init = trainer.initial_raw(build_quantizers(trainer.cfg, None))
    assert init is not None
    assert np.allclose(init[0].numpy(), phase, atol=1e-6)


def test_hologram_training_improves_psnr(tmp_path) -> None:
    raw = {"task": "hologram", "seed": 1,
           "optics": {"wavelength": "633 nm", "pitch": "8 um", "size": 48, "layers": 1,
                      "distance": "5 mm"},
           "quantization": {"method": "psq-li", "levels": 4},
           "target": {"kind": "spots", "spots": [2, 2], "spacing": 16, "spot_size": 6},
           "train": {"epochs": 3, "steps_per_epoch": 40, "lr": 0.1}}
    from optodesign.train.trainer import Trainer

    result = Trainer(parse_config(raw), tmp_path / "h", progress=False).run()
    first = result.history[0]["test_psnr_hard"]
    assert result.design.metrics["psnr"] > first + 1.0
    assert 0 < result.design.metrics["efficiency"] < 1.0 + 1e-6


def test_idx_reader_reports_corrupt_and_missing_files(tmp_path) -> None:
    good = tmp_path / "x-idx1-ubyte.gz"
    with gzip.open(good, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    assert read_idx(good).tolist() == [7, 8, 9]
    with pytest.raises(UserError, match="not found"):
        read_idx(tmp_path / "missing.gz")
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(UserError, match="not a readable gzip"):
        read_idx(bad)
    short = tmp_path / "short-idx1-ubyte.gz"
    with gzip.open(short, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1]))
    with pytest.raises(UserError, match="expected 5 bytes"):
        read_idx(short)
    with pytest.raises(UserError, match="data.dataset: unknown dataset"):
        load_dataset("cifar")


@pytest.mark.skipif(not SHARED_MNIST.is_dir(), reason="../shared/data/mnist is not present")
def test_mnist_idx_files_load_with_published_counts() -> None:
    ds = load_dataset("mnist", SHARED_MNIST)
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert np.bincount(ds.test_labels).tolist()[:3] == [980, 1135, 1032]
    assert 0.0 <= ds.train_images.min() and ds.train_images.max() == 1.0


def test_config_accepts_units_and_frequency() -> None:
    cfg = parse_config({"task": "d2nn", "optics": {"wavelength": "0.4 THz", "pitch": "400 um",
                                                   "size": 32, "layers": 2, "distance": "3 cm"}})
    assert cfg.optics.wavelength == pytest.approx(299792458 / 0.4e12)
    assert cfg.optics.distances == (0.03, 0.03, 0.03)
    assert math.isclose(cfg.optics.pitch, 4e-4)
    with pytest.raises(ConfigError, match="optics.size: missing \\(required\\)"):
        parse_config({"optics": {"wavelength": "1 um", "pitch": "1 um"}})


def test_example_digits_config_is_the_packaged_quickstart_config() -> None:
    from pathlib import Path

    from optodesign.commands.quickstart import quickstart_config_text

    example = Path(__file__).resolve().parents[1] / "examples" / "d2nn_digits.toml"
    assert example.read_text(encoding="utf-8") == quickstart_config_text()


def test_every_example_config_is_valid(monkeypatch) -> None:
    from pathlib import Path

    from optodesign.variation.spec import load_errors

    # valid whatever this machine's memory (the full-size MNIST config needs ~3.4 GiB)
    monkeypatch.setenv("OPTODESIGN_MAX_MEMORY", "64 GiB")
    examples = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))
    assert len(examples) >= 8
    for path in examples:
        if path.name.startswith("errors_"):
            load_errors(path)
        else:
            load_config(path)


@pytest.mark.parametrize("keep", ["best", "last"])
def test_the_kept_epoch_is_the_best_on_held_out_validation(tiny_d2nn_config, tmp_path,
                                                           monkeypatch, keep: str) -> None:
    """keep = "best" writes the epoch with the best hard accuracy on the validation split
    (held out of the training samples, never trained on); "last" the last one. The plots are
    drawn after every epoch, not only at the end."""
    from optodesign.train import plots
    from optodesign.train.trainer import Trainer

    calls = []
    real = plots.plot_run
    monkeypatch.setattr(plots, "plot_run", lambda *a, **k: (calls.append(1), real(*a, **k)))
    cfg_path = tiny_d2nn_config(extra=f'keep = "{keep}"\n')
    cfg_path.write_text(cfg_path.read_text().replace("epochs = 2", "epochs = 4").replace(
        "test_samples = 64", "test_samples = 64\nvalidation_samples = 32"))
    cfg = load_config(cfg_path)
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    images, labels, val_images, val_labels = trainer.train_split()
    assert len(labels) == 96 and len(val_labels) == 32  # 128 training samples in the config
    assert not any((val_images == im).all(axis=(1, 2)).any() for im in images[:5])
    result = trainer.run()
    val = [row["val_accuracy_hard"] for row in result.history]
    kept = result.design.metrics["kept_epoch"]
    assert kept == (int(np.argmax(val)) + 1 if keep == "best" else 4)
    # the written design is that epoch's: its test accuracy is the history's at that epoch
    assert result.design.metrics["accuracy"] == pytest.approx(
        result.history[kept - 1]["test_accuracy_hard"])
    assert len(calls) == 4 + 1  # after each epoch, and the final design's


def test_validation_split_must_leave_training_samples(tiny_d2nn_config, tmp_path) -> None:
    from optodesign.train.trainer import Trainer

    p = tiny_d2nn_config()
    p.write_text(p.read_text().replace("test_samples = 64",
                                       "test_samples = 64\nvalidation_samples = 128"))
    with pytest.raises(UserError, match="data.validation_samples: 128 leaves none"):
        Trainer(load_config(p), tmp_path / "run", progress=False).run()


def test_tensorboard_logs_every_epoch_metric(tiny_d2nn_config, tmp_path) -> None:
    """--tensorboard writes each epoch's metrics.csv row as scalars (read back with
    TensorBoard's own reader); --force removes the event files with the rest of the run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    code, text = run_cli("train", str(tiny_d2nn_config()), "--out", str(out), "--quiet",
                         "--tensorboard")
    assert code == 0, text
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    rows = [line.split(",") for line in (out / "metrics.csv").read_text().split()]
    header, body = rows[0], rows[1:]
    assert "test_accuracy_hard" in acc.Tags()["scalars"]
    for name in header[1:]:
        events = acc.Scalars(name)
        assert [e.step for e in events] == [int(r[0]) for r in body]
        assert [e.value for e in events] == pytest.approx([float(r[header.index(name)])
                                                           for r in body], rel=1e-5)
    code, text = run_cli("train", str(tiny_d2nn_config()), "--out", str(out), "--quiet",
                         "--force", "--epochs", "1")
    assert code == 0, text
    assert not (out / "tensorboard").exists()


def test_tensorboard_without_the_package_is_one_line(tiny_d2nn_config, tmp_path,
                                                     monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorboard" else real(name, *a))
    code, text = run_cli("train", str(tiny_d2nn_config()), "--out", str(tmp_path / "r"),
                         "--quiet", "--tensorboard")
    assert code == 2 and "--tensorboard: needs the tensorboard package" in text
    assert not (tmp_path / "r" / "design.json").exists()

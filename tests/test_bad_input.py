"""Bad input to ``optodesign train`` is one line naming the field, exit code 2.

Every case edits a tiny valid config (or writes a small bad data file next to it) and runs the
CLI; none may print a traceback, exit 1 (verify's FAIL code) or start training.
"""

from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from optodesign.cli import main
from optodesign.errors import ConfigError, UserError
from optodesign.train.memory import ENV_MAX_MEMORY

from .conftest import TINY_D2NN

BASE = TINY_D2NN.format(method="psq-li").replace("epochs = 2", "epochs = 1")

HOLOGRAM = """
task = "hologram"

[optics]
wavelength = "633 nm"
pitch = "8 um"
size = 32
layers = 1
distance = "2 mm"

[quantization]
method = "psq-li"
levels = 4

[target]
kind = "spots"
spots = [2, 2]
spacing = 8
spot_size = 3

[train]
epochs = 1
steps_per_epoch = 2
"""


def replace(old: str, new: str, base: str = BASE) -> Callable[[Path], str]:
    def edit(_: Path) -> str:
        assert old in base, old
        return base.replace(old, new, 1)

    return edit


def add(section: str, line: str, base: str = BASE) -> Callable[[Path], str]:
    """Add ``line`` to ``[section]`` (created at the end if the config has none)."""

    def edit(_: Path) -> str:
        if f"[{section}]\n" in base:
            return base.replace(f"[{section}]\n", f"[{section}]\n{line}\n", 1)
        return base + f"\n[{section}]\n{line}\n"

    return edit


def scalar_section(section: str, value: str, base: str = BASE) -> Callable[[Path], str]:
    """Drop ``[section]`` and write ``section = value`` at the top level instead."""

    def edit(_: Path) -> str:
        text = re.sub(rf"\n\[{section}\]\n(?:[^\[]*)", "\n", base)
        return f"{section} = {value}\n" + text

    return edit


# ---------------------------------------------------------------- data files
def idx_bytes(dims: tuple[int, ...], data: bytes | None = None) -> bytes:
    head = bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims)
    if data is None:
        data = bytes(int(np.prod(dims)) if dims else 0)
    return head + data


def mnist_dir(tmp: Path, **files: bytes) -> Path:
    """A directory with the four MNIST IDX .gz files: 20 train / 10 test 8x8 images unless
    overridden (keys train_images, train_labels, test_images, test_labels)."""
    rng = np.random.default_rng(0)
    good = {
        "train_images": idx_bytes((20, 8, 8), rng.integers(0, 255, 20 * 64, np.uint8).tobytes()),
        "train_labels": idx_bytes((20,), bytes(i % 10 for i in range(20))),
        "test_images": idx_bytes((10, 8, 8), rng.integers(0, 255, 10 * 64, np.uint8).tobytes()),
        "test_labels": idx_bytes((10,), bytes(range(10))),
    }
    good.update(files)
    names = {"train_images": "train-images-idx3-ubyte.gz",
             "train_labels": "train-labels-idx1-ubyte.gz",
             "test_images": "t10k-images-idx3-ubyte.gz", "test_labels": "t10k-labels-idx1-ubyte.gz"}
    d = tmp / "mnist"
    d.mkdir(exist_ok=True)
    for key, data in good.items():
        with gzip.open(d / names[key], "wb") as f:
            f.write(data)
    return d


def with_mnist(**files: bytes) -> Callable[[Path], str]:
    def edit(tmp: Path) -> str:
        d = mnist_dir(tmp, **files)
        return BASE.replace('dataset = "digits"', f'dataset = "mnist"\npath = "{d.as_posix()}"')

    return edit


def hologram_image(write: Callable[[Path], None]) -> Callable[[Path], str]:
    def edit(tmp: Path) -> str:
        p = tmp / "target.npy"
        write(p)
        return HOLOGRAM.replace('kind = "spots"', f'kind = "image"\nimage = "{p.as_posix()}"')

    return edit


def npy_header_only(shape: tuple[int, ...], dtype: str = "<f8") -> Callable[[Path], None]:
    """An .npy file whose header promises ``shape`` but that holds only a few bytes."""

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": dtype, "fortran_order": False, "shape": shape})
            f.write(b"\0" * 64)

    return write


def npy(array: np.ndarray) -> Callable[[Path], None]:
    return lambda p: np.save(p, array, allow_pickle=True)


# (id, how to make the config text, text the one-line message must contain)
CASES: list[tuple[str, Callable[[Path], str], str]] = [
    # a section given as a scalar or a list
    ("optics-scalar", scalar_section("optics", "5"), "optics"),
    ("optics-string", scalar_section("optics", '"big"'), "optics"),
    ("quantization-scalar", scalar_section("quantization", "5"), "quantization"),
    ("train-scalar", scalar_section("train", "5"), "train"),
    ("data-list", scalar_section("data", "[1, 2]"), "data"),
    ("detectors-scalar", scalar_section("detectors", "5"), "detectors"),
    ("target-scalar", scalar_section("target", '"x"'), "target"),
    # top level
    ("task-int", replace('task = "d2nn"', "task = 5"), "task"),
    ("seed-string", replace("seed = 3", 'seed = "3"'), "seed"),
    ("seed-negative", replace("seed = 3", "seed = -1"), "seed"),
    ("seed-float", replace("seed = 3", "seed = 1.5"), "seed"),
    # [optics]
    ("wavelength-list", replace('wavelength = "0.75 mm"', "wavelength = [1]"),
     "optics.wavelength"),
    ("wavelength-bool", replace('wavelength = "0.75 mm"', "wavelength = true"),
     "optics.wavelength"),
    ("wavelength-bare-number", replace('wavelength = "0.75 mm"', "wavelength = 7.5e-4"),
     "optics.wavelength: give a unit"),
    ("pitch-table", replace('pitch = "0.4 mm"', "pitch = {a = 1}"), "optics.pitch"),
    ("pitch-bare-string", replace('pitch = "0.4 mm"', 'pitch = "1e3"'),
     "optics.pitch: give a unit"),
    ("pitch-bare-float", replace('pitch = "0.4 mm"', "pitch = 0.0004"),
     "optics.pitch: give a unit"),
    ("pitch-MM", replace('pitch = "0.4 mm"', 'pitch = "0.4 MM"'), "optics.pitch: unknown"),
    ("distance-Mm", replace('distance = "2 cm"', 'distance = "1 Mm"'),
     "optics.distance: unknown"),
    ("distance-bare-int", replace('distance = "2 cm"', "distance = 2"),
     "optics.distance: give a unit"),
    ("distance-list", replace('distance = "2 cm"', 'distance = ["2 cm"]'), "optics.distance"),
    ("distances-scalar", replace('distance = "2 cm"', 'distances = "2 cm"'),
     "optics.distances"),
    ("distances-bad-item", replace('distance = "2 cm"', 'distances = ["2 cm", true, "2 cm"]'),
     "optics.distances[1]"),
    ("input-distance-bool", add("optics", "input_distance = true"), "optics.input_distance"),
    ("output-distance-bare", add("optics", "output_distance = 0.02"),
     "optics.output_distance: give a unit"),
    ("size-string", replace("size = 32", 'size = "32"'), "optics.size"),
    ("size-float", replace("size = 32", "size = 32.0"), "optics.size"),
    ("size-tiny", replace("size = 32", "size = 2"), "optics.size"),
    ("layers-string", replace("layers = 2", 'layers = "2"'), "optics.layers"),
    ("layers-zero", replace("layers = 2", "layers = 0"), "optics.layers"),
    ("pad-string", add("optics", 'pad = "2"'), "optics.pad"),
    ("pad-bool", add("optics", "pad = true"), "optics.pad"),
    ("pad-small", add("optics", "pad = 0.5"), "optics.pad"),
    ("pad-nan", add("optics", "pad = nan"), "optics.pad"),
    ("pixels-unknown", add("optics", 'pixels = "smooth"'), "optics.pixels"),
    # unit slips that used to train to chance accuracy without a word
    ("wavelength-GHz", replace('wavelength = "0.75 mm"', 'wavelength = "0.4 GHz"'),
     "optics.wavelength"),
    ("wavelength-PHz", replace('wavelength = "0.75 mm"', 'wavelength = "0.4 PHz"'),
     "optics.wavelength"),
    ("wavelength-nm-for-um", replace('wavelength = "0.75 mm"', 'wavelength = "750 nm"'),
     "optics.wavelength"),
    ("wavelength-thz-lowercase", replace('wavelength = "0.75 mm"', 'wavelength = "0.4 thz"'),
     "optics.wavelength: unknown"),
    ("wavelength-NM", replace('wavelength = "0.75 mm"', 'wavelength = "750 NM"'),
     "optics.wavelength: unknown"),
    ("wavelength-mHz", replace('wavelength = "0.75 mm"', 'wavelength = "400 mHz"'),
     "optics.wavelength"),
    # [quantization]
    ("method-int", replace('method = "psq-li"', "method = 5"), "quantization.method"),
    ("levels-string", replace("levels = 4", 'levels = "4"'), "quantization.levels"),
    ("phases-scalar", add("quantization", "phases = 5"), "quantization.phases"),
    ("phases-strings", add("quantization", 'phases = ["a", "b"]'), "quantization.phases"),
    ("codebook-int", add("quantization", "codebook = 5"), "quantization.codebook"),
    ("codebook-unknown", replace('method = "psq-li"', 'method = "joint"\ncodebook = "hex:3"'),
     "quantization.codebook"),
    ("process-int", add("quantization", "process = 5"), "quantization.process"),
    ("process-unknown", add("quantization", 'process = "no-such-process"'),
     "quantization.process"),
    ("process-other-wavelength", add("quantization", 'process = "fused-silica-etch4"'),
     "quantization.process"),
    ("options-scalar", add("quantization", "options = 5"), "quantization.options"),
    ("options-unknown", add("quantization", "options = { speed = 3 }"),
     "quantization.options"),
    ("options-wrong-type", add("quantization", 'options = { t_start = "hot" }'),
     "quantization.options.t_start"),
    # [train]
    ("epochs-string", replace("epochs = 1", 'epochs = "1"'), "train.epochs"),
    ("epochs-zero", replace("epochs = 1", "epochs = 0"), "train.epochs"),
    ("epochs-float", replace("epochs = 1", "epochs = 1.5"), "train.epochs"),
    ("batch-size-bool", replace("batch_size = 32", "batch_size = true"), "train.batch_size"),
    ("lr-string", replace("lr = 0.1", 'lr = "0.1"'), "train.lr"),
    ("lr-negative", replace("lr = 0.1", "lr = -0.1"), "train.lr"),
    ("lr-inf", replace("lr = 0.1", "lr = inf"), "train.lr"),
    ("loss-int", add("train", "loss = 5"), "train.loss"),
    ("temperature-string", add("train", 'temperature = "x"'), "train.temperature"),
    ("steps-negative", add("train", "steps_per_epoch = -1"), "train.steps_per_epoch"),
    ("qat-start-string", add("train", 'qat_start = "0"'), "train.qat_start"),
    ("max-memory-bad", add("train", 'max_memory = "lots"'), "train.max_memory"),
    # [data]
    ("dataset-int", replace('dataset = "digits"', "dataset = 5"), "data.dataset"),
    ("path-int", add("data", "path = 5"), "data.path"),
    ("path-int-mnist", replace('dataset = "digits"', 'dataset = "mnist"\npath = 5'),
     "data.path"),
    ("path-bool", replace('dataset = "digits"', 'dataset = "mnist"\npath = true'), "data.path"),
    ("path-empty", replace('dataset = "digits"', 'dataset = "mnist"\npath = ""'), "data.path"),
    ("image-size-string", replace("image_size = 16", 'image_size = "16"'), "data.image_size"),
    ("image-size-too-big", replace("image_size = 16", "image_size = 64"), "data.image_size"),
    ("encoding-int", add("data", "encoding = 5"), "data.encoding"),
    ("train-samples-negative", replace("train_samples = 128", "train_samples = -1"),
     "data.train_samples"),
    ("test-samples-string", replace("test_samples = 64", 'test_samples = "all"'),
     "data.test_samples"),
    # [detectors]
    ("boxes-int", add("detectors", "boxes = 5"), "detectors.boxes"),
    ("boxes-flat", add("detectors", "boxes = [5, 6]"), "detectors.boxes"),
    ("boxes-short", add("detectors", "boxes = [[0, 0, 3]]"), "detectors.boxes"),
    ("boxes-string-item", add("detectors", 'boxes = [[0, 0, 3, "a"]]'), "detectors.boxes"),
    ("boxes-off-grid", add("detectors", "boxes = " + str([[30, 30, 5, 5]] * 10)),
     "detectors.boxes"),
    ("boxes-empty-box", add("detectors", "boxes = " + str([[0, 0, 0, 3]] * 10)),
     "detectors.boxes"),
    ("boxes-wrong-count", add("detectors", "boxes = [[0, 0, 3, 3]]"), "detectors.boxes"),
    ("detector-size-string", replace("[detectors]\nsize = 3", '[detectors]\nsize = "3"'),
     "detectors.size"),
    ("detector-size-does-not-fit", replace("[detectors]\nsize = 3", "[detectors]\nsize = 5"),
     "detectors.size"),
    # [target]
    ("target-image-int", add("target", "image = 5"), "target.image"),
    ("target-image-int-hologram", replace('kind = "spots"', 'kind = "image"\nimage = 5',
                                          HOLOGRAM), "target.image"),
    ("target-image-missing-key", replace('kind = "spots"', 'kind = "image"', HOLOGRAM),
     "target.image"),
    ("target-text-int", add("target", "text = 5"), "target.text"),
    ("target-kind-int", add("target", "kind = 5"), "target.kind"),
    ("target-spots-int", add("target", "spots = 5"), "target.spots"),
    ("target-spots-strings", add("target", 'spots = ["a", 2]'), "target.spots"),
    ("target-spacing-string", add("target", 'spacing = "x"'), "target.spacing"),
    ("target-spots-do-not-fit", replace("spacing = 8", "spacing = 30", HOLOGRAM),
     "target.spots"),
    # data files
    ("idx-zero-samples", with_mnist(train_images=idx_bytes((0, 8, 8)),
                                    train_labels=idx_bytes((0,))), "train-images"),
    ("idx-1d-images", with_mnist(train_images=idx_bytes((20,), bytes(20))), "train-images"),
    ("idx-2d-labels", with_mnist(test_labels=idx_bytes((10, 1), bytes(range(10)))),
     "t10k-labels"),
    ("idx-count-mismatch", with_mnist(test_labels=idx_bytes((9,), bytes(range(9)))),
     "t10k-labels"),
    ("idx-label-out-of-range", with_mnist(test_labels=idx_bytes((10,), bytes([200] * 10))),
     "t10k-labels"),
    ("idx-huge-header", with_mnist(train_images=idx_bytes((2**31, 2**16, 2**16), b"\0" * 64)),
     "train-images"),
    ("npy-1d-target", hologram_image(npy(np.ones(5))), "target.image"),
    ("npy-object-target", hologram_image(npy(np.array([{}, {}], dtype=object))),
     "target.image"),
    ("npy-huge-header", hologram_image(npy_header_only((2**40, 2**20))), "target.image"),
    ("npy-truncated", hologram_image(npy_header_only((64, 64))), "target.image"),
    ("npy-zero-size", hologram_image(npy(np.ones((0, 5)))), "target.image"),
    # memory: refused at once instead of grinding or being killed
    ("size-huge", replace("size = 32", "size = 100000"), "memory"),
    ("layers-huge", replace("layers = 2", "layers = 10000"), "memory"),
    ("batch-huge", lambda _: BASE.replace("batch_size = 32", "batch_size = 100000000")
     .replace("size = 32", "size = 512").replace("train_samples = 128", "train_samples = 0"),
     "memory"),
    ("max-memory-below-need", add("train", 'max_memory = "1 MB"'), "memory"),
]


def run_train(config: Path, out: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["train", str(config), "--out", str(out), "--quiet"])
    return result.exit_code, result.output


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_naming_the_field_exit_2(tmp_path, monkeypatch, make,
                                                        message) -> None:
    # the memory cases must not depend on this machine: 8 GiB is what the CI runner has
    monkeypatch.setenv(ENV_MAX_MEMORY, "8 GiB")
    config = tmp_path / "bad.toml"
    config.write_text(make(tmp_path), encoding="utf-8")
    code, text = run_train(config, tmp_path / "run")
    assert "Traceback" not in text, text
    assert code == 2, text
    line = text.strip().splitlines()[-1]
    assert line.startswith("error: ") and message in line, text
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_case_ids_are_unique_and_the_base_configs_are_valid(tmp_path) -> None:
    import tomllib

    from optodesign.train.config import load_config, parse_config

    assert len({c[0] for c in CASES}) == len(CASES) >= 60
    for text in (BASE, HOLOGRAM):
        parse_config(tomllib.loads(text))
        config = tmp_path / "ok.toml"
        config.write_text(text, encoding="utf-8")
        load_config(config)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optodesign.optics.propagation.SamplingWarning")
def test_a_good_npy_target_and_good_idx_files_train(tmp_path) -> None:
    """The readers that refuse the bad files above still read good ones."""
    target = np.zeros((16, 16))
    target[4:8, 4:8] = 1.0
    text = hologram_image(npy(target))(tmp_path)
    config = tmp_path / "ok.toml"
    config.write_text(text, encoding="utf-8")
    code, out = run_train(config, tmp_path / "holo")
    assert code == 0, out
    config.write_text(with_mnist()(tmp_path), encoding="utf-8")
    code, out = run_train(config, tmp_path / "run-mnist")
    assert code == 0, out


# ---------------------------------------------------------------- memory estimate
def tiny_cfg(**optics):
    import tomllib

    from optodesign.train.config import parse_config

    raw = tomllib.loads(BASE)
    raw["optics"].update(optics)
    return parse_config(raw)


def test_memory_estimate_counts_padded_fields_per_layer_and_batch() -> None:
    from optodesign.train.memory import OVERHEAD, estimate_peak_memory

    cfg = tiny_cfg()
    base = estimate_peak_memory(cfg) - OVERHEAD
    # batch 32, 3 propagations + 3 working fields of 64x64 complex64 dominate
    assert 32 * 8 * 64 * 64 * 6 <= base <= 2 * 32 * 8 * 64 * 64 * 6
    big = tiny_cfg(size=64)  # 4x the pixels: about 4x the arrays
    assert 3.5 < (estimate_peak_memory(big) - OVERHEAD) / base < 4.5


def test_memory_limit_precedence_config_then_environment_then_machine(monkeypatch) -> None:
    from optodesign.train.memory import machine_memory, memory_limit, parse_bytes

    monkeypatch.delenv(ENV_MAX_MEMORY, raising=False)
    limit, source = memory_limit(None)
    # total memory, not the available memory that swings with other jobs
    assert (limit, source) == (machine_memory(), "this machine") or \
        source == "the largest CUDA device"
    monkeypatch.setenv(ENV_MAX_MEMORY, "3 GiB")
    assert memory_limit(None) == (3 * 2**30, ENV_MAX_MEMORY)
    assert memory_limit(5) == (5, "train.max_memory")
    assert parse_bytes("500 MB", field="x") == 500_000_000 and parse_bytes(1024, field="x") == 1024
    for bad in ("lots", "-1 GB", 0, True, "1 parsec"):
        with pytest.raises(ConfigError, match="^x: expected a size"):
            parse_bytes(bad, field="x")


def test_huge_grids_are_refused_from_arithmetic_alone(monkeypatch) -> None:
    """size = 100000 (5 TiB) and layers = 10**9 are refused before any array or list of that
    size exists; with no override this holds on any machine."""
    monkeypatch.delenv(ENV_MAX_MEMORY, raising=False)
    with pytest.raises(ConfigError, match=r"^memory: .*TiB"):
        tiny_cfg(size=100000)
    with pytest.raises(ConfigError, match=r"^memory: .*\(1000000000 layers"):
        tiny_cfg(layers=10**9)
    monkeypatch.setenv(ENV_MAX_MEMORY, "1 TiB")  # an override can allow what fits it
    assert tiny_cfg(layers=100).optics.layers == 100


def test_check_memory_with_the_devices_free_memory() -> None:
    from optodesign.train.memory import check_memory, estimate_peak_memory

    cfg = tiny_cfg()
    need = estimate_peak_memory(cfg)
    assert check_memory(cfg, available=need) == need
    with pytest.raises(ConfigError, match="more than the .* of cuda:0"):
        check_memory(cfg, available=need - 1, where="cuda:0")


# ---------------------------------------------------------------- data readers
def test_uncompressed_idx_header_is_checked_against_the_file_length(tmp_path) -> None:
    from optodesign.data.datasets import read_idx

    good = tmp_path / "ok-idx1-ubyte"
    good.write_bytes(idx_bytes((3,), bytes([1, 2, 3])))
    assert read_idx(good).tolist() == [1, 2, 3]
    bad = tmp_path / "huge-idx3-ubyte"
    bad.write_bytes(idx_bytes((60000, 2**20, 2**20), b"\0" * 16))
    with pytest.raises(UserError, match="header promises 65970697666560000 bytes"):
        read_idx(bad)


def test_paths_in_a_config_resolve_relative_to_the_config_file(tmp_path: Path,
                                                                monkeypatch) -> None:
    """``target.image`` and ``fabrication.errors`` are found beside the config, whatever the
    working directory; absolute paths and shipped process names are kept as given."""
    from optodesign.train.config import load_config

    sub = tmp_path / "configs"
    (sub / "img").mkdir(parents=True)
    np.save(sub / "img" / "t.npy", np.ones((8, 12)))
    errors = sub / "errs.toml"
    errors.write_text('[errors]\nheight_sigma = "10 nm"\n')
    text = HOLOGRAM.replace('kind = "spots"', 'kind = "image"\nimage = "img/t.npy"').replace(
        'levels = 4', 'levels = 4\nprocess = "fused-silica-etch4"')
    text += '\n[fabrication]\nerrors = "errs.toml"\n'
    cfg_path = sub / "holo.toml"
    cfg_path.write_text(text)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(cfg_path)
    assert Path(cfg.target.image) == sub / "img" / "t.npy"
    assert Path(cfg.fabrication.robust.errors) == errors
    assert cfg.quantization.process == "fused-silica-etch4"
    cfg_path.write_text(text.replace('"img/t.npy"', f'"{(sub / "img" / "t.npy").as_posix()}"'))
    assert Path(load_config(cfg_path).target.image) == sub / "img" / "t.npy"

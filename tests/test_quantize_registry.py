"""The quantizer registry: every method by name, its options, and the docs that list them."""

from __future__ import annotations

import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest

from optodesign.errors import ConfigError
from optodesign.quantize.binary import BinaryQuantizer
from optodesign.quantize.codebooks import phase_codebook
from optodesign.quantize.complex import (
    IndependentAmpPhaseQuantizer,
    IndependentReImQuantizer,
    JointComplexQuantizer,
)
from optodesign.quantize.phase import (
    DSQQuantizer,
    GumbelSoftmaxQuantizer,
    PostTrainingQuantizer,
    PSQQuantizer,
    STEQuantizer,
)
from optodesign.quantize.registry import (
    METHODS,
    build_quantizer,
    check_options,
    family,
    method_names,
    methods_table,
    read_options,
)
from optodesign.schema import Table

DOCS = Path(__file__).resolve().parents[1] / "docs"
CLASSES = {"fp32": PostTrainingQuantizer, "pq": PostTrainingQuantizer, "ste": STEQuantizer,
           "gs": GumbelSoftmaxQuantizer, "dsq": DSQQuantizer, "psq-ft": PSQQuantizer,
           "psq-li": PSQQuantizer, "psq-lt": PSQQuantizer, "binary": BinaryQuantizer,
           "joint": JointComplexQuantizer, "joint-learned": JointComplexQuantizer,
           "reim": IndependentReImQuantizer, "ampphase": IndependentAmpPhaseQuantizer}


def build(method: str, **options):
    return build_quantizer(method, levels=4, codebook=phase_codebook(4) if method.startswith(
        "joint") else None, options=options)


def test_the_docs_show_the_registry_table_and_every_method() -> None:
    text = (DOCS / "quantizers.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- methods_table: begin -->\n(.*?)<!-- methods_table: end -->", text,
                      re.S)
    assert block is not None
    assert block.group(1) == methods_table(), (
        "docs/quantizers.md is out of date: paste optodesign.quantize.registry.methods_table() "
        "between the methods_table markers")
    documented = re.findall(r"^\| `([a-z0-9-]+)` \| (?:phase|binary|complex) \|", block.group(1),
                            re.M)
    assert documented == list(METHODS)
    # and every method named in a config example of the docs is a registry method
    for name in re.findall(r'method = "([^"]+)"', text + (DOCS / "complex_quantization.md")
                           .read_text(encoding="utf-8")):
        assert name in METHODS, name


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_builds_with_its_defaults_as_its_class(method: str) -> None:
    q = build(method)
    assert isinstance(q, CLASSES[method])
    assert q.raw_kind == ("complex" if family(method) == "complex" else "phase")
    assert q.describe()["method"] == method


@pytest.mark.parametrize("method", list(METHODS))
def test_registry_defaults_are_the_constructors_defaults(method: str) -> None:
    """Defaults live in one place: the registry passes its own, so they must be the classes'
    (one documented exception: reim's extent is 1/√2 through the registry, as in training)."""
    params = inspect.signature(CLASSES[method].__init__).parameters
    for o in METHODS[method].options:
        if o.name == "structural" or (method, o.name) == ("reim", "extent"):
            continue
        kwarg = {"gs_tau_start": "tau_start", "gs_tau_end": "tau_end", "squash": None}.get(
            o.name, o.name.removeprefix("dsq_"))
        if kwarg is None:
            continue
        assert params[kwarg].default == o.default, (method, o.name)
    assert METHODS["reim"].options[1].default == pytest.approx(1 / math.sqrt(2))
    assert build("reim").extent == pytest.approx(1 / math.sqrt(2))


def test_families_and_names() -> None:
    assert method_names("phase") == ("fp32", "pq", "ste", "gs", "dsq", "psq-ft", "psq-li",
                                     "psq-lt")
    assert method_names("binary") == ("binary",)
    assert method_names("complex") == ("joint", "joint-learned", "reim", "ampphase")
    assert method_names() == tuple(METHODS)
    with pytest.raises(ConfigError, match="method: unknown quantizer 'psq'"):
        family("psq")


def test_options_are_checked_by_name_and_type_and_named_in_errors() -> None:
    opts = read_options("psq-li", {"t_end": 80})
    assert opts == {"t_start": None, "t_end": 80.0, "warmup_epochs": 0}
    sec = "quantization.options"
    for method, options, message in [
        ("psq-li", {"speed": 3}, r"quantization.options.speed: unknown key .*t_end, t_start"),
        ("pq", {"t": 1.0}, r"quantization.options.t: unknown key .*'pq' takes no options"),
        ("psq-li", {"t_start": "hot"}, r"quantization.options.t_start: expected a finite"),
        ("binary", {"opaque": "no"}, r"quantization.options.opaque: must be true or false"),
        ("binary", {"structural": 1}, r"quantization.options.structural: must be true or"),
        ("joint", {"schedule": "cosine"}, r"quantization.options.schedule: 'cosine' is not"),
        ("reim", {"bits": 1.5}, r"quantization.options.bits: must be an integer"),
        # ranges and the interplay of options: the constructors', named the same way
        ("dsq", {"dsq_alpha_start": 1.5}, r"quantization.options.dsq_alpha_start: must lie"),
        ("psq-lt", {"lt_lambda": 1.0, "lt_lambda_end": 0.5},
         r"quantization.options.lt_lambda_end: must be >= lt_lambda"),
        ("psq-lt", {"lt_eps": 1.0}, r"^quantization.options: t_start: must be < 1/lt_eps"),
        ("binary", {"alpha_init": 7.0}, r"quantization.options.alpha_init: must be a phase"),
        ("ampphase", {"min_amplitude": 1.5}, r"quantization.options.min_amplitude: must lie"),
    ]:
        with pytest.raises(ConfigError, match=message):
            check_options(method, options, levels=4, section=sec)
    with pytest.raises(ConfigError, match="^lens.toml: quantization.options.t: unknown"):
        check_options("pq", {"t": 1.0}, src="lens.toml", section=sec)


def test_build_needs_a_table_or_codebook_where_the_family_does() -> None:
    with pytest.raises(ConfigError, match="levels: method 'ste' needs levels or phases"):
        build_quantizer("ste")
    assert build_quantizer("ste", phases=np.array([0.0, 1.0, 3.0])).n_levels == 3
    with pytest.raises(ConfigError, match="codebook: method 'joint-learned' needs"):
        build_quantizer("joint-learned")
    with pytest.raises(ConfigError, match="codebook: method 'ampphase' builds"):
        build_quantizer("ampphase", codebook=phase_codebook(4))
    mask = np.zeros((4, 4), dtype=bool)
    mask[0] = True
    q = build_quantizer("binary", fixed_mask=mask, options={"structural": True, "soft": False})
    assert q.describe()["bits_per_pixel"] == pytest.approx(0.75) and q.soft is False


# ------------------------------------------------------------------ schema.Table list readers
def test_table_lengths_integers_and_pixel_boxes() -> None:
    t = Table({"d": ["1 cm", 0, "2 mm"], "bad": ["1 cm", True], "s": [3, 4],
               "b": [[0, 0, 2, 2], [1, 2, 3, 1]]}, None, src="x.toml", section="optics")
    assert t.lengths("d", count=3, allow_zero=True) == (0.01, 0.0, 0.002)
    assert t.lengths("none", None) is None
    with pytest.raises(ConfigError, match=r"^x.toml: optics.d: need a list of 2 lengths \(h\)"):
        t.lengths("d", count=2, hint=" (h)")
    with pytest.raises(ConfigError, match=r"^x.toml: optics.bad\[1\]: expected a length"):
        t.lengths("bad")
    with pytest.raises(ConfigError, match=r"optics.d\[1\]"):
        t.lengths("d")  # a zero distance only where allowed
    assert t.integers("s", count=2) == (3, 4)
    with pytest.raises(ConfigError, match=r"optics.s: must be a list of 3 integers >= 1"):
        t.integers("s", count=3)
    with pytest.raises(ConfigError, match=r"optics.s: must be a list of 2 integers >= 4"):
        t.integers("s", count=2, low=4)
    assert t.pixel_boxes("b", shape=(4, 4)) == ((0, 0, 2, 2), (1, 2, 3, 1))
    assert t.pixel_boxes("none", (), shape=(4, 4)) == ()
    with pytest.raises(ConfigError, match=r"optics.b: box 1 \[1, 2, 3, 1\] lies outside the "
                                          r"3x4 grid"):
        t.pixel_boxes("b", shape=(3, 4))
    for bad, message in (([[0, 0, 0, 2]], "box 0 .* is empty"), (5, "must be a list of"),
                         ([[0, 0, 2]], "each box is"), ([[0, 0, 2, True]], "each box is")):
        with pytest.raises(ConfigError, match=message):
            Table({"b": bad}, None, section="detectors").pixel_boxes("b", shape=(4, 4))

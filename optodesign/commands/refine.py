"""``optodesign refine RUN_DIR [--budget N|Ts] [--method dbs|anneal] [--out NEW_DIR] [--force]``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import UserError
from ._common import (
    MAX_SEED,
    check_output_dir,
    device_option,
    parse_int_option,
    resolve_device,
    user_errors,
)


def parse_budget(text: str) -> tuple[int | None, float | None]:
    """``"5000"`` -> 5000 evaluations; ``"30s"`` -> 30 seconds."""
    t = text.strip().lower()
    try:
        if t.endswith("s"):
            seconds = float(t[:-1])
            if seconds > 0:
                return None, seconds
        else:
            n = int(t)
            if n >= 1:
                return n, None
    except ValueError:
        pass
    raise UserError(f"--budget: expected evaluations (e.g. 2000) or seconds (e.g. 30s), "
                    f"got {text!r}")


def source_hashes(src: Path) -> dict[str, str]:
    """SHA-256 of the input design's files, recorded in the refine note (``source``)."""
    from ..fileio import sha256_file

    return {name: sha256_file(src / name) for name in ("design.npz", "design.json")}


def check_refine_out(out: Path, source: dict[str, str], *, force: bool) -> None:
    """Refuse to write into a non-empty ``out`` that is not an earlier refinement of the input.

    An absent or empty directory is fine, and so is one that holds only ``design.json`` +
    ``design.npz`` of a refinement of the same input (its last note's ``source`` matches), so
    that refining a run again replaces ``RUN/refined``. Anything else (another run, a fab
    directory whose manifest would no longer match, a refinement of a different design,
    other files) needs ``force``.

    Raises:
        UserError: one line naming ``--out`` and ``--force``.
    """
    import json

    if force or not out.is_dir():
        return
    names = sorted(p.name for p in out.iterdir())
    if not names:
        return
    note: Any = None
    if (out / "design.json").is_file():
        try:
            notes = json.loads((out / "design.json").read_text(encoding="utf-8")).get(
                "extra", {}).get("refine", [])
            note = notes[-1] if isinstance(notes, list) and notes else None
        except (OSError, ValueError, AttributeError):
            note = None
    same = isinstance(note, dict) and note.get("source") == source
    if set(names) <= {"design.json", "design.npz"} and same:
        return
    if "manifest.json" in names:
        what = "a fab directory (manifest.json)"
    elif {"checkpoint.pt", "config.toml", "run.json"} & set(names):
        what = "a training run"
    elif "design.json" in names and note is not None and not same:
        what = "a refinement of a different design"
    elif "design.json" in names:
        what = "another design"
    else:
        what = f"{len(names)} entr{'y' if len(names) == 1 else 'ies'}, e.g. {names[0]!r}"
    raise UserError(f"--out: {out} is not empty (it holds {what}); choose a new or empty "
                    f"directory, or pass --force to write the refined design there")


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--budget", default="2000", show_default=True, metavar="N|Ts",
              help="Candidate evaluations (e.g. 5000) or a time limit (e.g. 30s).")
@click.option("--method", type=click.Choice(["dbs", "anneal"]), default="dbs", show_default=True,
              help="dbs: direct binary search; anneal: simulated annealing (best design kept).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Directory for the refined design [default: RUN_DIR/refined]; new, empty, "
                   "or an earlier refinement of the same design unless --force.")
@click.option("--force", is_flag=True,
              help="Write into a non-empty --out (design.json/design.npz there are replaced).")
@click.option("--min-feature", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="PX", help="No change may create a run of one level shorter than PX "
                                 "pixels along x or y.")
@click.option("--process", "process_name", default=None, metavar="NAME_OR_PATH",
              help="Keep the process's design rules (the DRC's): no change may add a "
                   "violation, so a DRC-clean design stays clean [default: the process the "
                   "design was trained with, if any; 'none' turns it off].")
@click.option("--legalize", is_flag=True,
              help="First make every layer pass the process's rules (the legalizer training "
                   "uses), then refine under them: a DRC-clean design from a dirty one.")
@click.option("--block", type=click.IntRange(min=1), default=None, metavar="PX",
              help="Change square blocks of PX pixels at once [default: --min-feature].")
@click.option("--oversample", type=click.IntRange(min=1, max=8), default=None, metavar="S",
              help="Search on verify's drawing at S samples per pixel (Rayleigh-Sommerfeld "
                   "at pad 2 where it applies), not on point samples: slower per change, "
                   "exact under that model (hologram, lens, splitter; 4 is verify's finest).")
@click.option("--seed", default="0", show_default=True, metavar="N",
              help="Random order / proposals (an integer >= 0).")
@click.option("--train-samples", type=click.IntRange(min=1), default=256, show_default=True,
              help="D2NN: training images the loss averages over.")
@device_option
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def refine(run_dir: Path, budget: str, method: str, out_dir: Path | None, force: bool,
           min_feature: int, process_name: str | None, legalize: bool, block: int | None,
           oversample: int | None, seed: str,
           train_samples: int, device: str, quiet: bool) -> None:
    """Refine the integer level maps of the design in RUN_DIR on its hard-quantized task loss.

    Writes a new design (the input is never modified) whose test metric is re-evaluated with
    hard levels; design.json's extra.refine records what was done.
    """
    import numpy as np
    from tqdm.auto import tqdm

    from ..design import Design
    from ..evaluate import Evaluator
    from ..refine import Objective, satisfies_min_feature
    from ..refine import refine as run_refine

    n_evals, seconds = parse_budget(budget)
    seed_value = parse_int_option(seed, "--seed", low=0, high=MAX_SEED)
    assert seed_value is not None
    design = Design.load(run_dir)
    out = out_dir if out_dir is not None else Path(run_dir) / "refined"
    src = Path(run_dir) if Path(run_dir).is_dir() else Path(run_dir).parent
    if out.resolve() == src.resolve():
        raise UserError("--out: must differ from RUN_DIR (the input design is kept unchanged)")
    # the output first: nothing is computed for a design that cannot be written
    check_output_dir(out, "--out")
    source = source_hashes(src)
    check_refine_out(out, source, force=force)
    dev = resolve_device(device)
    evaluator = own = Evaluator.from_design(design, device=dev)
    model = None if oversample is None else search_model(design, oversample)
    # the loss the design was trained with: its task and setup (loss, temperature, ...)
    objective = Objective(design, evaluator=evaluator, train_samples=train_samples,
                          seed=seed_value, model=model)
    if model is not None:  # the metrics under the model searched
        evaluator = objective.evaluator
    key = evaluator.task.primary_metric
    before = evaluator.evaluate(design.transmissions())
    if min_feature > 1 and not satisfies_min_feature(design.levels, min_feature):
        click.echo(f"note: the input already has runs shorter than {min_feature} px; refinement "
                   f"creates no new ones but does not repair them")
    decks = _decks(design, process_name)
    if legalize and decks is None:
        raise UserError("--legalize: needs design rules: pass --process NAME (the design was "
                        "not trained with a process)")
    start = design.levels
    if decks is not None:
        dirty = sum(d.count(design.levels[k]) for k, d in enumerate(decks))
        click.echo(f"design rules of {decks[0].process}: the input has {dirty} violation(s); "
                   "no change may add one")
        if legalize and dirty:
            start = np.stack([d.legalize(design.levels[k]) for k, d in enumerate(decks)])
            if design.fixed_mask is not None:
                start = np.where(design.fixed_mask, design.levels, start)
                if any(d.count(start[k]) for k, d in enumerate(decks)):
                    raise UserError("--legalize: the design's fixed pixels break the process's "
                                    "rules; they cannot be legalized")
            legal = evaluator.evaluate(design.with_levels(start).transmissions())[key]
            click.echo(f"legalized: {int((start != design.levels).sum())} pixels changed, "
                       f"0 violations, {key} {before[key]:.4g} -> {legal:.4g}")
    bar = tqdm(total=n_evals, desc=f"refine ({method})", unit="eval", disable=quiet,
               mininterval=0.5, leave=False)

    def progress(n: int, loss: float) -> None:
        bar.update(n)
        bar.set_postfix(loss=f"{loss:.5g}", refresh=False)

    try:
        result = run_refine(objective, start, method=method,  # type: ignore[arg-type]
                            budget=n_evals, seconds=seconds, min_feature=min_feature,
                            block=block, fixed_mask=design.fixed_mask,
                            allowed_levels=design.allowed_levels(), seed=seed_value,
                            progress=progress, decks=decks)
    finally:
        bar.close()
    after = evaluator.evaluate(objective.transmissions(result.levels))
    loss = evaluator.task.describe_loss()
    metrics = dict(design.metrics)  # the design's own model, as training reported them
    metrics.update(after if model is None else own.evaluate(objective.transmissions(result.levels)))
    note = {
        "method": method,
        "budget": {"evaluations": n_evals} if n_evals is not None else {"seconds": seconds},
        "evaluations": result.evaluations,
        "accepted": result.accepted,
        "converged": result.converged,
        "loss": {"kind": loss.pop("kind"), "before": result.loss_before,
                 "after": result.loss_after,
                 **({"train_samples": objective.n_inputs} if evaluator.task.supervised
                    else {}), **loss},
        "metric": key,
        "metric_before": before[key],
        "metric_after": after[key],
        "min_feature_px": min_feature,
        "process_rules": None if decks is None else decks[0].process,
        "block_px": block if block is not None else min_feature,
        "seed": seed_value,
        "source": source,
        "wall_time_s": round(result.wall_time, 3),
        "changed_pixels": int((result.levels != design.levels).sum()),
        "legalized_pixels": int((start != design.levels).sum()),
        "search_model": "points" if model is None else model.to_json(),
    }
    history = list(design.extra.get("refine", []))
    extra = {**design.extra, "refine": [*history, note]}
    refined = design.with_levels(result.levels, metrics=metrics, extra=extra)
    refined.save(out)
    click.echo(f"refined {design.task} with {method}: {result.evaluations} evaluations in "
               f"{result.wall_time:.1f} s, {note['changed_pixels']} pixels changed, loss "
               f"{result.loss_before:.5g} -> {result.loss_after:.5g}")
    under = "" if model is None else f", {model.label()}"
    click.echo(f"{key} (test, hard levels{under}): {before[key]:.4g} -> {after[key]:.4g}")
    click.echo(f"design: {out / 'design.json'}")


def search_model(design: Any, oversample: int) -> Any:
    """The drawn model ``--oversample`` searches on: the Rayleigh–Sommerfeld convolution at
    pad 2 (verify's converged family) where it can simulate the design, else the design's
    own method and padding."""
    from ..verify.model import SimModel

    rs = SimModel(2.0, oversample, "rs")
    return rs if not rs.problems(design) else SimModel(design.pad, oversample, design.propagation)


def _decks(design: Any, name: str | None) -> list[Any] | None:
    """Per layer, the design rules refine keeps: ``--process``, else the process the design
    was trained with (``design.json`` quantizer.process); ``none``: no rules."""
    from ..fabrules import Deck
    from ..process import load_process

    if name is None:
        name = design.quantizer.get("process") if isinstance(design.quantizer, dict) else None
    if name is None or str(name).lower() == "none":
        return None
    try:
        process = load_process(str(name))
    except UserError as e:
        raise UserError(f"--process: {e}") from None
    return [Deck.of(process, pitch=design.pitch, level_table=design.level_tables[k],
                    layer=k + 1) for k in range(design.levels.shape[0])]

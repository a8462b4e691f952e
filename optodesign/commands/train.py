"""``optodesign train CONFIG --out RUN_DIR [--resume | --force]``."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import (
    MAX_SEED,
    check_output_dir,
    device_option,
    parse_int_option,
    resolve_device,
    user_errors,
)


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Run directory (created): design, checkpoints, metrics, plots. Must be new "
                   "or empty unless --resume or --force.")
@device_option
@click.option("--seed", default=None, metavar="N",
              help="Override the config's seed (an integer >= 0).")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run from its checkpoint (same config; only the "
                   "epochs may change).")
@click.option("--force", is_flag=True,
              help="Replace the run already in --out (its design, checkpoint, metrics, plots "
                   "and refined/), or write into a non-empty directory that is not a run.")
@click.option("--epochs", default=None, metavar="N", help="Override train.epochs (>= 1).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--tensorboard", is_flag=True,
              help="Also log every epoch's metrics to RUN/tensorboard (needs the tensorboard "
                   "package; view with `tensorboard --logdir RUN`).")
@user_errors
def train(config: Path, out_dir: Path, device: str, seed: str | None, resume: bool, force: bool,
          epochs: str | None, quiet: bool, tensorboard: bool) -> None:
    """Train a quantized design from a TOML CONFIG and write it to --out."""
    import dataclasses

    from .. import distributed
    from ..train.config import load_config
    from ..train.rundir import check_run_dir, clear_run_outputs, read_resume_state
    from ..train.trainer import Trainer

    seed_value = parse_int_option(seed, "--seed", low=0, high=MAX_SEED)
    epochs_value = parse_int_option(epochs, "--epochs", low=1)
    # the output first: nothing is computed (or removed) for a run that cannot be written
    check_output_dir(out_dir, "--out")
    replace = check_run_dir(out_dir, resume=resume, force=force)
    cfg = load_config(config)
    if seed_value is not None:
        cfg = dataclasses.replace(cfg, seed=seed_value)
    if epochs_value is not None:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs_value))
    if resume:
        read_resume_state(out_dir, cfg)  # a changed config is refused before any work
    # under torchrun: join the process group (gloo on CPU, NCCL on CUDA); rank 0 writes
    dev = distributed.setup(resolve_device(device))
    trainer = Trainer(cfg, out_dir, device=dev, progress=not quiet,
                      config_text=config.read_text(encoding="utf-8"), tensorboard=tensorboard)
    if replace and distributed.is_main():
        removed = clear_run_outputs(out_dir)
        click.echo(f"--force: removed the earlier run in {out_dir} ({len(removed)} files and "
                   f"folders)")
    distributed.barrier()
    result = trainer.run(resume=resume)
    main = distributed.is_main()
    distributed.shutdown()
    if not main:
        return
    m = result.design.metrics
    shown = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float))
    click.echo(f"trained {cfg.task} ({cfg.quantization.method}, {result.design.n_levels} levels): "
               f"{shown}")
    click.echo(f"design: {out_dir / 'design.json'}  plots: {out_dir / 'plots'}")

"""``optodesign train CONFIG --out RUN_DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import device_option, resolve_device, user_errors


@click.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (created): design, checkpoints, metrics, plots.")
@device_option
@click.option("--seed", type=int, default=None, help="Override the config's seed.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its checkpoint.")
@click.option("--epochs", type=int, default=None, help="Override train.epochs.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def train(config: Path, out_dir: Path, device: str, seed: int | None, resume: bool,
          epochs: int | None, quiet: bool) -> None:
    """Train a quantized design from a TOML CONFIG and write it to --out."""
    import dataclasses

    from ..train.config import load_config
    from ..train.trainer import Trainer

    cfg = load_config(config)
    if seed is not None:
        cfg = dataclasses.replace(cfg, seed=seed)
    if epochs is not None:
        if epochs < 1:
            raise click.BadParameter("must be >= 1", param_hint="--epochs")
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=epochs))
    trainer = Trainer(cfg, out_dir, device=resolve_device(device), progress=not quiet,
                      config_text=config.read_text(encoding="utf-8"))
    result = trainer.run(resume=resume)
    m = result.design.metrics
    shown = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if isinstance(v, float))
    click.echo(f"trained {cfg.task} ({cfg.quantization.method}, {result.design.n_levels} levels): "
               f"{shown}")
    click.echo(f"design: {out_dir / 'design.json'}  plots: {out_dir / 'plots'}")

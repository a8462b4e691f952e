"""Training: config, tasks (losses and metrics), the loop, checkpoints, plots."""

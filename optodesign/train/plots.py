"""Plots of a training run (PNG, matplotlib Agg): levels, curves, outputs, confusion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..design import Design
from ..evaluate import PRIMARY_METRIC, Evaluator
from ..fileio import atomic_path

__all__ = ["plot_run", "save_figure"]


def save_figure(fig: Any, path: Path) -> None:
    """Save a figure atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def plot_run(out_dir: Path, design: Design, history: list[dict[str, Any]], ev: Evaluator,
             transmissions: list[torch.Tensor]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    written: list[Path] = []

    k = design.n_layers
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 3.2), squeeze=False)
    for i, ax in enumerate(axes[0]):
        im = ax.imshow(design.levels[i], cmap="twilight", vmin=0, vmax=design.n_levels - 1,
                       interpolation="nearest")
        ax.set_title(f"layer {i + 1} levels")
        ax.axis("off")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="level")
    save_figure(fig, plots / "levels.png")
    written.append(plots / "levels.png")

    if history:
        key = PRIMARY_METRIC[design.task]
        ep = [r["epoch"] for r in history]
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        a.plot(ep, [r["train_loss"] for r in history], "o-")
        a.set(xlabel="epoch", ylabel="train loss", title="loss")
        b.plot(ep, [r[f"test_{key}_soft"] for r in history], "o-", label="training path")
        b.plot(ep, [r[f"test_{key}_hard"] for r in history], "s-", label="hard levels")
        b.set(xlabel="epoch", ylabel=key, title=f"test {key}")
        b.legend()
        fig.tight_layout()
        save_figure(fig, plots / "curves.png")
        written.append(plots / "curves.png")

    with torch.no_grad():
        if design.task == "d2nn":
            images, labels = ev.test_split()
            classes = sorted(set(labels.tolist()))
            picks = [int(np.flatnonzero(labels == c)[0]) for c in classes]
            fields = ev.images_to_field(images[picks])
            inten = ev.output_intensity(fields, transmissions).cpu().numpy()
            n = len(picks)
            fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4), squeeze=False)
            for j in range(n):
                axes[0, j].imshow(images[picks[j]], cmap="gray")
                axes[0, j].set_title(str(classes[j]))
                axes[1, j].imshow(inten[j], cmap="inferno")
                for y0, x0, h, w in design.detectors:
                    axes[1, j].add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False,
                                                       ec="cyan", lw=0.6))
                axes[0, j].axis("off")
                axes[1, j].axis("off")
            fig.suptitle("input and output-plane intensity per class (hard levels)")
            save_figure(fig, plots / "outputs.png")
            written.append(plots / "outputs.png")
            conf = np.asarray(design.metrics.get("confusion", []))
            if conf.size:
                fig, ax = plt.subplots(figsize=(4.6, 4))
                ax.imshow(conf, cmap="Blues")
                for (i, j), v in np.ndenumerate(conf):
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
                ax.set(xlabel="predicted", ylabel="true",
                       title=f"confusion (accuracy {design.metrics['accuracy']:.3f})")
                save_figure(fig, plots / "confusion.png")
                written.append(plots / "confusion.png")
        else:
            inten = ev.output_intensity(ev.plane_wave(), transmissions)[0].cpu().numpy()
            panels = [("output intensity (hard levels)", inten)]
            if design.target is not None:
                panels.insert(0, ("target", design.target))
            fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8),
                                     squeeze=False)
            for ax, (title, img) in zip(axes[0], panels):
                ax.imshow(img, cmap="inferno")
                ax.set_title(title)
                ax.axis("off")
            m = ", ".join(f"{k} {v:.3g}" for k, v in design.metrics.items()
                          if isinstance(v, float))
            fig.suptitle(m, fontsize=8)
            save_figure(fig, plots / "outputs.png")
            written.append(plots / "outputs.png")
    return written

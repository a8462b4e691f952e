"""Plots of a training run (PNG through :mod:`optodesign.plotting`): levels, curves, outputs,
confusion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..design import Design
from ..evaluate import Evaluator
from ..plotting import new_figure, save_png, show_plane

__all__ = ["plot_run"]


def _axes_row(fig: Any, n: int, row: int = 0, rows: int = 1) -> list[Any]:
    return [fig.add_subplot(rows, n, row * n + j + 1) for j in range(n)]


def plot_run(out_dir: Path, design: Design, history: list[dict[str, Any]], ev: Evaluator,
             transmissions: list[torch.Tensor]) -> list[Path]:

    plots = out_dir / "plots"
    plots.mkdir(exist_ok=True)
    written: list[Path] = []

    k = design.n_layers
    fig = new_figure(3.4 * k, 3.4)
    fig.set_layout_engine("constrained")
    axes = _axes_row(fig, k)
    for i, ax in enumerate(axes):
        # viewed from the source towards the detector (manifest.json conventions.viewing)
        im = show_plane(ax, design.levels[i], pitch=design.pitch, title=f"layer {i + 1} levels",
                        cmap="twilight", vmin=0, vmax=design.n_levels - 1)
    fig.colorbar(im, ax=axes, shrink=0.8, label="level index")
    written.append(save_png(fig, plots / "levels.png"))

    if history:
        key = ev.task.primary_metric
        ep = [r["epoch"] for r in history]
        fig = new_figure(10, 3.6)
        a, b = _axes_row(fig, 2)
        a.plot(ep, [r["train_loss"] for r in history], "o-")
        a.set(xlabel="epoch", ylabel="train loss", title="loss")
        b.plot(ep, [r[f"test_{key}_soft"] for r in history], "o-", label="training path")
        b.plot(ep, [r[f"test_{key}_hard"] for r in history], "s-", label="hard levels")
        b.set(xlabel="epoch", ylabel=key, title=f"test {key}")
        b.legend()
        fig.tight_layout()
        written.append(save_png(fig, plots / "curves.png"))

    with torch.no_grad():
        if ev.task.supervised:
            images, labels = ev.test_split()
            classes = sorted(set(labels.tolist()))
            picks = [int(np.flatnonzero(labels == c)[0]) for c in classes]
            fields = ev.images_to_field(images[picks])
            inten = ev.output_intensity(fields, transmissions).cpu().numpy()
            n = len(picks)
            fig = new_figure(1.9 * n, 3.8)
            fig.set_layout_engine("constrained")
            top, bottom = _axes_row(fig, n, 0, 2), _axes_row(fig, n, 1, 2)
            for j in range(n):
                top[j].imshow(images[picks[j]], cmap="gray")
                top[j].set_title(str(classes[j]))
                top[j].axis("off")
                show_plane(bottom[j], inten[j], pitch=design.pitch, cmap="inferno",
                           boxes=ev.boxes, box_colors=["cyan"] * len(ev.boxes))
            fig.suptitle("input and output-plane intensity per class (hard levels)")
            written.append(save_png(fig, plots / "outputs.png"))
            conf = np.asarray(design.metrics.get("confusion", []))
            if conf.size:
                fig = new_figure(4.6, 4)
                ax = fig.add_subplot(1, 1, 1)
                ax.imshow(conf, cmap="Blues")
                for (i, j), v in np.ndenumerate(conf):
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=6)
                key = ev.task.primary_metric
                ax.set(xlabel="predicted", ylabel="true",
                       title=f"confusion ({key} {design.metrics[key]:.3f})")
                written.append(save_png(fig, plots / "confusion.png"))
        else:
            inten = ev.output_intensity(ev.plane_wave(), transmissions)[0].cpu().numpy()
            out_step, out_coord = ev.task.output_axes(pitch=design.pitch,
                                                      wavelength=design.wavelength,
                                                      focal_length=design.distances[-1])
            # the task's zoom box (a lens's focus): outlined, and enlarged in its own panel
            zoom = ev.task.zoom_box()
            panels = [("output intensity (hard levels)", inten, None)]
            if design.target is not None:
                panels.insert(0, ("target", design.target, None))
            if zoom is not None:
                panels.append(("focus (hard levels)", inten, zoom))
            fig = new_figure(4.2 * len(panels), 3.8)
            fig.set_layout_engine("constrained")
            for ax, (title, img, window) in zip(_axes_row(fig, len(panels)), panels):
                show_plane(ax, img, pitch=out_step, coordinate=out_coord, title=title,
                           cmap="inferno", window=window,
                           boxes=[zoom] if zoom and window is None and img is inten else (),
                           colorbar="intensity (|u|², incident = 1 per pixel)")
            m = ", ".join(f"{k} {v:.3g}" for k, v in design.metrics.items()
                          if isinstance(v, float))
            fig.suptitle(m, fontsize=8)
            written.append(save_png(fig, plots / "outputs.png"))
    return written

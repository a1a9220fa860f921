"""Small figures shared by the CLI and reports (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["scatter_png"]


def scatter_png(points: torch.Tensor, path: str | Path, *, title: str = "") -> Path:
    """Scatter plot of (N, 2) points written to ``path`` as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = points.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(4, 4), dpi=120)
    ax.scatter(xy[:, 0], xy[:, 1], s=2, alpha=0.5)
    ax.set_aspect("equal")
    ax.set_title(title, fontsize=8)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, bbox_inches="tight")
    plt.close(fig)
    return target

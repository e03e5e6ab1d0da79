"""Matplotlib figures of the latent space, with titles, axes and legends, for PNGs and TensorBoard."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torchvision.utils import make_grid  # noqa: E402


def _to_hwc(image: torch.Tensor) -> torch.Tensor:
    """(C, H, W) in [0, 1] to what imshow takes."""
    image = image.detach().float().clamp(0, 1).cpu()
    return (image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)).numpy()


def _show(ax, image: torch.Tensor, **kwargs) -> None:
    ax.imshow(_to_hwc(image), cmap="gray", vmin=0, vmax=1, **kwargs)


def latent_grid_figure(grid: torch.Tensor, quantiles: torch.Tensor, *, dims: tuple[int, int], title: str) -> Figure:
    """The decoded grid with its z values on the axes (x: z[dims[0]], y: z[dims[1]] pointing up)."""
    size = len(quantiles)
    fig, ax = plt.subplots(figsize=(8, 8.4))
    low, high = float(quantiles[0]), float(quantiles[-1])
    half = (high - low) / (size - 1) / 2 if size > 1 else 0.5
    _show(ax, grid, extent=(low - half, high + half, low - half, high + half))
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def scatter_figure(
    points: torch.Tensor, labels: torch.Tensor, *, axis_names: str, title: str, class_names: Sequence[str] | None = None
) -> Figure:
    """Points coloured by class, with a legend."""
    fig, ax = plt.subplots(figsize=(8, 7))
    classes = sorted(set(labels.tolist()))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for index, label in enumerate(classes):
        chosen = labels == label
        name = class_names[label] if class_names else str(label)
        ax.scatter(
            points[chosen, 0].numpy(), points[chosen, 1].numpy(), s=3, alpha=0.6, color=cmap(index % cmap.N), label=name
        )
    x_name, _, y_name = axis_names.partition(", ")
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name or x_name)
    ax.set_title(title)
    ax.legend(markerscale=4, loc="best", fontsize=8, title="class")
    fig.tight_layout()
    return fig


def image_rows_figure(
    rows: torch.Tensor,
    *,
    title: str,
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
) -> Figure:
    """A table of images: rows (R, K, C, H, W), with optional row and column labels."""
    num_rows, num_columns = rows.shape[:2]
    fig, axes = plt.subplots(
        num_rows, num_columns, figsize=(1.1 * num_columns + 1.2, 1.1 * num_rows + 0.8), squeeze=False
    )
    for r in range(num_rows):
        for c in range(num_columns):
            ax = axes[r][c]
            _show(ax, rows[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0 and column_labels:
                ax.set_title(column_labels[c], fontsize=8)
            if c == 0 and row_labels:
                ax.set_ylabel(row_labels[r], fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def sample_sheet_figure(images: torch.Tensor, *, title: str, per_row: int = 8) -> Figure:
    """A grid of images under a title."""
    sheet = make_grid(images.clamp(0, 1), nrow=per_row, padding=2, pad_value=0.5)
    fig, ax = plt.subplots(figsize=(6, 6 * sheet.shape[1] / sheet.shape[2] + 0.4))
    _show(ax, sheet)
    ax.axis("off")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def save(fig: Figure, path) -> None:
    """Write a figure to PNG and free it."""
    fig.savefig(path, dpi=100)
    plt.close(fig)

"""Preview grid of image–caption pairs."""

from __future__ import annotations

import os
import textwrap

import torch

from curatorch.data.dataset import NOISE_KINDS, PairDataset
from curatorch.data.images import to_channels_last
from curatorch.report.figures import pyplot, save_figure

__all__ = ["preview_grid"]


def preview_grid(
    dataset: PairDataset, path: str | os.PathLike[str], n: int = 16, seed: int = 0
) -> None:
    """Save a PNG grid of ``n`` random examples, each titled with its caption and noise kind.

    Args:
        dataset: the pairs to preview.
        path: output PNG file; written atomically (temp file in the same folder, then
            ``os.replace``).
        n: number of examples shown (at most ``len(dataset)``).
        seed: seed of the random choice of examples.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if len(dataset) == 0:
        raise ValueError("dataset must not be empty")
    plt = pyplot()
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(f"path must be in an existing directory, got {path!r}")
    n = min(n, len(dataset))
    g = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(dataset), generator=g)[:n].sort().values
    images = to_channels_last(dataset.images[index])  # [n, H, W, 3]
    captions = dataset.captions(index)
    noise = dataset.noise[index].tolist()
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, ax in enumerate(axes.flat[:n]):
        ax.imshow(images[i], interpolation="nearest")
        kind = NOISE_KINDS[noise[i]] if 0 <= noise[i] < len(NOISE_KINDS) else str(noise[i])
        title = "\n".join(textwrap.wrap(captions[i], width=30)[:4])
        colour = "black" if kind == "clean" else "firebrick"
        ax.set_title(f"[{kind}]\n{title}", fontsize=8, color=colour)
    fig.tight_layout()
    save_figure(fig, path)

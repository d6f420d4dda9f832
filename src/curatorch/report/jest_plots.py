"""Plots of JEST's selection analysis (the paper's Figure 2 on our data)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from curatorch.report.figures import pyplot, save_figure

__all__ = ["plot_learnability_matrix", "plot_vs_chunks", "plot_vs_filter_ratio"]


def plot_learnability_matrix(
    scores: torch.Tensor,
    order: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    title: str = "learnability of one super-batch",
) -> None:
    """Heatmap of a ``[B, B]`` score matrix with rows and columns in ``order`` ``[B]``
    (e.g. grouped by concept), so that its off-diagonal structure shows."""
    plt = pyplot()
    a = scores[order][:, order].float()
    lim = float(torch.quantile(a.abs().flatten()[:1_000_000], 0.99)) or 1.0
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(a.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="A_ij = learner loss − reference loss")
    ax.set_xlabel("text j (sorted)")
    ax.set_ylabel("image i (sorted)")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_vs_chunks(result: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Selected-batch learnability against the number of chunks N, with Gibbs,
    independent and random selection as horizontal references."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result["chunks"], result["joint"], "o-", label="joint (JEST)")
    styles = {"gibbs": ("k", "--"), "independent": ("tab:orange", ":"), "random": ("grey", "-.")}
    for key, (colour, style) in styles.items():
        ax.axhline(result[key], color=colour, linestyle=style, label=key)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of chunks N")
    ax.set_ylabel("batch learnability (sum of A over the batch / b)")
    ax.set_title("selected-batch learnability against the number of chunks")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_vs_filter_ratio(result: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Selected-batch learnability against the filter ratio f for each sampler."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, marker in (("joint", "o-"), ("independent", "s--"), ("random", "^:")):
        ax.plot(result["filter_ratio"], result[key], marker, label=key)
    ax.set_xlabel("filter ratio f")
    ax.set_ylabel("batch learnability (sum of A over the batch / b)")
    ax.set_title("learnability of the selected batch")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)

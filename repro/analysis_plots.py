"""Drawing the inspection figures (Fig. 6, 7) from the arrays of ``repro.analysis``.

Each function takes the numbers (never a model), writes one PNG and returns its
path, so a figure can always be rebuilt from saved arrays.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Union

import numpy as np

PathLike = Union[str, Path]


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, out_path: PathLike) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120)
    _pyplot().close(fig)
    return out_path


def plot_filter_components(images: np.ndarray, explained_variance_ratio: np.ndarray, out_path: PathLike,
                           ncols: int = 7, title: str = "") -> Path:
    """The principal components of the embedding filters as a grid of RGB tiles (Fig. 7 left).

    images: (k, P, P, 3) in [0, 1] (``filter_components``); each tile is titled
    with its share of the variance in %.
    """
    plt = _pyplot()
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"expected (k, P, P, C) images, got shape {images.shape}")
    k = images.shape[0]
    nrows = -(-k // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.2 * ncols, 1.35 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < k:
            tile = images[i] if images.shape[-1] == 3 else images[i].mean(axis=-1)  # non-RGB: channel mean, grey
            ax.imshow(tile, cmap=None if images.shape[-1] == 3 else "gray", interpolation="nearest")
            ax.set_title(f"{100 * explained_variance_ratio[i]:.1f}%", fontsize=6)
    fig.suptitle(title or "RGB embedding filters (first principal components)", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_path)


def plot_position_similarity(similarity: np.ndarray, grid_size: tuple[int, int], out_path: PathLike,
                             title: str = "") -> Path:
    """Position-embedding similarity (Fig. 7 center): tile (r, c) shows patch (r, c)'s cosine with every patch.

    similarity: (N, N) from ``position_similarity``, N = gh * gw in raster order.
    """
    plt = _pyplot()
    gh, gw = grid_size
    sim = np.asarray(similarity)
    if sim.shape != (gh * gw, gh * gw):
        raise ValueError(f"similarity of shape {sim.shape} does not match a {gh}x{gw} grid")
    fig, axes = plt.subplots(gh, gw, figsize=(0.6 * gw + 1, 0.6 * gh + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        im = ax.imshow(sim[i].reshape(gh, gw), vmin=-1, vmax=1, cmap="viridis")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.supxlabel("input patch column", fontsize=8)
    fig.supylabel("input patch row", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label="cosine similarity")
    fig.suptitle(title or "Position embedding similarity", fontsize=9)
    return _save(fig, out_path)


def plot_attention_distance(distances: Union[np.ndarray, Mapping[str, np.ndarray]], out_path: PathLike,
                            title: str = "") -> Path:
    """Mean attention distance of every head against network depth (Fig. 7 right).

    distances: (layers, heads) from ``mean_attention_distance``, or a mapping
    label -> such an array to compare models; one dot per head, layers numbered from 1.
    """
    plt = _pyplot()
    series = distances if isinstance(distances, Mapping) else {"": distances}
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for label, dist in series.items():
        dist = np.asarray(dist)
        if dist.ndim != 2:
            raise ValueError(f"expected (layers, heads) distances, got shape {dist.shape}")
        layers = np.repeat(np.arange(1, dist.shape[0] + 1), dist.shape[1])
        ax.scatter(layers, dist.reshape(-1), s=10, alpha=0.7, label=label or None)
    ax.set(xlabel="network depth (layer)", ylabel="mean attention distance (pixels)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if any(series):
        ax.legend(fontsize=7)
    ax.set_title(title or "Mean attention distance per head", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_path)


def plot_rollout(images: np.ndarray, maps: np.ndarray, out_path: PathLike, title: str = "") -> Path:
    """Each image beside itself weighted by its attention-rollout map (Fig. 6).

    images: (B, H, W, 3) in [0, 1] (e.g. ``repro.data.denormalize(x).permute(0, 2, 3, 1)``);
    maps: (B, H, W), e.g. ``rollout_map(..., image_size=(H, W), normalize=True)``;
    each map is rescaled by its maximum before it multiplies the image.
    """
    plt = _pyplot()
    images, maps = np.asarray(images), np.asarray(maps)
    if images.ndim != 4 or maps.shape != images.shape[:3]:
        raise ValueError(f"images {images.shape} must be (B, H, W, 3) and maps {maps.shape} (B, H, W)")
    b = images.shape[0]
    fig, axes = plt.subplots(2, b, figsize=(1.6 * b, 3.4), squeeze=False)
    for i in range(b):
        weight = maps[i] / max(float(maps[i].max()), 1e-12)
        axes[0, i].imshow(np.clip(images[i], 0, 1))
        axes[1, i].imshow(np.clip(images[i] * weight[..., None], 0, 1))
        for ax in axes[:, i]:
            ax.axis("off")
    axes[0, 0].set_title("input", fontsize=8, loc="left")
    axes[1, 0].set_title("attention", fontsize=8, loc="left")
    fig.suptitle(title or "Attention rollout", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_path)

"""Drawing the inspection figures (Fig. 6, 7) from the arrays of ``repro.analysis``, and the cost of
attention (``repro.attention_cost``) from its sweep's table.

Each function takes the numbers (never a model), writes one PNG and returns its
path, so a figure can always be rebuilt from saved arrays.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Union

import numpy as np

from .attention_cost import (EXPLICIT_SAVED, EXPLICIT_TIME, FUSED_SAVED, FUSED_TIME, MLP_TIME, MODEL_PEAK, MODEL_SAVED,
                             MODEL_TIME, TOKENS)
from .figures import pyplot

PathLike = Union[str, Path]


def _save(fig, out_path: PathLike) -> Path:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120)
    pyplot().close(fig)
    return out_path


def plot_filter_components(images: np.ndarray, explained_variance_ratio: np.ndarray, out_path: PathLike,
                           ncols: int = 7, title: str = "") -> Path:
    """The principal components of the embedding filters as a grid of RGB tiles (Fig. 7 left).

    images: (k, P, P, 3) in [0, 1] (``filter_components``); each tile is titled
    with its share of the variance in %.
    """
    plt = pyplot()
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
    plt = pyplot()
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
                            title: str = "", reference: Optional[float] = None) -> Path:
    """Mean attention distance of every head against network depth (Fig. 7 right).

    distances: (layers, heads) from ``mean_attention_distance``, or a mapping
    label -> such an array to compare models; one dot per head, layers numbered from 1.
    reference: a distance in pixels drawn as a dashed line (e.g. uniform attention's); with it the
    axis starts at 0, as the paper's does.
    """
    plt = pyplot()
    series = distances if isinstance(distances, Mapping) else {"": distances}
    fig, ax = plt.subplots(figsize=(4.2, 3.4))
    for label, dist in series.items():
        dist = np.asarray(dist)
        if dist.ndim != 2:
            raise ValueError(f"expected (layers, heads) distances, got shape {dist.shape}")
        layers = np.repeat(np.arange(1, dist.shape[0] + 1), dist.shape[1])
        ax.scatter(layers, dist.reshape(-1), s=10, alpha=0.7, label=label or None)
    if reference is not None:
        ax.axhline(reference, linestyle="--", color="grey", linewidth=1, label="uniform attention")
        top = max([reference] + [float(np.max(d)) for d in series.values()])
        ax.set_ylim(0, 1.1 * top)
    ax.set(xlabel="network depth (layer)", ylabel="mean attention distance (pixels)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    if any(series) or reference is not None:
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
    plt = pyplot()
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


def plot_attention_cost(table, fits: Mapping[str, object], out_path: PathLike, title: str = "") -> Path:
    """The cost of attention against the token count, log-log (claim 7): time (left) and memory (right).

    table: ``repro.attention_cost.attention_cost_sweep``'s rows; fits: column -> ``PowerFit`` (from
    ``fit_exponents``), drawn dashed over the range they were fitted on, their exponent in the legend.
    A dotted T^2 guide through the fused attention's last point shows what quadratic looks like.
    """
    plt = pyplot()
    panels = {
        "time, forward + backward (ms per image)": [(MODEL_TIME, "whole model"), (FUSED_TIME, "fused attention, per layer"),
                                                    (EXPLICIT_TIME, "explicit attention, per layer"),
                                                    (MLP_TIME, "MLP, per layer")],
        "memory (MiB per image)": [(MODEL_SAVED, "whole model, saved activations"),
                                   (EXPLICIT_SAVED, "explicit attention, saved, per layer"),
                                   (FUSED_SAVED, "fused attention, saved, per layer")],
    }
    if MODEL_PEAK in table and table[MODEL_PEAK].notna().any():
        batch = float(table["batch"].iloc[0])
        table = table.assign(**{"_peak_per_image": table[MODEL_PEAK] / batch})
        panels["memory (MiB per image)"].append(("_peak_per_image", "whole model, CUDA peak allocated"))
    # One colour per part of the model in both panels.
    colours = {MODEL_TIME: "C0", MODEL_SAVED: "C0", "_peak_per_image": "C4", FUSED_TIME: "C1", FUSED_SAVED: "C1",
               EXPLICIT_TIME: "C2", EXPLICIT_SAVED: "C2", MLP_TIME: "C3"}
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.2))
    tokens = np.asarray(table[TOKENS], dtype=float)
    for ax, (ylabel, series) in zip(axes, panels.items()):
        for column, label in series:
            values = np.asarray(table[column], dtype=float)
            if not np.isfinite(values).any():
                continue
            colour = colours[column]
            fit = fits.get(column)
            legend = label + (f" (~T^{fit.exponent:.2f})" if fit is not None else "")
            ax.plot(tokens, values, "o-", color=colour, label=legend, markersize=4)
            if fit is not None:
                xs = np.geomspace(*fit.x_range, 20)
                ax.plot(xs, fit.predict(xs), "--", color=colour, linewidth=2.5, alpha=0.5)
        ax.set(xscale="log", yscale="log", xlabel="tokens T", ylabel=ylabel)
        ax.grid(alpha=0.3, which="both")
    if FUSED_TIME in table and np.isfinite(table[FUSED_TIME]).any():
        last = int(np.nanargmax(tokens))
        xs = np.geomspace(tokens.min(), tokens.max(), 20)
        axes[0].plot(xs, table[FUSED_TIME].iloc[last] * (xs / tokens[last]) ** 2, ":", color="grey", label="T^2 guide")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(title or "The cost of attention against the number of tokens (dashed: power-law fits)", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_path)

"""Resampling learned position embeddings to another patch grid (Sec. 3.2), as pure functions.

Fine-tuning at a higher resolution keeps the patch size, so the grid of
patches grows; "we perform 2D interpolation of the pre-trained position
embeddings, according to their location in the original image". The paper
does not name the kernel. The official code (vit_jax ``checkpoint.py``) uses
``scipy.ndimage.zoom(order=1)`` on the (gh, gw, D) grid: bilinear with the
corner positions aligned, which is ``F.interpolate(mode="bilinear",
align_corners=True)``. That is the default here; bicubic with antialiasing
(what timm's loader does for its own checkpoints) is kept as an option.

The class token's row (when there is one) is not a position on the grid and is
carried over unchanged. The 2-D variant's X and Y tables are 1-D functions of
the column and the row, so each is resampled along its own axis.

All functions take and return tensors of shape (1, T, D) and never modify their input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed as _timm_resample_abs_pos_embed

Grid = tuple[int, int]

RESAMPLE_METHODS = ("bilinear", "bicubic")
DEFAULT_RESAMPLE = "bilinear"  # the official code's scipy.ndimage.zoom(order=1)


def _compute_dtype(table: torch.Tensor) -> torch.Tensor:
    """float32 at least (bf16 tables are interpolated in float32), float64 kept."""
    return table.to(torch.promote_types(table.dtype, torch.float32))


def _check_method(method: str) -> None:
    if method not in RESAMPLE_METHODS:
        raise ValueError(f"position-embedding resampling method {method!r}; choose one of {RESAMPLE_METHODS} "
                         f"({DEFAULT_RESAMPLE!r} is the official code's)")


def resample_patch_grid(table: torch.Tensor, old_grid: Grid, new_grid: Grid,
                        method: str = DEFAULT_RESAMPLE) -> torch.Tensor:
    """Patch positions only: (1, gh*gw, D) on ``old_grid`` -> (1, gh'*gw', D) on ``new_grid``."""
    _check_method(method)
    (oh, ow), (nh, nw) = old_grid, new_grid
    if table.ndim != 3 or table.shape[1] != oh * ow:
        raise ValueError(f"a (1, {oh * ow}, D) table for a {oh}x{ow} grid was expected, got {tuple(table.shape)}")
    if (oh, ow) == (nh, nw):
        return table.clone()
    if method == "bicubic":
        return _timm_resample_abs_pos_embed(table, new_size=[nh, nw], old_size=[oh, ow], num_prefix_tokens=0,
                                            interpolation="bicubic", antialias=True)
    dim = table.shape[-1]
    grid = _compute_dtype(table).reshape(1, oh, ow, dim).permute(0, 3, 1, 2)  # (1, D, gh, gw)
    grid = F.interpolate(grid, size=(nh, nw), mode="bilinear", align_corners=True)
    return grid.permute(0, 2, 3, 1).reshape(1, nh * nw, dim).to(table.dtype)


def resample_abs_pos_embed(table: torch.Tensor, old_grid: Grid, new_grid: Grid, num_prefix_tokens: int = 1,
                           method: str = DEFAULT_RESAMPLE) -> torch.Tensor:
    """A 1-D table (1, prefix + gh*gw, D) -> (1, prefix + gh'*gw', D); prefix (class token) rows kept as they are."""
    prefix, patches = table[:, :num_prefix_tokens], table[:, num_prefix_tokens:]
    return torch.cat([prefix, resample_patch_grid(patches, old_grid, new_grid, method)], dim=1)


def resample_axis_table(table: torch.Tensor, new_length: int, method: str = DEFAULT_RESAMPLE) -> torch.Tensor:
    """One axis of the 2-D variant, (1, n, D/2) -> (1, new_length, D/2), with the same kernel along that axis."""
    _check_method(method)
    if table.ndim != 3:
        raise ValueError(f"a (1, n, D) axis table was expected, got {tuple(table.shape)}")
    if table.shape[1] == new_length:
        return table.clone()
    x = _compute_dtype(table).permute(0, 2, 1)  # (1, D, n)
    if method == "bilinear":
        x = F.interpolate(x, size=new_length, mode="linear", align_corners=True)
    else:  # a 2-D bicubic resize of a 1 x n image
        x = F.interpolate(x.unsqueeze(2), size=(1, new_length), mode="bicubic", align_corners=False,
                          antialias=True).squeeze(2)
    return x.permute(0, 2, 1).to(table.dtype)

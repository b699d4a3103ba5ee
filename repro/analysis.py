"""The numbers behind the paper's inspection figures (Sec. 4.5, Fig. 6 and 7, App. D.7-D.8).

Every function returns numpy arrays; drawing them is left to the caller (or to
a plotting module), so that the numbers can be tested and saved as files.

- ``filter_components``: principal components of the linear patch-embedding
  filters E (Fig. 7 left, "RGB embedding filters (first 28 principal components)").
- ``position_similarity``: cosine similarity between the position embedding of
  each patch and of every other patch (Fig. 7 center, Fig. 10 for the 2-D and
  other variants).
- ``mean_attention_distance``: per layer and head, the image-space distance
  across which attention integrates information, weighted by the attention
  (Fig. 7 right, Fig. 11), the analogue of a CNN's receptive field size.
- ``attention_rollout`` / ``rollout_map``: Attention Rollout (Abnar & Zuidema,
  2020), the attention from the output token to the input space (Fig. 6, 14).

Choices the paper does not spell out, made here:
- Filter PCA centres the D filters (subtracts their mean) before the SVD; each
  component's sign is fixed so that its largest-magnitude entry is positive
  (an SVD's signs are arbitrary), then it is min-max rescaled to [0, 1].
- Attention distance leaves the class token out: its row (a query that is not
  at any image position) and its column (a key that is not either); each patch
  query's weights are renormalised over the patches before averaging.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Attentions = Sequence[torch.Tensor]  # per layer, (B, heads, T, T) with rows summing to 1


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().to("cpu")


# --------------------------------------------------------------------------- Fig. 7 left: embedding filters


def filter_components(model: nn.Module, k: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Principal components of the patch-embedding filters, as images (Fig. 7 left).

    The patch embedding ``model.patch_embed.proj.weight`` is (D, C, P, P): D
    filters, each a C x P x P image patch. They are flattened to (D, C*P*P),
    centred over the D filters, and decomposed by SVD. Returns:

    - ``images`` (k, P, P, C) float32: the first k right singular vectors as
      channel-last images (RGB for C = 3), each with its sign fixed (largest-
      magnitude entry positive) and min-max rescaled to [0, 1] for display;
    - ``explained_variance_ratio`` (k,) float64: each component's share of the
      total variance of the filters, in decreasing order.

    k is capped at the number of components, min(D, C*P*P).
    """
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if not isinstance(proj, nn.Conv2d):
        raise ValueError("the model has no linear patch embedding (patch_embed.proj as a Conv2d) to decompose")
    weight = _as_tensor(proj.weight).double()  # (D, C, P, P)
    d, c, ph, pw = weight.shape
    flat = weight.reshape(d, c * ph * pw)
    flat = flat - flat.mean(dim=0, keepdim=True)  # centre over the D filters
    _, s, vh = torch.linalg.svd(flat, full_matrices=False)  # vh (min(D, CPP), CPP), rows = components
    k = min(k, vh.shape[0])
    comps = vh[:k]
    # An SVD component is defined up to sign: make the largest-magnitude entry positive.
    peak = comps.gather(1, comps.abs().argmax(dim=1, keepdim=True))  # (k, 1)
    comps = comps * torch.sign(peak)
    lo, hi = comps.min(dim=1, keepdim=True).values, comps.max(dim=1, keepdim=True).values
    comps = (comps - lo) / (hi - lo).clamp_min(1e-12)
    images = comps.reshape(k, c, ph, pw).permute(0, 2, 3, 1)  # (k, P, P, C)
    variance = s ** 2
    ratio = variance / variance.sum().clamp_min(1e-300)
    return images.float().numpy(), ratio[:k].numpy()


# --------------------------------------------------------------------------- Fig. 7 center: position embeddings


def cosine_similarity_matrix(table) -> np.ndarray:
    """Rows (N, D) -> (N, N) cosine similarity of every row with every other."""
    t = F.normalize(_as_tensor(table).double(), dim=-1)
    return (t @ t.T).numpy()


def position_similarity(model: nn.Module, layer: Optional[int] = None) -> np.ndarray:
    """Cosine similarity of each patch's position embedding with every other patch's, (N, N) (Fig. 7 center).

    Patches are in raster order, so row i reshaped to (gh, gw) is the tile that
    Fig. 7 / Fig. 10 draw for the patch at (i // gw, i % gw). The class token's
    row is dropped. The table is ``model.position_embedding(layer)``: the 1-D
    table, or concat(X[col], Y[row]) for "2d"; with
    ``pos_embed_placement="every_layer"`` block ``layer``'s own table (default:
    the first block's), while the stem and shared placements have one table.
    "none" and "relative" have no absolute table: a ValueError says so.
    """
    kind = getattr(getattr(model, "cfg", None), "pos_embed", None)
    if kind in ("none", "relative"):
        why = ("the model has no position embedding" if kind == "none" else
               "relative position embeddings are per (query, key) offset, not per patch")
        raise ValueError(f"pos_embed={kind!r}: no absolute position table to compare ({why})")
    pos = model.position_embedding(layer)
    if pos is None:
        raise ValueError(f"pos_embed={kind!r}: the model returns no absolute position embedding")
    table = pos.detach().reshape(-1, pos.shape[-1])  # (T, D)
    n = model.grid_size[0] * model.grid_size[1]
    extra = table.shape[0] - n
    if extra not in (0, 1):
        raise ValueError(f"position table has {table.shape[0]} rows; expected {n} patches (+1 class token)")
    return cosine_similarity_matrix(table[extra:])  # (N, N), class token dropped


# --------------------------------------------------------------------------- Fig. 7 right: attention distance


def _prefix_tokens(num_tokens: int, grid_size: tuple[int, int]) -> int:
    """Number of tokens before the patches (1 with a class token, 0 for GAP)."""
    n = grid_size[0] * grid_size[1]
    extra = num_tokens - n
    if extra < 0:
        raise ValueError(f"attention over {num_tokens} tokens, fewer than the {n} patches of grid {grid_size}")
    return extra


def patch_distances(grid_size: tuple[int, int], patch_pixels: float) -> torch.Tensor:
    """(N, N) Euclidean distance in pixels between the centres of patches i and j (raster order)."""
    gh, gw = grid_size
    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    centres = torch.stack([rows.flatten(), cols.flatten()], dim=1).double() * patch_pixels  # (N, 2)
    return torch.cdist(centres, centres)


def mean_attention_distance(attentions: Attentions, grid_size: tuple[int, int], patch_pixels: float) -> np.ndarray:
    """Mean attention distance in pixels, (layers, heads) (Fig. 7 right).

    attentions: what ``model(x, return_attention=True)`` returns, per layer
    (B, heads, T, T) with T = N patches, or N + 1 with the class token first
    (told apart by T - N). For each layer and head: every patch query's
    attention-weighted mean of the pixel distance between its centre and each
    key patch's centre, averaged over the query patches and the images.

    The class token's row and column are left out; each query's weights over
    the N patches are renormalised to sum to 1, so the distance is "where among
    the patches" a head looks, whatever share it gives the class token.
    """
    dist = patch_distances(grid_size, patch_pixels)  # (N, N)
    out = []
    for a in attentions:
        a = _as_tensor(a).double()  # (B, H, T, T)
        p = _prefix_tokens(a.shape[-1], grid_size)
        a = a[..., p:, p:]                                          # (B, H, N, N) patch -> patch
        a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-300)       # renormalise over the patches
        per_query = (a * dist).sum(dim=-1)                          # (B, H, N)
        out.append(per_query.mean(dim=(0, 2)))                      # (H,)
    return torch.stack(out).numpy()


# --------------------------------------------------------------------------- Fig. 6: attention rollout


def attention_rollout(attentions: Attentions) -> np.ndarray:
    """Attention Rollout (Abnar & Zuidema, 2020), (B, T, T).

    Per layer: average the heads, add the identity (the residual connection)
    and renormalise the rows; then multiply through the layers, last layer
    leftmost: R = A_L ... A_2 A_1. Row t of R is how much each input token
    flows into output token t.
    """
    rollout = None
    for a in attentions:
        a = _as_tensor(a).double().mean(dim=1)               # (B, T, T), heads averaged
        a = a + torch.eye(a.shape[-1], dtype=a.dtype)
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout
    if rollout is None:
        raise ValueError("no attention layers given")
    return rollout.numpy()


def rollout_map(attentions: Attentions, grid_size: tuple[int, int],
                image_size: Optional[Union[int, tuple[int, int]]] = None, normalize: bool = False) -> np.ndarray:
    """Attention from the output token to the input patches, (B, gh, gw) (Fig. 6).

    With a class token: the class token's rollout row over the patches. Without
    one (GAP models, whose output is the mean of the patch tokens): the mean of
    the patch rows over the patches. ``normalize`` divides each map by its
    maximum (as the figures show it); ``image_size`` upsamples the map
    bilinearly to (H, W) pixels, to lay over the image.
    """
    rollout = torch.from_numpy(attention_rollout(attentions))  # (B, T, T)
    p = _prefix_tokens(rollout.shape[-1], grid_size)
    if p:
        flow = rollout[:, 0, p:]                    # (B, N): class token <- patches
    else:
        flow = rollout.mean(dim=1)                  # (B, N): mean patch output <- patches
    maps = flow.reshape(-1, *grid_size)             # (B, gh, gw)
    if normalize:
        maps = maps / maps.amax(dim=(1, 2), keepdim=True).clamp_min(1e-300)
    if image_size is not None:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        maps = F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
    return maps.numpy()


@torch.no_grad()
def collect_attentions(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Per-layer attention weights (B, heads, T, T) of a ViT on images in [-1, 1], in eval mode, on the CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        _, attentions = model(images.to(device), return_attention=True)
    finally:
        model.train(was_training)
    return [a.detach().float().cpu() for a in attentions]

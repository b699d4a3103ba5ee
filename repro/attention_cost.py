"""The cost of self-attention as the number of tokens grows (Sec. 2 of the paper: attention is quadratic in the tokens).

The paper cuts the image into patches because "naive application of self-attention to images would require
that each pixel attends to every other pixel. With quadratic cost in the number of pixels, this does not
scale to realistic input sizes" (Sec. 2). Here that cost is measured on our own ViT (``repro.models``):

- ``attention_cost_sweep``: one image size, a sweep of patch sizes (so the same pixels become tens to
  thousands of tokens); at each point the forward + backward time of the whole model and, with the model's
  own head layout (H heads of D/H), of its parts in isolation: the fused attention op the model trains with
  (``F.scaled_dot_product_attention``, as in ``repro.vit.Attention``), the same attention written out
  (softmax(q k^T / sqrt(d)) v, materialising the T x T weights, as the ``return_attention`` path and the
  paper-era implementations do), and the model's MLP. Memory is the activation memory kept for the
  backward pass (``saved_activation_bytes``), on any device; on CUDA also the peak allocated memory
  (``torch.cuda.max_memory_allocated``).
- ``fit_power_law`` / ``fit_exponents``: y = c * T^k from a least-squares line in log-log space, over the
  larger token counts (where fixed per-call overheads no longer dominate).
- ``pixels_as_tokens``: the arithmetic for pixels as tokens at 224 px (50,176 tokens), analytic
  (attention-matrix bytes and FLOPs) and extrapolated from the measured fits, said as such.

What "saved activations" measures: the bytes of the tensors autograd keeps between forward and backward
(counted once per storage; the inputs and parameters, which exist anyway, left out). It is exact and
deterministic, and it is where attention's T x T matrices live during training; it leaves out transient
buffers (e.g. the gradient of the T x T weights during backward), so a materialising implementation's true
peak is a small multiple of it. A fused kernel (FlashAttention-style, as PyTorch's CPU and CUDA kernels) keeps
only O(T) per head: its memory is linear, its time still quadratic.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .models import create_model
from .runtime import cpu_name

MIB = 2 ** 20

# Column names of the sweep's table (one row per token count).
TOKENS = "tokens"
MODEL_TIME = "model fwd+bwd (ms/image)"
MODEL_SAVED = "model saved activations (MiB/image)"
MODEL_PEAK = "model peak allocated (MiB/batch)"
FUSED_TIME = "fused attention fwd+bwd (ms/image/layer)"
FUSED_SAVED = "fused attention saved (MiB/image/layer)"
EXPLICIT_TIME = "explicit attention fwd+bwd (ms/image/layer)"
EXPLICIT_SAVED = "explicit attention saved (MiB/image/layer)"
MLP_TIME = "MLP fwd+bwd (ms/image/layer)"
ATTENTION_SHARE = "attention share of model time (%)"
# The series whose growth is fitted, with a short name for legends and claims.
FITTED = {FUSED_TIME: "fused attention time", EXPLICIT_TIME: "explicit attention time", MLP_TIME: "MLP time",
          MODEL_TIME: "whole model time", EXPLICIT_SAVED: "explicit attention memory",
          FUSED_SAVED: "fused attention memory", MODEL_SAVED: "whole model memory"}

# Pixels as tokens (Sec. 2): every pixel of a 224 x 224 image a token.
PIXEL_IMAGE_SIZE = 224
PIXEL_TOKENS = PIXEL_IMAGE_SIZE ** 2  # 50,176
# The paper's reference model for the arithmetic: ViT-B/16 (Table 1) at 224 px.
REFERENCE = dict(name="ViT-B/16", heads=12, embed_dim=768, depth=12, patch=16)


# --------------------------------------------------------------------------- measuring one step


def saved_activation_bytes(step: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for backward while ``step()`` runs, once per storage.

    Storages of ``exclude`` (the inputs, the parameters: memory that exists without the step) are left out.
    ``step`` may run the backward too: the hook only sees what the forward saves.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in skip:
            seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


@dataclass(frozen=True)
class Measurement:
    """One step's cost: median seconds over the timed repeats, saved-activation bytes, CUDA peak bytes."""

    seconds: float
    saved_bytes: int
    peak_bytes: Optional[int]  # CUDA only: max_memory_allocated above what was allocated before the step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step: Callable[[], object], device: torch.device, *, warmup: int = 1, repeats: int = 3,
            exclude: Iterable[torch.Tensor] = ()) -> Measurement:
    """Time ``step()`` (a forward and backward) and count its memory: ``warmup`` untimed calls, one call
    under the saved-tensors hook (and, on CUDA, the peak-memory counter), then the median of ``repeats``
    timed calls (synchronised on CUDA, so the time is the kernels', not the launch's)."""
    for _ in range(warmup):
        step()
    peak = None
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    saved = saved_activation_bytes(step, exclude)
    if device.type == "cuda":
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
    times = []
    for _ in range(max(1, repeats)):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return Measurement(statistics.median(times), saved, peak)


# --------------------------------------------------------------------------- the sweep


def _attention_steps(batch: int, heads: int, tokens: int, head_dim: int, device: torch.device):
    """The fused and the explicit attention op, forward + backward, on random q, k, v (B, H, T, Dh)."""
    g = torch.Generator(device="cpu").manual_seed(0)
    q, k, v, grad = (torch.randn(batch, heads, tokens, head_dim, generator=g).to(device) for _ in range(4))
    for t in (q, k, v):
        t.requires_grad_(True)
    scale = head_dim ** -0.5

    def fused():
        F.scaled_dot_product_attention(q, k, v).backward(grad)

    def explicit():  # as repro.vit.Attention with return_attention=True: the (B, H, T, T) weights exist
        weights = ((q * scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        (weights @ v).backward(grad)

    return fused, explicit, (q, k, v, grad)


def sweep_point(model_name: str, image_size: int, patch: int, *, batch: int = 1, warmup: int = 1, repeats: int = 3,
                device: torch.device = torch.device("cpu"), explicit: bool = True) -> dict:
    """One row of ``attention_cost_sweep``: ``model_name`` at ``image_size`` px in patches of ``patch`` px."""

    torch.manual_seed(0)
    model = create_model(model_name, num_classes=10, img_size=image_size, patch_size=patch).to(device).train()
    cfg = model.cfg
    gh, gw = model.grid_size
    tokens = gh * gw + (1 if cfg.pool == "cls" else 0)
    heads, head_dim = cfg.num_heads, cfg.embed_dim // cfg.num_heads
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(batch, cfg.in_chans, image_size, image_size, generator=g).to(device)   # (B, C, H, W)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)

    def model_step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    whole = measure(model_step, device, warmup=warmup, repeats=repeats, exclude=[x, *model.parameters()])
    fused_step, explicit_step, qkv = _attention_steps(batch, heads, tokens, head_dim, device)
    fused = measure(fused_step, device, warmup=warmup, repeats=repeats, exclude=qkv)
    spelled = measure(explicit_step, device, warmup=warmup, repeats=repeats, exclude=qkv) if explicit else None
    mlp = model.blocks[0].mlp
    h = torch.randn(batch, tokens, cfg.embed_dim, generator=g).to(device).requires_grad_(True)   # (B, T, D)
    mlp_cost = measure(lambda: mlp(h).sum().backward(), device, warmup=warmup, repeats=repeats,
                       exclude=[h, *mlp.parameters()])
    ms = 1e3 / batch  # seconds per batch -> ms per image
    return {
        "image size (px)": image_size, "patch (px)": patch, "grid": f"{gh}x{gw}", TOKENS: tokens,
        "batch": batch, "heads": heads, "head dim": head_dim, "depth": cfg.depth,
        MODEL_TIME: whole.seconds * ms, MODEL_SAVED: whole.saved_bytes / MIB / batch,
        MODEL_PEAK: whole.peak_bytes / MIB if whole.peak_bytes is not None else math.nan,
        FUSED_TIME: fused.seconds * ms, FUSED_SAVED: fused.saved_bytes / MIB / batch,
        EXPLICIT_TIME: spelled.seconds * ms if spelled else math.nan,
        EXPLICIT_SAVED: spelled.saved_bytes / MIB / batch if spelled else math.nan,
        MLP_TIME: mlp_cost.seconds * ms,
        ATTENTION_SHARE: 100 * cfg.depth * fused.seconds / whole.seconds,
        "device": str(device),
    }


def attention_cost_sweep(model_name: str, image_size: int, patches: Sequence[int], *, batch: int = 1,
                         warmup: int = 1, repeats: int = 3, device: str | torch.device = "cpu",
                         explicit_max_tokens: Optional[int] = None, threads: Optional[int] = 1,
                         progress: Optional[Callable[[str], None]] = None) -> pd.DataFrame:
    """Forward + backward cost of ``model_name`` (e.g. "ViT-XS/4"; its width, depth and heads) at
    ``image_size`` px cut into patches of each size in ``patches``: one row per token count, few first.

    Per row: the model's step time per image and saved activations per image (CUDA: also the peak for the
    batch); per layer and image, the fused attention op, the explicit (materialising) attention op and the
    model's MLP, each timed alone with the model's head layout; the share of the step spent in the fused
    attention (depth x its time / the step's). The explicit op is skipped (NaN) above
    ``explicit_max_tokens`` tokens (its T x T matrices may not fit). Times are medians of ``repeats``.

    On the CPU the sweep runs on ``threads`` threads (None: torch's setting), restored after: one thread
    measures how the work grows, free of how well each op size spreads over cores and of other processes
    competing for them. The ``hardware`` column names the device (and the threads).
    """

    device = torch.device(device)
    before = torch.get_num_threads()
    if device.type == "cpu" and threads is not None:
        torch.set_num_threads(threads)
    try:
        hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
        rows = []
        for patch in sorted(patches, reverse=True):
            tokens = (image_size // patch) ** 2 + 1
            rows.append({**sweep_point(model_name, image_size, patch, batch=batch, warmup=warmup, repeats=repeats,
                                       device=device,
                                       explicit=explicit_max_tokens is None or tokens <= explicit_max_tokens),
                         "hardware": hardware})
            if progress:
                progress(f"  {rows[-1][TOKENS]} tokens (patch {patch}): model {rows[-1][MODEL_TIME]:.2f} ms/image, "
                         f"fused attention {rows[-1][FUSED_TIME]:.3f} ms/image/layer")
            if device.type == "cuda":
                torch.cuda.empty_cache()
    finally:
        torch.set_num_threads(before)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- fitting the growth


@dataclass(frozen=True)
class PowerFit:
    """y = coefficient * x ** exponent, fitted by least squares in log-log space over ``points`` points
    with x in ``x_range``; ``r2`` is the fit's R^2 in log space."""

    exponent: float
    coefficient: float
    points: int
    x_range: tuple[float, float]
    r2: float
    exponent_se: float = math.nan   # the slope's standard error (points - 2 degrees of freedom; NaN below 3 points)

    def predict(self, x) -> np.ndarray:
        return self.coefficient * np.asarray(x, dtype=float) ** self.exponent


def fit_power_law(x: Sequence[float], y: Sequence[float], min_x: Optional[float] = None) -> PowerFit:
    """Fit y = c * x^k over the points with x >= ``min_x`` (all when None) and finite, positive x and y.

    The slope of log y against log x is the exponent: 2 for a cost quadratic in x, 1 for a linear one.
    Needs two such points with different x (a ValueError otherwise).
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if min_x is not None:
        keep &= x >= min_x
    lx, ly = np.log(x[keep]), np.log(y[keep])
    if len(np.unique(lx)) < 2:
        raise ValueError(f"a power-law fit needs two points with different x >= {min_x}; got {int(keep.sum())}")
    slope, intercept = np.polyfit(lx, ly, 1)
    residual = ly - (slope * lx + intercept)
    total = ((ly - ly.mean()) ** 2).sum()
    r2 = 1.0 - (residual ** 2).sum() / total if total > 0 else 1.0
    n = int(keep.sum())
    se = math.sqrt((residual ** 2).sum() / (n - 2) / ((lx - lx.mean()) ** 2).sum()) if n > 2 else math.nan
    return PowerFit(float(slope), float(math.exp(intercept)), n, (float(x[keep].min()), float(x[keep].max())),
                    float(r2), float(se))


def fit_exponents(table: pd.DataFrame, min_tokens: Optional[float] = None) -> dict[str, PowerFit]:
    """``fit_power_law`` of every fitted series of a sweep's table against its token count, over the rows
    with at least ``min_tokens`` tokens; series with fewer than two usable points are left out."""
    fits = {}
    for column in FITTED:
        if column not in table:
            continue
        try:
            fits[column] = fit_power_law(table[TOKENS], table[column], min_tokens)
        except ValueError:
            continue
    return fits


# --------------------------------------------------------------------------- pixels as tokens


def attention_matrix_bytes(tokens: float, heads: int, bytes_per_value: int = 4) -> float:
    """Bytes of one layer's attention weights for one image, (heads, T, T) in float32 by default."""
    return heads * float(tokens) ** 2 * bytes_per_value


def attention_flops(tokens: float, embed_dim: int) -> float:
    """Forward FLOPs of one layer's two attention matmuls for one image, q k^T and weights v: 2 x 2 T^2 D."""
    return 4.0 * float(tokens) ** 2 * embed_dim


def pixels_as_tokens(fits: Mapping[str, PowerFit], *, heads: int, embed_dim: int, depth: int,
                     image_size: int = PIXEL_IMAGE_SIZE, patch: int = REFERENCE["patch"]) -> dict:
    """The arithmetic of pixels as tokens at ``image_size`` px, against patches of ``patch`` px (+ class token).

    Analytic (exact): tokens, attention-matrix bytes per layer and image (float32, materialised) and attention
    FLOPs, for the swept model (``heads``, ``embed_dim``) and for ViT-B/16. Extrapolated from the measured
    fits (``fit_exponents``; on the hardware measured, stated as extrapolations): the fused attention's time
    per layer and image, the whole swept model's attention time per image (x ``depth``), and the explicit
    attention's saved memory per layer and image. Keys missing from ``fits`` give NaN.
    """
    pixels = float(image_size) ** 2
    patches = (image_size // patch) ** 2 + 1
    ref = REFERENCE

    def extrapolate(column: str, tokens: float) -> float:
        return float(fits[column].predict(tokens)) if column in fits else math.nan

    out = {
        "pixel tokens": pixels, "patch tokens": patches, "token ratio": pixels / patches,
        "ours: heads": heads, "ours: embed dim": embed_dim, "ours: depth": depth,
        "ours: attention matrix per layer, pixels (GiB)": attention_matrix_bytes(pixels, heads) / 2 ** 30,
        "ours: attention matrix per layer, patches (MiB)": attention_matrix_bytes(patches, heads) / MIB,
        "ViT-B/16: attention matrix per layer, pixels (GiB)": attention_matrix_bytes(pixels, ref["heads"]) / 2 ** 30,
        "ViT-B/16: attention matrix per layer, patches (MiB)": attention_matrix_bytes(patches, ref["heads"]) / MIB,
        "ViT-B/16: attention matrices, all layers, pixels (GiB)":
            ref["depth"] * attention_matrix_bytes(pixels, ref["heads"]) / 2 ** 30,
        "ViT-B/16: attention TFLOPs per image forward, pixels": ref["depth"] * attention_flops(pixels, ref["embed_dim"]) / 1e12,
        "ViT-B/16: attention GFLOPs per image forward, patches": ref["depth"] * attention_flops(patches, ref["embed_dim"]) / 1e9,
        "fit: fused attention exponent": fits[FUSED_TIME].exponent if FUSED_TIME in fits else math.nan,
        "extrapolated: fused attention per layer, pixels (s/image)": extrapolate(FUSED_TIME, pixels) / 1e3,
        "extrapolated: fused attention per layer, patches (ms/image)": extrapolate(FUSED_TIME, patches),
        "extrapolated: explicit attention saved per layer, pixels (GiB/image)":
            extrapolate(EXPLICIT_SAVED, pixels) * MIB / 2 ** 30,
    }
    out["extrapolated: fused attention, all layers, pixels (s/image)"] = (
        depth * out["extrapolated: fused attention per layer, pixels (s/image)"])
    out["extrapolated: time ratio pixels / patches"] = (
        out["extrapolated: fused attention per layer, pixels (s/image)"] * 1e3
        / out["extrapolated: fused attention per layer, patches (ms/image)"])
    return out


def pixels_markdown(numbers: Mapping[str, float], model_name: str, hardware: str) -> str:
    """``pixels_as_tokens``'s numbers as a short paragraph in Markdown, extrapolations said as such."""
    n = numbers
    lines = [
        f"**Pixels as tokens at {PIXEL_IMAGE_SIZE} px** ({int(n['pixel tokens']):,} tokens, vs "
        f"{int(n['patch tokens'])} with 16x16 patches and a class token: {n['token ratio']:,.0f}x as many).",
        "",
        f"- Exact arithmetic: one layer's attention weights (float32, materialised) take "
        f"{n['ViT-B/16: attention matrix per layer, pixels (GiB)']:,.1f} GiB per image for ViT-B/16's 12 heads "
        f"(vs {n['ViT-B/16: attention matrix per layer, patches (MiB)']:.2f} MiB with patches), "
        f"{n['ViT-B/16: attention matrices, all layers, pixels (GiB)']:,.0f} GiB over its 12 layers; its attention "
        f"matmuls alone cost {n['ViT-B/16: attention TFLOPs per image forward, pixels']:,.0f} TFLOPs per image "
        f"forward (vs {n['ViT-B/16: attention GFLOPs per image forward, patches']:.2f} GFLOPs with patches).",
        f"- Extrapolated from our fit (fused attention time ~ T^{n['fit: fused attention exponent']:.2f}, "
        f"{model_name}'s {n['ours: heads']} heads of width {n['ours: embed dim']}, on {hardware}): "
        f"{n['extrapolated: fused attention per layer, pixels (s/image)']:,.1f} s per layer and image, "
        f"{n['extrapolated: fused attention, all layers, pixels (s/image)']:,.0f} s per image over its "
        f"{n['ours: depth']} layers, forward + backward: {n['extrapolated: time ratio pixels / patches']:,.0f}x the "
        "time at 197 tokens. A materialising implementation would also keep "
        f"{n['extrapolated: explicit attention saved per layer, pixels (GiB/image)']:,.1f} GiB per layer and "
        f"image for backward (our fit of the explicit op; the exact weights alone are "
        f"{n['ours: attention matrix per layer, pixels (GiB)']:,.1f} GiB).",
    ]
    return "\n".join(lines) + "\n"

"""Masked patch prediction: self-supervised pre-training of a ViT (Sec. 4.6, App. B.1.2).

The paper's recipe, which this module implements: corrupt 50% of the patch
embeddings of each image (of those, 80% are replaced by a learnable [mask]
embedding, 10% by the embedding of a random other patch, 10% are left as they
are) and predict, for every corrupted patch and from its own output token, the
3-bit mean colour of the patch (512 classes) with cross-entropy. The ablations
of App. B.1.2 are options: ``target="downsized"`` predicts the 4x4 downsized
patch in 3-bit colours (16 predictions of 512 classes), ``target="pixels"``
regresses the full patch with L2, and ``corrupt_rate=0.15`` is the lower rate
the paper found slightly worse.

Choices the paper leaves open, and what we do:

- Where the corruption happens: on the patch embeddings x_p^i E of Eq. 1,
  BEFORE the class token is prepended and the position embeddings are added
  (as BERT replaces token embeddings and adds positions after). So a [mask]
  token still carries the position of the place it stands in, and a patch moved
  in from elsewhere gets the position of its new place. We only use the ViT's
  hooks (``embed``, ``add_prefix_and_positions``, ``encode``), so every
  position-embedding kind and placement works unchanged.
- How many: exactly ``round(corrupt_rate * N)`` patches per image (at least
  one), drawn uniformly without replacement (BERT's data generator also picks a
  fixed count per sequence). Each chosen patch then independently becomes
  [mask] with probability 0.8, a random other patch with 0.1, or stays itself
  with 0.1.
- "A random other patch": drawn uniformly from all B*N - 1 other patch
  embeddings of the (per-rank) batch, other images included, taken before
  corruption; gradients flow into it like into any patch embedding.
- Quantisation: each channel of the patch mean (pixels in [0, 1], i.e. the
  loader's [-1, 1] images through ``repro.data.denormalize``) goes into
  ``min(floor(mean * 2**bits), 2**bits - 1)`` (uniform bins, the top edge 1.0
  in the last bin); the class is ``r * 2**(2*bits) + g * 2**bits + b``. A mean
  that lies exactly on a bin edge can fall either side by a float rounding
  error of the [-1, 1] -> [0, 1] round trip; that is rare and harmless.
- The head: one linear layer (``mpp_head``) on the final LayerNorm output of
  each patch token, zero-initialised like the project's classification heads,
  so the initial loss is exactly log(512). D -> 512 (mean colour),
  D -> 16 * 512 (downsized), D -> 3 * P * P (pixels).
- The [mask] embedding (``mask_token``, shape (1, 1, D)) starts from
  N(0, 0.02^2), as BERT's token embeddings; it is an embedding, so it should
  not be weight-decayed (the training engine decides that by parameter name).
- The loss is the mean over the corrupted predictions of the batch
  (cross-entropy per patch, or per 4x4 cell; for ``pixels`` the squared error
  averaged over the patch's values). Uncorrupted patches contribute nothing.
- ``target="pixels"`` regresses the patch in the loader's normalisation
  ([-1, 1] per pixel, not normalised per patch), values in (C, P, P) order.
- The ViT's class token output, pre-logits layer and classification head take
  no part in the objective. The class token stays in the sequence (so the
  weights are a plain ViT checkpoint to fine-tune); the head is touched with a
  zero-weighted term so that DistributedDataParallel sees every parameter used.
- Corruption is part of the task, not a regulariser: it happens in eval mode
  too. Its randomness comes from torch's global RNG (the training loop seeds it
  per step, so a resumed run redraws the same corruption) or from an explicit
  ``generator``.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterable, Optional, Union

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .data import denormalize
from .fileio import atomic_write

TARGETS = ("mean_color", "downsized", "pixels")

# Of the chosen patches: this fraction becomes [mask], the next one a random other patch, the rest stay (BERT).
MASK_FRACTION = 0.8
RANDOM_FRACTION = 0.1

# Values of the ``kind`` tensor returned by :func:`corrupt`.
KEPT, MASKED, RANDOM, UNCHANGED = 0, 1, 2, 3

DOWNSIZED_CELLS = 4  # the downsized target is a 4x4 grid of cells per patch (App. B.1.2)


# --------------------------------------------------------------------------- corruption


def num_corrupted(num_patches: int, rate: float) -> int:
    """How many of ``num_patches`` patches an image gets corrupted: round(rate * N), at least 1, at most N."""
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"corrupt_rate must be in (0, 1], got {rate}")
    return min(num_patches, max(1, math.floor(rate * num_patches + 0.5)))


def corrupt(tokens: torch.Tensor, rate: float, mask_token: torch.Tensor,
            generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Corrupt ``round(rate * N)`` patch embeddings of each image (App. B.1.2).

    tokens: (B, N, D) patch embeddings, before class token and positions.
    mask_token: (1, 1, D) learnable [mask] embedding.
    generator: a ``torch.Generator`` on ``tokens.device``; None uses the global RNG.

    Returns ``(corrupted_tokens (B, N, D), corrupted (B, N) bool, kind (B, N) int8)``
    where ``kind`` is 0 for patches not chosen, 1 for [mask], 2 for a random other
    patch of the batch, 3 for chosen but left unchanged; ``corrupted == kind > 0``.
    The same number of random values is drawn whatever the outcome, so the RNG
    stream (and therefore resume) does not depend on the data.
    """
    B, N, D = tokens.shape
    device = tokens.device
    count = num_corrupted(N, rate)
    # Choose `count` patches per image uniformly without replacement: the smallest random scores.
    scores = torch.rand(B, N, generator=generator, device=device)
    chosen_index = scores.argsort(dim=1)[:, :count]                                      # (B, count)
    corrupted = torch.zeros(B, N, dtype=torch.bool, device=device).scatter_(1, chosen_index, True)
    # 80 / 10 / 10 for each chosen patch, independently.
    u = torch.rand(B, N, generator=generator, device=device)
    kind = (torch.full((B, N), UNCHANGED, dtype=torch.int8, device=device)  # masked_fill: no host sync
            .masked_fill_(u < MASK_FRACTION + RANDOM_FRACTION, RANDOM)
            .masked_fill_(u < MASK_FRACTION, MASKED)
            .masked_fill_(~corrupted, KEPT))
    # A uniformly drawn other position of the flattened batch: draw from B*N - 1 and skip our own.
    total = B * N
    own = torch.arange(total, device=device).view(B, N)
    other = torch.randint(0, max(total - 1, 1), (B, N), generator=generator, device=device)
    other = other + (other >= own).long() if total > 1 else own
    moved_in = tokens.reshape(total, D)[other]                                           # (B, N, D)
    out = torch.where((kind == RANDOM)[..., None], moved_in, tokens)
    out = torch.where((kind == MASKED)[..., None], mask_token.to(tokens.dtype), out)
    return out, corrupted, kind


# --------------------------------------------------------------------------- targets


def quantize_colors(rgb: torch.Tensor, bits: int = 3) -> torch.Tensor:
    """Colours (..., 3) in [0, 1] -> class ``r * 2**(2*bits) + g * 2**bits + b`` (...), int64.

    Each channel is binned as ``min(floor(value * 2**bits), 2**bits - 1)``, so 1.0 is in the last bin.
    """
    levels = 2 ** bits
    q = torch.floor(rgb.float() * levels).clamp_(0, levels - 1).long()                  # (..., 3)
    return q[..., 0] * levels * levels + q[..., 1] * levels + q[..., 2]


def decode_mean_color(classes: torch.Tensor, bits: int = 3) -> torch.Tensor:
    """Classes (...) -> RGB (..., 3) in [0, 1], the centre of each channel's bin (for plotting)."""
    levels = 2 ** bits
    r = torch.div(classes, levels * levels, rounding_mode="floor")
    g = torch.div(classes, levels, rounding_mode="floor") % levels
    b = classes % levels
    return (torch.stack([r, g, b], dim=-1).float() + 0.5) / levels


def _check_patches(images: torch.Tensor, patch_size: int) -> None:
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
    if images.shape[-2] % patch_size or images.shape[-1] % patch_size:
        raise ValueError(f"image size {tuple(images.shape[-2:])} is not a multiple of the patch size {patch_size}")


def mean_color_targets(images: torch.Tensor, patch_size: int, bits: int = 3) -> torch.Tensor:
    """The 3-bit mean colour class of every patch: images (B, 3, H, W) in [0, 1] -> (B, N) int64.

    Patches are numbered in raster order, as the ViT's patch tokens.
    """
    _check_patches(images, patch_size)
    means = F.avg_pool2d(images.float(), patch_size)                                     # (B, 3, gh, gw)
    return quantize_colors(means.flatten(2).transpose(1, 2), bits)                      # (B, N)


def downsized_targets(images: torch.Tensor, patch_size: int, bits: int = 3,
                      cells: int = DOWNSIZED_CELLS) -> torch.Tensor:
    """Every patch average-pooled to ``cells x cells`` and each cell quantised like a mean colour.

    images (B, 3, H, W) in [0, 1] -> (B, N, cells * cells) int64, the cells of a patch in raster order.
    """
    _check_patches(images, patch_size)
    if patch_size % cells:
        raise ValueError(f"the downsized target needs a patch size divisible by {cells}, got {patch_size}")
    B, _, H, W = images.shape
    gh, gw = H // patch_size, W // patch_size
    cell_means = F.avg_pool2d(images.float(), patch_size // cells)                      # (B, 3, gh*c, gw*c)
    classes = quantize_colors(cell_means.permute(0, 2, 3, 1), bits)                     # (B, gh*c, gw*c)
    classes = classes.reshape(B, gh, cells, gw, cells).permute(0, 1, 3, 2, 4)           # (B, gh, gw, c, c)
    return classes.reshape(B, gh * gw, cells * cells)


def pixel_targets(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The pixels of every patch as the model sees them: (B, 3, H, W) -> (B, N, 3 * P * P), (C, P, P) order."""
    _check_patches(images, patch_size)
    return F.unfold(images.float(), patch_size, stride=patch_size).transpose(1, 2)


# --------------------------------------------------------------------------- loss


def masked_loss(predictions: torch.Tensor, targets: torch.Tensor, corrupted: torch.Tensor,
                target: str = "mean_color", bits: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The MPP loss over the corrupted patches only, without a host-device sync.

    predictions / targets, per ``target``:
      mean_color: logits (B, N, K), classes (B, N);
      downsized: logits (B, N, 16, K), classes (B, N, 16);
      pixels: values (B, N, 3*P*P), values (B, N, 3*P*P) in [-1, 1].
    corrupted: (B, N) bool.

    Returns ``(loss, num_correct, num_predicted)``: the mean cross-entropy (or
    squared error) over corrupted predictions, and how many of them are right:
    per patch for mean_color, per cell for downsized, and for pixels the 3-bit
    mean colour of the regressed patch against that of the true patch.
    """
    weight = corrupted.float()                                                           # (B, N)
    if target == "mean_color":
        per_patch = F.cross_entropy(predictions.float().flatten(0, 1), targets.flatten(), reduction="none")
        per_patch = per_patch.view_as(weight)
        right = predictions.argmax(-1) == targets                                       # (B, N)
        per_patch_predictions = 1
    elif target == "downsized":
        cells = targets.shape[-1]
        per_cell = F.cross_entropy(predictions.float().flatten(0, 2), targets.flatten(), reduction="none")
        per_patch = per_cell.view(*weight.shape, cells).mean(-1)                         # (B, N)
        right = (predictions.argmax(-1) == targets).sum(-1)                             # (B, N), 0..cells
        per_patch_predictions = cells
    elif target == "pixels":
        per_patch = (predictions.float() - targets.float()).square().mean(-1)           # (B, N)
        B, N, V = targets.shape

        def mean_color(values):  # (B, N, 3*P*P) in [-1, 1] -> (B, N) classes
            return quantize_colors(denormalize(values.float().view(B, N, 3, V // 3).mean(-1)), bits)
        right = mean_color(predictions) == mean_color(targets)
        per_patch_predictions = 1
    else:
        raise ValueError(f"target={target!r}; choose one of {TARGETS}")
    num_patches = corrupted.sum()
    loss = (per_patch * weight).sum() / num_patches.clamp_min(1)
    num_correct = (right.long() * corrupted.long()).sum()
    return loss, num_correct, num_patches * per_patch_predictions


# --------------------------------------------------------------------------- the model


class MaskedPatchPrediction(nn.Module):
    """A ViT with the [mask] embedding and linear head of masked patch prediction (Sec. 4.6).

    ``vit`` is kept whole as ``self.vit``, so ``wrapper.vit.state_dict()`` is a
    plain checkpoint of the same ViT for fine-tuning. ``forward(images)`` takes
    images normalised to [-1, 1] (as the project's loaders give them) and
    returns ``(loss, num_correct, num_predicted)`` (see :func:`masked_loss`).
    """

    def __init__(self, vit: nn.Module, target: str = "mean_color", corrupt_rate: float = 0.5, bits: int = 3):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target={target!r}; choose one of {TARGETS}")
        num_corrupted(1, corrupt_rate)  # validates the rate
        self.vit = vit
        self.target = target
        self.corrupt_rate = corrupt_rate
        self.bits = bits
        self.patch_size = vit.patch_pixels  # pixels per token side (backbone stride x patch for a hybrid)
        self.num_classes = 2 ** (3 * bits)
        D = vit.cfg.embed_dim
        if target == "mean_color":
            out = self.num_classes
        elif target == "downsized":
            if self.patch_size % DOWNSIZED_CELLS:
                raise ValueError(f"target='downsized' needs a patch size divisible by {DOWNSIZED_CELLS}, "
                                 f"got {self.patch_size}")
            out = DOWNSIZED_CELLS ** 2 * self.num_classes
        else:
            out = 3 * self.patch_size ** 2
        self.mask_token = nn.Parameter(torch.randn(1, 1, D, device=vit.norm.weight.device) * 0.02)
        self.mpp_head = nn.Linear(D, out, device=vit.norm.weight.device)
        nn.init.zeros_(self.mpp_head.weight)
        nn.init.zeros_(self.mpp_head.bias)

    def no_weight_decay(self) -> set[str]:
        """The ViT's no-decay parameters under their new names, and the [mask] embedding (a token, like cls)."""
        inner = self.vit.no_weight_decay() if hasattr(self.vit, "no_weight_decay") else set()
        return {"mask_token"} | {f"vit.{name}" for name in inner}

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """What each patch should predict, from images in [-1, 1]: (B, N), (B, N, 16) or (B, N, 3*P*P)."""
        with torch.no_grad():
            if self.target == "pixels":
                return pixel_targets(images, self.patch_size)
            unit = denormalize(images.float())  # [0, 1]
            if self.target == "mean_color":
                return mean_color_targets(unit, self.patch_size, self.bits)
            return downsized_targets(unit, self.patch_size, self.bits)

    def predict(self, images: torch.Tensor, generator: Optional[torch.Generator] = None):
        """Corrupt, encode and read out: returns ``(predictions, corrupted (B, N), kind (B, N), tokens z_L)``.

        predictions: logits (B, N, 512), (B, N, 16, 512), or pixels (B, N, 3*P*P), for every patch.
        """
        tokens = self.vit.embed(images)                                                  # (B, N, D)
        corrupted_tokens, corrupted, kind = corrupt(tokens, self.corrupt_rate, self.mask_token, generator)
        z, _ = self.vit.encode(self.vit.add_prefix_and_positions(corrupted_tokens))     # (B, T, D)
        # The head reads every patch token (not only the corrupted ones), which avoids a data-dependent
        # shape (a host sync); it costs one small matmul per patch.
        out = self.mpp_head(z[:, self.vit.num_prefix_tokens:])                          # (B, N, out)
        if self.target == "downsized":
            out = out.unflatten(-1, (DOWNSIZED_CELLS ** 2, self.num_classes))
        return out, corrupted, kind, z

    def forward(self, images: torch.Tensor, generator: Optional[torch.Generator] = None):
        predictions, corrupted, _, z = self.predict(images, generator)
        loss, num_correct, num_predicted = masked_loss(predictions, self.targets(images), corrupted,
                                                       self.target, self.bits)
        # The ViT's own head is unused here; a zero-weighted term keeps DDP from failing on unused parameters.
        unused = self.vit.forward_head(z)
        if isinstance(unused, torch.Tensor) and unused.requires_grad:
            loss = loss + 0.0 * unused.float().sum()
        return loss, num_correct, num_predicted


def build_mpp_model(vit_model: nn.Module, target: str = "mean_color", corrupt_rate: float = 0.5,
                    bits: int = 3) -> MaskedPatchPrediction:
    """Wrap a freshly built ViT (or hybrid) for masked patch prediction; what the training engine calls."""
    return MaskedPatchPrediction(vit_model, target=target, corrupt_rate=corrupt_rate, bits=bits)


def mpp_objective(model, images, labels, cfg):
    """The training engine's objective for masked patch prediction (labels are ignored).

    ``model`` is a :class:`MaskedPatchPrediction`, possibly wrapped by DDP or
    ``torch.compile``. Returns ``(loss, correct)``, both 0-dim tensors. The engine
    logs ``accuracy = sum(correct) / sum(images)``, so ``correct`` is the number
    of right predictions divided by the number of predictions per image
    (``num_correct * B / num_predicted``), rounded to an integer because the
    engine accumulates it in an int64 tensor: the logged accuracy is then the
    per-prediction accuracy (per corrupted patch, or per cell for ``downsized``)
    up to that rounding, at most 0.5 / B per step. No host sync.
    """
    loss, num_correct, num_predicted = model(images)
    batch = images.shape[0]
    correct = torch.round(num_correct.float() * batch / num_predicted.clamp_min(1).float()).long()
    return loss, correct


# --------------------------------------------------------------------------- saving the MPP parts


def save_mpp_head(model: nn.Module, path: Union[str, Path]) -> Path:
    """Save what MPP adds to the ViT (``mask_token``, ``mpp_head.*``) and its settings as one safetensors file.

    The ViT itself is saved as a plain checkpoint (``wrapper.vit``) for fine-tuning;
    this file is what :func:`load_mpp_model` needs on top of it (e.g. for a figure).
    """
    wrapper = _unwrap(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in wrapper.state_dict().items() if not k.startswith("vit.")}
    meta = {"target": wrapper.target, "corrupt_rate": repr(wrapper.corrupt_rate), "bits": str(wrapper.bits)}
    path = Path(path)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return path


def load_mpp_model(vit: nn.Module, path: Union[str, Path]) -> MaskedPatchPrediction:
    """Wrap ``vit`` (weights already loaded) with the [mask] embedding and head saved by :func:`save_mpp_head`."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    wrapper = MaskedPatchPrediction(vit, target=meta["target"], corrupt_rate=float(meta["corrupt_rate"]),
                                    bits=int(meta["bits"]))
    state = {f"vit.{k}": v for k, v in vit.state_dict().items()}
    state.update(load_file(str(path), device=str(vit.norm.weight.device)))
    wrapper.load_state_dict(state, strict=True)
    return wrapper


# --------------------------------------------------------------------------- evaluation and figures


def _unwrap(model: nn.Module) -> MaskedPatchPrediction:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)      # DDP


@torch.no_grad()
def predict_mean_colors(wrapper: MaskedPatchPrediction, images: torch.Tensor, *,
                        generator: Optional[torch.Generator] = None, return_corruption: bool = False):
    """The predicted mean-colour class of every patch of corrupted ``images`` ([-1, 1]): (B, N) int64.

    For ``downsized`` the predicted cells' colours are averaged, for ``pixels``
    the regressed patch's mean is quantised. With ``return_corruption`` also
    returns ``kind`` (B, N) int8 of :func:`corrupt` (0 kept, 1 [mask], 2 random,
    3 unchanged-but-chosen) so a figure can mark the corrupted patches. Runs in
    eval mode (no dropout) and restores the previous mode.
    """
    wrapper = _unwrap(wrapper)
    was_training = wrapper.training
    wrapper.eval()
    try:
        predictions, _, kind, _ = wrapper.predict(images, generator)
    finally:
        wrapper.train(was_training)
    if wrapper.target == "mean_color":
        classes = predictions.argmax(-1)
    elif wrapper.target == "downsized":
        rgb = decode_mean_color(predictions.argmax(-1), wrapper.bits).mean(-2)          # (B, N, 3)
        classes = quantize_colors(rgb, wrapper.bits)
    else:
        B, N, V = predictions.shape
        classes = quantize_colors(denormalize(predictions.float().view(B, N, 3, V // 3).mean(-1)), wrapper.bits)
    return (classes, kind) if return_corruption else classes


@torch.no_grad()
def evaluate_mpp(model: nn.Module, batches: Iterable, *, seed: int = 0, autocast=None) -> dict:
    """Mean MPP loss and per-prediction accuracy over ``batches`` of (images, labels), as a dict.

    The corruption comes from a generator seeded with ``seed``, so every evaluation
    of a run sees the same corrupted patches and the global RNG is left alone.
    ``autocast``: a callable returning a context manager (e.g. the engine's
    bf16 autocast); None runs in full precision. Eval mode; the mode is restored.
    """
    wrapper = _unwrap(model)
    was_training = wrapper.training
    wrapper.eval()
    generator, total_loss, correct, predicted, count = None, 0.0, 0, 0, 0
    try:
        for images, _ in batches:
            if generator is None:
                generator = torch.Generator(device=images.device).manual_seed(seed)
            with (autocast() if autocast else contextlib.nullcontext()):
                loss, num_correct, num_predicted = wrapper(images, generator)
            total_loss += loss.float() * num_predicted
            correct += num_correct
            predicted += num_predicted
            count += images.shape[0]
    finally:
        wrapper.train(was_training)
    predicted = max(int(predicted), 1)
    return {"loss": float(total_loss) / predicted, "accuracy": int(correct) / predicted, "count": count}

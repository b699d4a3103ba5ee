"""Device-side batches and augmentation: ``DeviceLoader``.

The whole decoded split (a uint8 ``(N, 3, H, W)`` tensor from ``repro.data``)
is moved to the training device once; every batch is then cut, augmented,
normalised to [-1, 1] and resized there with tensor ops only, no per-image
Python. The batch at a global step is a pure function of ``(seed, step)``,
which gives exact resume and lets every DDP rank take its own slice of the same
global batch.

Augmentation at training time, by ``crop``:

- ``"inception"``: the official fine-tuning pipeline (vit_jax input_pipeline,
  after BiT): an Inception-style random crop covering 5%-100% of the image with
  an aspect ratio in [3/4, 4/3], resized to the output size, and a random
  horizontal flip. Use it where the images are larger than (or resized up to)
  the model's input, as at the ``paper`` scale.
- ``"pad"``: CIFAR-style reflection padding by ``crop_padding`` pixels and a
  random crop back to the image size, plus the flip. At 32 px an Inception
  crop of 5% of the image would leave a 7x7 pixel patch, so the cheap scales
  keep this one (the recipe table of ``repro.recipes`` lists it as a departure).
- ``"none"``: flip only (when ``flip``).

At evaluation the whole image is resized to the output size: no central crop
(official pipeline).
"""
from __future__ import annotations

import math
from typing import Iterator, Optional, Union

import torch
import torch.nn.functional as F

from ..config import ImageSize
from .decode import ImageArrays, as_hw, normalize
from .seeding import TAG_AUG, TAG_EPOCH, seeded_generator

CROP_KINDS = ("pad", "inception", "none")
# Inception crop (official input pipeline, tf.image.sample_distorted_bounding_box settings).
INCEPTION_AREA = (0.05, 1.0)
INCEPTION_RATIO = (3 / 4, 4 / 3)
INCEPTION_ATTEMPTS = 10


def check_loader_args(batch_size: int, rank: int, world_size: int, crop: str) -> None:
    """The checks every loader makes of its global batch, its rank and its crop kind."""
    if batch_size <= 0 or batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must be a positive multiple of world_size {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} not in [0, {world_size})")
    if crop not in CROP_KINDS:
        raise ValueError(f"crop={crop!r}; choose one of {CROP_KINDS}")


class StepLoader:
    """What the training loop needs of a loader: ``get_batch(step)``, ``steps_per_epoch``, and epoch iteration."""

    steps_per_epoch: int

    def get_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __len__(self) -> int:
        return self.steps_per_epoch

    def iter_epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of one epoch, in step order."""
        spe = self.steps_per_epoch
        for s in range(epoch * spe, (epoch + 1) * spe):
            yield self.get_batch(s)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch (epoch 0). For eval (train=False): every example once, in order, last partial batch kept."""
        return self.iter_epoch(0)


class DeviceLoader(StepLoader):
    """Batches made on the device from a whole-dataset uint8 tensor, no per-image Python.

    The batch at global ``step`` is a pure function of (seed, step) (given the
    data and batch size): epoch ``e = step // steps_per_epoch`` is ordered by a
    permutation drawn from a generator seeded with (seed, e), and the
    augmentation of step s from one seeded with (seed, s). Resuming at step s
    therefore replays exactly, and with ``world_size > 1`` every rank draws the
    same global batch and keeps its contiguous slice (rank r gets rows
    [r*b, (r+1)*b) of it, b = batch_size // world_size).

    Random numbers are drawn on the CPU and moved to the device, so a batch is
    the same on every device.

    Args:
        data: the split (images uint8 (N, 3, H, W), labels (N,)).
        batch_size: the GLOBAL batch size (over all ranks).
        device: where the images live (moved there once) and batches are made.
        train: shuffle every epoch and augment; False = in order, no augmentation.
        seed: the run's data seed.
        crop: train only; "pad" (CIFAR-style, ``crop_padding`` pixels of
            reflection), "inception" (random-resized crop, area 5-100%) or "none".
        crop_padding: for ``crop="pad"``; 0 = no crop.
        flip: train only; random horizontal flip with probability 1/2.
        image_size: int or (H, W); resize every batch on the device (bilinear,
            antialiased), e.g. fine-tuning at a higher resolution than stored.
            Applies in train and eval.
        rank, world_size: this process's share of each global batch.
        drop_last: drop the last partial batch of an epoch (default: True
            when train, False otherwise).
    """

    def __init__(self, data: ImageArrays, batch_size: int, device: Union[str, torch.device] = "cpu", *,
                 train: bool, seed: int = 0, crop: str = "pad", crop_padding: int = 0, flip: bool = False,
                 image_size: Optional[ImageSize] = None, rank: int = 0, world_size: int = 1,
                 drop_last: Optional[bool] = None):
        check_loader_args(batch_size, rank, world_size, crop)
        self.device = torch.device(device)
        self.images = data.images.to(self.device)  # (N, 3, H, W) uint8, moved once
        self.labels = data.labels.to(self.device)  # (N,) int64
        self.num_classes, self.name, self.split = data.num_classes, data.name, data.split
        self.batch_size, self.local_batch_size = batch_size, batch_size // world_size
        self.train, self.seed = train, seed
        self.crop, self.crop_padding, self.flip = crop, int(crop_padding), bool(flip)
        self.image_size = as_hw(image_size)
        self.rank, self.world_size = rank, world_size
        self.drop_last = train if drop_last is None else drop_last
        h, w = self.images.shape[-2:]
        if crop == "pad" and self.crop_padding >= min(h, w):
            raise ValueError(f"crop_padding {crop_padding} must be smaller than the image ({h}x{w}) for reflection")
        self._perm_epoch: Optional[int] = None
        self._perm: Optional[torch.Tensor] = None

    @property
    def num_examples(self) -> int:
        return int(self.labels.shape[0])

    @property
    def steps_per_epoch(self) -> int:
        n, b = self.num_examples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        """(N,) row order of `epoch` on the device; cached, recomputed when the epoch changes."""
        if self._perm_epoch != epoch:
            if self.train:
                perm = torch.randperm(self.num_examples, generator=seeded_generator(self.seed, TAG_EPOCH, epoch))
            else:
                perm = torch.arange(self.num_examples)
            self._perm, self._perm_epoch = perm.to(self.device), epoch
        return self._perm

    def get_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's part of global batch `step`: (x float32 (b, 3, H, W) in [-1, 1], y int64 (b,))."""
        spe = self.steps_per_epoch
        if spe == 0:
            raise ValueError(f"{self.num_examples} examples make no full batch of {self.batch_size}")
        epoch, i = divmod(int(step), spe)
        order = self._epoch_order(epoch)
        gidx = order[i * self.batch_size:(i + 1) * self.batch_size]  # (B,) global batch rows
        # tensor_split: equal slices for full batches, near-equal for a last partial one.
        sl = torch.arange(gidx.shape[0]).tensor_split(self.world_size)[self.rank]
        lo, hi = (int(sl[0]), int(sl[-1]) + 1) if len(sl) else (0, 0)
        idx = gidx[lo:hi]  # (b,)
        if self.train and self.crop == "inception":
            # Crop, flip and resize in one resampling step, straight to the output size.
            return self._inception_crop(idx, step, gidx.shape[0], lo, hi), self.labels[idx]
        if self.train and ((self.crop == "pad" and self.crop_padding) or self.flip):
            x = self._pad_crop_flip(idx, step, gidx.shape[0], lo, hi)  # (b, 3, H, W) uint8
        else:
            x = self.images[idx]  # (b, 3, H, W) uint8
        x = normalize(x)
        if self.image_size is not None and tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", antialias=True, align_corners=False)
        return x, self.labels[idx]

    def _to_device(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        if self.device.type == "cuda":  # pinned + non_blocking: no host-device sync per step
            return [t.pin_memory().to(self.device, non_blocking=True) for t in tensors]
        return [t.to(self.device) for t in tensors]

    def _flips(self, g: torch.Generator, global_b: int, lo: int, hi: int) -> torch.Tensor:
        """(b,) bool: which rows are mirrored. Drawn for the whole global batch so ranks agree."""
        if not self.flip:
            return torch.zeros(hi - lo, dtype=torch.bool)
        return (torch.rand(global_b, generator=g) < 0.5)[lo:hi]

    def _pad_crop_flip(self, idx: torch.Tensor, step: int, global_b: int, lo: int, hi: int) -> torch.Tensor:
        """Random crop (reflection padding) and flip of rows `idx`, one gather, still uint8."""
        h, w = self.images.shape[-2:]
        p = self.crop_padding if self.crop == "pad" else 0
        g = seeded_generator(self.seed, TAG_AUG, int(step))
        # Drawn for the whole global batch, then sliced, so ranks agree with world_size=1.
        offs = torch.randint(0, 2 * p + 1, (global_b, 2), generator=g)[lo:hi]  # (b, 2) top, left in padded image
        flips = self._flips(g, global_b, lo, hi)
        # Source coordinate of every output row/column: shift by offset - p, then
        # reflect into [0, size) the way F.pad(mode="reflect") would (edge not repeated).
        rows = _reflect(offs[:, :1] - p + torch.arange(h), h)  # (b, H)
        cols = _reflect(offs[:, 1:] - p + torch.arange(w), w)  # (b, W)
        cols = torch.where(flips[:, None], cols.flip(1), cols)
        rows, cols = self._to_device(rows, cols)
        # Advanced indexing: dims of the broadcast indices (b, H, W) come first, channels last.
        x = self.images[idx[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (b, H, W, 3)
        return x.permute(0, 3, 1, 2)  # (b, 3, H, W)

    def _inception_crop(self, idx: torch.Tensor, step: int, global_b: int, lo: int, hi: int) -> torch.Tensor:
        """Inception-style random-resized crop + flip of rows `idx`: float (b, 3, out_h, out_w) in [-1, 1]."""
        h, w = self.images.shape[-2:]
        out_h, out_w = self.image_size or (h, w)
        g = seeded_generator(self.seed, TAG_AUG, int(step))
        boxes = inception_crop_boxes(global_b, h, w, g)[lo:hi]  # (b, 4) top, left, height, width in pixels
        flips = self._flips(g, global_b, lo, hi)
        top, left, ch, cw = boxes.unbind(1)
        # Affine map from output coordinates in [-1, 1] to input coordinates in [-1, 1]
        # (align_corners=False: -1 and 1 are the outer pixel edges).
        sx, sy = cw / w, ch / h
        tx, ty = (2 * left + cw) / w - 1, (2 * top + ch) / h - 1
        sx = torch.where(flips, -sx, sx)
        zero = torch.zeros_like(sx)
        theta = torch.stack([torch.stack([sx, zero, tx], 1), torch.stack([zero, sy, ty], 1)], 1)  # (b, 2, 3)
        (theta,) = self._to_device(theta.float())
        x = normalize(self.images[idx])  # (b, 3, H, W)
        grid = F.affine_grid(theta, [x.shape[0], 3, out_h, out_w], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

def inception_crop_boxes(n: int, height: int, width: int, generator: torch.Generator,
                         area=INCEPTION_AREA, ratio=INCEPTION_RATIO, attempts: int = INCEPTION_ATTEMPTS
                         ) -> torch.Tensor:
    """``n`` random crop boxes (top, left, height, width), float pixels, shape (n, 4).

    Each box covers a uniform fraction ``area`` of the image with a log-uniform
    aspect ratio (width / height) in ``ratio``; of ``attempts`` draws the first
    that fits inside the image is taken, and the whole image when none does
    (the behaviour of tf.image.sample_distorted_bounding_box in the official pipeline).
    """
    frac = torch.empty(n, attempts).uniform_(*area, generator=generator)          # (n, A)
    log_r = torch.empty(n, attempts).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = log_r.exp()
    crop_w = (frac * height * width * aspect).sqrt().round()                       # (n, A)
    crop_h = (frac * height * width / aspect).sqrt().round()
    fits = (crop_w >= 1) & (crop_w <= width) & (crop_h >= 1) & (crop_h <= height)
    first = torch.where(fits.any(1), fits.float().argmax(1), torch.full((n,), -1))  # (n,) attempt index or -1
    pick = first.clamp(min=0)[:, None]
    ch = torch.where(first >= 0, crop_h.gather(1, pick)[:, 0], torch.full((n,), float(height)))
    cw = torch.where(first >= 0, crop_w.gather(1, pick)[:, 0], torch.full((n,), float(width)))
    # Integer offsets, uniform over the positions where the box fits.
    u = torch.rand(n, 2, generator=generator)
    top = torch.floor(u[:, 0] * (height - ch + 1))
    left = torch.floor(u[:, 1] * (width - cw + 1))
    return torch.stack([top, left, ch, cw], dim=1)


def _reflect(i: torch.Tensor, n: int) -> torch.Tensor:
    """Reflect integer coordinates into [0, n) without repeating the edge (valid for -n < i < 2n - 1)."""
    i = i.abs()
    return torch.where(i >= n, 2 * (n - 1) - i, i)

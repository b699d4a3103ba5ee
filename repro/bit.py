"""BiT ResNet-v2, the paper's CNN baseline (Kolesnikov et al., "Big Transfer", 2020).

ResNet-v2 (pre-activation bottleneck blocks) with Group Normalization (32 groups)
and Weight Standardization in every convolution, as the ViT paper uses for its
ResNet baselines (Sec. 4.1, "ResNet (BiT)"). Built from timm's ``ResNetV2`` with
the settings of timm's ``resnetv2_50x1_bit``, so the parameter names are timm's
and timm/BiT state dicts load as they are.

Departures from BiT, all opt-in:
- ``stem="cifar"`` replaces the 7x7 stride-2 convolution and max-pool by one 3x3
  stride-1 convolution. At 32x32 input the BiT stem would leave a 1x1 map after
  stage 4; the ``gpu`` scale uses this stem to train on CIFAR at its native size
  (BiT itself upsamples CIFAR to 128+ px instead). It costs ~10x the compute of
  the BiT stem at 32 px, so the ``cpu`` scale keeps the BiT stem (see SCALES).
- ``drop_path`` (stochastic depth) is not in BiT; it defaults to 0.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from functools import partial

import torch
from timm.layers import StdConv2d
from timm.models.resnetv2 import ResNetV2
from torch import nn

from .config import BiTConfig

# BiT uses eps=1e-8 in its weight standardisation (timm's resnetv2_*_bit models do too).
BitConv2d = partial(StdConv2d, eps=1e-8)


class BiT(ResNetV2):
    """timm's ``ResNetV2`` that keeps its ``BiTConfig`` as ``cfg`` and in step with its head."""

    cfg: BiTConfig

    def reset_head(self, num_classes: int) -> None:
        """Replace the classifier by a zero-initialised one with ``num_classes`` outputs (as the ViT's
        ``reset_head``; a fresh fine-tuning head is zero, Sec. 3.2), and say so in ``cfg``."""
        self.reset_classifier(num_classes)
        with torch.no_grad():
            for p in self.get_classifier().parameters():
                p.zero_()
        self.cfg = dataclasses.replace(self.cfg, num_classes=num_classes)


def create_bit(cfg: BiTConfig) -> BiT:
    """A BiT ResNet-v2 for ``cfg``: (B, C, H, W) images -> (B, num_classes) logits."""
    model = BiT(
        layers=list(cfg.layers),
        channels=(256, 512, 1024, 2048)[: len(cfg.layers)],
        num_classes=cfg.num_classes,
        in_chans=cfg.in_chans,
        width_factor=cfg.width_factor,
        stem_type="fixed",
        conv_layer=BitConv2d,
        drop_path_rate=cfg.drop_path,
    )
    if cfg.stem == "cifar":
        stem_chs = 64 * cfg.width_factor
        # Pre-activation network: the stem is the convolution alone, the first block normalises.
        model.stem = nn.Sequential(OrderedDict(conv=BitConv2d(cfg.in_chans, stem_chs, kernel_size=3, stride=1)))
    model.cfg = cfg
    # timm's ResNetV2 has no input check: a 3-D tensor or uint8 images fail deep inside a convolution.
    model.register_forward_pre_hook(_check_input)
    return model


def _check_input(model: ResNetV2, args: tuple) -> None:
    """Forward pre-hook: raise a ValueError unless the input is a float (B, C, H, W) batch with the model's channels."""
    x = args[0] if args else None
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected images of shape (batch, {model.cfg.in_chans}, H, W), got {shape}"
                         + (" (add the batch dimension with x[None])" if isinstance(x, torch.Tensor) and x.ndim == 3
                            else ""))
    if x.shape[1] != model.cfg.in_chans:
        raise ValueError(f"expected {model.cfg.in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise ValueError(f"expected float images normalised to [-1, 1], got {x.dtype}: convert uint8 images with "
                         "repro.data.normalize(x)")

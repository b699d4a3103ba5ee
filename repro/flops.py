"""Compute: parameters and training FLOPs of a named model, and a run's pre-training FLOPs kept beside it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from .data import get_info
from .fileio import atomic_write_text
from .models import create_model
from .rundir import read_config


def count_params(model_name: str, img_size: int, num_classes: int, overrides: Optional[dict] = None) -> int:
    """Parameters of a named variant at ``img_size`` (the position embeddings grow with the resolution)."""
    model = create_model(model_name, num_classes=num_classes, img_size=img_size, **(overrides or {}))
    return sum(p.numel() for p in model.parameters())


def training_flops(model_name: str, img_size: int, num_classes: int, overrides: Optional[dict] = None, *,
                   batch: int = 1, steps: int = 1, probe_batch: int = 2) -> float:
    """FLOPs of ``steps`` training steps of ``batch`` images: one forward + backward counted by
    ``torch.utils.flop_counter.FlopCounterMode`` on CPU for ``probe_batch`` random images, scaled linearly.

    The counter counts matrix products and convolutions (2 FLOPs per multiply-add), forward and backward;
    norms, activations and the optimizer are left out (a few % for these models). Forward + backward is
    ~3x the forward (2.9-3.0x measured for the small ViTs and ResNets here). Attention is counted through
    PyTorch's math backend: the counter has no formula for the CPU's fused attention kernel and would count
    its Q K^T and A V products as 0 (12 N^2 D FLOPs per layer and image, fwd + bwd: ~11% of ViT-XS/4).
    """
    model = create_model(model_name, num_classes=num_classes, img_size=img_size, **(overrides or {}))
    images = torch.randn(probe_batch, 3, img_size, img_size)  # (B, 3, H, W)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(images).float().logsumexp(-1).sum().backward()
    return counter.get_total_flops() / probe_batch * batch * steps


FLOPS_FILE = "flops.json"
FLOPS_COUNTED_WITH = ("torch.utils.flop_counter.FlopCounterMode, forward + backward, matrix products, convolutions "
                      "and attention")


def run_training_flops(run_dir) -> float:
    """A run's pre-training compute in FLOPs: ``training_flops`` (``torch.utils.flop_counter`` on
    one forward + backward) of the model in its ``config.json`` (variant, overrides, resolution, data set's
    classes) times its batch and steps. Counted once and kept in ``flops.json`` beside the run, so tables and
    figures read it from files."""
    run_dir = Path(run_dir)
    path = run_dir / FLOPS_FILE
    saved = json.loads(path.read_text()) if path.exists() else None
    if saved and saved.get("counted_with") == FLOPS_COUNTED_WITH:
        return saved["train_flops"]  # else stale: counted before attention was (recounted from the config)
    cfg = read_config(run_dir)
    per_image = training_flops(cfg["model"], cfg["image_size"], get_info(cfg["dataset"]).num_classes,
                               cfg.get("model_overrides") or {})
    total = per_image * cfg["batch_size"] * cfg["steps"]
    atomic_write_text(path, json.dumps({"flops_per_image": per_image, "train_flops": total,
                                        "counted_with": FLOPS_COUNTED_WITH}, indent=1))
    return total

"""Few-shot linear evaluation: a closed-form ridge probe on frozen features.

The paper reports few-shot accuracy alongside fine-tuning (Sec. 4.1 "Metrics",
Fig. 4, App. D, Table 8 use ImageNet 5-shot): "obtained by solving a regularized
least-squares regression problem that maps the (frozen) representation of a
subset of training images to {-1, 1}^K target vectors". This module follows the
protocol of big_vision's ``fewshot_lsr`` evaluator:

1. features = the pre-logits representation of the frozen network (the pooled
   token after the final LayerNorm, after the tanh layer when there is one);
2. for each seed, the training set is shuffled and the first k images of each
   class are the support set (so k = 1, 5, 10, 25 are nested for one seed);
3. features are standardised with the support set's mean and (population)
   std + 1e-5, and the test features with the same statistics;
4. a constant feature 100 is appended: the bias, so large that the ridge
   penalty barely touches it;
5. targets are 2 * onehot - 1 and the weights are the ridge solution with
   lambda = 2^10, in the primal form (X^T X + lambda I)^-1 X^T Y or the dual
   form X^T (X X^T + lambda I)^-1 Y, whichever system is smaller;
6. top-1 accuracy on the whole test split, reported as mean and std over seeds.

Departures: big_vision solves through an eigen-decomposition (so one
factorisation serves many lambdas) in float32 on the host; we solve the one
system directly in float64, which agrees to rounding. big_vision draws one
permutation per class; we draw one permutation of the whole training set and
keep each class's first k in that order (the same distribution of support sets,
a different stream of random numbers).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import get_datasets, ImageArrays, normalize

# Images per forward pass when features are extracted (inference only: no gradients kept).
FEATURE_BATCH = 256

# Value of the appended constant feature (big_vision's BIAS_CONSTANT): large, so the bias is almost unregularised.
BIAS_CONSTANT = 100.0
# Added to the support std so that a constant feature does not divide by zero.
STD_EPS = 1e-5
DEFAULT_L2_REG = 2.0 ** 10
DEFAULT_SHOTS = (1, 5, 10, 25)
DEFAULT_SEEDS = (0, 1, 2)

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]


def _features(x: ArrayLike) -> torch.Tensor:
    """Any (N, D) array -> float64 CPU tensor (the solve is done on the host in double precision)."""
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(t.shape)}")
    return t


def _labels(y: ArrayLike) -> torch.Tensor:
    t = torch.as_tensor(y).detach().to("cpu", torch.long)
    if t.ndim != 1:
        raise ValueError(f"labels must be (N,), got shape {tuple(t.shape)}")
    return t


# --------------------------------------------------------------------------- the probe


def support_indices(train_y: ArrayLike, shots: int, seed: int, num_classes: Optional[int] = None) -> torch.Tensor:
    """Indices of the support set: the first ``shots`` examples of each class in a seeded shuffle.

    The whole training set is permuted with ``torch.Generator().manual_seed(seed)``
    and each class keeps its first ``shots`` members in that order, so for one
    seed the 1-shot set is inside the 5-shot set, and so on. A class with fewer
    than ``shots`` examples contributes all of them. Returned grouped by class
    (class 0's examples first), each group in shuffle order; (sum of counts,).
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    y = _labels(train_y)
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    perm = torch.randperm(y.shape[0], generator=torch.Generator().manual_seed(int(seed)))
    shuffled = y[perm]  # (N,) labels in shuffle order
    picks = [perm[shuffled == c][:shots] for c in range(num_classes)]
    return torch.cat(picks)


def support_statistics(support_x: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean (1, D) and population std + 1e-5 (1, D) of the support set (big_vision's ``jnp.std``)."""
    x = _features(support_x)
    return x.mean(dim=0, keepdim=True), x.std(dim=0, unbiased=False, keepdim=True) + STD_EPS


def standardize(support_x: ArrayLike, *others: ArrayLike) -> tuple[torch.Tensor, ...]:
    """Standardise the support features with their own statistics, and ``others`` with the same ones.

    Returns float64 tensors: (support, *others).
    """
    mean, std = support_statistics(support_x)
    return tuple((_features(t) - mean) / std for t in (support_x, *others))


def _with_bias(x: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, D + 1) with the constant bias feature last."""
    return F.pad(x, (0, 1), value=BIAS_CONSTANT)


def ridge_weights(x: torch.Tensor, targets: torch.Tensor, l2_reg: float = DEFAULT_L2_REG,
                  solver: str = "auto") -> torch.Tensor:
    """Ridge regression weights W (D, C) minimising |XW - Y|^2 + l2_reg |W|^2, in closed form.

    x: (N, D) design matrix (bias column included); targets: (N, C).
    ``solver``: "primal" solves (X^T X + lambda I) W = X^T Y, a D x D system;
    "dual" solves (X X^T + lambda I) A = Y, an N x N system, and W = X^T A; the two
    are the same W (push-through identity). "auto" takes the smaller system
    (primal when N >= D, as big_vision does).
    """
    n, d = x.shape
    if solver == "auto":
        solver = "primal" if n >= d else "dual"
    if solver == "primal":
        gram = x.T @ x + l2_reg * torch.eye(d, dtype=x.dtype)       # (D, D)
        return torch.linalg.solve(gram, x.T @ targets)
    if solver == "dual":
        gram = x @ x.T + l2_reg * torch.eye(n, dtype=x.dtype)       # (N, N)
        return x.T @ torch.linalg.solve(gram, targets)
    raise ValueError(f"solver={solver!r}; choose 'auto', 'primal' or 'dual'")


@dataclass
class RidgeProbe:
    """A fitted few-shot probe: the support statistics and the ridge weights."""

    mean: torch.Tensor     # (1, D) float64
    std: torch.Tensor      # (1, D) float64, includes the 1e-5
    weights: torch.Tensor  # (D + 1, C) float64, last row the bias

    def scores(self, x: ArrayLike) -> torch.Tensor:
        """Features (N, D) -> regression outputs (N, C)."""
        z = (_features(x) - self.mean) / self.std
        return _with_bias(z) @ self.weights

    def predict(self, x: ArrayLike) -> torch.Tensor:
        """Features (N, D) -> predicted classes (N,)."""
        return self.scores(x).argmax(dim=1)


def fit_ridge(x: ArrayLike, y: ArrayLike, num_classes: int, l2_reg: float = DEFAULT_L2_REG,
              solver: str = "auto") -> RidgeProbe:
    """Fit the probe on a support set: standardise, append the bias feature, regress onto 2*onehot - 1."""
    x, y = _features(x), _labels(y)
    mean, std = support_statistics(x)
    design = _with_bias((x - mean) / std)                                   # (N, D + 1)
    targets = 2.0 * F.one_hot(y, num_classes).to(torch.float64) - 1.0       # (N, C) in {-1, 1}
    return RidgeProbe(mean, std, ridge_weights(design, targets, l2_reg, solver))


def linear_fewshot(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike, shots: int,
                   seed: int, l2_reg: float = DEFAULT_L2_REG, *, num_classes: Optional[int] = None,
                   solver: str = "auto") -> float:
    """Top-1 accuracy in [0, 1] on the whole test set of a ``shots``-per-class ridge probe.

    train_x (N, D), train_y (N,), test_x (M, D), test_y (M,): torch tensors or
    numpy arrays (frozen features and integer labels). The support set is
    ``support_indices(train_y, shots, seed)``; see the module docstring for the
    protocol. ``num_classes`` defaults to 1 + the largest label seen.
    """
    train_x, train_y, test_x, test_y = _features(train_x), _labels(train_y), _features(test_x), _labels(test_y)
    if num_classes is None:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    idx = support_indices(train_y, shots, seed, num_classes)
    probe = fit_ridge(train_x[idx], train_y[idx], num_classes, l2_reg, solver)
    return float((probe.predict(test_x) == test_y).double().mean())


def fewshot_results(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike,
                    shots: Sequence[int] = DEFAULT_SHOTS, seeds: Sequence[int] = DEFAULT_SEEDS,
                    l2_reg: float = DEFAULT_L2_REG, *, num_classes: Optional[int] = None) -> dict[int, dict]:
    """Few-shot accuracy for every k in ``shots`` over ``seeds``.

    Returns {k: {"mean": float, "std": float, "per_seed": [acc, ...]}}, accuracies
    in [0, 1]; "std" is the sample std over seeds (0.0 for a single seed).
    """
    train_x, train_y, test_x, test_y = _features(train_x), _labels(train_y), _features(test_x), _labels(test_y)
    if num_classes is None:
        num_classes = int(max(train_y.max(), test_y.max())) + 1
    out: dict[int, dict] = {}
    for k in shots:
        accs = [linear_fewshot(train_x, train_y, test_x, test_y, k, s, l2_reg, num_classes=num_classes)
                for s in seeds]
        std = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
        out[int(k)] = {"mean": float(np.mean(accs)), "std": std, "per_seed": accs}
    return out


# --------------------------------------------------------------------------- features


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _model_image_size(model: nn.Module) -> Optional[tuple[int, int]]:
    """The (H, W) the model was built for (ViT, hybrid and BiT all keep ``cfg.img_size``), or None."""
    size = getattr(getattr(model, "cfg", None), "img_size", None)
    return None if size is None else (int(size[0]), int(size[1]))


def representation(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) in [-1, 1] -> pre-logits features (B, F).

    Works for our ViT / hybrid (pooled token after the final LN, after the tanh
    pre-logits layer if present) and timm's ResNetV2 (global-pooled final map):
    both expose ``forward_head(forward_features(x), pre_logits=True)``.
    """
    return model.forward_head(model.forward_features(x), pre_logits=True)


def classifier_logits(model: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Pre-logits features (B, F) (``representation``) -> the model's trained classifier's logits (B, K).

    Our ViT / hybrid: the ``head`` Linear. timm's ResNetV2 (BiT): its classifier is a 1x1 convolution
    on the pooled map, so the features are given back their 1x1 spatial dimensions first.
    """
    head = model.get_classifier() if hasattr(model, "get_classifier") else model.head
    if isinstance(head, nn.Conv2d):
        return head(features[:, :, None, None]).flatten(1)  # (B, F, 1, 1) -> (B, K, 1, 1) -> (B, K)
    return head(features)


def patch_mean_representation(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Images (B, C, H, W) in [-1, 1] -> the mean of the ViT's final-LayerNorm patch tokens (B, D).

    The class token (if any) is left out. This is the representation that masked patch prediction
    (``repro.mpp``) trains: its loss reads each patch's own output token, never the class token's output
    nor the pre-logits layer, which stay as initialised.
    """
    z = model.forward_features(x)                                 # (B, T, D)
    return z[:, model.num_prefix_tokens:].mean(dim=1)


# What a few-shot probe can read, by name: the pre-logits features (the paper's protocol) or the mean patch token.
REPRESENTATIONS = {"pre_logits": representation, "patch_mean": patch_mean_representation}


def _batches(images_or_loader, batch_size: int) -> Iterable[tuple[torch.Tensor, bool]]:
    """Yield (batch, is_uint8) from a tensor, an ImageArrays or an iterable of batches / (x, y) pairs."""

    if isinstance(images_or_loader, ImageArrays):
        images_or_loader = images_or_loader.images
    if isinstance(images_or_loader, (torch.Tensor, np.ndarray)):
        images = torch.as_tensor(images_or_loader)
        for i in range(0, images.shape[0], batch_size):
            yield images[i:i + batch_size], images.dtype == torch.uint8
        return
    for batch in images_or_loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        yield x, x.dtype == torch.uint8


@torch.no_grad()
def extract_features(model: nn.Module, images_or_loader, batch_size: int = FEATURE_BATCH,
                     device: Union[str, torch.device, None] = None, features: str = "pre_logits") -> torch.Tensor:
    """Pre-logits features (N, F) float32 on the CPU of a frozen model, computed batch by batch.

    ``features`` names another representation of ``REPRESENTATIONS`` (e.g. "patch_mean" for a ViT trained by
    masked patch prediction).

    images_or_loader: a float (N, 3, H, W) tensor already normalised to [-1, 1];
    a ``repro.data.ImageArrays`` or a uint8 (N, 3, H, W) tensor (normalised with
    ``repro.data.normalize``); or an iterable of such batches or of (x, y) pairs
    (e.g. an eval ``DeviceLoader``; the labels are ignored, keep your own).
    Images of another size than the model's ``cfg.img_size`` are resized on the
    fly (bilinear, antialiased, like ``DeviceLoader(image_size=...)``).
    The model runs in eval mode under no_grad; its train/eval mode is restored.
    ``device`` defaults to the model's own device.
    """

    if features not in REPRESENTATIONS:
        raise ValueError(f"features={features!r}; choose one of {sorted(REPRESENTATIONS)}")
    read = REPRESENTATIONS[features]
    device = _model_device(model) if device is None else torch.device(device)
    size = _model_image_size(model)
    was_training = model.training
    model.eval()
    out = []
    try:
        for x, is_uint8 in _batches(images_or_loader, batch_size):
            x = x.to(device)
            x = normalize(x) if is_uint8 else x.float()
            if size is not None and tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            out.append(read(model, x).float().cpu())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("no images to extract features from")
    return torch.cat(out)


def evaluate_fewshot(model: nn.Module, dataset_name: str, *, data_dir=None, shots: Sequence[int] = DEFAULT_SHOTS,
                     seeds: Sequence[int] = DEFAULT_SEEDS, l2_reg: float = DEFAULT_L2_REG,
                     max_train: Optional[int] = None, max_test: Optional[int] = None, image_size=None,
                     batch_size: int = FEATURE_BATCH, device: Union[str, torch.device, None] = None,
                     cache_dir=None) -> dict[int, dict]:
    """Few-shot results of a frozen model on a named dataset: ``fewshot_results`` of its features.

    The support sets are drawn from the whole training split (``heldout=False``:
    few-shot evaluation picks no hyper-parameters) and accuracy is measured on the
    test split; ``max_train`` / ``max_test`` keep seeded class-balanced subsets
    (cheap scales). ``image_size`` decodes at that size (else native, resized on
    the fly to the model's size). The number of classes comes from the dataset.
    """

    splits = get_datasets(dataset_name, data_dir=data_dir, image_size=image_size, heldout=False,
                          max_train=max_train, max_test=max_test, cache_dir=cache_dir)
    train, test = splits["train"], splits["test"]
    train_x = extract_features(model, train, batch_size=batch_size, device=device)
    test_x = extract_features(model, test, batch_size=batch_size, device=device)
    return fewshot_results(train_x, train.labels, test_x, test.labels, shots, seeds, l2_reg,
                           num_classes=train.num_classes)

"""Splits and subsets of a decoded data set: ``split_heldout`` carves the held-out validation set out of the
training set (hyper-parameters are chosen on it, never on the test set), ``balanced_subset`` keeps a seeded,
class-balanced subset, ``keep_classes`` selects and relabels classes, ``carve_train_part`` cuts a training set into
fixed ``"source"`` / ``"target"`` parts, and ``get_datasets`` assembles a run's {"train", "val", "test"} from them."""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Optional, Sequence, Union

import torch

from ..config import ImageSize
from .decode import ImageArrays, load_split
from .registry import get_info
from .seeding import TAG_HELDOUT, TAG_SUBSET, seeded_generator
from .sources import Source, resolve_source


def split_heldout(n: int, fraction: float, seed: int = 0, count: Optional[int] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded random split of range(n) -> (train_idx, heldout_idx), both sorted int64.

    round(n * fraction) examples are held out, or ``count`` when given; the same
    (n, fraction or count, seed) always gives the same split.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    if count is not None and not 0 < count < n:
        raise ValueError(f"heldout_size={count}: must lie in [1, {n - 1}] for a training set of {n} images")
    n_held = int(round(n * fraction)) if count is None else int(count)
    perm = torch.randperm(n, generator=seeded_generator(seed, TAG_HELDOUT))
    return perm[n_held:].sort().values, perm[:n_held].sort().values


def balanced_subset(labels: torch.Tensor, k: int, seed: int = 0) -> torch.Tensor:
    """Sorted indices of `k` examples, as class-balanced as the counts allow.

    Classes take turns: each class's examples are ordered at random and the
    first k of (1st of every class, 2nd of every class, ...) are kept, so a
    class that runs out leaves its share to the others.
    """
    labels = torch.as_tensor(labels)
    n = labels.shape[0]
    if k >= n:
        return torch.arange(n)
    perm = torch.randperm(n, generator=seeded_generator(seed, TAG_SUBSET))
    lab = labels[perm]  # (n,) labels in random order
    order = torch.sort(lab, stable=True).indices  # groups by class, random order within a class
    sorted_lab = lab[order]
    starts = torch.searchsorted(sorted_lab, sorted_lab, right=False)  # first position of each one's class
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n) - starts  # (n,) rank of each example within its class
    # Sort by (rank within class, random position) and keep the first k.
    keep = torch.argsort(rank * n + torch.arange(n))[:k]
    return perm[keep].sort().values


TRAIN_PARTS = ("source", "target")
# Labelled images in the target part of a training set (a transfer experiment's small labelled set).
TARGET_SIZE = 5000
# The source/target carve of a training set is the same for every run (it must not move with the training
# seed, or "the target part the pre-training never saw" would differ between runs): its own fixed seed.
_PART_SEED = 0


def keep_classes(arrays: ImageArrays, classes: Sequence[int]) -> ImageArrays:
    """The images of ``classes`` only, relabelled 0..len(classes)-1 in the order given (so ``classes=(5, 6)``
    makes class 5 label 0); ``num_classes`` becomes ``len(classes)``."""
    classes = [int(c) for c in classes]
    if not classes or len(set(classes)) != len(classes) or not all(0 <= c < arrays.num_classes for c in classes):
        raise ValueError(f"classes={classes}: give distinct class indices in [0, {arrays.num_classes}) of "
                         f"{arrays.name}")
    relabel = torch.full((arrays.num_classes,), -1, dtype=torch.long)
    relabel[torch.tensor(classes)] = torch.arange(len(classes))
    idx = torch.nonzero(relabel[arrays.labels] >= 0).flatten()
    kept = arrays.subset(idx)
    return replace(kept, labels=relabel[kept.labels], num_classes=len(classes))


def carve_train_part(train: ImageArrays, part: str, target_size: int) -> ImageArrays:
    """One of two disjoint parts of a training set: ``"target"``, a fixed class-balanced subset of
    ``target_size`` images (the small labelled set of a transfer experiment), or ``"source"``, all the rest
    (the large pre-training set). The carve does not depend on any run's seed."""
    if part not in TRAIN_PARTS:
        raise ValueError(f"train_part={part!r}; choose one of {TRAIN_PARTS} (or None for the whole training set)")
    if not 0 < target_size < len(train):
        raise ValueError(f"target_size={target_size}: must lie in [1, {len(train) - 1}] for the {len(train)} "
                         f"training images of {train.name}")
    target = balanced_subset(train.labels, target_size, _PART_SEED)  # (target_size,) sorted indices
    if part == "target":
        return train.subset(target)
    keep = torch.ones(len(train), dtype=torch.bool)
    keep[target] = False
    return train.subset(torch.nonzero(keep).flatten())


def get_datasets(name: str, *, data_dir: Union[str, os.PathLike, None] = None, image_size: Optional[ImageSize] = None,
                 seed: int = 0, heldout: bool = True, max_train: Optional[int] = None,
                 max_test: Optional[int] = None, max_val: Optional[int] = None,
                 cache_dir: Union[str, os.PathLike, None] = None,
                 source: Optional[Source] = None, classes: Optional[Sequence[int]] = None,
                 train_part: Optional[str] = None, target_size: int = TARGET_SIZE,
                 heldout_size: Optional[int] = None) -> dict[str, ImageArrays]:
    """The splits of one run: {"train", "val" (only when heldout=True), "test"}.

    In this order: ``classes`` keeps those classes of every split, relabelled 0..k-1 in the order given
    (e.g. CIFAR-10 classes 0-4 as a source task, 5-9 as a target task); ``train_part`` keeps the
    ``"source"`` or the ``"target"`` part of the training set (``carve_train_part``: a fixed, class-balanced
    ``target_size`` images and the rest). Then "val" is the held-out ``DATASETS[name].heldout_fraction``
    of the training set (App. B: 10% Pets/Flowers, 2% CIFAR, 1% ImageNet), or ``heldout_size`` images when
    given (at least 1,000 for an lr choice on a small target set, e.g. 20% of 5,000), used to choose
    hyper-parameters; "train" is the rest. Then ``max_train`` / ``max_val`` / ``max_test`` keep a
    seeded, class-balanced subset of each (the cheap scales; for one seed a smaller ``max_train`` is a
    subset of a larger one); they must be positive (None keeps everything). `source` skips ``resolve_source``.
    """
    for key, value in (("max_train", max_train), ("max_test", max_test), ("max_val", max_val)):
        if value is not None and value <= 0:
            raise ValueError(f"{key}={value}: must be a positive number of images, or None for all of them")
    if train_part is not None and train_part not in TRAIN_PARTS:
        raise ValueError(f"train_part={train_part!r}; choose one of {TRAIN_PARTS} (or None for the whole training set)")
    info = get_info(name)
    src = source or resolve_source(name, data_dir)
    train = load_split(name, "train", image_size=image_size, cache_dir=cache_dir, source=src)
    test = load_split(name, "test", image_size=image_size, cache_dir=cache_dir, source=src)
    if classes is not None:
        train, test = keep_classes(train, classes), keep_classes(test, classes)
    if train_part is not None:
        train = carve_train_part(train, train_part, target_size)
    out: dict[str, ImageArrays] = {}
    if heldout:
        tr_idx, val_idx = split_heldout(len(train), info.heldout_fraction, seed, heldout_size)
        val = train.subset(val_idx, "val")
        train = train.subset(tr_idx, "train")
        if max_val is not None and max_val < len(val):
            val = val.subset(balanced_subset(val.labels, max_val, seed), "val")
    if max_train is not None and max_train < len(train):
        train = train.subset(balanced_subset(train.labels, max_train, seed), "train")
    if max_test is not None and max_test < len(test):
        test = test.subset(balanced_subset(test.labels, max_test, seed), "test")
    out["train"] = train
    if heldout:
        out["val"] = val
    out["test"] = test
    return out

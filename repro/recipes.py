"""The paper's training recipes as data: pre-training (Table 3, App. B.1) and fine-tuning (Table 4, App. B.1.1).

One source for every scale: the ``paper`` scale of ``repro.scales`` takes its
settings from here, and ``repro.scales.departures_markdown`` lists, row by row,
where a cheaper scale differs from these recipes.

Shared by every pre-training row (App. B.1): Adam with beta1 0.9, beta2 0.999,
decoupled weight decay (AdamW, as big_vision applies it), batch 4096, 10k
linear warm-up steps, input 224 px, and the tanh pre-logits layer of width D in
the ViT's head (Sec. 3.1; dropped at fine-tuning).

Shared by every fine-tuning row (App. B.1.1, official configs): SGD with
momentum 0.9, batch 512, no weight decay, cosine decay after 500 warm-up steps,
gradient clipping at global norm 1, resolution 384, the learning rate picked
from the grid on a held-out part of the training set, then the model trained
again on the whole training set; Inception-style random crop and flip.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Optional

from .config import ViTConfig, parse_variant

# Training-set sizes used to turn epochs into steps (Sec. 4.1).
TRAIN_EXAMPLES = {"imagenet1k": 1_281_167, "imagenet21k": 14_197_122, "jft300m": 303_000_000}


@dataclass(frozen=True)
class PretrainRecipe:
    """One row of Table 3: how a model family was pre-trained on one data set."""

    dataset: str                  # imagenet1k | imagenet21k | jft300m
    models: tuple[str, ...]       # glob patterns of model names the row covers
    epochs: float
    lr: float
    schedule: str                 # linear | cosine decay after the warm-up
    weight_decay: float
    dropout: float
    grad_clip: Optional[float]    # global norm, None = no clipping
    source: str = "Table 3"
    batch_size: int = 4096
    warmup_steps: int = 10_000
    image_size: int = 224

    def steps(self, num_examples: Optional[int] = None) -> int:
        """Optimizer steps for ``epochs`` passes over ``num_examples`` (default: the data set's size)."""
        n = num_examples if num_examples is not None else TRAIN_EXAMPLES[self.dataset]
        return round(self.epochs * n / self.batch_size)


@dataclass(frozen=True)
class FinetuneRecipe:
    """One row of Table 4: how a pre-trained model was fine-tuned on one target data set."""

    datasets: tuple[str, ...]
    steps: int
    lr_grid: tuple[float, ...]
    source: str = "Table 4"
    batch_size: int = 512
    warmup_steps: int = 500      # official configs
    image_size: int = 384
    grad_clip: float = 1.0
    crop: str = "inception"      # official input pipeline: Inception crop (area 5-100%) + flip


# Table 3. Patterns are matched against names such as "ViT-B/16" and "R50+ViT-L/32" (fnmatch).
PRETRAIN_RECIPES: tuple[PretrainRecipe, ...] = (
    PretrainRecipe("imagenet1k", ("ViT-*",), 300, 3e-3, "cosine", 0.3, 0.1, 1.0),
    PretrainRecipe("imagenet21k", ("ViT-B/*",), 90, 1e-3, "linear", 0.03, 0.1, None),
    PretrainRecipe("jft300m", ("ViT-B/*", "R50+ViT-B/*"), 7, 8e-4, "linear", 0.1, 0.0, None),
    PretrainRecipe("jft300m", ("ViT-L/32",), 7, 6e-4, "linear", 0.1, 0.0, None),
    PretrainRecipe("jft300m", ("ViT-L/16",), 14, 4e-4, "linear", 0.1, 0.0, None),
    PretrainRecipe("jft300m", ("ViT-H/*",), 14, 3e-4, "linear", 0.1, 0.0, None),
    PretrainRecipe("jft300m", ("R50+ViT-L/32",), 7, 2e-4, "linear", 0.1, 0.0, None),
)

# Table 4 (and the official fine-tuning configs for warm-up and batch).
FINETUNE_RECIPES: tuple[FinetuneRecipe, ...] = (
    FinetuneRecipe(("imagenet1k",), 20_000, (0.003, 0.01, 0.03, 0.06)),
    FinetuneRecipe(("cifar10", "cifar100"), 10_000, (0.001, 0.003, 0.01, 0.03)),
    FinetuneRecipe(("oxford_iiit_pet", "oxford_flowers102"), 500, (0.001, 0.003, 0.01, 0.03)),
    FinetuneRecipe(("vtab",), 2_500, (0.01,)),
)

# What every fine-tuning changes in a run's config (``repro.runconfig.TrainConfig``), App. B.1.1: SGD with momentum
# 0.9 (TrainConfig's momentum), no weight decay, cosine decay, gradient clipping at global norm 1. The lr is the
# middle of Table 4's CIFAR grid (a sweep replaces it) and the warm-up starts at 0: the scales set their own.
FINETUNE_TRAINING = dict(optimizer="sgd", weight_decay=0.0, schedule="cosine", grad_clip=1.0, lr=0.01, warmup_steps=0)

# Official fine-tuning configs: dropout 0.1 for these models, 0 otherwise.
FINETUNE_DROPOUT_MODELS = ("ViT-L/16", "ViT-H/14", "R50+ViT-B/16")


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def pretrain_recipe(dataset: str, model: str) -> PretrainRecipe:
    """The Table 3 row for pre-training ``model`` on ``dataset``; a ValueError lists the rows there are."""
    for recipe in PRETRAIN_RECIPES:
        if recipe.dataset == dataset and _matches(model, recipe.models):
            return recipe
    rows = "; ".join(f"{r.dataset}: {', '.join(r.models)}" for r in PRETRAIN_RECIPES)
    raise ValueError(f"Table 3 has no row for {model!r} on {dataset!r}; its rows: {rows}")


def finetune_recipe(dataset: str) -> FinetuneRecipe:
    """The Table 4 row for fine-tuning on ``dataset``; a ValueError lists the data sets there are."""
    for recipe in FINETUNE_RECIPES:
        if dataset in recipe.datasets:
            return recipe
    known = sorted(d for r in FINETUNE_RECIPES for d in r.datasets)
    raise ValueError(f"Table 4 has no row for {dataset!r}; it covers {known}")


def finetune_dropout(model: str) -> float:
    """Dropout at fine-tuning: 0.1 for L/16, H/14 and R50+B/16 in the official configs, else 0."""
    return 0.1 if model in FINETUNE_DROPOUT_MODELS else 0.0


def pretrain_model_overrides(model: str) -> dict:
    """Model settings of pre-training: a ViT or hybrid gets the tanh pre-logits layer of width D (Sec. 3.1);
    fine-tuning builds the model without it and drops it from the checkpoint (``repro.checkpoints``)."""
    cfg = parse_variant(model)  # a hybrid's config is a ViTConfig too
    return {"representation_size": cfg.embed_dim} if isinstance(cfg, ViTConfig) else {}

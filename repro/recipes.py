"""The paper's training recipes as data: pre-training (Table 3, App. B.1) and fine-tuning (Table 4, App. B.1.1).

One source for every scale: the ``paper`` scale takes its settings from here,
and ``departures(scale)`` lists, row by row, where a cheaper scale differs from
these recipes (the "paper vs this scale" table that the README and the
notebooks show).

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
    from .config import ViTConfig, parse_variant

    cfg = parse_variant(model)  # a hybrid's config is a ViTConfig too
    return {"representation_size": cfg.embed_dim} if isinstance(cfg, ViTConfig) else {}


# --- where each scale departs from the paper ---------------------------------------------------------

# Training images per data set after the held-out split (App. B.1.1), to express steps as epochs.
_TRAIN_SPLIT_SIZE = {"cifar10": 49_000, "cifar100": 49_000, "imagenet1k": 1_268_355}

# What the paper did, one entry per row of the table (Tables 1, 3, 4; App. B).
PAPER_SETTINGS: dict[str, str] = {
    "models (ViT / BiT / hybrid)": "ViT-B/16, L/16, H/14 / BiT R50x1-R152x4 / R50+ViT-B/16 (Table 1, 5)",
    "pre-training data": "ImageNet-21k (14M), JFT-300M; ImageNet-1k (1.3M) (Sec. 4.1)",
    "pre-training resolution": "224 px",
    "pre-training batch": "4096",
    "pre-training length": "7-14 epochs JFT, 90 ImageNet-21k, 300 ImageNet-1k (Table 3)",
    "pre-training warm-up": "10k steps",
    "pre-training lr, decay, weight decay": "8e-4-3e-4 linear wd 0.1 (JFT); 1e-3 linear wd 0.03 (I21k); "
                                            "3e-3 cosine wd 0.3 (I1k)",
    "pre-training dropout / clipping": "0.1 / norm 1 (ImageNet-1k); 0 / none (JFT)",
    "pre-logits layer": "tanh, width D, at pre-training only",
    "pre-training augmentation": "Inception crop (area 5-100%) + flip",
    "fine-tuning steps / batch / warm-up (CIFAR, Table 4)": "10k / 512 / 500",
    "fine-tuning resolution": "384 px (position embeddings resampled)",
    "fine-tuning lr grid": "0.001, 0.003, 0.01, 0.03 (SGD 0.9, cosine, clip 1)",
    "fine-tuning augmentation": "Inception crop (area 5-100%) + flip; eval: whole image resized",
    "lr selection": "on 2% held out (CIFAR; 10% Pets, Flowers; 1% ImageNet), then trained again on 100%",
}


def _crop_text(kind: str) -> str:
    return {"inception": "Inception crop (area 5-100%) + flip", "pad": "pad 4 px, random crop + flip",
            "none": "flip"}[kind]


def _steps(n: int) -> str:
    """10000 -> '10k', 1500 -> '1500'."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def scale_settings(scale) -> dict[str, str]:
    """One scale's settings in the rows of ``PAPER_SETTINGS`` (``scale``: a ``repro.config.Scale`` or its name)."""
    from .config import get_scale

    s = get_scale(scale) if isinstance(scale, str) else scale
    pre_n = s.max_train or _TRAIN_SPLIT_SIZE.get(s.dataset)
    epochs = f" ({s.pretrain_steps * s.batch_size / pre_n:.1f} epochs)" if pre_n else ""
    data = f"{s.dataset}" + (f", {s.max_train} images" if s.max_train else "") + (
        " (embedded mini copy)" if s.data_dir == "embedded" else "")
    clip = f"norm {s.pretrain_grad_clip:g}" if s.pretrain_grad_clip else "none"
    return {
        "models (ViT / BiT / hybrid)": f"{s.vit} / {s.bit} / {s.hybrid}",
        "pre-training data": data,
        "pre-training resolution": f"{s.image_size} px",
        "pre-training batch": f"{s.batch_size}",
        "pre-training length": f"{s.pretrain_steps} steps{epochs}",
        "pre-training warm-up": f"{_steps(s.warmup_steps)} steps",
        "pre-training lr, decay, weight decay": f"{s.pretrain_lr:g} {s.pretrain_schedule} wd {s.pretrain_weight_decay:g}",
        "pre-training dropout / clipping": f"{s.pretrain_dropout:g} / {clip}",
        "pre-logits layer": "tanh, width D, at pre-training only",
        "pre-training augmentation": _crop_text(s.pretrain_crop),
        "fine-tuning steps / batch / warm-up (CIFAR, Table 4)":
            f"{_steps(s.finetune_steps)} / {s.finetune_batch_size} / {s.finetune_warmup_steps}",
        "fine-tuning resolution": f"{s.finetune_image_size} px (position embeddings resampled)",
        "fine-tuning lr grid": ", ".join(f"{lr:g}" for lr in s.finetune_lrs) + " (SGD 0.9, cosine, clip 1)",
        "fine-tuning augmentation": _crop_text(s.finetune_crop) + "; eval: whole image resized",
        # One mechanism at every scale: the fractions live in repro.data.DATASETS, finetune_sweep refits.
        "lr selection": PAPER_SETTINGS["lr selection"],
    }


def departures_markdown(scales=("smoke", "cpu", "gpu", "paper")) -> str:
    """The "paper vs this scale" table: one row per setting, the paper's value, then each scale's
    ("= paper" where it is the same)."""
    columns = {name: scale_settings(name) for name in scales}
    lines = ["| setting | paper | " + " | ".join(f"`{n}`" for n in scales) + " |",
             "|---|---|" + "---|" * len(scales)]
    for row, paper in PAPER_SETTINGS.items():
        cells = [("= paper" if columns[n][row] == paper else columns[n][row]) for n in scales]
        lines.append(f"| {row} | {paper} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"

"""Scales: one parameter, ``scale``, sizes every experiment (smoke / cpu / gpu / paper).

A ``Scale`` is a set of *differences* from ``repro.runconfig.TrainConfig``'s defaults (the only defaults a run
has): what every run of the scale changes (``common``), what its pre-training runs change (``pretrain``) and what
its fine-tuning runs change on top of the paper's fine-tuning recipe (``finetune``), with the models of each
family. ``Scale.run_config`` turns them into a run's ``TrainConfig``; an experiment passes its own differences on
top (its model, steps, lr...). The ``paper`` scale is read from the recipe tables of ``repro.recipes``, and
``departures_markdown`` is the "paper vs each scale" table that the README and the notebooks show, read from the
run configs themselves.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Optional

from .recipes import FINETUNE_TRAINING, finetune_dropout, finetune_recipe, pretrain_model_overrides, pretrain_recipe
from .runconfig import TrainConfig

PRETRAIN, FINETUNE = "pretrain", "finetune"
STAGES = (PRETRAIN, FINETUNE)
FAMILIES = ("vit", "bit", "hybrid")
# The BiT and the hybrid a scale trains unless it names its own (the ViT's default is TrainConfig.model).
DEFAULT_MODELS = {"vit": TrainConfig.model, "bit": "R14x1", "hybrid": "R26+ViT-XXS/4"}


@dataclass(frozen=True)
class Scale:
    """One scale: how its runs differ from ``TrainConfig``'s defaults. Read a run's settings from
    ``run_config(stage, family)``, never from here: a field left out here is ``TrainConfig``'s default.

    ``models`` names a family's model where it is not ``DEFAULT_MODELS``'; ``model_overrides`` adds a family's
    model settings (e.g. the gpu scale's BiT stem); ``pretrain_dropout`` is the ViT's and hybrid's dropout at
    pre-training (a BiT has none); ``finetune_lrs`` is the held-out lr grid of every fine-tuning; ``seeds`` the
    training seeds of notebooks that take the scale's; ``decode_at_model_size`` decodes images at the model's
    resolution (data sets whose images differ in size, e.g. Pets, ImageNet) instead of their native size (CIFAR's
    32 px, resized on the device when needed).
    """

    name: str
    description: str
    finetune_lrs: tuple
    common: dict = field(default_factory=dict)
    pretrain: dict = field(default_factory=dict)
    finetune: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    model_overrides: dict = field(default_factory=dict)
    pretrain_dropout: float = 0.0
    seeds: tuple = (0,)
    decode_at_model_size: bool = False

    def __post_init__(self):
        for what, fields_ in (("common", self.common), ("pretrain", self.pretrain), ("finetune", self.finetune)):
            unknown = sorted(set(fields_) - {f.name for f in dataclasses.fields(TrainConfig)})
            if unknown:
                raise ValueError(f"scale {self.name!r}: {what} sets {unknown}, which TrainConfig does not have")
        unknown = sorted((set(self.models) | set(self.model_overrides)) - set(FAMILIES))
        if unknown:
            raise ValueError(f"scale {self.name!r}: unknown model families {unknown}; choose among {FAMILIES}")

    def model_name(self, family: str) -> str:
        """The scale's model of a family ("vit", "bit" or "hybrid")."""
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        return self.models.get(family, DEFAULT_MODELS[family])

    @property
    def vit(self) -> str:
        return self.model_name("vit")

    @property
    def bit(self) -> str:
        return self.model_name("bit")

    @property
    def hybrid(self) -> str:
        return self.model_name("hybrid")

    def run_config(self, stage: str, family: str = "vit", *, family_overrides: bool = True,
                   **changes) -> TrainConfig:
        """The ``TrainConfig`` of a ``stage`` ("pretrain" or "finetune") of a model ``family`` at this scale, with
        ``changes`` (an experiment's own fields: model, steps, lr, seed, paths...) applied last.

        Built in one pass, each layer a difference from the one before: ``TrainConfig``'s defaults; at fine-tuning
        the paper's recipe (``repro.recipes.FINETUNE_TRAINING``); the scale's ``common``, then its ``stage`` fields;
        then ``changes``. Model settings merge the same way: pre-training gives a ViT or hybrid the tanh pre-logits
        layer of width D (Sec. 3.1; fine-tuning builds the model without it), the scale's dropout, the family's
        overrides (``family_overrides=False`` leaves them out), then ``changes["model_overrides"]``. When the scale
        decodes at the model's size, the decode size follows the final ``image_size``.
        """
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        model = changes.pop("model", None) or self.model_name(family)
        if stage == PRETRAIN:
            model_settings = pretrain_model_overrides(model)
            dropout = self.pretrain_dropout
        else:
            model_settings, dropout = {}, finetune_dropout(model)
        if dropout and family != "bit":
            model_settings["dropout"] = dropout
        if family_overrides:
            model_settings.update(self.model_overrides.get(family, {}))
        model_settings.update(changes.pop("model_overrides", None) or {})
        fields = {**(FINETUNE_TRAINING if stage == FINETUNE else {}), **self.common,
                  **(self.pretrain if stage == PRETRAIN else self.finetune), **changes,
                  "model": model, "model_overrides": model_settings}
        if self.decode_at_model_size and "data_image_size" not in changes:
            fields["data_image_size"] = fields.get("image_size", TrainConfig.image_size)
        return TrainConfig(**fields)

    @functools.cached_property
    def pretraining(self) -> TrainConfig:
        """The scale's ViT pre-training run (seed 0, default paths): where a reader finds its settings."""
        return self.run_config(PRETRAIN)

    @functools.cached_property
    def finetuning(self) -> TrainConfig:
        """The scale's ViT fine-tuning run (the recipe's lr; a sweep replaces it)."""
        return self.run_config(FINETUNE)

    @property
    def dataset(self) -> str:
        return self.pretraining.dataset

    @property
    def data_dir(self) -> Optional[str]:
        return self.pretraining.data_dir


def _paper_scale() -> Scale:
    """The paper's settings, read from the recipe tables: ViT-B/16 pre-trained on ImageNet-1k (Table 3's
    row; ImageNet-21k and JFT-300M are not public) and fine-tuned with Table 4's CIFAR row at 384 px."""
    pre, fine = pretrain_recipe("imagenet1k", "ViT-B/16"), finetune_recipe("cifar10")
    return Scale(
        name="paper", description="the paper's settings: ViT-B/16 224 -> 384 px, multi-GPU via torchrun",
        finetune_lrs=fine.lr_grid,
        common=dict(dataset=pre.dataset, eval_every=5000, log_every=100),
        # "shards": webdataset tar shards streamed under torchrun (repro.data.streaming), for ImageNet-size sets.
        pretrain=dict(image_size=pre.image_size, batch_size=pre.batch_size, steps=pre.steps(),
                      warmup_steps=pre.warmup_steps, lr=pre.lr, weight_decay=pre.weight_decay,
                      schedule=pre.schedule, grad_clip=pre.grad_clip, crop="inception", data_format="shards"),
        # Clipping at norm 1 is part of every fine-tuning (repro.recipes.FINETUNE_TRAINING).
        finetune=dict(image_size=fine.image_size, batch_size=fine.batch_size, steps=fine.steps,
                      warmup_steps=fine.warmup_steps, crop=fine.crop),
        models={"vit": "ViT-B/16", "bit": "R50x1", "hybrid": "R50+ViT-B/16"},
        pretrain_dropout=pre.dropout, decode_at_model_size=True,
    )


SCALES: dict[str, Scale] = {
    "smoke": Scale(
        name="smoke", description="seconds on a laptop CPU: proves the plumbing, not the claims",
        finetune_lrs=(0.01, 0.03),
        common=dict(data_dir="embedded", max_train=512, max_test=256, log_every=4),
        pretrain=dict(batch_size=32, steps=12, warmup_steps=3),
        finetune=dict(batch_size=32, steps=6, image_size=48),
        models={"vit": "ViT-XXS/8", "hybrid": "R26+ViT-XXS/8"},
    ),
    "cpu": Scale(
        # Measured on 2 cores (idle machine, alternating rounds, benchmarks/RESULTS.md): ViT-XS/4 trains at
        # ~290 images/s at 32 px and BiT R14x1 at ~490, so the BiT is the cheaper of the pair (the small-data
        # claim is that the ViT is worse at similar cost: a cheaper BiT only makes the test harder for it).
        # The BiT keeps its 7x7/2 + max-pool stem (8x8 map after the stem, 1x1 after stage 4): the CIFAR stem
        # would cost ~10x more.
        name="cpu", description="minutes per run on 2 CPU cores, CIFAR-10 at 32 px",
        finetune_lrs=(0.01, 0.03),
        common=dict(eval_every=500),
        pretrain=dict(steps=1500, warmup_steps=150),
        finetune=dict(steps=200, warmup_steps=10, image_size=48),
    ),
    "gpu": Scale(
        # Sizes follow the airbench-style budget of "minutes per run" on one modern GPU with GPU-resident data.
        name="gpu", description="one GPU, CIFAR-10 at 32 px, minutes per run",
        finetune_lrs=(0.003, 0.01, 0.03),
        common=dict(eval_every=1000, log_every=100),
        pretrain=dict(batch_size=512, steps=6000, warmup_steps=500),
        # Fine-tuning for TrainConfig's 1,000 steps.
        finetune=dict(batch_size=512, warmup_steps=50, image_size=64),
        models={"vit": "ViT-Ti/4", "bit": "R26x1", "hybrid": "R26+ViT-Ti/4"},
        model_overrides={"bit": {"stem": "cifar"}},
        seeds=(0, 1, 2),
    ),
    "paper": _paper_scale(),
}


def get_scale(name: str) -> Scale:
    """The preset of a scale; an unknown name is an error listing the valid ones."""
    if name not in SCALES:
        raise ValueError(f"unknown scale {name!r}; choose one of {list(SCALES)}")
    return SCALES[name]


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


def settings_rows(pre: TrainConfig, fine: Optional[TrainConfig] = None, *, models: str = "",
                  finetune_lrs: tuple = ()) -> dict[str, str]:
    """The rows of ``PAPER_SETTINGS`` for a pre-training run ``pre`` and, when given, a fine-tuning run ``fine``
    (with its lr grid); ``models`` is the models row's text (default: ``pre``'s model)."""
    pre_n = pre.max_train or _TRAIN_SPLIT_SIZE.get(pre.dataset)
    epochs = f" ({pre.steps * pre.batch_size / pre_n:.1f} epochs)" if pre_n else ""
    data = f"{pre.dataset}" + (f", {pre.max_train} images" if pre.max_train else "") + (
        " (embedded mini copy)" if pre.data_dir == "embedded" else "")
    clip = f"norm {pre.grad_clip:g}" if pre.grad_clip else "none"
    rows = {
        "models (ViT / BiT / hybrid)": models or pre.model,
        "pre-training data": data,
        "pre-training resolution": f"{pre.image_size} px",
        "pre-training batch": f"{pre.batch_size}",
        "pre-training length": f"{pre.steps} steps{epochs}",
        "pre-training warm-up": f"{_steps(pre.warmup_steps)} steps",
        "pre-training lr, decay, weight decay": f"{pre.lr:g} {pre.schedule} wd {pre.weight_decay:g}",
        "pre-training dropout / clipping": f"{pre.model_overrides.get('dropout', 0.0):g} / {clip}",
        "pre-logits layer": "tanh, width D, at pre-training only",
        "pre-training augmentation": _crop_text(pre.crop),
    }
    if fine is not None:
        rows.update({
            "fine-tuning steps / batch / warm-up (CIFAR, Table 4)":
                f"{_steps(fine.steps)} / {fine.batch_size} / {fine.warmup_steps}",
            "fine-tuning resolution": f"{fine.image_size} px (position embeddings resampled)",
            "fine-tuning lr grid": ", ".join(f"{lr:g}" for lr in finetune_lrs) + " (SGD 0.9, cosine, clip 1)",
            "fine-tuning augmentation": _crop_text(fine.crop) + "; eval: whole image resized",
            # One mechanism at every scale: the fractions live in repro.data's registry, finetune_sweep refits.
            "lr selection": PAPER_SETTINGS["lr selection"],
        })
    return rows


def scale_settings(scale) -> dict[str, str]:
    """One scale's settings in the rows of ``PAPER_SETTINGS`` (``scale``: a ``Scale`` or its name), read from
    the run configs the scale builds."""
    s = get_scale(scale) if isinstance(scale, str) else scale
    return settings_rows(s.pretraining, s.finetuning, models=f"{s.vit} / {s.bit} / {s.hybrid}",
                         finetune_lrs=s.finetune_lrs)


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

"""The registry of named data sets: ``DatasetInfo`` (hub id, columns, split names, default resolution and the
held-out fraction of App. B: 10% for Pets and Flowers, 2% for CIFAR, 1% for ImageNet) for each data set the paper
uses (Sec. 4.1), in ``DATASETS``; ``register_dataset`` adds one (e.g. a custom image folder) and ``get_info``
looks one up by name."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class DatasetInfo:
    """What the loader needs to know about one named dataset.

    ``train_split`` / ``test_split`` are the split names in the hub's (and the
    local parquet's) layout; ``"a+b"`` concatenates splits. ``image_size`` is the
    resolution a run uses by default (the native size for CIFAR, the paper's 224
    for the others); ``load_split`` itself keeps native sizes unless asked.
    """

    name: str
    hub_id: str
    num_classes: int
    image_column: str = "img"
    label_column: str = "label"
    train_split: str = "train"
    test_split: str = "test"
    heldout_fraction: float = 0.10
    image_size: int = 224
    embedded: Optional[str] = None  # folder under repro/_data holding a mini copy


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        # App. B.1.1: 2% of CIFAR's training set is held out (official train[:98%]).
        DatasetInfo("cifar10", "uoft-cs/cifar10", 10, "img", "label", image_size=32, embedded="cifar10_mini",
                    heldout_fraction=0.02),
        DatasetInfo("cifar100", "uoft-cs/cifar100", 100, "img", "fine_label", image_size=32,
                    heldout_fraction=0.02),
        # timm's copy: the official trainval (3680) / test (3669) split, 37 breeds.
        DatasetInfo("oxford_iiit_pet", "timm/oxford-iiit-pet", 37, "image", "label"),
        # Unsure: no canonical hub copy. This one mirrors TFDS (train 1020 /
        # validation 1020 / test 6149); BiT and ViT train on train+validation.
        DatasetInfo("oxford_flowers102", "dpdl-benchmark/oxford_flowers102", 102, "image", "label",
                    train_split="train+validation"),
        # Gated on the hub (accept the licence and log in first). Its "test"
        # split has no labels, so the paper's ImageNet "test" is the validation set.
        DatasetInfo("imagenet1k", "ILSVRC/imagenet-1k", 1000, "image", "label",
                    test_split="validation", heldout_fraction=0.01),
    )
}


def register_dataset(info: DatasetInfo) -> None:
    """Add (or replace) a named dataset, e.g. a custom image folder with its class count."""
    DATASETS[info.name] = info


def get_info(name: str) -> DatasetInfo:
    """The registry entry for `name`; a ValueError lists the known names."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(DATASETS)} "
                         "(add one with repro.data.register_dataset)") from None

"""The paper's numbers (arXiv 2010.11929) that our tables put beside ours, each with its source and setting."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class PaperNumber:
    """One number reported in the paper, with where it comes from and under which setting."""

    value: float
    source: str
    setting: str


# Reference numbers of the paper (arXiv 2010.11929). Keys are "<experiment>/<what>".
PAPER: dict[str, PaperNumber] = {
    # Table 2: fine-tuned top-1 (%) after pre-training on JFT-300M / ImageNet-21k.
    **{f"table2/{model}/{ds}": PaperNumber(v, "Table 2", f"{model}, fine-tuned at 384-512 px")
       for model, row in {
           "ViT-H/14 (JFT)": {"imagenet1k": 88.55, "cifar10": 99.50, "cifar100": 94.55,
                              "oxford_iiit_pet": 97.56, "oxford_flowers102": 99.68},
           "ViT-L/16 (JFT)": {"imagenet1k": 87.76, "cifar10": 99.42, "cifar100": 93.90,
                              "oxford_iiit_pet": 97.32, "oxford_flowers102": 99.74},
           "ViT-L/16 (I21k)": {"imagenet1k": 85.30, "cifar10": 99.15, "cifar100": 93.25,
                               "oxford_iiit_pet": 94.67, "oxford_flowers102": 99.61},
           "BiT-L R152x4 (JFT)": {"imagenet1k": 87.54, "cifar10": 99.37, "cifar100": 93.51,
                                  "oxford_iiit_pet": 96.62, "oxford_flowers102": 99.63},
       }.items() for ds, v in row.items()},
    # Table 8 (App. D.4): ViT-B/16, 5-shot linear ImageNet accuracy by position embedding.
    "table8/none": PaperNumber(61.38, "Table 8", "ViT-B/16, ImageNet 5-shot linear"),
    "table8/1d": PaperNumber(64.21, "Table 8", "ViT-B/16, ImageNet 5-shot linear"),
    "table8/2d": PaperNumber(64.00, "Table 8", "ViT-B/16, ImageNet 5-shot linear"),
    "table8/relative": PaperNumber(64.03, "Table 8", "ViT-B/16, ImageNet 5-shot linear"),
    # Table 8 (App. D.4), every cell with the paper's three decimals: "table8/<kind>/<placement>".
    **{f"table8/{kind}/{placement}": PaperNumber(v, "Table 8", f"ViT-B/16, ImageNet 5-shot linear, {kind} added "
                                                 f"at {placement.replace('_', ' ')}")
       for (kind, placement), v in {
           ("none", "stem"): 61.382, ("1d", "stem"): 64.206, ("2d", "stem"): 64.001, ("relative", "stem"): 64.032,
           ("1d", "every_layer"): 63.964, ("2d", "every_layer"): 64.046,
           ("1d", "every_layer_shared"): 64.292, ("2d", "every_layer_shared"): 64.022,
       }.items()},
    # App. D.3, Fig. 9: the pre-training learning rates with which each classifier works.
    "fig9/cls/lr": PaperNumber(8e-4, "App. D.3, Fig. 9", "class token: works at 8e-4"),
    "fig9/gap/lr": PaperNumber(3e-4, "App. D.3, Fig. 9", "global average pooling: works at 3e-4"),
    "fig9/gap/lr_too_high": PaperNumber(8e-4, "App. D.3, Fig. 9", "global average pooling: worse at the class "
                                        "token's 8e-4"),
    # Sec. 4.4, Fig. 5: ViT reaches the accuracy of a BiT ResNet with this many times less pre-training compute
    # (JFT-300M, averaged over 5 transfer data sets).
    "fig5/compute_ratio/low": PaperNumber(2.0, "Sec. 4.4, Fig. 5", "ViT vs BiT ResNets, JFT-300M, average-5"),
    "fig5/compute_ratio/high": PaperNumber(4.0, "Sec. 4.4, Fig. 5", "ViT vs BiT ResNets, JFT-300M, average-5"),
    # Sec. 4.6: masked patch prediction.
    "mpp/vit-b16-imagenet": PaperNumber(79.9, "Sec. 4.6", "ViT-B/16 MPP on JFT, fine-tuned on ImageNet"),
    # The two references of Sec. 4.6 are given relative to it ("a significant improvement of 2% to training
    # from scratch, but still 4% behind supervised pre-training"): 79.9 - 2 and 79.9 + 4.
    "mpp/scratch": PaperNumber(77.9, "Sec. 4.6", "ViT-B/16 trained from scratch on ImageNet (79.9 - 2)"),
    "mpp/supervised": PaperNumber(83.9, "Sec. 4.6", "ViT-B/16 supervised pre-training, fine-tuned on ImageNet "
                                  "(79.9 + 4)"),
}


def paper_number(key: str) -> Optional[PaperNumber]:
    """The paper's number for ``key`` (see ``PAPER``), or None when the paper has none."""
    return PAPER.get(key)



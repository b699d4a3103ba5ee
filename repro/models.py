"""``create_model``: the one public factory for every architecture of the paper."""
from __future__ import annotations

from torch import nn

from .bit import create_bit
from .config import BiTConfig, HybridConfig, ImageSize, ModelConfig, ViTConfig, apply_overrides, parse_variant
from .hybrid import create_hybrid
from .vit import VisionTransformer


def build_model(cfg: ModelConfig) -> nn.Module:
    """The model for a config (ViT, BiT ResNet or hybrid)."""
    if isinstance(cfg, HybridConfig):  # before ViTConfig: a hybrid's config is a ViTConfig with ResNet stages
        return create_hybrid(cfg)
    if isinstance(cfg, ViTConfig):
        return VisionTransformer(cfg)
    if isinstance(cfg, BiTConfig):
        return create_bit(cfg)
    raise TypeError(f"not a model config: {cfg!r}")


def create_model(name: str, *, num_classes: int = 1000, img_size: ImageSize = 224, **overrides) -> nn.Module:
    """Build a named variant, e.g. ``create_model("ViT-B/16", num_classes=10, pos_embed="2d")``.

    Names: ``ViT-<size>/<patch>`` (Ti, S, B, L, H and the project's XS, XXS),
    BiT ResNets ``R<depth>x<width>`` (``R50x1``, ``R152x2``...) and hybrids
    ``R<depth>+ViT-<size>/<patch>`` (``R50+ViT-B/16``). ``overrides`` replace
    fields of the variant's config (``pos_embed``, ``pool``,
    ``representation_size``, ``dropout``, ``drop_path``...); an unknown name or
    override raises an error that lists the valid ones. The model keeps its
    config as ``model.cfg``.
    """
    cfg = apply_overrides(parse_variant(name, num_classes=num_classes, img_size=img_size), overrides)
    model = build_model(cfg)
    model.variant_name = name
    return model

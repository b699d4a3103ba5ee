"""The hybrid architecture of Sec. 3.1: a ViT whose patches come from a ResNet feature map.

Built by composition, not by a second ViT: timm's ``HybridEmbed`` runs the ResNet
and projects each cell of its feature map (patch size 1, as in every hybrid of
the paper) to D dims; ``repro.vit.VisionTransformer`` takes it as its
``patch_embed`` and does the rest. The ResNet is the one of the official code
and of timm's ``vit_base_r50_s16_224``: ResNet-v1.5-style bottlenecks with
Group Norm and Weight Standardization, "SAME" padding, post-activation
(``preact=False``), and for R50 the paper's layout with stage 4 removed and
stage 3 extended to 9 blocks, so a 224 px image gives a 14x14 map; the /32
hybrids (R26+ViT-S/32, R26+ViT-B/32, R50+ViT-L/32) keep all four stages and read
the 7x7, 2048-channel stage-4 map (official vit_jax/configs/models.py). The last
GroupNorm of every ResNet block starts at zero, as in the official
models_resnet.py.

Departure: the small hybrids of the cheap scales (e.g. ``R26+ViT-XS/4``) keep
only the first one or two stages so that 32 px images still give an 8x8 or 4x4
map; the paper has no hybrid below /16.
"""
from __future__ import annotations

from functools import partial

from timm.layers import HybridEmbed, StdConv2dSame
from timm.models._features import FeatureInfo
from timm.models.resnetv2 import ResNetV2

from .config import HybridConfig
from .vit import VisionTransformer, check_image_size


def create_resnet_backbone(cfg: HybridConfig) -> ResNetV2:
    """The hybrid's ResNet trunk: images (B, C, H, W) -> features (B, F, H/s, W/s), s = cfg.backbone_stride."""
    return ResNetV2(
        layers=list(cfg.backbone_layers),
        channels=(256, 512, 1024, 2048)[: len(cfg.backbone_layers)],
        num_classes=0,
        global_pool="",
        in_chans=cfg.in_chans,
        preact=False,
        stem_type="same",
        conv_layer=partial(StdConv2dSame, eps=1e-8),
        # The official models_resnet.py starts the last GroupNorm scale of every block at zero, so each
        # residual block is the identity at initialisation (timm's default is False).
        zero_init_last=True,
    )


def create_hybrid(cfg: HybridConfig) -> VisionTransformer:
    """A ViT reading a ResNet feature map (Sec. 3.1): (B, C, H, W) images -> (B, K) logits; ``model.cfg`` is ``cfg``."""
    stride = cfg.backbone_stride
    check_image_size(cfg.img_size, stride * cfg.patch_size)
    backbone = create_resnet_backbone(cfg)
    # timm's ResNetV2 keeps feature_info as a plain list; HybridEmbed reads channels() from it.
    backbone.feature_info = FeatureInfo(backbone.feature_info, out_indices=range(len(backbone.feature_info)))
    # Give the feature size so timm need not run a dummy forward (that breaks on the meta device).
    feature_size = (cfg.img_size[0] // stride, cfg.img_size[1] // stride)
    embed = HybridEmbed(
        backbone, img_size=cfg.img_size, patch_size=cfg.patch_size, feature_size=feature_size,
        feature_ratio=stride, in_chans=cfg.in_chans, embed_dim=cfg.embed_dim,
    )
    return VisionTransformer(cfg, patch_embed=embed)

"""Model configurations and the table of named variants.

Every config is a dataclass whose defaults are the paper's values (ViT-B/16 at
224 px, 1000 classes). Named variants are parsed from strings such as
``"ViT-B/16"``, ``"R50x1"`` or ``"R50+ViT-B/16"``; the tables below say which
table of which paper each row comes from.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from typing import Optional, Union

ImageSize = Union[int, tuple[int, int]]

POS_EMBED_KINDS = ("none", "1d", "2d", "relative")
# Where absolute position embeddings are added (App. D.4, the columns of Table 8).
POS_EMBED_PLACEMENTS = ("stem", "every_layer", "every_layer_shared")
POOL_KINDS = ("cls", "gap")


@dataclass(frozen=True)
class ViTSize:
    """Width, depth, MLP size and heads of one ViT size, and where it comes from."""

    embed_dim: int
    depth: int
    mlp_dim: int
    num_heads: int
    source: str


# Paper Table 1 for B/L/H; Ti and S come from later work (DeiT, Touvron et al.
# 2021; "How to train your ViT", Steiner et al. 2021). XS and XXS are this
# project's own, so that the cpu and smoke scales can train in minutes on 2 cores.
VIT_SIZES: dict[str, ViTSize] = {
    "XXS": ViTSize(64, 4, 128, 2, "repro (smoke/cpu scale), not in the paper"),
    "XS": ViTSize(128, 6, 256, 4, "repro (cpu scale), not in the paper"),
    "Ti": ViTSize(192, 12, 768, 3, "DeiT / Steiner et al. 2021 (not in the paper)"),
    "S": ViTSize(384, 12, 1536, 6, "DeiT / Steiner et al. 2021 (not in the paper)"),
    "B": ViTSize(768, 12, 3072, 12, "paper Table 1"),
    "L": ViTSize(1024, 24, 4096, 16, "paper Table 1"),
    "H": ViTSize(1280, 32, 5120, 16, "paper Table 1"),
}

# BiT ResNet-v2 depths -> blocks per stage (Kolesnikov et al. 2020, Table 5 of
# the ViT paper lists R50x1 ... R152x2). R14 and R26 are the small ResNets
# used for the cheap scales (timm has R26 too).
RESNET_LAYERS: dict[int, tuple[int, int, int, int]] = {
    14: (1, 1, 1, 1),
    26: (2, 2, 2, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}

# Stride of the BiT/hybrid stem (7x7 conv stride 2 + 3x3 max-pool stride 2).
STEM_STRIDE = 4


def _check_positive(cfg, key: str) -> None:
    value = getattr(cfg, key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{key}={value!r}: must be a positive integer ({type(cfg).__name__})")


def _check_classes_and_rates(cfg) -> None:
    """num_classes >= 0 (0: no head, a feature extractor), positive image sizes, drop rates in [0, 1)."""
    if isinstance(cfg.num_classes, bool) or not isinstance(cfg.num_classes, int) or cfg.num_classes < 0:
        raise ValueError(f"num_classes={cfg.num_classes!r}: must be >= 1 for a classifier (0 builds a model "
                         "without a head)")
    size = tuple(cfg.img_size) if isinstance(cfg.img_size, (tuple, list)) else (cfg.img_size,)
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in size):
        raise ValueError(f"img_size={cfg.img_size!r}: must be (height, width) in positive pixels")
    for key in ("dropout", "attn_dropout", "drop_path", "patch_drop"):
        value = getattr(cfg, key, 0.0)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{key}={value}: must lie in [0, 1)")


@dataclass(frozen=True)
class ViTConfig:
    """The Vision Transformer of Eq. 1-4. Defaults: ViT-B/16 at 224 px (Table 1)."""

    img_size: tuple[int, int] = (224, 224)
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 1000
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    pos_embed: str = "1d"            # none | 1d | 2d | relative (App. D.4)
    pos_embed_placement: str = "stem"  # stem | every_layer | every_layer_shared (App. D.4, Table 8 columns)
    pool: str = "cls"                # cls | gap (App. D.3)
    representation_size: Optional[int] = None  # tanh pre-logits at pre-training
    dropout: float = 0.0             # 0.1 for ImageNet pre-training (App. B)
    attn_dropout: float = 0.0
    drop_path: float = 0.0           # not in the paper; later ViT recipes use it
    # Not in the paper: the fraction of patch tokens dropped at random in training (PatchDropout, Liu et al. 2022;
    # FLIP, Li et al. 2023), a saving of compute per step; evaluation sees every token.
    patch_drop: float = 0.0
    layer_norm_eps: float = 1e-6     # as in the official code and timm

    def __post_init__(self):
        for key in ("patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_dim"):
            _check_positive(self, key)
        _check_classes_and_rates(self)
        if self.representation_size is not None and self.representation_size <= 0:
            raise ValueError(f"representation_size={self.representation_size}: must be positive, or None for no "
                             "pre-logits layer")
        if self.pos_embed not in POS_EMBED_KINDS:
            raise ValueError(f"pos_embed={self.pos_embed!r}; choose one of {POS_EMBED_KINDS}")
        if self.pool not in POOL_KINDS:
            raise ValueError(f"pool={self.pool!r}; choose one of {POOL_KINDS}")
        if self.pos_embed_placement not in POS_EMBED_PLACEMENTS:
            raise ValueError(f"pos_embed_placement={self.pos_embed_placement!r}; choose one of {POS_EMBED_PLACEMENTS}")
        if self.pos_embed_placement != "stem" and self.pos_embed not in ("1d", "2d"):
            raise ValueError(
                f"pos_embed_placement={self.pos_embed_placement!r} adds a learned table at every layer, which only "
                f"the '1d' and '2d' kinds have; pos_embed={self.pos_embed!r} needs pos_embed_placement='stem' "
                "(Table 8 has no such cell)")
        if self.patch_drop and (self.pos_embed == "relative" or self.pos_embed_placement != "stem"):
            raise ValueError(
                f"patch_drop={self.patch_drop} drops tokens after the position table of the stem is added; "
                f"pos_embed={self.pos_embed!r} with pos_embed_placement={self.pos_embed_placement!r} needs every "
                "token's grid position later on, so it cannot drop tokens (use pos_embed='1d'/'2d'/'none' at the stem)")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.pos_embed == "2d" and self.embed_dim % 2:
            raise ValueError("pos_embed='2d' needs an even embed_dim (X and Y tables of D/2 each)")


@dataclass(frozen=True)
class BiTConfig:
    """BiT ResNet-v2 (GroupNorm + Weight Standardization). Defaults: R50x1."""

    layers: tuple[int, ...] = (3, 4, 6, 3)
    width_factor: int = 1
    num_classes: int = 1000
    in_chans: int = 3
    img_size: tuple[int, int] = (224, 224)  # only recorded; the ResNet takes any size
    stem: str = "fixed"              # fixed (BiT: 7x7/2 + max-pool) | cifar (3x3/1, no pool)
    drop_path: float = 0.0

    def __post_init__(self):
        for key in ("width_factor", "in_chans"):
            _check_positive(self, key)
        if not self.layers or any(not isinstance(n, int) or n <= 0 for n in self.layers):
            raise ValueError(f"layers={self.layers!r}: blocks per stage must be positive integers, e.g. (3, 4, 6, 3)")
        _check_classes_and_rates(self)
        if self.stem not in ("fixed", "cifar"):
            raise ValueError(f"stem={self.stem!r}; choose 'fixed' (BiT) or 'cifar' (3x3 stride 1, for 32 px)")


@dataclass(frozen=True)
class HybridConfig(ViTConfig):
    """A ViT on a ResNet feature map (Sec. 3.1). Defaults: R50+ViT-B/16.

    Every ViT field means what it means for a ViT, except ``patch_size``: the
    patch size on the feature map (1 in every hybrid of the paper). So a hybrid's
    config is a ``ViTConfig`` with the ResNet stages added, and ``model.cfg`` of a
    hybrid is this whole config. ``backbone_layers`` are the ResNet stages kept;
    the paper's /16 hybrids drop stage 4 and move its blocks into stage 3, so
    R50's (3, 4, 6, 3) becomes (3, 4, 9), which gives a 14x14 map at 224 px; the
    /32 hybrids keep all four stages (a 7x7, 2048-channel map at 224 px).
    """

    patch_size: int = 1
    backbone_layers: tuple[int, ...] = (3, 4, 9)

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= len(self.backbone_layers) <= 4 or any(n <= 0 for n in self.backbone_layers):
            raise ValueError(f"backbone_layers={self.backbone_layers}: 1 to 4 ResNet stages of at least 1 block each")

    @property
    def backbone_stride(self) -> int:
        """Pixels per feature-map cell: stem stride 4, then x2 for every stage after the first."""
        return STEM_STRIDE * 2 ** (len(self.backbone_layers) - 1)


ModelConfig = Union[ViTConfig, BiTConfig, HybridConfig]

_VIT_RE = re.compile(r"^ViT-(?P<size>[A-Za-z]+)/(?P<patch>\d+)$")
_BIT_RE = re.compile(r"^R(?P<depth>\d+)x(?P<width>\d+)$")
_HYBRID_RE = re.compile(r"^R(?P<depth>\d+)\+ViT-(?P<size>[A-Za-z]+)/(?P<patch>\d+)$")

# Examples for error messages and docs; every size x patch combination parses.
EXAMPLE_NAMES = (
    "ViT-B/16", "ViT-L/16", "ViT-H/14", "ViT-B/32", "ViT-Ti/16", "ViT-S/16", "ViT-Ti/4", "ViT-XS/4",
    "R50x1", "R101x1", "R152x2", "R26x1", "R14x1",
    "R50+ViT-B/16", "R50+ViT-L/32", "R26+ViT-Ti/8", "R26+ViT-XS/4",
)


def to_2tuple(size: ImageSize) -> tuple[int, int]:
    """An int or (H, W) as an (H, W) tuple of ints."""
    if isinstance(size, int):
        return (size, size)
    size = tuple(size)
    if len(size) != 2 or not all(isinstance(s, int) for s in size):
        raise ValueError(f"image size must be an int or (height, width), got {size!r}")
    return size


def describe_variants() -> str:
    """A human-readable list of the valid model names, for error messages."""
    sizes = ", ".join(VIT_SIZES)
    depths = ", ".join(str(d) for d in RESNET_LAYERS)
    return (
        f"ViT-<size>/<patch> with size in {{{sizes}}} (e.g. ViT-B/16); "
        f"R<depth>x<width> with depth in {{{depths}}} (e.g. R50x1); "
        f"R<depth>+ViT-<size>/<patch> hybrids (e.g. R50+ViT-B/16). Examples: {', '.join(EXAMPLE_NAMES)}"
    )


def _vit_size(name: str, size: str) -> ViTSize:
    if size not in VIT_SIZES:
        raise ValueError(f"unknown ViT size {size!r} in {name!r}. Valid names: {describe_variants()}")
    return VIT_SIZES[size]


def _resnet_layers(name: str, depth: int) -> tuple[int, int, int, int]:
    if depth not in RESNET_LAYERS:
        raise ValueError(f"unknown ResNet depth {depth} in {name!r}. Valid names: {describe_variants()}")
    return RESNET_LAYERS[depth]


def hybrid_backbone_layers(depth_layers: tuple[int, int, int, int], patch: int) -> tuple[tuple[int, ...], int]:
    """Stages of the hybrid's ResNet and the patch size left for the ViT (Sec. 3.1; official
    vit_jax/configs/models.py).

    - /32 (and multiples): all four stages are kept and the ViT takes 1x1 patches of the stride-32,
      2048-channel stage-4 map (R26+ViT-S/32, R26+ViT-B/32, R50+ViT-L/32).
    - /16: the paper's R50 recipe, stage 4 dropped and its blocks added to stage 3, so (3, 4, 6, 3)
      becomes (3, 4, 9) and the ViT takes 1x1 patches of the stride-16 map (R50+ViT-B/16).
    - /8 and /4 (this project's small hybrids, not in the paper): the same folded stages cut to the
      first two or one, so that 32 px images still give a 4x4 or 8x8 map.
    """
    l1, l2, l3, l4 = depth_layers
    if patch % (STEM_STRIDE * 2 ** 3) == 0:  # stride 32: the four stages as they are
        return (l1, l2, l3, l4), patch // (STEM_STRIDE * 2 ** 3)
    folded = (l1, l2, l3 + l4)
    for n_stages in (3, 2, 1):
        stride = STEM_STRIDE * 2 ** (n_stages - 1)
        if patch % stride == 0:
            return folded[:n_stages], patch // stride
    raise ValueError(f"a hybrid's patch size must be a multiple of {STEM_STRIDE} (the ResNet stem's stride), got {patch}")


def parse_variant(name: str, *, num_classes: int = 1000, img_size: ImageSize = 224) -> ModelConfig:
    """The config of a named variant, with the paper's defaults for everything else."""
    img_size = to_2tuple(img_size)
    if m := _VIT_RE.match(name):
        size = _vit_size(name, m["size"])
        return ViTConfig(
            img_size=img_size, patch_size=int(m["patch"]), num_classes=num_classes,
            embed_dim=size.embed_dim, depth=size.depth, mlp_dim=size.mlp_dim, num_heads=size.num_heads,
        )
    if m := _BIT_RE.match(name):
        return BiTConfig(
            layers=_resnet_layers(name, int(m["depth"])), width_factor=int(m["width"]),
            num_classes=num_classes, img_size=img_size,
        )
    if m := _HYBRID_RE.match(name):
        size = _vit_size(name, m["size"])
        layers, vit_patch = hybrid_backbone_layers(_resnet_layers(name, int(m["depth"])), int(m["patch"]))
        return HybridConfig(
            img_size=img_size, patch_size=vit_patch, num_classes=num_classes, backbone_layers=layers,
            embed_dim=size.embed_dim, depth=size.depth, mlp_dim=size.mlp_dim, num_heads=size.num_heads,
        )
    raise ValueError(f"unknown model name {name!r}. Valid names: {describe_variants()}")


def apply_overrides(cfg: ModelConfig, overrides: dict) -> ModelConfig:
    """A copy of ``cfg`` with ``overrides`` applied; unknown keys are an error."""
    if not overrides:
        return cfg
    valid = _field_names(cfg)
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise TypeError(f"unknown override(s) {unknown} for {type(cfg).__name__}; valid: {sorted(valid)}")
    if "img_size" in overrides:
        overrides = {**overrides, "img_size": to_2tuple(overrides["img_size"])}
    _check_override_types(cfg, overrides)
    return dataclasses.replace(cfg, **overrides)


def _check_override_types(cfg: ModelConfig, overrides: dict) -> None:
    """A TypeError naming the key and the type its config field wants, for a value of another type (e.g.
    ``representation_size=1.5`` or ``"64"``), instead of an error deep inside the model's constructor."""
    hints = typing.get_type_hints(type(cfg))
    for key, value in overrides.items():
        hint = hints[key]
        optional = typing.get_origin(hint) is Union and type(None) in typing.get_args(hint)
        if optional:
            if value is None:
                continue
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        base = typing.get_origin(hint) or hint
        if base is int:
            ok, wanted = isinstance(value, int) and not isinstance(value, bool), "an integer"
        elif base is float:
            ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        elif base is str:
            ok, wanted = isinstance(value, str), "a string"
        elif base is tuple:
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            wanted = "a list of integers"
        else:
            continue
        if not ok:
            raise TypeError(f"model override {key}={value!r} ({type(value).__name__}): {key} must be {wanted}"
                            f"{' or None' if optional else ''} ({type(cfg).__name__})")


def _field_names(cfg) -> set[str]:
    return {f.name for f in dataclasses.fields(cfg)}

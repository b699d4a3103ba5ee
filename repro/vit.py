"""The Vision Transformer of Dosovitskiy et al., ICLR 2021 (arXiv 2010.11929).

Eq. 1: z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos   (patch embedding, class token, positions)
Eq. 2: z'_l = MSA(LN(z_{l-1})) + z_{l-1}                (pre-norm self-attention)
Eq. 3: z_l = MLP(LN(z'_l)) + z'_l                        (two layers, GELU, hidden 4D in Table 1)
Eq. 4: y = LN(z_L^0)                                     (class token output -> head)

The head is one hidden tanh layer at pre-training (``representation_size``) and
a single zero-initialised linear layer at fine-tuning (Sec. 3.1, 3.2).

Parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``,
``cls_token``, ``pos_embed``, ``blocks.N.attn.qkv`` ...) so that timm state dicts
load with ``strict=True`` and no renaming, and the official ``.npz`` maps onto
them one-to-one (``repro.checkpoints``).

Position embeddings (App. D.4, Table 8):
- ``"1d"``: a learned (N+1, D) table added to the tokens (the paper's default).
- ``"2d"``: learned X and Y tables of D/2 each; the patch at (row, col) gets
  concat(X[col], Y[row]). The class token gets its own learned D vector.
- ``"relative"``: 1-D relative attention. Patches are numbered in raster order
  and every offset j - i in [-(N-1), N-1] has a learned embedding; an extra
  attention of each query against the embedding of its offset to each key gives
  logits that are added to the content logits before the softmax (Shaw et al.
  2018, without the value term). The class token has no position: pairs with it
  use three extra learned embeddings, "class token queries itself", "class
  token queries a patch" and "a patch queries the class token" (App. D.4 does
  not say how the class token enters; this is our choice). Two entries in the
  class token's row, not one, so that each of them moves its attention (a single
  constant added to a softmax row would change nothing, and the last layer's
  table would get no gradient). Each layer and head has its own table.
- ``"none"``: no position information at all.

Where the absolute ("1d", "2d") embeddings are added (``pos_embed_placement``,
the columns of Table 8):
- ``"stem"``: once, to the input of the encoder (Eq. 1; the paper's default).
  Parameters ``pos_embed`` (or ``pos_embed_x`` / ``pos_embed_y`` /
  ``pos_embed_cls``) on the model, timm's names.
- ``"every_layer"``: a separate learned table added to the input of every
  block (``depth`` tables); block N owns its table as ``blocks.N.pos_embed``
  (or ``blocks.N.pos_embed_x`` ...), and the first block's plays the stem's role.
- ``"every_layer_shared"``: one learned table (the model's ``pos_embed``)
  added to the input of every block.

Departures from the paper, all deliberate:
- The official code initialises the patch embedding with LeCun normal and the
  Linear layers with Xavier uniform; we do the same, but that is the only
  "official" init detail we keep (biases of attention start at zero, MLP biases
  at N(0, 1e-6) as there).
- ``pool="gap"`` averages the patch tokens after the final LayerNorm and has no
  class token, as in the official code's ``classifier="gap"``.
- ``drop_path`` (stochastic depth) is not in the paper; it defaults to 0.
- ``patch_drop`` (timm's PatchDropout: a random fraction of the patch tokens is dropped in training) is not in the
  paper either; it defaults to 0. It buys steps per second (``benchmarks/time_to_accuracy.py``).
- Only image sizes divisible by the patch size are accepted (the official code
  silently drops the border); a different input size than the model was built
  for is an error rather than an on-the-fly resample: resample the position
  embeddings with ``repro.checkpoints`` instead (Sec. 3.2).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, PatchDropout, PatchEmbed
from torch import nn

from .config import ViTConfig


def check_image_size(img_size: tuple[int, int], patch_size: int) -> None:
    """Raise a ValueError naming the valid sizes when ``img_size`` is not a multiple of ``patch_size``."""
    bad = [s for s in img_size if s % patch_size or s <= 0]
    if bad:
        h, w = img_size
        near = sorted({max(patch_size, (s // patch_size) * patch_size) for s in (h, w)}
                      | {(s // patch_size + 1) * patch_size for s in (h, w)})
        raise ValueError(
            f"image size {h}x{w} is not divisible by the patch size {patch_size}: height and width must be "
            f"positive multiples of {patch_size} (nearest: {', '.join(map(str, near))})"
        )


def init_position_params(owner: nn.Module, cfg: ViTConfig, grid_size: tuple[int, int], class_token: bool) -> None:
    """Register the learned absolute position table(s) of ``cfg.pos_embed`` on ``owner`` (the model or a block).

    "1d": ``pos_embed`` (1, N [+1], D). "2d": ``pos_embed_x`` (1, gw, D/2), ``pos_embed_y`` (1, gh, D/2) and,
    with a class token, ``pos_embed_cls`` (1, 1, D). Other kinds register nothing.
    """
    D = cfg.embed_dim
    gh, gw = grid_size
    if cfg.pos_embed == "1d":
        owner.pos_embed = nn.Parameter(torch.randn(1, gh * gw + int(class_token), D) * 0.02)
    elif cfg.pos_embed == "2d":
        owner.pos_embed_x = nn.Parameter(torch.randn(1, gw, D // 2) * 0.02)  # one per column
        owner.pos_embed_y = nn.Parameter(torch.randn(1, gh, D // 2) * 0.02)  # one per row
        if class_token:
            owner.pos_embed_cls = nn.Parameter(torch.randn(1, 1, D) * 0.02)


def position_table(owner: nn.Module, cfg: ViTConfig, grid_size: tuple[int, int], class_token: bool
                   ) -> Optional[torch.Tensor]:
    """The absolute table that ``init_position_params`` registered on ``owner``, as (1, T, D); None if none."""
    if cfg.pos_embed == "1d":
        return owner.pos_embed
    if cfg.pos_embed == "2d":
        gh, gw = grid_size
        half = cfg.embed_dim // 2
        x_part = owner.pos_embed_x[:, None, :, :].expand(1, gh, gw, half)  # (1, gh, gw, D/2)
        y_part = owner.pos_embed_y[:, :, None, :].expand(1, gh, gw, half)
        grid = torch.cat([x_part, y_part], dim=-1).reshape(1, gh * gw, 2 * half)  # (1, N, D)
        if class_token:
            grid = torch.cat([owner.pos_embed_cls, grid], dim=1)
        return grid
    return None


def relative_offset_index(grid_size: tuple[int, int], class_token: bool) -> torch.Tensor:
    """Index into the relative-position table for every (query, key) pair, shape (T, T).

    Patches are numbered in raster order; the pair (i, j) of patches uses entry
    (j - i) + N - 1, so there are 2N - 1 patch offsets. With a class token
    (token 0): the class token querying itself uses entry 2N - 1, querying a
    patch entry 2N, and a patch querying the class token entry 2N + 1.
    """
    n = grid_size[0] * grid_size[1]
    pos = torch.arange(n)
    index = pos[None, :] - pos[:, None] + n - 1  # (N, N), values in [0, 2N-2]
    if class_token:
        index = F.pad(index, (1, 0, 1, 0), value=2 * n + 1)  # patch -> class token
        index[0, 1:] = 2 * n                                 # class token -> patch
        index[0, 0] = 2 * n - 1                              # class token -> itself
    return index


class Attention(nn.Module):
    """Multi-head self-attention (Eq. 2's MSA), with optional 1-D relative position logits."""

    def __init__(self, cfg: ViTConfig, grid_size: tuple[int, int]):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.embed_dim // cfg.num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(cfg.embed_dim, 3 * cfg.embed_dim)
        self.attn_drop = cfg.attn_dropout
        self.proj = nn.Linear(cfg.embed_dim, cfg.embed_dim)
        self.proj_drop = nn.Dropout(cfg.dropout)
        if cfg.pos_embed == "relative":
            class_token = cfg.pool == "cls"
            index = relative_offset_index(grid_size, class_token)
            num_offsets = 2 * grid_size[0] * grid_size[1] - 1 + (3 if class_token else 0)
            # (num_offsets, heads, head_dim): one embedding per offset and head
            self.rel_pos_table = nn.Parameter(torch.randn(num_offsets, self.num_heads, self.head_dim) * 0.02)
            self.register_buffer("rel_pos_index", index, persistent=False)
        else:
            self.rel_pos_table = None

    def relative_logits(self, q: torch.Tensor) -> torch.Tensor:
        """q (B, H, T, Dh) -> the position logits q_i . r_{offset(i, j)}, shape (B, H, T, T), unscaled."""
        by_offset = torch.einsum("bhtd,ohd->bhto", q, self.rel_pos_table.to(q.dtype))  # (B, H, T, O)
        index = self.rel_pos_index.expand(q.shape[0], q.shape[1], -1, -1)              # (B, H, T, T)
        return torch.gather(by_offset, 3, index)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        B, T, D = x.shape
        qkv = self.qkv(x).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, H, T, Dh)
        bias = None
        if self.rel_pos_table is not None:
            bias = self.relative_logits(q) * self.scale  # (B, H, T, T), same scale as the content logits
        drop = self.attn_drop if self.training else 0.0
        if return_attention:
            logits = (q * self.scale) @ k.transpose(-2, -1)  # (B, H, T, T)
            if bias is not None:
                logits = logits + bias
            weights = logits.softmax(dim=-1)
            out = F.dropout(weights, drop, self.training) @ v
        else:
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, T, D)))
        return out, weights


class Block(nn.Module):
    """One pre-norm encoder block: Eq. 2 then Eq. 3."""

    def __init__(self, cfg: ViTConfig, grid_size: tuple[int, int]):
        super().__init__()
        if cfg.pos_embed_placement == "every_layer":
            # This block's own position table; the model adds it to the block's input (VisionTransformer.encode).
            init_position_params(self, cfg, grid_size, class_token=cfg.pool == "cls")
        self.norm1 = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg, grid_size)
        self.norm2 = nn.LayerNorm(cfg.embed_dim, eps=cfg.layer_norm_eps)
        self.mlp = Mlp(cfg.embed_dim, hidden_features=cfg.mlp_dim, act_layer=nn.GELU, drop=cfg.dropout)
        self.drop_path = DropPath(cfg.drop_path) if cfg.drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        attn_out, weights = self.attn(self.norm1(x), return_attention)
        x = x + self.drop_path(attn_out)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, weights


class VisionTransformer(nn.Module):
    """ViT per Eq. 1-4; see the module docstring for the options and departures.

    ``patch_embed`` may be given to replace the linear patch projection with
    another module that maps (B, C, H, W) images to (B, N, D) tokens and has a
    ``grid_size`` attribute: that is how the hybrid is built (``repro.hybrid``).
    """

    def __init__(self, cfg: ViTConfig, patch_embed: Optional[nn.Module] = None):
        super().__init__()
        self.cfg = cfg
        check_image_size(cfg.img_size, cfg.patch_size)
        D = cfg.embed_dim
        if patch_embed is None:
            # A stride-P convolution is exactly the linear map E of flattened P x P patches (Eq. 1).
            patch_embed = PatchEmbed(cfg.img_size, cfg.patch_size, cfg.in_chans, D, strict_img_size=False)
        self.patch_embed = patch_embed
        self.grid_size: tuple[int, int] = tuple(patch_embed.grid_size)
        # Pixels per token side: the patch size, or backbone stride x patch size for a hybrid.
        self.patch_pixels = cfg.img_size[0] // self.grid_size[0]
        self.num_prefix_tokens = 1 if cfg.pool == "cls" else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D)) if cfg.pool == "cls" else None

        if cfg.pos_embed_placement != "every_layer":  # stem, or the one table shared by every layer
            init_position_params(self, cfg, self.grid_size, class_token=self.cls_token is not None)
        self.pos_drop = nn.Dropout(cfg.dropout)
        # timm's PatchDropout keeps the class token and a random (1 - patch_drop) of the patch tokens, in training only.
        self.patch_drop = (PatchDropout(cfg.patch_drop, num_prefix_tokens=self.num_prefix_tokens)
                           if cfg.patch_drop else nn.Identity())
        self.blocks = nn.Sequential(*[Block(cfg, self.grid_size) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(D, eps=cfg.layer_norm_eps)
        if cfg.representation_size:
            self.pre_logits = nn.Sequential()
            self.pre_logits.add_module("fc", nn.Linear(D, cfg.representation_size))
            self.pre_logits.add_module("act", nn.Tanh())
            head_in = cfg.representation_size
        else:
            self.pre_logits = nn.Identity()
            head_in = D
        self.head = nn.Linear(head_in, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.init_weights()

    @property
    def num_features(self) -> int:
        """Width of the representation that the head reads (few-shot probes use it)."""
        return self.cfg.representation_size or self.cfg.embed_dim

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialisation of the official code: Xavier-uniform Linear, LeCun-normal patch embedding, zero head."""
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if name.endswith("attn.qkv"):
                    # The official code has separate q, k, v kernels of (D, D): Xavier each, not the fused (3D, D).
                    for part in module.weight.chunk(3, dim=0):
                        nn.init.xavier_uniform_(part)
                else:
                    nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    if ".mlp." in f".{name}.":
                        nn.init.normal_(module.bias, std=1e-6)
                    else:
                        nn.init.zeros_(module.bias)
        proj = getattr(self.patch_embed, "proj", None)
        if isinstance(proj, nn.Conv2d):
            fan_in = proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]
            nn.init.trunc_normal_(proj.weight, std=math.sqrt(1.0 / fan_in))
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)
        if isinstance(self.head, nn.Linear):
            self.zero_head()

    @torch.no_grad()
    def zero_head(self) -> None:
        """Zero the classifier, as the paper does for a fresh fine-tuning head (Sec. 3.2)."""
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def reset_head(self, num_classes: int) -> None:
        """Replace the classifier by a zero-initialised one with ``num_classes`` outputs."""
        device = self.norm.weight.device
        self.head = nn.Linear(self.num_features, num_classes, device=device) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            self.zero_head()
        self.cfg = dataclasses.replace(self.cfg, num_classes=num_classes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError unless ``x`` is a (B, C, H, W) batch of the size this model was built for."""
        if x.ndim != 4:
            raise ValueError(f"expected images of shape (batch, {self.cfg.in_chans}, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected float images normalised to [-1, 1], got {x.dtype}: convert uint8 images with "
                             "repro.data.normalize(x)")
        weight_dtype = next(self.parameters()).dtype
        if x.dtype != weight_dtype and not torch.is_autocast_enabled(x.device.type):
            raise ValueError(f"the images are {x.dtype} but the model's weights are {weight_dtype}: convert them "
                             f"with x.to({weight_dtype}) (or the model with model.to({x.dtype}))")
        if x.shape[1] != self.cfg.in_chans:
            raise ValueError(f"expected {self.cfg.in_chans} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        size = tuple(x.shape[-2:])
        if size != tuple(self.cfg.img_size):
            check_image_size(size, self.patch_pixels)
            h, w = self.cfg.img_size
            raise ValueError(
                f"this model was built for {h}x{w} images, got {size[0]}x{size[1]}; build it with "
                f"img_size={size} and load the weights with repro.checkpoints (position embeddings are resampled)"
            )

    def position_embedding(self, layer: Optional[int] = None) -> Optional[torch.Tensor]:
        """An absolute position table, (1, T, D), or None ("none" / "relative").

        ``layer`` picks block ``layer``'s own table with ``pos_embed_placement="every_layer"``
        (default: the first block's); the stem and shared placements have one table and ignore it.
        """
        if self.cfg.pos_embed_placement == "every_layer":
            owner = self.blocks[layer or 0]
        else:
            owner = self
        return position_table(owner, self.cfg, self.grid_size, self.cls_token is not None)

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters that are not decayed (timm's convention): tokens and position tables."""
        return {name for name, _ in self.named_parameters()
                if name.split(".")[-1] in ("cls_token", "pos_embed", "pos_embed_x", "pos_embed_y", "pos_embed_cls",
                                           "rel_pos_table")}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> patch tokens (B, N, D), before class token and positions."""
        self.check_input(x)
        return self.patch_embed(x)

    def add_prefix_and_positions(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, N, D) -> z_0 of Eq. 1, (B, T, D) with T = N + 1 (cls) or N (gap); in training with
        ``patch_drop``, T counts only the patch tokens kept."""
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        if self.cfg.pos_embed_placement == "stem":
            pos = self.position_embedding()
            if pos is not None:
                tokens = tokens + pos
        return self.patch_drop(self.pos_drop(tokens))

    def encode(self, z: torch.Tensor, return_attention: bool = False):
        """z_0 (B, T, D) -> LN(z_L) (B, T, D), and the per-layer attention weights if asked.

        With ``pos_embed_placement`` "every_layer" or "every_layer_shared" a position table is added to
        the input of every block here (App. D.4).
        """
        attentions = []
        every_layer = self.cfg.pos_embed_placement != "stem"
        for layer, block in enumerate(self.blocks):
            if every_layer:
                z = z + self.position_embedding(layer)  # (B, T, D) + (1, T, D)
            z, weights = block(z, return_attention)
            if return_attention:
                attentions.append(weights)
        return self.norm(z), attentions

    def forward_features(self, x: torch.Tensor, return_attention: bool = False):
        """Images -> final normalised tokens (B, T, D) (and attention weights when asked)."""
        z, attentions = self.encode(self.add_prefix_and_positions(self.embed(x)), return_attention)
        return (z, attentions) if return_attention else z

    def pool(self, z: torch.Tensor) -> torch.Tensor:
        """Tokens (B, T, D) -> image representation (B, D): class token output or mean of patches."""
        return z[:, 0] if self.cfg.pool == "cls" else z.mean(dim=1)

    def forward_head(self, z: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens (B, T, D) -> logits (B, K), or the representation before the classifier."""
        rep = self.pre_logits(self.pool(z))
        return rep if pre_logits else self.head(rep)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        """Images (B, C, H, W) -> logits (B, K); with ``return_attention`` also a list of
        per-layer attention weights, each (B, heads, T, T)."""
        if return_attention:
            z, attentions = self.forward_features(x, return_attention=True)
            return self.forward_head(z), attentions
        return self.forward_head(self.forward_features(x))

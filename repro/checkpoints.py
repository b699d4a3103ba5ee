"""Checkpoints: timm state dicts, the official ``.npz`` layout, safetensors and the project's own format.

Loading follows one path for every source (timm's ``checkpoint_filter_fn``,
big_vision's ``load``):

    read the file  ->  filter_state_dict (pure)  ->  model.load_state_dict(strict=True)

``filter_state_dict`` renames the official google-research/vision_transformer
arrays to our (timm's) parameter names, resamples position embeddings when the
checkpoint was trained at another resolution (Sec. 3.2: "2D interpolation of the
pre-trained position embeddings"), drops the pre-logits layer when the model has
none (Sec. 3.1: it is removed for fine-tuning) and, when asked, replaces a head
with another number of classes by a zero-initialised one (Sec. 3.2). Every
missing, unexpected or misshapen parameter is a :class:`CheckpointError` that
names the keys and both shapes.

Formats, detected from the file's bytes rather than its name:

- ``"official-npz"``: the ``.npz`` of google-research/vision_transformer (ViT and
  the R50 hybrids), optionally under ``opt/target/`` (their training checkpoints).
- ``"torch"``: a state dict saved with ``torch.save`` (timm's, ours, possibly
  nested under ``state_dict`` or ``model``); read with ``weights_only=True`` so no
  code in the pickle runs.
- ``"safetensors"``: a state dict in safetensors (timm / Hugging Face hub files).
- ``"repro"``: this project's own ``<name>.safetensors`` + ``<name>.json`` pair
  written by :func:`save_checkpoint`; :func:`load_model` rebuilds the model from
  the JSON alone.

Position embeddings reach another grid as in the official loader: bilinear with
corners aligned (``scipy.ndimage.zoom(order=1)``), class token kept apart;
bicubic is an option (``resample="bicubic"``; see ``repro.pos_embed``).

Departure from the official loader: a head of the wrong size is an error unless
``num_classes_mismatch="reset"`` (timm silently keeps its random head).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Union

import numpy as np
import torch
from safetensors.torch import load_file as _load_safetensors
from safetensors.torch import save_file as _save_safetensors
from torch import nn

from .fileio import atomic_write
from .config import BiTConfig, HybridConfig, ModelConfig, ViTConfig
from .models import build_model
from .pos_embed import DEFAULT_RESAMPLE, resample_abs_pos_embed, resample_axis_table

PathLike = Union[str, os.PathLike]
Grid = tuple[int, int]

FORMATS = ("official-npz", "torch", "safetensors", "repro")
OWN_FORMAT_NAME = "repro"
OWN_FORMAT_VERSION = 1
DEFAULT_STEM = "model"  # file stem used when save_checkpoint is given a directory
_OFFICIAL_PREFIXES = ("opt/target/",)
_MAX_LISTED = 20  # keys listed in an error message before "... and N more"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or does not fit the model (keys and shapes named)."""


@dataclass
class LoadReport:
    """What :func:`load_checkpoint` did to make a checkpoint fit the model."""

    path: str
    format: str                          # one of FORMATS
    resampled: Optional[tuple[Grid, Grid]] = None  # (checkpoint grid, model grid) of the position embeddings
    head_reset: bool = False             # the checkpoint's head was replaced by a zero head
    dropped: list[str] = field(default_factory=list)  # checkpoint keys not loaded (pre-logits, old head, ...)
    missing: list[str] = field(default_factory=list)  # model keys left as they were (only with strict=False)
    notes: list[str] = field(default_factory=list)    # one line per decision, for logs


# ----------------------------------------------------------------------------------------------
# The official layout <-> our names
# ----------------------------------------------------------------------------------------------

class _Rule(NamedTuple):
    official: str  # template with {b} (encoder block), {s} (ResNet stage), {u} (unit), {r} (conv 1-3)
    ours: str
    layout: str    # raw | conv | dense | attn_out: how the array is laid out differently


# official index = our index + offset: the official ResNet counts stages and units from 1.
_INDEX_OFFSET = {"b": 0, "r": 0, "s": 1, "u": 1}


def _affine(official: str, ours: str, norm: str = "scale") -> list[_Rule]:
    """LayerNorm / GroupNorm: official ``scale``/``bias`` are torch ``weight``/``bias``, same shape (C,)."""
    return [_Rule(f"{official}/{norm}", f"{ours}.weight", "raw"), _Rule(f"{official}/bias", f"{ours}.bias", "raw")]


def _linear(official: str, ours: str, layout: str = "dense") -> list[_Rule]:
    return [_Rule(f"{official}/kernel", f"{ours}.weight", layout), _Rule(f"{official}/bias", f"{ours}.bias", "raw")]


_BLOCK = "Transformer/encoderblock_{b}"
_UNIT = "block{s}/unit{u}"
_BACKBONE = "patch_embed.backbone"
_RULES: list[_Rule] = [
    _Rule("cls", "cls_token", "raw"),                                            # (1, 1, D)
    _Rule("Transformer/posembed_input/pos_embedding", "pos_embed", "raw"),       # (1, N+1, D)
    *_linear("embedding", "patch_embed.proj", layout="conv"),                    # (P, P, C, D) HWIO
    *_affine("Transformer/encoder_norm", "norm"),
    *_affine(f"{_BLOCK}/LayerNorm_0", "blocks.{b}.norm1"),
    *_affine(f"{_BLOCK}/LayerNorm_2", "blocks.{b}.norm2"),
    *_linear(f"{_BLOCK}/MultiHeadDotProductAttention_1/out", "blocks.{b}.attn.proj", layout="attn_out"),
    *_linear(f"{_BLOCK}/MlpBlock_3/Dense_0", "blocks.{b}.mlp.fc1"),
    *_linear(f"{_BLOCK}/MlpBlock_3/Dense_1", "blocks.{b}.mlp.fc2"),
    *_linear("pre_logits", "pre_logits.fc"),
    *_linear("head", "head"),
    # The hybrid's ResNet (official models_resnet.py; timm ResNetV2 with preact=False).
    _Rule("conv_root/kernel", f"{_BACKBONE}.stem.conv.weight", "conv"),
    *_affine("gn_root", f"{_BACKBONE}.stem.norm"),
    _Rule(f"{_UNIT}/conv{{r}}/kernel", f"{_BACKBONE}.stages.{{s}}.blocks.{{u}}.conv{{r}}.weight", "conv"),
    *_affine(f"{_UNIT}/gn{{r}}", f"{_BACKBONE}.stages.{{s}}.blocks.{{u}}.norm{{r}}"),
    _Rule(f"{_UNIT}/conv_proj/kernel", f"{_BACKBONE}.stages.{{s}}.blocks.{{u}}.downsample.conv.weight", "conv"),
    *_affine(f"{_UNIT}/gn_proj", f"{_BACKBONE}.stages.{{s}}.blocks.{{u}}.downsample.norm"),
]
# The official code keeps query, key and value as three Dense layers with kernels (D, H, Dh) and
# biases (H, Dh); timm and we fuse them into one qkv Linear of weight (3D, D).
_QKV_RE = re.compile(r"Transformer/encoderblock_(\d+)/MultiHeadDotProductAttention_1/(query|key|value)/(kernel|bias)")
_OUR_QKV_RE = re.compile(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)")


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"\{(\w)\}", template)  # literal, name, literal, name, ...
    return re.compile("".join(re.escape(p) if i % 2 == 0 else rf"(?P<{p}>\d+)" for i, p in enumerate(parts)))


_COMPILED = [(rule, _template_regex(rule.official), _template_regex(rule.ours)) for rule in _RULES]


def _fill(template: str, match: re.Match, sign: int) -> str:
    return template.format(**{k: int(v) + sign * _INDEX_OFFSET[k] for k, v in match.groupdict().items()})


def _to_ours(layout: str, a: torch.Tensor) -> torch.Tensor:
    if layout == "conv":      # HWIO -> OIHW
        return a.permute(3, 2, 0, 1)
    if layout == "dense":     # (in, out) -> (out, in)
        return a.T
    if layout == "attn_out":  # (H, Dh, D) -> (D, H*Dh)
        return a.reshape(-1, a.shape[-1]).T
    return a


def _to_official(layout: str, t: torch.Tensor, num_heads: int) -> torch.Tensor:
    if layout == "conv":      # OIHW -> HWIO
        return t.permute(2, 3, 1, 0)
    if layout == "dense":
        return t.T
    if layout == "attn_out":  # (D, H*Dh) -> (H, Dh, D)
        return t.T.reshape(num_heads, -1, t.shape[0])
    return t


def is_official_layout(keys) -> bool:
    """True when the keys are the official Flax names (``a/b/c``) rather than torch names (``a.b.c``)."""
    return any("/" in k for k in keys)


def _strip_official_prefix(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only the model parameters of a training checkpoint (``opt/target/...``; ``opt/state`` is the optimizer)."""
    for prefix in _OFFICIAL_PREFIXES:
        if any(k.startswith(prefix) for k in arrays):
            return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    return dict(arrays)


def npz_to_state_dict(arrays: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The official ``.npz`` arrays (name -> array) as a state dict with our (timm's) names and layouts.

    Pure: the input is not modified and the output tensors own their memory.
    Arrays whose names match no rule are passed on under their own name, so that
    the strict load reports them as unexpected keys.
    """
    arrays = _strip_official_prefix(arrays)
    keys = list(arrays)
    if any(k.startswith("params/") for k in keys) or "pos_embedding" in arrays or any(
            k.startswith("Transformer/encoderblock/") for k in keys):
        raise CheckpointError(
            "this looks like a big_vision checkpoint (scanned layers / 'params/' / top-level 'pos_embedding'); "
            "only the google-research/vision_transformer .npz layout is supported")
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    for name in keys:
        a = torch.from_numpy(np.array(arrays[name]))  # np.array: a writable copy that torch may own
        if m := _QKV_RE.fullmatch(name):
            qkv.setdefault((int(m[1]), m[3]), {})[m[2]] = a
            continue
        for rule, official_re, _ in _COMPILED:
            if m := official_re.fullmatch(name):
                out[_fill(rule.ours, m, -1)] = _to_ours(rule.layout, a).contiguous()
                break
        else:
            out[name] = a
    for (block, kind), parts in sorted(qkv.items()):
        if set(parts) != {"query", "key", "value"}:
            raise CheckpointError(f"encoder block {block} has {sorted(parts)} {kind}s but needs query, key and value")
        if kind == "kernel":  # each (D, H, Dh) -> (H*Dh, D); stacked (3*H*Dh, D)
            fused = torch.cat([parts[n].reshape(parts[n].shape[0], -1).T for n in ("query", "key", "value")])
            out[f"blocks.{block}.attn.qkv.weight"] = fused.contiguous()
        else:                 # each (H, Dh) -> (H*Dh,)
            out[f"blocks.{block}.attn.qkv.bias"] = torch.cat([parts[n].reshape(-1) for n in ("query", "key", "value")])
    return out


def state_dict_to_npz(state_dict: Mapping[str, torch.Tensor], num_heads: int) -> dict[str, np.ndarray]:
    """Our state dict in the official ``.npz`` layout: the inverse of :func:`npz_to_state_dict`.

    Raises a CheckpointError for parameters the official layout has no place for
    (2-D or relative position tables, the BiT ResNet's names, ...).
    """
    out: dict[str, np.ndarray] = {}
    unsupported = []
    for name, t in state_dict.items():
        t = t.detach().cpu().float()
        if m := _OUR_QKV_RE.fullmatch(name):
            block, kind = m[1], m[2]
            prefix = f"Transformer/encoderblock_{block}/MultiHeadDotProductAttention_1"
            for part, chunk in zip(("query", "key", "value"), t.chunk(3, dim=0)):
                if kind == "weight":  # (H*Dh, D) -> (D, H, Dh)
                    arr = chunk.T.reshape(chunk.shape[1], num_heads, -1)
                else:                 # (H*Dh,) -> (H, Dh)
                    arr = chunk.reshape(num_heads, -1)
                out[f"{prefix}/{part}/{'kernel' if kind == 'weight' else 'bias'}"] = arr.numpy().copy()
            continue
        for rule, _, ours_re in _COMPILED:
            if m := ours_re.fullmatch(name):
                out[_fill(rule.official, m, +1)] = _to_official(rule.layout, t, num_heads).contiguous().numpy().copy()
                break
        else:
            unsupported.append(name)
    if unsupported:
        raise CheckpointError(
            f"the official .npz layout has no place for {_list(unsupported)}; only ViTs with 1-D position "
            "embeddings and the R50-style hybrids can be exported")
    return out


# ----------------------------------------------------------------------------------------------
# The filter: any checkpoint's state dict -> exactly the model's keys and shapes
# ----------------------------------------------------------------------------------------------

def _list(keys, limit: int = _MAX_LISTED) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def _shape(t) -> tuple[int, ...]:
    return tuple(t.shape)


def _strip_module_prefix(sd: dict) -> dict:
    # DistributedDataParallel and torch.compile wrap the model and prefix every key.
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _square_grid(num_patches: int, what: str) -> Grid:
    side = math.isqrt(num_patches)
    if side * side != num_patches:
        raise CheckpointError(
            f"{what}: {num_patches} patch positions are not a square grid, so the checkpoint's grid cannot be "
            "inferred (does the checkpoint's pooling, class token or not, match the model's?)")
    return side, side


def _position_owners(keys, leaf: str) -> list[str]:
    """Key prefixes ("" for the model, "blocks.3." for a block) that own a parameter named ``leaf``."""
    return sorted(k[: -len(leaf)] for k in keys if k == leaf or k.endswith("." + leaf))


def _resample_positions(sd: dict, target: Mapping[str, torch.Tensor], model: nn.Module, prefix: int,
                        method: str) -> Optional[tuple[Grid, Grid]]:
    """Bring the checkpoint's position tables to the model's grid in place; returns (old grid, new grid) or None.

    Every absolute table is resampled: the input one (``pos_embed``, or ``pos_embed_x``/``_y`` for 2-D) and
    the per-block ones of ``pos_embed_placement="every_layer"`` (``blocks.N.pos_embed...``).
    ``prefix``: class-token rows at the start of the checkpoint's 1-D tables (1 when it has a ``cls_token``).
    """
    new_grid = tuple(getattr(model, "grid_size", ()))
    resampled = None
    common = set(sd) & set(target)
    # 1-D tables (1, prefix + gh*gw, D): the class token's row is not a position on the grid, keep it apart.
    for owner in _position_owners(common, "pos_embed"):
        key = owner + "pos_embed"
        old, new = sd[key], target[key]
        if _shape(old) == _shape(new):
            continue
        # A width or pooling mismatch is not a resolution change: the shape / key checks name it.
        if old.ndim == 3 and old.shape[-1] == new.shape[-1] and prefix == getattr(model, "num_prefix_tokens", 0):
            old_grid = _square_grid(old.shape[1] - prefix, f"{key} {_shape(old)}")
            sd[key] = resample_abs_pos_embed(old, old_grid, new_grid, num_prefix_tokens=prefix, method=method)
            resampled = (old_grid, new_grid)
    # 2-D tables: X (1, gw, D/2) and Y (1, gh, D/2) are 1-D functions of the column / row, resample each alone.
    for owner in _position_owners(common, "pos_embed_x"):
        kx, ky = owner + "pos_embed_x", owner + "pos_embed_y"
        if ky not in common:
            continue
        old_grid = (sd[ky].shape[1], sd[kx].shape[1])
        if old_grid != new_grid and all(sd[k].ndim == 3 and sd[k].shape[-1] == target[k].shape[-1] for k in (kx, ky)):
            # An axis that keeps its length keeps its table bit for bit.
            sd[ky] = resample_axis_table(sd[ky], new_grid[0], method)
            sd[kx] = resample_axis_table(sd[kx], new_grid[1], method)
            resampled = (old_grid, new_grid)
    # Relative tables index offsets of raster-order positions; they have no meaning on another grid.
    for key in sorted(k for k in sd if k.endswith("attn.rel_pos_table") and k in target):
        old, new = sd[key], target[key]
        if old.ndim == new.ndim == 3 and old.shape[0] != new.shape[0] and old.shape[1:] == new.shape[1:]:
            raise CheckpointError(
                f"{key}: checkpoint {_shape(old)} vs model {_shape(new)}: 1-D relative position tables "
                f"(one row per raster-order offset, 2N-1 of them) cannot be resampled to another grid "
                f"(model grid {new_grid[0]}x{new_grid[1]}); fine-tune at the checkpoint's resolution instead")
    return resampled


def _filter(state_dict: Mapping[str, Any], model: nn.Module, num_classes_mismatch: str,
            strict: bool, resample: str = DEFAULT_RESAMPLE) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The work of :func:`filter_state_dict`; also returns what it did (the fields of a LoadReport)."""
    if num_classes_mismatch not in ("error", "reset"):
        raise ValueError(f"num_classes_mismatch={num_classes_mismatch!r}; choose 'error' or 'reset'")
    done: dict[str, Any] = dict(resampled=None, head_reset=False, dropped=[], missing=[], notes=[])
    sd = dict(state_dict)
    if is_official_layout(sd):
        sd = npz_to_state_dict(sd)
    sd = _strip_module_prefix(sd)
    not_tensors = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"not a state dict: the values of {_list(not_tensors)} are not tensors")
    target = model.state_dict()

    # The paper removes the tanh pre-logits layer for fine-tuning (Sec. 3.1).
    pre_logits = sorted(k for k in sd if k.startswith("pre_logits.") and k not in target)
    if pre_logits and not any(k.startswith("pre_logits.") for k in target):
        for k in pre_logits:
            del sd[k]
        done["dropped"] += pre_logits
        done["notes"].append("dropped the checkpoint's pre-logits layer: the model has none (Sec. 3.1, fine-tuning)")

    # Head: a checkpoint for another label set has a head of another shape.
    ckpt_head = {k: sd[k] for k in sd if k.startswith("head.")}
    model_head = {k: target[k] for k in target if k.startswith("head.")}
    head_differs = set(ckpt_head) != set(model_head) or any(
        _shape(v) != _shape(model_head[k]) for k, v in ckpt_head.items())
    # "reset": fine-tuning starts from a zero head whatever the checkpoint's (Sec. 3.2); this is the one place
    # a loaded model's head is zeroed. "error": only a head of another shape is a problem.
    if num_classes_mismatch == "reset" or (head_differs and ckpt_head):
        def describe(head):
            return ", ".join(f"{k} {_shape(v)}" for k, v in sorted(head.items())) or "no head"

        body = [k for k in set(sd) & set(target)
                if not k.startswith("head.") and _shape(sd[k]) != _shape(target[k]) and "pos_embed" not in k]
        if num_classes_mismatch == "error" and (body or set(sd) - set(target) - set(ckpt_head)):
            # The head differs because the whole network does: resetting the head would not help.
            raise CheckpointError(
                "the checkpoint is of another architecture than the model (not only another class count): "
                + (f"shapes differ in {_list([f'{k} {_shape(sd[k])} vs {_shape(target[k])}' for k in sorted(body)], 5)}"
                   if body else f"unexpected keys {_list(sorted(set(sd) - set(target) - set(ckpt_head)), 5)}")
                + "; build the model that was saved (repro.checkpoints.load_model rebuilds it from a repro checkpoint)")
        if num_classes_mismatch == "error":
            counts = {n: next((v.shape[0] for k, v in h.items() if k.endswith("bias")), 0)
                      for n, h in (("checkpoint", ckpt_head), ("model", model_head))}
            raise CheckpointError(
                f"the checkpoint's head does not fit the model: {counts['checkpoint']} classes in the checkpoint "
                f"({describe(ckpt_head)}) vs {counts['model']} in the model ({describe(model_head)}); pass "
                "num_classes_mismatch='reset' to start from a zero-initialised head (Sec. 3.2)")
        for k in ckpt_head:
            del sd[k]
        done["dropped"] += sorted(ckpt_head)
        # A fresh fine-tuning head is zero (Sec. 3.2), whatever the model's head held before.
        sd.update({k: torch.zeros_like(v) for k, v in model_head.items()})
        done["head_reset"] = True
        done["notes"].append(f"replaced the checkpoint's head ({describe(ckpt_head)}) by a zero head "
                             f"({describe(model_head)})")

    ckpt_prefix = 1 if "cls_token" in sd else 0  # before unexpected keys (a cls_token the model lacks) go
    # Names first: a missing or unexpected key is a clearer message than a resampling failure it causes.
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    if strict and (missing or unexpected):
        raise CheckpointError(
            "the checkpoint's keys do not match the model's (a checkpoint of another architecture?):"
            + (f"\n  missing in the checkpoint: {_list(missing)}" if missing else "")
            + (f"\n  unexpected in the checkpoint: {_list(unexpected)}" if unexpected else ""))
    for k in unexpected:
        del sd[k]
    done["dropped"] += unexpected
    done["missing"] = missing

    done["resampled"] = _resample_positions(sd, target, model, ckpt_prefix, resample)
    if done["resampled"]:
        (oh, ow), (nh, nw) = done["resampled"]
        done["notes"].append(f"resampled the position embeddings from a {oh}x{ow} to a {nh}x{nw} grid ({resample})")

    wrong = [(k, _shape(sd[k]), _shape(target[k])) for k in sd if _shape(sd[k]) != _shape(target[k])]
    if wrong:
        lines = [f"  {k}: checkpoint {a} vs model {b}" for k, a, b in wrong[:_MAX_LISTED]]
        more = f"\n  ... and {len(wrong) - _MAX_LISTED} more" if len(wrong) > _MAX_LISTED else ""
        raise CheckpointError("the checkpoint's shapes do not match the model's (a checkpoint of another "
                              "architecture or size?):\n" + "\n".join(lines) + more)
    return sd, done


def filter_state_dict(state_dict: Mapping[str, Any], model: nn.Module, *, num_classes_mismatch: str = "error",
                      strict: bool = True, resample: str = DEFAULT_RESAMPLE) -> dict[str, torch.Tensor]:
    """Any supported checkpoint's arrays -> a state dict with exactly ``model``'s keys and shapes.

    Pure (neither input is modified). In order: official ``.npz`` names and layouts
    are converted; ``module.`` prefixes are removed; a pre-logits layer the model
    lacks is dropped; a head of another shape raises, and
    ``num_classes_mismatch="reset"`` substitutes zeros of the model's head shape
    for any checkpoint head (a fresh fine-tuning head, Sec. 3.2); 1-D position embeddings are resampled to the model's grid
    (``resample``: "bilinear", the official ``scipy.ndimage.zoom(order=1)``, or
    "bicubic"; class-token row kept apart), 2-D X/Y tables along their one axis,
    per-layer tables each alike, and relative tables of another grid raise. With ``strict`` any missing or
    unexpected key raises; without, unexpected keys are dropped. A shape that still
    differs raises. All errors are :class:`CheckpointError` naming keys and shapes.
    """
    return _filter(state_dict, model, num_classes_mismatch, strict, resample)[0]


# ----------------------------------------------------------------------------------------------
# Reading files
# ----------------------------------------------------------------------------------------------

def _sniff(path: Path) -> str:
    """The file's format from its first bytes (names lie: a timm ``.pth`` and an ``.npz`` are both zip files)."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile as e:
            raise CheckpointError(f"{path}: looks like a zip file but cannot be opened: {e}") from e
        if any(n.endswith("data.pkl") for n in names):
            return "torch"      # torch.save's zip container
        if names and all(n.endswith(".npy") for n in names):
            # Every official array sits under a scope ("embedding/kernel", "Transformer/..."): an .npz without one
            # is some other numpy archive, said here rather than as a key mismatch after it is read.
            if not any("/" in n for n in names):
                raise CheckpointError(
                    f"{path}: an .npz file, but not a ViT checkpoint: its arrays ({_list([n[:-4] for n in names], 5)}) "
                    "have none of the official google-research/vision_transformer names (e.g. embedding/kernel, "
                    "Transformer/encoderblock_0/...)")
            return "official-npz"
    elif head[:1] == b"\x80":  # a bare pickle: torch.save(..., _use_new_zipfile_serialization=False)
        return "torch"
    elif len(head) >= 9 and head[8:9] == b"{":
        # safetensors: an 8-byte little-endian header length, then the JSON header, then the tensors.
        header_len = int.from_bytes(head[:8], "little")
        size = path.stat().st_size
        if 0 < header_len < 100_000_000:
            _check_safetensors_length(path, header_len, size)
            return "safetensors"
    raise CheckpointError(
        f"{path}: unknown checkpoint format (first bytes {head[:8]!r}); expected the official .npz, a state dict "
        "saved with torch.save, a .safetensors file, or this project's <name>.safetensors + <name>.json")


def _check_safetensors_length(path: Path, header_len: int, size: int) -> None:
    """Raise a CheckpointError when the file is shorter than its header says (a cut-off download or copy)."""
    truncated = CheckpointError(
        f"{path}: truncated safetensors file ({size} bytes, but its header describes more); download or copy it "
        "again, or re-save it")
    if 8 + header_len > size:
        raise truncated
    with open(path, "rb") as f:
        f.seek(8)
        try:
            header = json.loads(f.read(header_len))
        except ValueError as e:
            raise CheckpointError(f"{path}: corrupt safetensors header ({e}); download or copy it again") from None
    ends = [t["data_offsets"][1] for k, t in header.items()
            if k != "__metadata__" and isinstance(t, dict) and "data_offsets" in t]
    if 8 + header_len + max(ends, default=0) > size:
        raise truncated


def _unwrap(obj: Any, path: Path) -> dict:
    """The state dict inside a pickled training checkpoint ({'state_dict': ...} or {'model': ...})."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return dict(obj)
    for key in ("state_dict", "model"):
        if isinstance(obj.get(key), Mapping):
            return _unwrap(obj[key], path)
    raise CheckpointError(f"{path}: a dict with keys {_list(list(obj), 10)} but no state dict in it "
                          "(looked for tensors at the top level, under 'state_dict' and under 'model')")


def _sidecar_json(weights: Path) -> Path:
    return weights.with_name(weights.name[: -len(".safetensors")] + ".json") if weights.name.endswith(
        ".safetensors") else weights.with_name(weights.name + ".json")


def resolve_checkpoint_path(path: PathLike) -> Path:
    """The weights file for a path that may name a file, our checkpoint's directory, base name or JSON."""
    p = Path(path)
    if p.is_dir():
        p = p / f"{DEFAULT_STEM}.safetensors"
    elif p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    elif not p.exists() and Path(f"{p}.safetensors").exists():
        p = Path(f"{p}.safetensors")
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (looked for {p})")
    return p


def _read_own_meta(weights: Path) -> Optional[dict]:
    js = _sidecar_json(weights)
    if not js.is_file():
        return None
    meta = json.loads(js.read_text())
    return meta if isinstance(meta, dict) and meta.get("format") == OWN_FORMAT_NAME else None


def read_checkpoint(path: PathLike) -> tuple[dict[str, Any], str]:
    """Read a checkpoint file without a model: (name -> tensor or array, format).

    The official ``.npz`` comes back as numpy arrays under its own names; pickles
    are read with ``torch.load(weights_only=True)`` and unwrapped from
    ``state_dict``/``model``. ``path`` may also be a directory or base name
    written by :func:`save_checkpoint`.
    """
    p = resolve_checkpoint_path(path)
    fmt = _sniff(p)
    def unreadable(e: BaseException) -> CheckpointError:
        first = str(e).splitlines()[0] if str(e) else ""
        return CheckpointError(f"{p}: a {fmt} file that cannot be read, it is truncated or corrupt "
                               f"({type(e).__name__}: {first}); download or copy it again, or re-save it")

    if fmt == "official-npz":
        try:
            with np.load(p, allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}, fmt
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise unreadable(e) from None
    if fmt == "safetensors":
        try:
            arrays = _load_safetensors(str(p), device="cpu")
        except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError for a bad file
            raise unreadable(e) from None
        return arrays, (OWN_FORMAT_NAME if _read_own_meta(p) else fmt)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e).lower() and "unsupported global" not in str(e).lower():
            raise unreadable(e) from None
        raise CheckpointError(
            f"{path}: the pickle holds objects other than tensors and plain containers, and is not loaded "
            "(weights_only=True, so that no code in a checkpoint runs). Re-save just the state dict: "
            f"torch.save(model.state_dict(), path). torch said: {str(e).splitlines()[0]}") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise unreadable(e) from None
    return _unwrap(obj, p), fmt


def load_checkpoint(model: nn.Module, path: PathLike, *, num_classes_mismatch: str = "error",
                    strict: bool = True, resample: str = DEFAULT_RESAMPLE) -> LoadReport:
    """Load a checkpoint of any supported format into ``model`` (in place) and say what was adapted.

    ``num_classes_mismatch``: ``"error"`` (default) raises when the checkpoint's head
    has another shape; ``"reset"`` gives the model a zero head whatever the
    checkpoint's (fine-tuning, Sec. 3.2). ``strict=False`` tolerates missing and unexpected
    keys (listed in the report); shapes must always match after the filter.
    ``resample``: how position embeddings reach another grid ("bilinear", the
    official code's, or "bicubic"; see ``repro.pos_embed``).
    Raises :class:`CheckpointError` for anything that does not fit.
    """
    arrays, fmt = read_checkpoint(path)
    sd, done = _filter(arrays, model, num_classes_mismatch, strict, resample)
    model.load_state_dict(sd, strict=strict)
    return LoadReport(path=str(path), format=fmt, **done)


# ----------------------------------------------------------------------------------------------
# Writing: our own format, and the official layout
# ----------------------------------------------------------------------------------------------

_CONFIG_TYPES: dict[str, type] = {c.__name__: c for c in (ViTConfig, BiTConfig, HybridConfig)}


def model_config(model: nn.Module) -> ModelConfig:
    """The config that rebuilds ``model`` with :func:`repro.models.build_model`, as it is now."""
    cfg = getattr(model, "cfg", None)  # every model of create_model keeps its whole config, head included
    if isinstance(cfg, (ViTConfig, BiTConfig)):
        return cfg
    raise CheckpointError(f"{type(model).__name__} has no repro config (.cfg); build it with repro.create_model")


def _config_from_json(type_name: str, data: Mapping[str, Any]) -> ModelConfig:
    if type_name not in _CONFIG_TYPES:
        raise CheckpointError(f"unknown config type {type_name!r}; expected one of {sorted(_CONFIG_TYPES)}")
    cls = _CONFIG_TYPES[type_name]
    if type_name == "HybridConfig" and isinstance(data.get("vit"), Mapping):
        # Written before a hybrid's config became a ViTConfig with ResNet stages: {"backbone_layers", "vit": {...}}.
        data = {**data["vit"], "backbone_layers": data["backbone_layers"]}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise CheckpointError(f"{type_name} has no field(s) {unknown}: was this saved by a newer version?")

    def to_tuple(v):  # JSON has no tuples; every sequence field of our configs is a tuple
        return tuple(to_tuple(x) for x in v) if isinstance(v, list) else v

    return cls(**{k: to_tuple(v) for k, v in data.items()})


def _base_path(path: PathLike) -> Path:
    p = Path(path)
    if p.is_dir() or str(path).endswith(("/", os.sep)):
        p.mkdir(parents=True, exist_ok=True)
        return p / DEFAULT_STEM
    for suffix in (".safetensors", ".json"):
        if p.name.endswith(suffix):
            p = p.with_name(p.name[: -len(suffix)])
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def save_checkpoint(model: nn.Module, path: PathLike, *, extra: Optional[dict] = None) -> Path:
    """Save ``model`` as ``<path>.safetensors`` (weights) + ``<path>.json`` (config); returns the weights path.

    ``path`` is a base name (a ``.safetensors``/``.json`` suffix is ignored) or a
    directory (files ``model.*`` inside). The JSON holds the config dataclass and
    its type, ``variant_name`` and ``extra`` (anything JSON-serialisable: step,
    metrics, ...). Both files are written atomically, weights first, so a JSON
    beside a weights file means the pair is complete.
    """
    base = _base_path(path)
    cfg = model_config(model)
    meta = {
        "format": OWN_FORMAT_NAME,
        "version": OWN_FORMAT_VERSION,
        "config_type": type(cfg).__name__,
        "config": dataclasses.asdict(cfg),
        "variant_name": getattr(model, "variant_name", None),
        "extra": extra or {},
    }
    text = json.dumps(meta, indent=2)  # fails here, before anything is written, if extra is not JSON
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = Path(f"{base}.safetensors")
    atomic_write(weights, lambda tmp: _save_safetensors(tensors, tmp, metadata={"format": "pt"}))
    # The weights' digest beside them: a run initialised from these weights is named by it (repro.train
    # identity), so runs that start from them stay findable where the weights are not kept (committed results).
    meta["weights_sha256"] = weights_digest(weights)
    text = json.dumps(meta, indent=2)
    atomic_write(Path(f"{base}.json"), lambda tmp: Path(tmp).write_text(text))
    return weights


DIGEST_CHARS = 16  # hex characters of a SHA-256 kept as a weights file's identity


def weights_digest(path: PathLike) -> str:
    """The first ``DIGEST_CHARS`` hex characters of the SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:DIGEST_CHARS]


def recorded_weights_digest(path: PathLike) -> Optional[str]:
    """The digest that ``save_checkpoint`` recorded in the JSON beside a weights file (``<base>.json``), even
    when the weights themselves are gone; None when there is none."""
    p = Path(path)
    meta = (p / f"{DEFAULT_STEM}.json") if p.is_dir() else p.with_name(p.name.removesuffix(".safetensors") + ".json")
    try:
        return json.loads(meta.read_text()).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        return None


def check_checkpoint_file(path: PathLike) -> str:
    """That ``path`` names a checkpoint of a known format, from its first bytes (and a zip's names), without
    reading the weights; returns the format. FileNotFoundError or CheckpointError naming the file otherwise."""
    return _sniff(resolve_checkpoint_path(path))


def load_checkpoint_meta(path: PathLike) -> dict:
    """The JSON written by :func:`save_checkpoint` (format, config, variant_name, extra)."""
    weights = resolve_checkpoint_path(path)
    meta = _read_own_meta(weights)
    if meta is None:
        _sniff(weights)  # a file that is no checkpoint at all (a random .npz, garbage) is named as such first
        raise CheckpointError(f"{path}: no {_sidecar_json(weights).name} of this project's format beside "
                              f"{weights.name}; load the weights into a model with load_checkpoint instead")
    return meta


def load_model(path: PathLike) -> nn.Module:
    """Rebuild a model saved by :func:`save_checkpoint` from its JSON config and load its weights (strict)."""
    meta = load_checkpoint_meta(path)
    if meta.get("version", 0) > OWN_FORMAT_VERSION:
        raise CheckpointError(f"{path}: format version {meta['version']} is newer than this code's "
                              f"{OWN_FORMAT_VERSION}")
    model = build_model(_config_from_json(meta["config_type"], meta["config"]))
    if meta.get("variant_name"):
        model.variant_name = meta["variant_name"]
    load_checkpoint(model, resolve_checkpoint_path(path))
    return model


def save_official_npz(model: nn.Module, path: PathLike) -> Path:
    """Write ``model``'s weights in the official google-research/vision_transformer ``.npz`` layout.

    Supports ViTs with 1-D position embeddings (class token or GAP) and the
    R50-style hybrids; others raise a CheckpointError. The file is written
    atomically; returns its path.
    """
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, ViTConfig) or cfg.pos_embed != "1d" or cfg.pos_embed_placement != "stem":
        raise CheckpointError("the official .npz layout holds only ViTs and hybrids with 1-D position embeddings "
                              f"added at the stem, not {type(model).__name__} with {cfg!r}")
    arrays = state_dict_to_npz(model.state_dict(), cfg.num_heads)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object, so that numpy does not append ".npz" to the name
            np.savez(f, **arrays)

    atomic_write(path, write)
    return path

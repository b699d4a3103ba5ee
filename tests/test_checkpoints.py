"""Checkpoints: timm and official-layout parity, position-embedding resampling, our own format, clear errors.

Every checkpoint here is written by the test from random weights (no network):
timm state dicts via torch.save / safetensors, the official .npz through
``save_official_npz`` and read back both by us and by timm's own ``_load_weights``.
"""
import argparse
import json
from functools import partial

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from timm.layers import HybridEmbed, StdConv2dSame
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import VisionTransformer as TimmViT
from timm.models.vision_transformer import _load_weights as timm_load_npz

from repro import create_model
from repro.checkpoints import (
    CheckpointError, filter_state_dict, load_checkpoint, load_checkpoint_meta, load_model, npz_to_state_dict,
    model_config, read_checkpoint, save_checkpoint, save_official_npz,
)
from repro.config import ViTConfig
from repro.models import build_model

ATOL = 1e-5
TINY = dict(img_size=32, num_classes=10)


def _perturb(model, seed=0, scale=0.05):
    """Move every parameter (head included, which starts at zero) off its initial value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def _logits(model, x):
    with torch.no_grad():
        return model.eval()(x)


def _max_err(a, b, x):
    ya, yb = _logits(a, x), _logits(b, x)
    assert ya.abs().max() > 0.1, "near-zero logits would make the comparison vacuous"
    return (ya - yb).abs().max().item()


@pytest.fixture
def x32():
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))


# --- parity with timm state dicts --------------------------------------------------------------

@pytest.mark.parametrize("container", ["torch", "torch-legacy", "torch-nested", "safetensors"])
def test_timm_state_dict_round_trip(tmp_path, x32, container):
    torch.manual_seed(0)
    reference = _perturb(TimmViT(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, num_classes=10))
    sd = reference.state_dict()
    path = tmp_path / "timm.bin"
    if container == "torch":
        torch.save(sd, path)
    elif container == "torch-legacy":  # the pre-1.6 bare pickle
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    elif container == "torch-nested":  # timm's training checkpoints: {'state_dict': ..., 'epoch': ...}
        torch.save({"state_dict": sd, "epoch": 3, "arch": "vit_tiny"}, path)
    else:
        save_file({k: v.contiguous() for k, v in sd.items()}, path)
    ours = build_model(ViTConfig(img_size=(32, 32), patch_size=8, embed_dim=64, depth=2, num_heads=2,
                                 mlp_dim=256, num_classes=10))
    report = load_checkpoint(ours, path)
    assert report.format == ("safetensors" if container == "safetensors" else "torch")
    assert report.resampled is None and not report.head_reset and report.dropped == []
    err = _max_err(reference, ours, x32)
    print(f"timm state dict ({container}) -> ours: max abs logit error {err:.2e}")
    assert err < ATOL


# --- the official .npz layout, checked against timm's own npz loader ------------------------------

def _timm_hybrid_reference(layers, img_size):
    """timm's ViT on a timm ResNetV2, set up as timm's vit_*_r26_s* hybrids (and repro/hybrid.py)."""
    backbone = ResNetV2(layers=list(layers), num_classes=0, global_pool="", preact=False, stem_type="same",
                        conv_layer=partial(StdConv2dSame, eps=1e-8))
    return TimmViT(img_size=img_size, patch_size=1, embed_dim=64, depth=4, num_heads=2, mlp_ratio=2,
                   num_classes=10, embed_layer=partial(HybridEmbed, backbone=backbone))


@pytest.mark.parametrize("name,timm_model,size", [
    ("ViT-XXS/8", lambda: TimmViT(img_size=32, patch_size=8, embed_dim=64, depth=4, num_heads=2, mlp_ratio=2,
                                  num_classes=10), 32),
    # /16: stage 4 folded into stage 3, (2, 2, 4); 1024 channels on a stride-16 map.
    ("R26+ViT-XXS/16", lambda: _timm_hybrid_reference((2, 2, 4), 32), 32),
    # /32: all four stages, (2, 2, 2, 2); 2048 channels on a stride-32 map (2x2 at 64 px).
    ("R26+ViT-XXS/32", lambda: _timm_hybrid_reference((2, 2, 2, 2), 64), 64),
])
def test_official_npz_parity_with_timm_loader(tmp_path, name, timm_model, size):
    torch.manual_seed(0)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    tiny = dict(img_size=size, num_classes=10)
    source = _perturb(create_model(name, **tiny))
    path = save_official_npz(source, tmp_path / "official.npz")
    with np.load(path) as npz:  # spot-check that the file really is in the official layout
        assert npz["Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"].shape == (64, 2, 32)
        assert npz["Transformer/encoderblock_0/MultiHeadDotProductAttention_1/out/kernel"].shape == (2, 32, 64)
        assert npz["Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel"].shape == (64, 128)
        if name.startswith("R26"):
            assert npz["conv_root/kernel"].shape == (7, 7, 3, 64)
            assert npz["block1/unit1/conv_proj/kernel"].shape == (1, 1, 64, 256)
            channels = 2048 if name.endswith("/32") else 1024
            assert npz["embedding/kernel"].shape == (1, 1, channels, 64)
            assert ("block4/unit2/conv3/kernel" in npz.files) == name.endswith("/32")
        else:
            assert npz["embedding/kernel"].shape == (8, 8, 3, 64)

    arrays, fmt = read_checkpoint(path)
    assert fmt == "official-npz" and all(isinstance(a, np.ndarray) for a in arrays.values())
    ours = create_model(name, **tiny)
    report = load_checkpoint(ours, path)
    assert report.format == "official-npz" and report.resampled is None
    reference = timm_model()
    timm_load_npz(reference, str(path))
    err_ours = _max_err(source, ours, x)
    err_timm = _max_err(reference, ours, x)
    print(f"{name}: official npz -> ours {err_ours:.2e}; timm _load_weights vs ours {err_timm:.2e}")
    assert err_ours < ATOL and err_timm < ATOL


def test_official_training_checkpoint_prefix_and_pre_logits(tmp_path, x32):
    """Keys under opt/target/ (optimizer state beside them is ignored); a pre-logits layer the
    fine-tuning model lacks is dropped and reported (Sec. 3.1)."""
    torch.manual_seed(0)
    source = _perturb(create_model("ViT-XXS/8", representation_size=64, **TINY))
    plain = tmp_path / "plain.npz"
    save_official_npz(source, plain)
    with np.load(plain) as npz:
        arrays = {f"opt/target/{k}": npz[k] for k in npz.files}
        assert npz["pre_logits/kernel"].shape == (64, 64)
    arrays["opt/state/step"] = np.array(7)
    prefixed = tmp_path / "prefixed.npz"
    np.savez(prefixed, **arrays)

    same = create_model("ViT-XXS/8", representation_size=64, **TINY)
    load_checkpoint(same, prefixed)
    assert _max_err(source, same, x32) < ATOL

    finetune = create_model("ViT-XXS/8", **TINY)
    report = load_checkpoint(finetune, prefixed)
    assert report.dropped == ["pre_logits.fc.bias", "pre_logits.fc.weight"]
    assert any("pre-logits" in n for n in report.notes)
    assert torch.equal(finetune.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


# --- position-embedding resampling (Sec. 3.2) ---------------------------------------------------

@pytest.mark.parametrize("fmt", ["torch", "official-npz"])
@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_pos_embed_resampled_to_a_larger_grid(tmp_path, fmt, pool):
    torch.manual_seed(0)
    small = _perturb(create_model("ViT-XXS/8", pool=pool, **TINY))
    prefix = small.num_prefix_tokens
    const = torch.randn(small.cfg.embed_dim)
    with torch.no_grad():
        small.pos_embed[:, prefix:] = const  # a constant grid must stay constant under interpolation
    path = tmp_path / "small.bin"
    torch.save(small.state_dict(), path) if fmt == "torch" else save_official_npz(small, path)

    large = create_model("ViT-XXS/8", pool=pool, img_size=64, num_classes=10)
    report = load_checkpoint(large, path)
    assert report.format == fmt and report.resampled == ((4, 4), (8, 8))
    assert large.pos_embed.shape == (1, 64 + prefix, 64)
    if prefix:
        assert torch.equal(large.pos_embed[:, 0], small.pos_embed[:, 0]), "class-token row must be kept apart"
    assert torch.allclose(large.pos_embed[0, prefix:], const.expand(64, -1), atol=1e-5)
    assert torch.equal(large.blocks[1].mlp.fc2.weight, small.blocks[1].mlp.fc2.weight)
    assert _logits(large, torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_pos_embed_resampling_interpolates_a_ramp():
    """A table that grows linearly along the columns keeps growing monotonically, row by row."""
    small = create_model("ViT-XXS/8", **TINY)
    sd = small.state_dict()
    ramp = torch.arange(4.0).repeat(4)[:, None].expand(16, 64)  # value = column index
    sd["pos_embed"] = torch.cat([sd["pos_embed"][:, :1], ramp[None]], dim=1)
    large = create_model("ViT-XXS/8", img_size=64, num_classes=10)
    out = filter_state_dict(sd, large)["pos_embed"][0, 1:, 0].reshape(8, 8)
    assert (out.diff(dim=1) > 0).all() and torch.allclose(out, out[:1].expand(8, -1), atol=1e-5)


def test_2d_tables_resampled_along_their_axis(tmp_path):
    torch.manual_seed(0)
    small = _perturb(create_model("ViT-XXS/8", pos_embed="2d", **TINY))
    with torch.no_grad():  # constant tables must stay constant when resampled
        small.pos_embed_x.fill_(0.25)
        small.pos_embed_y.fill_(-0.5)
    save_checkpoint(small, tmp_path / "small")
    large = create_model("ViT-XXS/8", pos_embed="2d", img_size=(64, 32), num_classes=10)
    report = load_checkpoint(large, tmp_path / "small")
    assert report.format == "repro" and report.resampled == ((4, 4), (8, 4))
    assert large.pos_embed_y.shape == (1, 8, 32) and large.pos_embed_x.shape == (1, 4, 32)
    assert torch.equal(large.pos_embed_x, small.pos_embed_x)  # the width did not change
    assert torch.equal(large.pos_embed_cls, small.pos_embed_cls)
    assert torch.allclose(large.pos_embed_y, torch.full((1, 8, 32), -0.5), atol=1e-6)
    wide = create_model("ViT-XXS/8", pos_embed="2d", img_size=(32, 64), num_classes=10)
    assert load_checkpoint(wide, tmp_path / "small").resampled == ((4, 4), (4, 8))
    assert torch.equal(wide.pos_embed_y, small.pos_embed_y)
    assert torch.allclose(wide.pos_embed_x, torch.full((1, 8, 32), 0.25), atol=1e-6)


def test_relative_tables_of_another_grid_are_an_error(tmp_path):
    small = create_model("ViT-XXS/8", pos_embed="relative", **TINY)
    torch.save(small.state_dict(), tmp_path / "rel.pt")
    large = create_model("ViT-XXS/8", pos_embed="relative", img_size=64, num_classes=10)
    with pytest.raises(CheckpointError, match=r"rel_pos_table: checkpoint \(34, 2, 32\) vs model \(130, 2, 32\).*"
                                              r"cannot be resampled"):
        load_checkpoint(large, tmp_path / "rel.pt")


# --- our own format ----------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs,size", [
    ("ViT-XXS/8", {}, 32),
    ("ViT-XXS/8", dict(pos_embed="2d"), 32),
    ("ViT-XXS/8", dict(pool="gap", representation_size=16), 32),
    ("ViT-XXS/8", dict(pos_embed="relative", img_size=(32, 48)), (32, 48)),
    ("R14x1", dict(stem="cifar"), 32),
    ("R26+ViT-XXS/8", dict(pool="gap", pos_embed="2d"), 32),
])
def test_own_format_round_trip(tmp_path, name, kwargs, size):
    torch.manual_seed(0)
    kwargs = {"img_size": 32, "num_classes": 10, **kwargs}
    model = _perturb(create_model(name, **kwargs))
    weights = save_checkpoint(model, tmp_path / "run" / "last.safetensors", extra={"step": 5, "acc": 0.5})
    assert weights == tmp_path / "run" / "last.safetensors" and (tmp_path / "run" / "last.json").is_file()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last.json", "last.safetensors"]  # no temp left

    loaded = load_model(tmp_path / "run" / "last")
    assert type(loaded) is type(model) and loaded.variant_name == name and loaded.cfg == model.cfg
    h, w = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, 3, h, w)
    assert torch.equal(_logits(model, x), _logits(loaded, x))
    meta = load_checkpoint_meta(tmp_path / "run" / "last.json")
    assert meta["extra"] == {"step": 5, "acc": 0.5} and meta["variant_name"] == name


def test_own_format_in_a_directory_and_after_reset_head(tmp_path):
    model = _perturb(create_model("R26+ViT-XXS/8", **TINY))
    model.reset_head(3)
    save_checkpoint(model, f"{tmp_path}/ckpt/")  # a trailing slash (or an existing directory) means a directory
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
    meta = json.loads((tmp_path / "ckpt" / "model.json").read_text())
    assert meta["config_type"] == "HybridConfig" and meta["config"]["num_classes"] == 3
    loaded = load_model(tmp_path / "ckpt")
    assert loaded.head.out_features == 3 and model_config(loaded).backbone_layers == (2, 2)
    assert load_checkpoint(create_model("R26+ViT-XXS/8", img_size=32, num_classes=3), tmp_path / "ckpt").format \
        == "repro"


# --- errors: every one clear --------------------------------------------------------------------

def test_wrong_shape_names_key_and_both_shapes(tmp_path):
    torch.save(create_model("ViT-XXS/8", **TINY).state_dict(), tmp_path / "a.pt")
    wider_mlp = create_model("ViT-XXS/8", mlp_dim=256, **TINY)
    with pytest.raises(CheckpointError, match=r"blocks\.0\.mlp\.fc1\.weight: checkpoint \(128, 64\) vs model "
                                              r"\(256, 64\)"):
        load_checkpoint(wider_mlp, tmp_path / "a.pt")


def test_missing_and_unexpected_keys_are_named(tmp_path):
    torch.save(create_model("ViT-XXS/8", **TINY).state_dict(), tmp_path / "cls.pt")
    with pytest.raises(CheckpointError, match=r"unexpected in the checkpoint: cls_token"):
        load_checkpoint(create_model("ViT-XXS/8", pool="gap", **TINY), tmp_path / "cls.pt")
    with pytest.raises(CheckpointError, match=r"missing in the checkpoint: pre_logits\.fc\.weight"):
        load_checkpoint(create_model("ViT-XXS/8", representation_size=64, **TINY), tmp_path / "cls.pt")
    with pytest.raises(CheckpointError, match=r"pos_embed: checkpoint \(1, 17, 64\) vs model \(1, 16, 64\)"):
        load_checkpoint(create_model("ViT-XXS/8", pool="gap", **TINY), tmp_path / "cls.pt", strict=False)
    # strict=False: unexpected keys are dropped, missing ones keep the model's values; both are reported.
    sd = torch.load(tmp_path / "cls.pt", weights_only=True)
    sd["extra.weight"] = torch.zeros(3)
    del sd["norm.bias"]
    torch.save(sd, tmp_path / "partial.pt")
    report = load_checkpoint(create_model("ViT-XXS/8", **TINY), tmp_path / "partial.pt", strict=False)
    assert report.dropped == ["extra.weight"] and report.missing == ["norm.bias"]


def test_class_count_mismatch_raises_unless_reset(tmp_path):
    source = _perturb(create_model("ViT-XXS/8", **TINY))
    torch.save(source.state_dict(), tmp_path / "ten.pt")
    seven = create_model("ViT-XXS/8", img_size=32, num_classes=7)
    with pytest.raises(CheckpointError, match=r"10 classes in the checkpoint .*head\.weight \(10, 64\).* vs 7 in "
                                              r"the model.*num_classes_mismatch='reset'"):
        load_checkpoint(seven, tmp_path / "ten.pt")
    with torch.no_grad():
        seven.head.weight.fill_(1.0)  # whatever the head held, the reset head is zero
    report = load_checkpoint(seven, tmp_path / "ten.pt", num_classes_mismatch="reset")
    assert report.head_reset and report.dropped == ["head.bias", "head.weight"]
    assert seven.head.weight.abs().sum() == 0 and seven.head.bias.abs().sum() == 0
    assert torch.equal(seven.norm.weight, source.norm.weight)
    with pytest.raises(ValueError, match="choose 'error' or 'reset'"):
        load_checkpoint(seven, tmp_path / "ten.pt", num_classes_mismatch="ignore")


def test_unknown_file_format(tmp_path):
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        load_checkpoint(create_model("ViT-XXS/8", **TINY), tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(create_model("ViT-XXS/8", **TINY), tmp_path / "absent.npz")


_CODE_RAN = []


def _runs_on_unpickle():
    _CODE_RAN.append(True)


class _Payload:
    """Unpickling this calls a function: what a malicious checkpoint would do."""

    def __reduce__(self):
        return (_runs_on_unpickle, ())


def test_pickle_with_objects_fails_under_weights_only(tmp_path):
    sd = create_model("ViT-XXS/8", **TINY).state_dict()
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=0.1), "hook": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(create_model("ViT-XXS/8", **TINY), tmp_path / "evil.pth")
    assert not _CODE_RAN


def test_export_refuses_what_the_official_layout_cannot_hold(tmp_path):
    with pytest.raises(CheckpointError, match="1-D position embeddings"):
        save_official_npz(create_model("ViT-XXS/8", pos_embed="2d", **TINY), tmp_path / "a.npz")
    with pytest.raises(CheckpointError, match="1-D position embeddings"):
        save_official_npz(create_model("R14x1", **TINY), tmp_path / "b.npz")


def test_filter_is_pure():
    model = create_model("ViT-XXS/8", img_size=64, num_classes=10)
    sd = create_model("ViT-XXS/8", **TINY).state_dict()
    before = {k: v.clone() for k, v in sd.items()}
    out = filter_state_dict(sd, model)
    assert out["pos_embed"].shape == (1, 65, 64)
    assert sd.keys() == before.keys() and all(torch.equal(sd[k], before[k]) for k in sd)
    arrays = {"cls": np.zeros((1, 1, 4), np.float32)}
    assert set(npz_to_state_dict(arrays)) == {"cls_token"} and set(arrays) == {"cls"}


def test_model_cfg_is_the_whole_config_and_follows_the_head(tmp_path):
    """Hybrid and BiT keep their whole config as model.cfg (no side channels), also after reset_head."""
    from repro.config import BiTConfig, HybridConfig
    hybrid = create_model("R26+ViT-XXS/8", img_size=32, num_classes=10)
    assert isinstance(hybrid.cfg, HybridConfig) and hybrid.cfg.backbone_layers == (2, 2)
    bit = create_model("R14x1", img_size=32, num_classes=10)
    bit.reset_head(4)
    assert isinstance(bit.cfg, BiTConfig) and bit.cfg.num_classes == 4 and model_config(bit) is bit.cfg
    assert all(p.abs().sum() == 0 for p in bit.get_classifier().parameters())
    save_checkpoint(bit, tmp_path / "bit")
    assert load_model(tmp_path / "bit").cfg.num_classes == 4


def test_hybrid_json_of_the_earlier_nested_layout_still_loads(tmp_path):
    model = create_model("R26+ViT-XXS/8", img_size=32, num_classes=3)
    save_checkpoint(model, tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt.json").read_text())
    flat = meta["config"]
    meta["config"] = {"backbone_layers": flat.pop("backbone_layers"), "vit": flat}
    (tmp_path / "ckpt.json").write_text(json.dumps(meta))
    assert load_model(tmp_path / "ckpt").cfg == model.cfg


def test_reset_gives_a_zero_head_even_when_the_shapes_match(tmp_path):
    source = _perturb(create_model("ViT-XXS/8", **TINY))
    torch.save(source.state_dict(), tmp_path / "same.pt")
    target = create_model("ViT-XXS/8", **TINY)
    report = load_checkpoint(target, tmp_path / "same.pt", num_classes_mismatch="reset")
    assert report.head_reset and target.head.weight.abs().sum() == 0 and target.head.bias.abs().sum() == 0
    assert torch.equal(target.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)
    kept = create_model("ViT-XXS/8", **TINY)
    load_checkpoint(kept, tmp_path / "same.pt")  # "error" (default): a head that fits is loaded as it is
    assert torch.equal(kept.head.weight, source.head.weight)

"""Layer 1 and 2 of the test pyramid: every model runs forward/backward; sizes and parity with timm."""
import itertools

import pytest
import timm
import torch

from repro import create_model
from repro.config import parse_variant
from repro.vit import relative_offset_index

TINY_VIT = dict(img_size=32, num_classes=5)


def _forward_backward(model, x):
    logits = model(x)
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads), "some parameter got no gradient"
    assert all(torch.isfinite(g).all() for g in grads)
    return logits


@pytest.mark.parametrize("pos_embed,pool", list(itertools.product(["none", "1d", "2d", "relative"], ["cls", "gap"])))
def test_vit_every_pos_embed_and_pool(pos_embed, pool):
    torch.manual_seed(0)
    model = create_model("ViT-XXS/8", pos_embed=pos_embed, pool=pool, **TINY_VIT)
    x = torch.randn(2, 3, 32, 32)
    logits = _forward_backward(model, x)
    assert logits.shape == (2, 5)
    n_tokens = 16 + (1 if pool == "cls" else 0)
    model.eval()
    with torch.no_grad():
        out, attentions = model(x, return_attention=True)
        assert torch.allclose(out, model(x), atol=1e-5), "explicit attention path must match the SDPA path"
    assert len(attentions) == model.cfg.depth
    assert attentions[0].shape == (2, model.cfg.num_heads, n_tokens, n_tokens)
    assert torch.allclose(attentions[0].sum(-1), torch.ones(()), atol=1e-5)


def test_position_embedding_kinds_differ_in_what_they_know():
    """Without positions the model is permutation-equivariant over patches; with 1-D embeddings it is not."""
    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    # Swap two 8x8 patches: an order-blind model must give the same class-token output.
    swapped = x.clone()
    swapped[..., :8, :8], swapped[..., 24:, 24:] = x[..., 24:, 24:], x[..., :8, :8]
    outputs = {}
    for kind in ("none", "1d", "2d", "relative"):
        model = create_model("ViT-XXS/8", pos_embed=kind, representation_size=8, **TINY_VIT).eval()
        with torch.no_grad():
            outputs[kind] = (model.forward_head(model.forward_features(x), pre_logits=True),
                             model.forward_head(model.forward_features(swapped), pre_logits=True))
    assert torch.allclose(*outputs["none"], atol=1e-5)
    for kind in ("1d", "2d", "relative"):
        assert not torch.allclose(*outputs[kind], atol=1e-4), kind


def test_relative_offsets_are_translation_invariant():
    index = relative_offset_index((3, 3), class_token=True)  # (10, 10)
    assert index.shape == (10, 10)
    # The class token: itself, every patch, and every patch querying it each have an entry of their own.
    assert index[0, 0] == 2 * 9 - 1 and (index[0, 1:] == 2 * 9).all() and (index[1:, 0] == 2 * 9 + 1).all()
    patches = index[1:, 1:]
    # Same offset j - i -> same table entry, wherever the pair sits.
    assert patches[0, 1] == patches[4, 5] and patches[2, 0] == patches[8, 6]
    assert patches.min() == 0 and patches.max() == 16


@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_every_layers_relative_table_gets_a_gradient(pool):
    """No table is dead weight: with the class token read by the head, even the last layer's table moves the
    class token's attention (before, its row used one entry for every key, a constant under the softmax)."""
    torch.manual_seed(0)
    model = create_model("ViT-XXS/8", pos_embed="relative", pool=pool, num_classes=3, img_size=16)
    torch.nn.init.normal_(model.head.weight)  # the head starts at zero, which would stop every gradient behind it
    model(torch.randn(4, 3, 16, 16)).logsumexp(-1).sum().backward()
    for i, block in enumerate(model.blocks):
        assert block.attn.rel_pos_table.grad.abs().sum() > 0, f"layer {i}"


def test_rectangular_images():
    model = create_model("ViT-XXS/8", img_size=(16, 40), num_classes=3)
    assert model.grid_size == (2, 5)
    assert _forward_backward(model, torch.randn(2, 3, 16, 40)).shape == (2, 3)


@pytest.mark.parametrize("name,kwargs,shape", [
    ("R14x1", dict(img_size=64), (2, 3, 64, 64)),
    ("R14x1", dict(img_size=32, stem="cifar"), (2, 3, 32, 32)),
    ("R26+ViT-XXS/4", dict(img_size=32), (2, 3, 32, 32)),
    ("R26+ViT-XXS/8", dict(img_size=32, pool="gap", pos_embed="2d"), (2, 3, 32, 32)),
])
def test_bit_and_hybrid_forward_backward(name, kwargs, shape):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, **kwargs)
    assert _forward_backward(model, torch.randn(*shape)).shape == (2, 4)


def test_hybrid_grid_follows_the_paper():
    """R50 with stage 4 removed and stage 3 extended to 9 blocks: a 14x14 map at 224 px."""
    cfg = parse_variant("R50+ViT-B/16")
    assert cfg.backbone_layers == (3, 4, 9) and cfg.patch_size == 1
    with torch.device("meta"):
        model = create_model("R50+ViT-B/16")
    assert model.grid_size == (14, 14)


def test_hybrid_32_keeps_all_four_stages():
    """The /32 hybrids read 1x1 patches of the 2048-channel stride-32 stage-4 map (vit_jax configs/models.py)."""
    cfg = parse_variant("R50+ViT-L/32")
    assert cfg.backbone_layers == (3, 4, 6, 3) and cfg.patch_size == 1 and cfg.backbone_stride == 32
    assert parse_variant("R26+ViT-S/32").backbone_layers == (2, 2, 2, 2)
    with torch.device("meta"):
        model = create_model("R26+ViT-B/32")
    assert model.grid_size == (7, 7) and model.patch_embed.proj.in_channels == 2048


def test_hybrid_resnet_blocks_start_as_identity():
    """The last GroupNorm scale of every ResNet block starts at zero (official models_resnet.py)."""
    model = create_model("R26+ViT-XXS/16", img_size=32, num_classes=4)
    blocks = [b for stage in model.patch_embed.backbone.stages for b in stage.blocks]
    assert len(blocks) == 8
    assert all(b.norm3.weight.abs().sum() == 0 for b in blocks)
    assert all(b.norm1.weight.abs().sum() > 0 for b in blocks)


@pytest.mark.parametrize("name,expected", [
    ("ViT-B/16", 86_567_656),   # Table 1: 86M
    ("ViT-L/16", 304_326_632),  # Table 1: 307M
    ("ViT-H/14", 632_045_800),  # Table 1: 632M
    # Hybrids, counts of the official vit_jax/configs/models.py (and timm's vit_*_r*_s*_224).
    ("R50+ViT-B/16", 98_659_112),
    ("R26+ViT-S/32", 36_431_912),
    ("R26+ViT-B/32", 101_383_976),
    ("R50+ViT-L/32", 328_994_856),
])
def test_parameter_counts_match_timm(name, expected):
    with torch.device("meta"):  # counts without allocating 2.5 GB
        model = create_model(name, num_classes=1000, img_size=224)
    assert sum(p.numel() for p in model.parameters()) == expected


@pytest.mark.parametrize("timm_name,ours", [
    ("vit_base_patch16_224", "ViT-B/16"),
    ("vit_base_r50_s16_224", "R50+ViT-B/16"),
    ("resnetv2_50x1_bit", "R50x1"),
])
def test_parity_with_timm(timm_name, ours):
    """timm's (randomly initialised) weights load strictly and give the same logits."""
    torch.manual_seed(0)
    reference = timm.create_model(timm_name, pretrained=False, num_classes=1000).eval()
    model = create_model(ours, num_classes=1000, img_size=224).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        expected, got = reference(x), model(x)
    assert expected.abs().max() > 0.1, "a zero head would make the comparison vacuous"
    assert (got - expected).abs().max().item() < 1e-5


def test_fresh_head_is_zero_and_reset_keeps_it_zero():
    model = create_model("ViT-XXS/8", **TINY_VIT)
    assert model.head.weight.abs().sum() == 0
    model.reset_head(7)
    assert model.head.out_features == 7 and model.head.weight.abs().sum() == 0 and model.cfg.num_classes == 7


def test_pre_logits_layer_is_tanh():
    model = create_model("ViT-XXS/8", representation_size=12, **TINY_VIT)
    rep = model.forward_head(model.forward_features(torch.randn(2, 3, 32, 32)), pre_logits=True)
    assert rep.shape == (2, 12) and rep.abs().max() <= 1


# --- bad input: every one a clear error ---------------------------------------------------------

def test_image_size_not_divisible_by_patch():
    with pytest.raises(ValueError, match="not divisible by the patch size 16.*multiples of 16"):
        create_model("ViT-B/16", img_size=225)
    model = create_model("ViT-XXS/8", **TINY_VIT)
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        model(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match="built for 32x32 images, got 40x40"):
        model(torch.randn(1, 3, 40, 40))


def test_wrong_channel_count():
    model = create_model("ViT-XXS/8", **TINY_VIT)
    with pytest.raises(ValueError, match="expected 3 input channels, got 1"):
        model(torch.randn(1, 1, 32, 32))


def test_unknown_names_and_overrides():
    with pytest.raises(ValueError, match="unknown model name 'ViT-Q/16'|unknown ViT size"):
        create_model("ViT-Q/16")
    with pytest.raises(ValueError, match="Valid names: .*ViT-B/16"):
        create_model("resnet50")
    with pytest.raises(TypeError, match="unknown override.*'posembed'.*valid"):
        create_model("ViT-B/16", posembed="2d")
    with pytest.raises(ValueError, match="pos_embed='3d'"):
        create_model("ViT-XXS/8", pos_embed="3d", **TINY_VIT)


# --- where the position embedding is added (App. D.4, the columns of Table 8) ------------------------

@pytest.mark.parametrize("pos_embed,placement", [
    ("1d", "every_layer"), ("1d", "every_layer_shared"), ("2d", "every_layer"), ("2d", "every_layer_shared"),
])
def test_position_embedding_placements(pos_embed, placement, tmp_path):
    """Each Table 8 placement builds, trains one step, round-trips through a checkpoint and resamples every table."""
    from repro.checkpoints import load_checkpoint, load_model, save_checkpoint
    torch.manual_seed(0)
    model = create_model("ViT-XXS/8", pos_embed=pos_embed, pos_embed_placement=placement, **TINY_VIT)
    tables = [n for n, _ in model.named_parameters() if ".pos_embed" in f".{n}"]
    depth = model.cfg.depth
    per_table = 1 if pos_embed == "1d" else 3  # x, y and the class token's vector
    assert len(tables) == per_table * (depth if placement == "every_layer" else 1)
    assert set(tables) <= model.no_weight_decay()
    x = torch.randn(2, 3, 32, 32)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.head.weight.data.normal_()  # a zero head would stop gradients at the head
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    optimizer.step()
    assert all(not torch.equal(before[n], dict(model.named_parameters())[n]) for n in tables), \
        "every position table must receive a gradient"
    save_checkpoint(model, tmp_path / "ckpt")
    again = load_model(tmp_path / "ckpt")
    assert again.cfg.pos_embed_placement == placement
    model.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    larger = create_model("ViT-XXS/8", pos_embed=pos_embed, pos_embed_placement=placement, img_size=48,
                          num_classes=5)
    report = load_checkpoint(larger, tmp_path / "ckpt")
    assert report.resampled == ((4, 4), (6, 6))
    for layer in range(depth):
        assert larger.position_embedding(layer).shape == (1, 37, 64)


def test_every_layer_tables_enter_at_their_block():
    """Block k's own table changes block k's input, so blocks before k see no difference."""
    torch.manual_seed(0)
    model = create_model("ViT-XXS/8", pos_embed_placement="every_layer", **TINY_VIT).eval()
    x = torch.randn(1, 3, 32, 32)
    captured = []
    hooks = [b.register_forward_hook(lambda m, i, o: captured.append(o[0].clone())) for b in model.blocks]
    with torch.no_grad():
        model(x)
        first = list(captured)
        captured.clear()
        model.blocks[2].pos_embed.add_(1.0)
        model(x)
    for h in hooks:
        h.remove()
    assert torch.equal(first[0], captured[0]) and torch.equal(first[1], captured[1])
    assert not torch.allclose(first[2], captured[2])


@pytest.mark.parametrize("kind", ["none", "relative"])
def test_placement_needs_an_absolute_table(kind):
    with pytest.raises(ValueError, match="pos_embed_placement='stem'"):
        create_model("ViT-XXS/8", pos_embed=kind, pos_embed_placement="every_layer", **TINY_VIT)
    with pytest.raises(ValueError, match="choose one of"):
        create_model("ViT-XXS/8", pos_embed_placement="middle", **TINY_VIT)


@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_patch_drop_keeps_a_fraction_of_patches_in_training_only(pool):
    torch.manual_seed(0)
    dropping = create_model("ViT-XXS/4", img_size=32, num_classes=10, pool=pool, patch_drop=0.5)
    full = create_model("ViT-XXS/4", img_size=32, num_classes=10, pool=pool)
    full.load_state_dict(dropping.state_dict())  # no parameters of its own
    x = torch.randn(3, 3, 32, 32)
    prefix = 1 if pool == "cls" else 0
    assert dropping.train().forward_features(x).shape == (3, prefix + 32, 64)  # 64 patches, half kept
    dropping.eval()
    assert dropping.forward_features(x).shape == (3, prefix + 64, 64)
    assert torch.allclose(dropping(x), full.eval()(x))  # evaluation sees every token
    torch.nn.init.normal_(dropping.head.weight)  # the fresh head is zero: no gradient would reach the tokens
    dropping.train()(x).logsumexp(-1).sum().backward()
    assert dropping.pos_embed.grad.abs().sum() > 0


@pytest.mark.parametrize("overrides", [dict(pos_embed="relative"), dict(pos_embed_placement="every_layer"),
                                       dict(patch_drop=1.0)])
def test_patch_drop_refuses_what_it_cannot_do(overrides):
    with pytest.raises(ValueError, match="patch_drop"):
        create_model("ViT-XXS/4", img_size=32, num_classes=10, **{"patch_drop": 0.5, **overrides})

"""Inspection numbers (repro.analysis) on hand-made cases whose answers are worked out here."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from repro import create_model
from repro.analysis import (attention_rollout, collect_attentions, filter_components, mean_attention_distance,
                            patch_distances, position_similarity, rollout_map)

TINY = dict(num_classes=10, img_size=32)  # ViT-XXS/8 at 32 px: a 4x4 grid of 8-pixel patches, D = 64


# --------------------------------------------------------------------------- filter PCA


class _PatchEmbedOnly(nn.Module):
    def __init__(self, weight):
        super().__init__()
        d, c, p, _ = weight.shape
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(c, d, p, p)
        with torch.no_grad():
            self.patch_embed.proj.weight.copy_(weight)


def test_filter_components_recovers_a_known_direction():
    # Four filters of shape (3, 2, 2) = 12 numbers: W = t v^T + 0.1 t' w^T + m with v, w
    # orthonormal, t = (1, -1, 2, -2) and t' = (1, 1, -1, -1) both mean-zero and orthogonal,
    # so after centring the singular values are |t| = sqrt(10) and 0.1 |t'| = 0.2, and the
    # explained variance ratios are 10 / 10.04 and 0.04 / 10.04.
    v = torch.zeros(12, dtype=torch.float64)
    v[:4] = torch.tensor([0.1, 0.3, 0.5, 0.7], dtype=torch.float64)  # a ramp in the first (red) channel
    v = v / v.norm()
    w = torch.zeros(12, dtype=torch.float64)
    w[4], w[11] = 1 / math.sqrt(2), -1 / math.sqrt(2)
    t = torch.tensor([1.0, -1.0, 2.0, -2.0], dtype=torch.float64)
    t2 = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    mean = torch.linspace(-1, 1, 12, dtype=torch.float64)  # removed by the centring
    flat = t[:, None] * v + 0.1 * t2[:, None] * w + mean
    images, ratio = filter_components(_PatchEmbedOnly(flat.reshape(4, 3, 2, 2).float()), k=28)
    assert images.shape == (4, 2, 2, 3)  # k capped at min(D, C*P*P) = 4
    assert ratio[:2] == pytest.approx([10 / 10.04, 0.04 / 10.04], rel=1e-5)
    assert ratio[2:] == pytest.approx([0, 0], abs=1e-6)
    # First component = +v (sign: its largest entry, 0.7, is positive), rescaled to [0, 1]:
    # v is zero outside the red channel, so red = (v - 0) / (max v - 0) = (1/7, 3/7, 5/7, 1)
    # over the 2x2 pixels in raster order, and green = blue = 0.
    assert images[0, :, :, 0].flatten() == pytest.approx([1 / 7, 3 / 7, 5 / 7, 1.0], abs=1e-5)
    assert images[0, :, :, 1:] == pytest.approx(np.zeros((2, 2, 2)), abs=1e-5)
    # Second component = +-w: entries -1/sqrt2 (-> 0), 0 (-> 0.5), +1/sqrt2 (-> 1); the tie in magnitude
    # makes the sign either, so check the set of values at the two places.
    second = images[1].transpose(2, 0, 1).flatten()  # back to (C, P, P) order
    assert sorted([second[4], second[11]]) == pytest.approx([0.0, 1.0], abs=1e-5)
    assert np.delete(second, [4, 11]) == pytest.approx(np.full(10, 0.5), abs=1e-5)


def test_filter_components_of_a_vit_and_without_patch_embedding():
    model = create_model("ViT-XXS/8", **TINY)
    images, ratio = filter_components(model, k=28)
    assert images.shape == (28, 8, 8, 3)
    assert images.min() >= 0 and images.max() <= 1
    assert np.all(np.diff(ratio) <= 1e-12) and 0 < ratio.sum() <= 1 + 1e-9
    with pytest.raises(ValueError, match="patch embedding"):
        filter_components(nn.Linear(2, 2))


# --------------------------------------------------------------------------- position similarity


def test_position_similarity_of_a_known_1d_table():
    model = create_model("ViT-XXS/8", pos_embed="1d", **TINY)
    theta = torch.arange(16) * math.pi / 8  # patch i points at angle i * 22.5 degrees in the first two dims
    table = torch.zeros(17, 64)
    table[0] = 5.0  # the class token: must be dropped
    table[1:, 0], table[1:, 1] = 3 * torch.cos(theta), 3 * torch.sin(theta)
    with torch.no_grad():
        model.pos_embed.copy_(table[None])
    sim = position_similarity(model)
    expected = torch.cos(theta[:, None] - theta[None, :]).numpy()  # cos of the angle between the two
    assert sim.shape == (16, 16)
    assert sim == pytest.approx(expected, abs=1e-6)


def test_position_similarity_of_a_known_2d_table():
    model = create_model("ViT-XXS/8", pos_embed="2d", **TINY)
    with torch.no_grad():  # X[col] = one-hot(col), Y[row] = one-hot(row), D/2 = 32 each
        model.pos_embed_x.copy_(torch.eye(4, 32)[None])
        model.pos_embed_y.copy_(torch.eye(4, 32)[None])
    sim = position_similarity(model)
    # Patch (r, c) has embedding concat(e_c, e_r) of norm sqrt 2, so the cosine of two
    # patches is ([same column] + [same row]) / 2.
    r, c = np.divmod(np.arange(16), 4)
    expected = ((c[:, None] == c[None]).astype(float) + (r[:, None] == r[None])) / 2
    assert sim == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("kind", ["none", "relative"])
def test_position_similarity_refuses_models_without_a_table(kind):
    model = create_model("ViT-XXS/8", pos_embed=kind, **TINY)
    with pytest.raises(ValueError, match=kind):
        position_similarity(model)


@pytest.mark.parametrize("placement", ["every_layer", "every_layer_shared"])
def test_position_similarity_per_layer_tables(placement):
    model = create_model("ViT-XXS/8", pos_embed="1d", pos_embed_placement=placement, **TINY)
    owner = model.blocks[1] if placement == "every_layer" else model
    with torch.no_grad():
        owner.pos_embed[0, 1:] = torch.eye(16, 64)  # all patches orthogonal
    assert position_similarity(model, layer=1) == pytest.approx(np.eye(16), abs=1e-6)
    first = model.blocks[0].pos_embed if placement == "every_layer" else model.pos_embed
    expected0 = torch.nn.functional.normalize(first[0, 1:].detach(), dim=1)
    assert position_similarity(model, layer=0) == pytest.approx((expected0 @ expected0.T).numpy(), abs=1e-5)


# --------------------------------------------------------------------------- attention distance


def _repeat(a, batch=2, heads=3):
    """(T, T) -> (batch, heads, T, T)."""
    return a.expand(batch, heads, *a.shape).clone()


@pytest.mark.parametrize("class_token", [False, True])
def test_identity_attention_has_distance_zero(class_token):
    t = 16 + class_token
    attn = [_repeat(torch.eye(t)) for _ in range(2)]
    dist = mean_attention_distance(attn, (4, 4), patch_pixels=8)
    assert dist.shape == (2, 3)
    assert dist == pytest.approx(np.zeros((2, 3)), abs=1e-12)


@pytest.mark.parametrize("class_token", [False, True])
def test_uniform_attention_on_a_2x2_grid(class_token):
    # 2x2 grid of 16-pixel patches. From any patch the four key patches lie at 0 (itself),
    # 16 (the side neighbour), 16 (the vertical one) and 16 sqrt2 (the diagonal one), so
    # uniform weights 1/4 give (0 + 16 + 16 + 16 sqrt2) / 4 = 8 + 4 sqrt2 = 13.657 pixels.
    # With a class token the weights are 1/5 on 5 tokens; dropping the class token and
    # renormalising gives 1/4 on the patches again.
    t = 4 + class_token
    attn = [_repeat(torch.full((t, t), 1.0 / t))]
    dist = mean_attention_distance(attn, (2, 2), patch_pixels=16)
    assert dist == pytest.approx(np.full((1, 3), 8 + 4 * math.sqrt(2)))


def test_attention_distance_weights_and_averages():
    # A 1x2 grid of 10-pixel patches, per head:
    # head 0: query 0 gives 0.25 to itself and 0.75 to patch 1 (10 px away) -> 7.5 px;
    #         query 1 looks only at itself -> 0 px; mean over queries 3.75.
    # head 1: both queries look only at the other patch -> 10 px.
    a = torch.zeros(1, 2, 2, 2)
    a[0, 0] = torch.tensor([[0.25, 0.75], [0.0, 1.0]])
    a[0, 1] = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    b = a.flip(0)  # a second image with the same weights: the batch mean is unchanged
    dist = mean_attention_distance([torch.cat([a, b])], (1, 2), patch_pixels=10)
    assert dist == pytest.approx(np.array([[3.75, 10.0]]))


def test_patch_distances():
    d = patch_distances((2, 3), patch_pixels=4)
    assert d.shape == (6, 6)
    assert d[0, 5].item() == pytest.approx(4 * math.sqrt(1 + 4))  # (0, 0) to (1, 2)
    assert d[1, 4].item() == pytest.approx(4.0)                   # (0, 1) to (1, 1)


# --------------------------------------------------------------------------- attention rollout


def test_identity_attention_rolls_out_to_the_identity():
    attn = [_repeat(torch.eye(5)) for _ in range(3)]
    rollout = attention_rollout(attn)
    assert rollout.shape == (2, 5, 5)
    assert rollout == pytest.approx(np.broadcast_to(np.eye(5), (2, 5, 5)))


def test_rollout_by_hand():
    # One layer of uniform attention on 2 tokens: A + I = [[1.5, .5], [.5, 1.5]], rows
    # renormalised: [[.75, .25], [.25, .75]]. Two such layers: .75^2 + .25^2 = .625 on the
    # diagonal and 2 * .75 * .25 = .375 off it.
    uniform = _repeat(torch.full((2, 2), 0.5), batch=1)
    assert attention_rollout([uniform])[0] == pytest.approx(np.array([[0.75, 0.25], [0.25, 0.75]]))
    assert attention_rollout([uniform, uniform])[0] == pytest.approx(np.array([[0.625, 0.375], [0.375, 0.625]]))
    # Layer order: the last layer multiplies from the left, R = A2 A1. Heads are averaged first.
    a1 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[1.0, 0.0], [0.0, 1.0]]])[None]  # (1, 2 heads, 2, 2)
    a2 = _repeat(torch.tensor([[0.0, 1.0], [0.0, 1.0]]), batch=1, heads=2)
    m1 = np.array([[1.0, 0.0], [0.5, 0.5]]) + np.eye(2)  # head mean + I
    m2 = np.array([[0.0, 1.0], [0.0, 1.0]]) + np.eye(2)
    m1, m2 = m1 / m1.sum(1, keepdims=True), m2 / m2.sum(1, keepdims=True)
    assert attention_rollout([a1, a2])[0] == pytest.approx(m2 @ m1)
    assert not np.allclose(m2 @ m1, m1 @ m2)  # the order matters in this case


def test_rollout_map_reads_the_class_token_row_or_the_patch_mean():
    # 1 class token + 2x2 patches; one layer where the class token attends 1.0 to patch
    # (0, 1) (token 2). Rollout row 0 = (A + I)/2 row 0 = 0.5 on itself, 0.5 on token 2.
    a = torch.eye(5)
    a[0] = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])
    maps = rollout_map([_repeat(a, batch=1, heads=1)], (2, 2))
    assert maps.shape == (1, 2, 2)
    assert maps[0] == pytest.approx(np.array([[0.0, 0.5], [0.0, 0.0]]))
    assert rollout_map([_repeat(a, batch=1, heads=1)], (2, 2), normalize=True)[0, 0, 1] == pytest.approx(1.0)
    # GAP: no class token; every patch attends 1.0 to patch 3, so after (A + I)/2 each patch
    # row has 0.5 on itself and 0.5 on patch 3 (patch 3: 1.0 on itself). Mean over the 4 rows:
    # patches 0-2 get 0.5 / 4 = 0.125, patch 3 gets (3 * 0.5 + 1) / 4 = 0.625.
    g = torch.zeros(4, 4)
    g[:, 3] = 1.0
    maps = rollout_map([_repeat(g, batch=1, heads=1)], (2, 2), image_size=8)
    small = rollout_map([_repeat(g, batch=1, heads=1)], (2, 2))
    assert small[0] == pytest.approx(np.array([[0.125, 0.125], [0.125, 0.625]]))
    assert maps.shape == (1, 8, 8)


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("pool", ["cls", "gap"])
def test_end_to_end_on_a_tiny_vit(pool):
    torch.manual_seed(0)
    model = create_model("ViT-XXS/8", pool=pool, **TINY)
    attn = collect_attentions(model, torch.rand(3, 3, 32, 32) * 2 - 1)
    depth, heads = model.cfg.depth, model.cfg.num_heads
    t = 16 + (pool == "cls")
    assert len(attn) == depth and attn[0].shape == (3, heads, t, t)
    dist = mean_attention_distance(attn, model.grid_size, model.patch_pixels)
    assert dist.shape == (depth, heads)
    farthest = 8 * math.sqrt(3 ** 2 + 3 ** 2)  # corner to corner of the 4x4 grid of 8-pixel patches
    assert np.all(dist > 0) and np.all(dist < farthest)
    rollout = attention_rollout(attn)
    assert rollout.shape == (3, t, t)
    assert rollout.sum(-1) == pytest.approx(np.ones((3, t)))
    maps = rollout_map(attn, model.grid_size)
    assert maps.shape == (3, 4, 4) and np.all(maps > 0)
    assert position_similarity(model).shape == (16, 16)


# --------------------------------------------------------------------------- figures


def test_figures_are_written(tmp_path):
    from repro import analysis_plots as plots
    from repro.data import denormalize

    torch.manual_seed(0)
    model = create_model("ViT-XXS/8", **TINY)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    attn = collect_attentions(model, x)
    images, ratio = filter_components(model, k=14)
    dist = mean_attention_distance(attn, model.grid_size, model.patch_pixels)
    paths = [
        plots.plot_filter_components(images, ratio, tmp_path / "filters.png"),
        plots.plot_position_similarity(position_similarity(model), model.grid_size, tmp_path / "pos.png"),
        plots.plot_attention_distance({"a": dist, "b": dist + 1}, tmp_path / "dist.png"),
        plots.plot_rollout(denormalize(x).permute(0, 2, 3, 1).numpy(),
                           rollout_map(attn, model.grid_size, image_size=32, normalize=True), tmp_path / "roll.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="grid"):
        plots.plot_position_similarity(np.eye(16), (3, 3), tmp_path / "bad.png")

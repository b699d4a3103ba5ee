"""repro.pos_embed: resampling to another grid matches the official scipy.ndimage.zoom(order=1)."""
import numpy as np
import pytest
import scipy.ndimage as scipy_ndimage  # a dev dependency: the official code resamples with it
import torch

from repro import create_model
from repro.checkpoints import filter_state_dict
from repro.pos_embed import resample_abs_pos_embed, resample_axis_table, resample_patch_grid


def official_zoom(grid_hwd: np.ndarray, new_grid) -> np.ndarray:
    """What vit_jax's checkpoint loader does to the (gh, gw, D) patch grid."""
    gh, gw, _ = grid_hwd.shape
    return scipy_ndimage.zoom(grid_hwd, (new_grid[0] / gh, new_grid[1] / gw, 1), order=1)


@pytest.mark.parametrize("old,new", [((4, 4), (8, 8)), ((7, 7), (12, 12)), ((14, 14), (24, 24)), ((6, 4), (9, 10)),
                                     ((8, 8), (5, 5))])
def test_bilinear_matches_scipy_zoom_order_1(old, new):
    g = torch.Generator().manual_seed(0)
    table = torch.randn(1, old[0] * old[1], 16, generator=g, dtype=torch.float64)
    ours = resample_patch_grid(table, old, new)  # (1, N', D)
    expected = official_zoom(table[0].reshape(*old, 16).numpy(), new)
    assert expected.shape == (*new, 16)
    assert np.abs(ours[0].reshape(*new, 16).numpy() - expected).max() < 1e-6


def test_class_token_row_is_kept_apart_and_input_untouched():
    table = torch.randn(1, 1 + 16, 8)
    before = table.clone()
    out = resample_abs_pos_embed(table, (4, 4), (6, 6), num_prefix_tokens=1)
    assert out.shape == (1, 37, 8) and torch.equal(out[:, 0], table[:, 0]) and torch.equal(table, before)
    expected = official_zoom(table[0, 1:].reshape(4, 4, 8).double().numpy(), (6, 6))
    assert np.abs(out[0, 1:].reshape(6, 6, 8).double().numpy() - expected).max() < 1e-5


def test_axis_tables_follow_scipy_along_their_axis():
    axis = torch.randn(1, 5, 4, dtype=torch.float64)
    ours = resample_axis_table(axis, 9)
    expected = scipy_ndimage.zoom(axis[0].numpy(), (9 / 5, 1), order=1)
    assert np.abs(ours[0].numpy() - expected).max() < 1e-6


def test_bicubic_is_an_option_and_differs():
    table = torch.randn(1, 16, 8, generator=torch.Generator().manual_seed(2))
    bilinear, bicubic = resample_patch_grid(table, (4, 4), (7, 7)), resample_patch_grid(table, (4, 4), (7, 7), "bicubic")
    assert bicubic.shape == bilinear.shape and not torch.allclose(bicubic, bilinear, atol=1e-3)
    with pytest.raises(ValueError, match="bilinear"):
        resample_patch_grid(table, (4, 4), (7, 7), "nearest")


def test_checkpoint_filter_uses_the_official_kernel_by_default():
    small = create_model("ViT-XXS/8", img_size=32, num_classes=10)
    large = create_model("ViT-XXS/8", img_size=56, num_classes=10)
    sd = small.state_dict()
    got = filter_state_dict(sd, large)["pos_embed"]  # (1, 1 + 49, 64)
    expected = official_zoom(sd["pos_embed"][0, 1:].reshape(4, 4, 64).double().numpy(), (7, 7))
    assert np.abs(got[0, 1:].reshape(7, 7, 64).double().numpy() - expected).max() < 1e-6
    assert torch.equal(got[:, 0], sd["pos_embed"][:, 0])
    cubic = filter_state_dict(sd, large, resample="bicubic")["pos_embed"]
    assert not torch.allclose(cubic, got, atol=1e-4)

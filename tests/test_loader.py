"""repro.data.loader: device-side batches, pure functions of (seed, step); pad-and-crop and Inception crops."""

import numpy as np
import pytest
import torch

import repro.data as data
from repro.data import normalize
from repro.data.loader import DeviceLoader, inception_crop_boxes


def pattern(k: int, h: int = 8, w: int = 8) -> np.ndarray:
    """A distinct, known uint8 image (3, h, w) for example k."""
    c, y, x = np.meshgrid(np.arange(3), np.arange(h), np.arange(w), indexing="ij")
    return ((k * 7 + c * 50 + y * 3 + x) % 256).astype(np.uint8)


def arrays(n=40, h=8, w=8, num_classes=10):
    """An in-memory ImageArrays of patterns (no files)."""
    imgs = torch.from_numpy(np.stack([pattern(k, h, w) for k in range(n)]))
    return data.ImageArrays(imgs, torch.arange(n) % num_classes, num_classes, "cifar10", "train", "test")


def test_get_batch_is_a_function_of_seed_and_step():
    a = DeviceLoader(arrays(), 8, train=True, seed=5, crop_padding=2, flip=True)
    b = DeviceLoader(arrays(), 8, train=True, seed=5, crop_padding=2, flip=True)
    for s in range(12):  # b walks through two epochs; a jumps straight to the step (resume)
        b.get_batch(s)
    xa, ya = a.get_batch(11)
    xb, yb = b.get_batch(11)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert xa.shape == (8, 3, 8, 8) and xa.dtype == torch.float32 and ya.dtype == torch.int64
    assert not torch.equal(a.get_batch(12)[0], xa)
    c = DeviceLoader(arrays(), 8, train=True, seed=6, crop_padding=2, flip=True)
    assert not torch.equal(c.get_batch(11)[0], xa)
    # each epoch is a permutation of the data
    assert len(a) == 5
    ys = torch.cat([a.get_batch(s)[1] for s in range(5, 10)])
    assert torch.equal(ys.sort().values, (torch.arange(40) % 10).sort().values)


def test_rank_slices_concatenate_to_global_batch():
    kw = dict(train=True, seed=0, crop_padding=2, flip=True)
    full = DeviceLoader(arrays(), 8, **kw)
    parts = [DeviceLoader(arrays(), 8, rank=r, world_size=2, **kw) for r in range(2)]
    for step in (0, 3, 7):
        x, y = full.get_batch(step)
        xs, ys = zip(*(p.get_batch(step) for p in parts))
        assert xs[0].shape[0] == 4
        assert torch.equal(torch.cat(xs), x) and torch.equal(torch.cat(ys), y)
    with pytest.raises(ValueError):
        DeviceLoader(arrays(), 9, train=True, world_size=2)


def test_crop_and_flip_take_values_from_the_image():
    w, p = 8, 2
    col = torch.arange(w, dtype=torch.uint8) * 30  # every pixel = 30 * its column
    imgs = col.expand(64, 3, w, w).clone()
    ds = data.ImageArrays(imgs, torch.zeros(64, dtype=torch.long), 10, "cifar10", "train", "test")
    x, _ = DeviceLoader(ds, 64, train=True, seed=0, crop_padding=p, flip=True).get_batch(0)
    v = torch.round((x + 1) * 127.5).long()  # back to uint8 values
    assert x.shape == (64, 3, w, w)
    assert (v == v[:, :1, :1, :]).all()  # rows and channels stay identical: columns moved as wholes
    padded = torch.nn.functional.pad(col.float()[None, None], (p, p), mode="reflect")[0, 0].long()
    windows = {tuple(padded[o:o + w].tolist()) for o in range(2 * p + 1)}
    rows = [tuple(r.tolist()) for r in v[:, 0, 0]]
    plain = sum(r in windows for r in rows)
    flipped = sum(r[::-1] in windows for r in rows)
    assert all(r in windows or r[::-1] in windows for r in rows)
    assert plain > 10 and flipped > 10  # both flips happen (64 draws of p = 1/2)


def test_eval_iteration_covers_every_example_once():
    ds = arrays(n=23)
    loader = DeviceLoader(ds, 5, train=False, crop_padding=2, flip=True)  # augmentation is train-only
    assert len(loader) == 5 and not loader.drop_last
    xs, ys = zip(*loader)
    assert [len(y) for y in ys] == [5, 5, 5, 5, 3]
    assert torch.equal(torch.cat(ys), ds.labels) and torch.equal(torch.cat(xs), normalize(ds.images))
    # two ranks: per step, rank 0's then rank 1's slice; together every example once, in order
    ranks = [list(DeviceLoader(ds, 6, train=False, rank=r, world_size=2)) for r in range(2)]
    seen = torch.cat([torch.cat([y0, y1]) for (_, y0), (_, y1) in zip(*ranks)])
    assert torch.equal(seen, ds.labels)


def test_normalize_and_image_size():
    x = normalize(torch.tensor([0, 255], dtype=torch.uint8))
    assert x.tolist() == [-1.0, 1.0]
    xb, _ = DeviceLoader(arrays(), 8, train=False, image_size=16).get_batch(0)
    assert xb.shape == (8, 3, 16, 16) and xb.min() >= -1 and xb.max() <= 1


def test_inception_boxes_cover_5_to_100_percent_with_bounded_aspect():
    g = torch.Generator().manual_seed(0)
    boxes = inception_crop_boxes(4000, 224, 224, g)  # (n, 4) top, left, height, width
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 224).all() and (left + w <= 224).all()
    area = h * w / 224 ** 2
    assert area.min() >= 0.05 - 0.01 and area.max() <= 1.0
    assert 0.45 < area.mean() < 0.6  # uniform on [0.05, 1] has mean 0.525 (a few rejected draws shift it)
    ratio = w / h
    assert ratio.min() > 0.7 and ratio.max() < 1.4  # [3/4, 4/3] up to rounding to whole pixels
    # Boxes that fit nowhere fall back to the whole image (tiny images make that happen).
    tiny = inception_crop_boxes(500, 2, 2, torch.Generator().manual_seed(1))
    assert ((tiny[:, 2] <= 2) & (tiny[:, 3] <= 2)).all()


def test_inception_crop_takes_a_resized_window_of_the_image():
    """With a crop of the whole image and no flip, the batch is the resized image; the crops are windows:
    on an image whose value grows with the column, every output row is non-decreasing (or non-increasing
    when flipped) and stays inside the image's value range."""
    w = 16
    col = (torch.arange(w, dtype=torch.uint8) * 16)  # every pixel = 16 * its column
    imgs = col.expand(64, 3, w, w).clone()
    ds = data.ImageArrays(imgs, torch.zeros(64, dtype=torch.long), 10, "cifar10", "train", "test")
    loader = DeviceLoader(ds, 64, train=True, seed=0, crop="inception", flip=True, image_size=24)
    x, _ = loader.get_batch(0)
    assert x.shape == (64, 3, 24, 24) and x.min() >= -1 - 1e-6 and x.max() <= 1 + 1e-6
    diffs = x[:, 0, 0, 1:] - x[:, 0, 0, :-1]  # (64, 23) along each first row
    increasing = (diffs >= -1e-5).all(1)
    decreasing = (diffs <= 1e-5).all(1)
    assert (increasing | decreasing).all()
    assert increasing.sum() > 10 and decreasing.sum() > 10  # both flips happen
    assert torch.allclose(x, x[:, :1, :1, :].expand_as(x), atol=1e-5)  # rows, channels alike: columns move as wholes
    spans = x[:, 0, 0, -1] - x[:, 0, 0, 0]
    assert spans.abs().min() < spans.abs().max() - 0.3  # crops of different widths
    assert torch.equal(loader.get_batch(0)[0], x) and not torch.equal(loader.get_batch(1)[0], x)


def test_inception_crop_ranks_match_one_process():
    kw = dict(train=True, seed=3, crop="inception", flip=True, image_size=12)
    full = DeviceLoader(arrays(), 8, **kw)
    parts = [DeviceLoader(arrays(), 8, rank=r, world_size=2, **kw) for r in range(2)]
    x, _ = full.get_batch(2)
    assert torch.allclose(torch.cat([p.get_batch(2)[0] for p in parts]), x)


def test_eval_resizes_the_whole_image_without_a_crop():
    ds = arrays(n=4, h=8, w=8)
    x, _ = DeviceLoader(ds, 4, train=False, crop="inception", flip=True, image_size=8).get_batch(0)
    assert torch.equal(x, normalize(ds.images))

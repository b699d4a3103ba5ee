"""repro.data: lookup order, decoding, the decode cache and splits (the device-side loader: test_loader.py).

Offline and fast: every test builds its own tiny images (PNG, so pixels read
back exactly) in tmp_path; the hub is stubbed out except in one test that
checks the real offline attempt fails fast.
"""
import io
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import repro.data as data
import repro.data.decode as data_decode
import repro.data.sources as data_sources
from repro.data import (DATASETS, DatasetNotFoundError, balanced_subset, get_datasets, load_split,
                        resolve_source, split_heldout)

_REAL_HUB_SOURCE = data_sources._hub_source


@pytest.fixture(autouse=True)
def _offline_isolated(tmp_path, monkeypatch):
    """No hub, no REPRO_DATA_DIR from the environment, a cache of this test's own."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    calls = []

    def no_hub(info):
        calls.append(info.name)
        return None, "hub disabled in tests"

    monkeypatch.setattr(data_sources, "_hub_source", no_hub)
    return calls


# ----------------------------------------------------------------------------- tiny data


def pattern(k: int, h: int = 8, w: int = 8) -> np.ndarray:
    """A distinct, known uint8 image (3, h, w) for example k."""
    c, y, x = np.meshgrid(np.arange(3), np.arange(h), np.arange(w), indexing="ij")
    return ((k * 7 + c * 50 + y * 3 + x) % 256).astype(np.uint8)


def png(img_chw: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img_chw.transpose(1, 2, 0)).save(buf, format="PNG")
    return buf.getvalue()


def write_parquet(path, images, labels, image_col="img", label_col="label"):
    """A parquet file in the hub's schema: image struct{bytes, path}, int64 label."""
    img_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        image_col: pa.array([{"bytes": png(im), "path": None} for im in images], type=img_type),
        label_col: pa.array(labels, type=pa.int64()),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def make_parquet_dir(root, n_train=40, n_test=12, num_classes=10, size=8):
    imgs = [pattern(k, size, size) for k in range(n_train + n_test)]
    labels = [k % num_classes for k in range(n_train + n_test)]
    write_parquet(root / "train.parquet", imgs[:n_train], labels[:n_train])
    write_parquet(root / "test.parquet", imgs[n_train:], labels[n_train:])
    return np.stack(imgs), np.array(labels)


def make_image_folder(root, n_per_class=2, classes=("airplane", "bird", "cat")):
    """train/<class>/*.png and test/<class>/*.png; returns {split: [(image, class index)]}."""
    out = {}
    k = 0
    for split in ("train", "test"):
        out[split] = []
        for ci, c in enumerate(classes):
            (root / split / c).mkdir(parents=True)
            for j in range(n_per_class):
                img = pattern(k)
                Image.fromarray(img.transpose(1, 2, 0)).save(root / split / c / f"{j:03d}.png")
                out[split].append((img, ci))
                k += 1
    return out


def arrays(n=40, h=8, w=8, num_classes=10):
    """An in-memory ImageArrays of patterns (no files)."""
    imgs = torch.from_numpy(np.stack([pattern(k, h, w) for k in range(n)]))
    return data.ImageArrays(imgs, torch.arange(n) % num_classes, num_classes, "cifar10", "train", "test")


# ----------------------------------------------------------------------------- lookup


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="cifar100"):
        resolve_source("mnist")


def test_registry_heldout_fractions():
    """App. B.1.1: 10% of Pets and Flowers, 2% of CIFAR, 1% of ImageNet choose the learning rate."""
    fractions = {n: DATASETS[n].heldout_fraction for n in
                 ("cifar10", "cifar100", "oxford_iiit_pet", "oxford_flowers102", "imagenet1k")}
    assert fractions == {"cifar10": 0.02, "cifar100": 0.02, "oxford_iiit_pet": 0.10, "oxford_flowers102": 0.10,
                         "imagenet1k": 0.01}
    assert DATASETS["cifar100"].label_column == "fine_label"


def test_lookup_order(tmp_path, monkeypatch, _offline_isolated):
    explicit, env_root = tmp_path / "explicit", tmp_path / "env"
    make_parquet_dir(explicit)
    make_image_folder(env_root / "cifar10")
    monkeypatch.setenv("REPRO_DATA_DIR", str(env_root))

    src = resolve_source("cifar10", explicit)  # explicit beats $REPRO_DATA_DIR
    assert (src.kind, src.location) == ("parquet", str(explicit.resolve()))
    src = resolve_source("cifar10")  # $REPRO_DATA_DIR beats hub and embedded
    assert (src.kind, src.location) == ("imagefolder", str((env_root / "cifar10").resolve()))
    assert _offline_isolated == []  # the hub was not even tried

    monkeypatch.delenv("REPRO_DATA_DIR")
    with pytest.raises(DatasetNotFoundError) as e:  # hub (stubbed: fails), then an error: never the embedded copy
        resolve_source("cifar10")
    assert "huggingface-cli download --repo-type dataset uoft-cs/cifar10" in str(e.value)
    assert _offline_isolated == ["cifar10"]
    assert resolve_source("cifar10", "embedded").kind == "embedded"  # only when asked for
    # data_dir may also be the parent of <name>/
    assert resolve_source("cifar10", env_root).kind == "imagefolder"


def test_missing_dataset_error_names_the_ways(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        resolve_source("cifar100")
    msg = str(e.value)
    for way in ("data_dir", "REPRO_DATA_DIR", "load_dataset", "uoft-cs/cifar100", "train.parquet",
                "huggingface-cli download --repo-type dataset uoft-cs/cifar100 --local-dir $REPRO_DATA_DIR/cifar100"):
        assert way in msg
    assert "\n" not in msg  # one line: the CLI prints it as one `error: ...`
    assert isinstance(e.value, FileNotFoundError)
    with pytest.raises(DatasetNotFoundError):  # embedded only for cifar10
        resolve_source("cifar100", "embedded")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no"):  # an explicit folder is never skipped
        resolve_source("cifar10", tmp_path / "empty")


def test_real_hub_attempt_fails_fast_offline(monkeypatch):
    datasets_config = pytest.importorskip("datasets.config")
    # datasets reads the env at import; make sure it is offline whatever imported it first.
    monkeypatch.setattr(datasets_config, "HF_HUB_OFFLINE", True)
    t = time.perf_counter()
    src, why = _REAL_HUB_SOURCE(DATASETS["cifar100"])
    assert src is None and why
    assert time.perf_counter() - t < 10


def test_hub_dataset_is_decoded(monkeypatch):
    """The hub path, fed an in-memory datasets.DatasetDict in place of a download."""
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")})
    imgs = [pattern(k) for k in range(6)]
    dd = datasets.DatasetDict({
        s: datasets.Dataset.from_dict({"img": [{"bytes": png(im), "path": None} for im in imgs], "label": [1, 2, 3, 4, 5, 6]},
                                      features=feats)
        for s in ("train", "test")
    })
    monkeypatch.setattr(data_sources, "_hub_source", lambda info: (data.Source("hub", info.hub_id, f"hub {info.hub_id}", dd), ""))
    out = load_split("cifar10", "test")
    assert out.source == "hub uoft-cs/cifar10"
    assert torch.equal(out.images, torch.from_numpy(np.stack(imgs)))
    assert out.labels.tolist() == [1, 2, 3, 4, 5, 6]


def test_sources_are_described_without_absolute_paths(tmp_path, monkeypatch):
    make_parquet_dir(tmp_path / "env" / "cifar10")
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "env"))
    src = resolve_source("cifar10")
    assert src.record() == {"kind": "parquet", "root": "$REPRO_DATA_DIR", "path": "cifar10",
                            "description": "local parquet $REPRO_DATA_DIR/cifar10"}
    assert str(tmp_path) not in json.dumps(src.record())
    assert resolve_source("cifar10", tmp_path / "env").description == "local parquet data_dir/cifar10"
    assert resolve_source("cifar10", "embedded").record()["root"] == "embedded"


# ----------------------------------------------------------------------------- the hub's download layouts


def _hub_layout(root, split_files, image_col="img", label_col="label", n=6, num_classes=10):
    """Tiny parquet files at the given paths (relative to root), like `huggingface-cli download --local-dir`."""
    for k, rel in enumerate(split_files):
        write_parquet(root / rel, [pattern(k * n + i) for i in range(n)], [i % num_classes for i in range(n)],
                      image_col, label_col)
    (root / ".cache" / "huggingface").mkdir(parents=True)  # what --local-dir leaves beside the data
    (root / "README.md").write_text("dataset card")


@pytest.mark.parametrize("name, files, sub, cols", [
    # uoft-cs/cifar10: one config folder, plain_text/
    ("cifar10", ["plain_text/train-00000-of-00001.parquet", "plain_text/test-00000-of-00001.parquet"],
     "plain_text", ("img", "label")),
    # uoft-cs/cifar100: config folder cifar100/, fine_label column
    ("cifar100", ["cifar100/train-00000-of-00001.parquet", "cifar100/test-00000-of-00001.parquet"],
     "cifar100", ("img", "fine_label")),
    # timm/oxford-iiit-pet: data/, sharded
    ("oxford_iiit_pet", ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet",
                         "data/test-00000-of-00001.parquet"], "data", ("image", "label")),
    # dpdl-benchmark/oxford_flowers102: data/, train+validation joined for training
    ("oxford_flowers102", ["data/train-00000-of-00001.parquet", "data/validation-00000-of-00001.parquet",
                           "data/test-00000-of-00001.parquet"], "data", ("image", "label")),
])
def test_hub_download_layouts_are_found(tmp_path, monkeypatch, name, files, sub, cols):
    root = tmp_path / "data"
    _hub_layout(root / name, files, *cols)
    monkeypatch.setenv("REPRO_DATA_DIR", str(root))
    src = resolve_source(name)
    assert (src.kind, src.root, src.path) == ("parquet", "$REPRO_DATA_DIR", f"{name}/{sub}")
    n_train_files = sum(not f.split("/")[-1].startswith("test") for f in files)
    tr = load_split(name, "train", source=src)
    te = load_split(name, "test", source=src)
    assert len(tr) == 6 * n_train_files and len(te) == 6
    assert torch.equal(te.images[0], torch.from_numpy(pattern(6 * (len(files) - 1))))


def test_image_folder_under_repro_data_dir(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "data" / "oxford_iiit_pet")
    monkeypatch.setenv("REPRO_DATA_DIR", str(tmp_path / "data"))
    src = resolve_source("oxford_iiit_pet")
    assert (src.kind, src.path) == ("imagefolder", "oxford_iiit_pet")
    assert len(load_split("oxford_iiit_pet", "train", source=src)) == 6


# ----------------------------------------------------------------------------- decoding and cache


def test_decode_parquet_exact(tmp_path):
    imgs, labels = make_parquet_dir(tmp_path / "d", n_train=20, n_test=5)
    tr = load_split("cifar10", "train", data_dir=tmp_path / "d")
    te = load_split("cifar10", "test", data_dir=tmp_path / "d")
    assert tr.images.dtype == torch.uint8 and tr.images.shape == (20, 3, 8, 8)
    assert tr.labels.dtype == torch.int64 and tr.labels.tolist() == labels[:20].tolist()
    assert torch.equal(tr.images, torch.from_numpy(imgs[:20]))
    assert torch.equal(te.images, torch.from_numpy(imgs[20:]))
    assert tr.num_classes == 10 and tr.source.startswith("local parquet")


def test_decode_image_folder_exact(tmp_path):
    expected = make_image_folder(tmp_path / "f")
    for split in ("train", "test"):
        out = load_split("cifar10", split, data_dir=tmp_path / "f")
        assert out.images.shape == (6, 3, 8, 8)
        assert torch.equal(out.images, torch.from_numpy(np.stack([im for im, _ in expected[split]])))
        assert out.labels.tolist() == [y for _, y in expected[split]]  # sorted class folders -> 0, 1, 2


def test_resize_and_mixed_sizes(tmp_path):
    root = tmp_path / "mixed"
    const = np.full((3, 8, 8), 77, np.uint8)
    write_parquet(root / "train.parquet", [const, np.full((3, 6, 5), 77, np.uint8)], [0, 1])
    write_parquet(root / "test.parquet", [const], [0])
    with pytest.raises(ValueError, match="image_size"):
        load_split("cifar10", "train", data_dir=root)
    out = load_split("cifar10", "train", data_dir=root, image_size=(6, 4))
    assert out.images.shape == (2, 3, 6, 4)
    assert (out.images == 77).all()  # a constant image stays constant through bicubic resizing


def test_cache_is_hit_second_time(tmp_path, monkeypatch):
    make_parquet_dir(tmp_path / "d")
    first = load_split("cifar10", "train", data_dir=tmp_path / "d")

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(data_decode, "_decode_one", boom)
    again = load_split("cifar10", "train", data_dir=tmp_path / "d")
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    assert list((tmp_path / "cache" / "decoded").glob(".*tmp")) == []  # no temp files left behind
    with pytest.raises(AssertionError, match="decoded again"):  # another resolution is another entry
        load_split("cifar10", "train", data_dir=tmp_path / "d", image_size=16)
    f = tmp_path / "d" / "train.parquet"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):  # a changed file is a new source
        load_split("cifar10", "train", data_dir=tmp_path / "d")


def test_embedded_mini_cifar10():
    te = load_split("cifar10", "test", data_dir="embedded")
    assert te.images.shape == (1000, 3, 32, 32) and te.num_classes == 10
    assert torch.bincount(te.labels).tolist() == [100] * 10
    assert "embedded mini CIFAR-10 (4000 train / 1000 test)" == te.source
    assert te.images.float().std() > 20  # real pictures, not blank


# ----------------------------------------------------------------------------- splits


def test_split_heldout():
    tr, ho = split_heldout(1000, 0.1, seed=3)
    assert len(ho) == 100 and len(tr) == 900
    assert set(tr.tolist()).isdisjoint(ho.tolist()) and len(set(tr.tolist()) | set(ho.tolist())) == 1000
    tr2, ho2 = split_heldout(1000, 0.1, seed=3)
    assert torch.equal(tr, tr2) and torch.equal(ho, ho2)
    assert not torch.equal(ho, split_heldout(1000, 0.1, seed=4)[1])


def test_balanced_subset():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 5)
    idx = balanced_subset(labels, 15, seed=0)
    assert torch.bincount(labels[idx]).tolist() == [5, 5, 5]
    idx = balanced_subset(labels, 45, seed=0)  # class 2 runs out; the others share its place
    assert torch.bincount(labels[idx]).tolist() == [20, 20, 5]
    assert torch.equal(idx, balanced_subset(labels, 45, seed=0)) and len(set(idx.tolist())) == 45


def test_get_datasets(tmp_path):
    make_parquet_dir(tmp_path / "d", n_train=100, n_test=30)
    ds = get_datasets("cifar10", data_dir=tmp_path / "d", seed=1)
    assert list(ds) == ["train", "val", "test"]
    assert (len(ds["train"]), len(ds["val"]), len(ds["test"])) == (98, 2, 30)  # 2% of CIFAR held out
    ds = get_datasets("cifar10", data_dir=tmp_path / "d", heldout=False, max_train=20, max_test=10)
    assert list(ds) == ["train", "test"] and len(ds["train"]) == 20 and len(ds["test"]) == 10
    assert torch.bincount(ds["train"].labels).tolist() == [2] * 10


def test_classes_keep_and_relabel_every_split(tmp_path):
    make_parquet_dir(tmp_path / "d", n_train=100, n_test=30)
    full = get_datasets("cifar10", data_dir=tmp_path / "d", heldout=False)
    ds = get_datasets("cifar10", data_dir=tmp_path / "d", heldout=False, classes=(7, 2))
    for split in ("train", "test"):
        was = full[split].labels
        assert ds[split].num_classes == 2 and len(ds[split]) == int(((was == 7) | (was == 2)).sum())
        # class 7 is label 0, class 2 label 1, and each image keeps its pixels
        assert torch.equal(ds[split].labels, torch.where(was[(was == 7) | (was == 2)] == 7, 0, 1))
        assert torch.equal(ds[split].images, full[split].images[(was == 7) | (was == 2)])
    with pytest.raises(ValueError, match="distinct class indices"):
        get_datasets("cifar10", data_dir=tmp_path / "d", classes=(3, 3))
    with pytest.raises(ValueError, match="distinct class indices"):
        get_datasets("cifar10", data_dir=tmp_path / "d", classes=(10,))


def test_train_parts_are_disjoint_fixed_and_balanced(tmp_path):
    make_parquet_dir(tmp_path / "d", n_train=100, n_test=30)
    full = get_datasets("cifar10", data_dir=tmp_path / "d", heldout=False)["train"]
    parts = {(part, seed): get_datasets("cifar10", data_dir=tmp_path / "d", heldout=False, seed=seed,
                                        train_part=part, target_size=20)["train"]
             for part in ("source", "target") for seed in (0, 1)}
    for seed in (0, 1):
        source, target = parts[("source", seed)], parts[("target", seed)]
        assert (len(source), len(target)) == (80, 20)
        assert torch.bincount(target.labels, minlength=10).tolist() == [2] * 10
        # together they are the training set, each image exactly once
        both = torch.cat([source.images, target.images]).flatten(1)
        assert sorted(map(bytes, both.numpy())) == sorted(map(bytes, full.images.flatten(1).numpy()))
    # the carve does not move with the training seed
    assert torch.equal(parts[("target", 0)].images, parts[("target", 1)].images)
    with pytest.raises(ValueError, match="train_part"):
        get_datasets("cifar10", data_dir=tmp_path / "d", train_part="middle")
    with pytest.raises(ValueError, match="target_size"):
        get_datasets("cifar10", data_dir=tmp_path / "d", train_part="target", target_size=100)


def test_smaller_max_train_is_a_subset_of_a_larger_one(tmp_path):
    """Nested pre-training sets (the data-scaling experiment) for one seed."""
    make_parquet_dir(tmp_path / "d", n_train=100, n_test=30)
    sets = [get_datasets("cifar10", data_dir=tmp_path / "d", heldout=False, max_train=k, seed=3)["train"]
            for k in (10, 30, 60)]
    rows = [set(map(bytes, s.images.flatten(1).numpy())) for s in sets]
    assert rows[0] < rows[1] < rows[2]

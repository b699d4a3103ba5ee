"""The streaming path for sharded data sets: order per (seed, epoch), exact resume, disjoint ranks, torchrun."""
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from repro import data as data_lib
from repro.data import DatasetInfo, normalize
from repro.fileio import read_jsonl
from repro.data.streaming import (StreamingLoader, count_samples, find_shards, make_shard_loaders, rank_shards,
                                  read_samples, shard_lengths, write_shards)
from repro.runconfig import TrainConfig
from repro.rundir import read_final
from repro.train import train

REPO = Path(__file__).resolve().parents[1]
SIZE = 12  # stored image side, px
NUM_CLASSES = 4


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """8 train shards (7 of 6 samples, 1 of 4: 46 samples) and 2 validation shards (10 samples), as PNG."""
    folder = tmp_path_factory.mktemp("tiny_shards")
    train_x, val_x = random_images(46, seed=1), random_images(10, seed=2)
    train_y, val_y = torch.arange(46) % NUM_CLASSES, torch.arange(10) % NUM_CLASSES
    write_shards(train_x, train_y, folder, 6, prefix="tiny", split="train", num_classes=NUM_CLASSES)
    write_shards(val_x, val_y, folder, 5, prefix="tiny", split="validation")
    return {"folder": folder, "train": (train_x, train_y), "val": (val_x, val_y),
            "train_files": find_shards(folder, "train"), "val_files": find_shards(folder, "validation")}


def loader(files, **kw) -> StreamingLoader:
    base = dict(batch_size=8, train=True, num_classes=NUM_CLASSES, image_size=SIZE, seed=0, num_workers=0)
    return StreamingLoader(files, **{**base, **kw})


def test_shards_round_trip(shards, tmp_path):
    files = shards["train_files"]
    assert [f.name for f in files[:2]] == ["tiny-train-0000.tar", "tiny-train-0001.tar"] and len(files) == 8
    assert shard_lengths(files) == [6] * 7 + [4] == [count_samples(f) for f in files]  # _info.json == headers
    index, payload, label = list(read_samples(files[1], wanted=[4]))[0]
    decoded = torch.from_numpy(np.array(Image.open(io.BytesIO(payload)))).permute(2, 0, 1)
    assert index == 4 and label == int(shards["train"][1][10]) and torch.equal(decoded, shards["train"][0][10])
    with pytest.raises(data_lib.DataError, match="fewer samples"):
        list(read_samples(files[-1], wanted=[5]))
    # JPEG, as in timm's ImageNet shards, through a training batch with the Inception crop
    jpg = write_shards(random_images(6), [0, 1, 2, 3, 0, 1], tmp_path, 3, image_format="jpg")
    assert tarfile.open(jpg[0]).getnames()[:2] == ["train_00000000.jpg", "train_00000000.cls"]
    x, y = loader(jpg, batch_size=6, image_size=8, crop="inception").get_batch(0)
    assert x.shape == (6, 3, 8, 8) and sorted(y.tolist()) == [0, 0, 1, 1, 2, 3]


def test_order_is_a_function_of_seed_and_epoch(shards):
    files = shards["train_files"]
    a, b = loader(files), loader(files, shuffle_buffer=4)
    assert a.steps_per_epoch == 46 // 8
    e0, e1 = a.epoch_samples(0).copy(), a.epoch_samples(1).copy()
    assert np.array_equal(loader(files).epoch_samples(0), e0)  # a fresh loader plans the same epoch
    assert not np.array_equal(e0, e1) and not np.array_equal(e0, loader(files, seed=1).epoch_samples(0))
    assert not np.array_equal(e0, b.epoch_samples(0))  # the buffer size changes the order ...
    assert len(set(e0.tolist())) == len(e0) == 40  # ... never repeats a sample within an epoch
    # the bounded buffer: nothing comes out more than `buffer` places before it was read
    order = rank_shards(8, train=True, seed=0, epoch=0, rank=0, world_size=1)
    read_pos = {g: i for i, g in enumerate(g for s in order for g in range(6 * s, 6 * s + shards_len(s)))}
    assert all(read_pos[g] <= i + 4 for i, g in enumerate(b.epoch_samples(0).tolist()))
    # the batches themselves do not depend on how many workers decode them
    x0, y0 = a.get_batch(3)
    x2, y2 = loader(files, num_workers=2).get_batch(3)
    assert torch.equal(x0, x2) and torch.equal(y0, y2)
    assert x0.dtype == torch.float32 and x0.shape == (8, 3, SIZE, SIZE) and y0.dtype == torch.int64


def shards_len(s: int) -> int:
    return 4 if s == 7 else 6


def test_resume_at_a_step_replays_the_same_batches(shards):
    files = shards["train_files"]
    kw = dict(crop="inception", image_size=8, num_workers=2)  # augmentation on: it must replay too
    steps = range(0, 9)  # crosses the epoch boundary at step 5
    straight = [loader(files, **kw).get_batch(s) for s in steps]
    resumed = loader(files, **kw)
    for s in steps[6:]:
        x, y = resumed.get_batch(s)
        assert torch.equal(x, straight[s][0]) and torch.equal(y, straight[s][1]), s
    first = loader(files, **kw)
    batches = [first.get_batch(s) for s in steps]  # in order: one stream, no restart
    assert all(torch.equal(p[0], q[0]) for p, q in zip(batches, straight))
    assert straight[0][0].shape == (8, 3, 8, 8) and -1 <= straight[0][0].min() and straight[0][0].max() <= 1
    assert not torch.equal(straight[0][0], straight[5][0])  # epochs differ


def test_resume_skips_shards_it_no_longer_needs(shards, monkeypatch):
    """Resuming at the last batch of an epoch opens only the shards that still hold its samples."""
    import repro.data.streaming as streaming

    opened = []
    real = streaming.read_samples

    def counting(path, wanted=None):
        opened.append(path)
        return real(path, wanted)

    monkeypatch.setattr(streaming, "read_samples", counting)
    last = loader(shards["train_files"], shuffle_buffer=2)  # num_workers=0: read in this process
    x, _ = last.get_batch(4)
    assert 1 <= len(set(opened)) <= 3  # of 8 shards: the 8 samples of batch 4 lie within a few shards of the end
    assert torch.equal(x, loader(shards["train_files"], shuffle_buffer=2).get_batch(4)[0])


def test_ranks_read_disjoint_shards_and_every_sample_once(shards):
    files = shards["train_files"]
    ranks = [loader(files, batch_size=8, rank=r, world_size=2) for r in range(2)]
    for epoch in range(2):
        owned = [set(rank_shards(8, train=True, seed=0, epoch=epoch, rank=r, world_size=2)) for r in range(2)]
        assert not owned[0] & owned[1] and owned[0] | owned[1] == set(range(8))
        samples = [set(l.epoch_samples(epoch).tolist()) for l in ranks]
        assert not samples[0] & samples[1]
        for r in range(2):  # each rank's samples come from its own shards only
            assert {min(g // 6, 7) for g in samples[r]} <= owned[r]
    # equal steps on both ranks: the worst draw of 4 shards holds 6+6+6+4 = 22 samples -> 5 batches of 4
    assert [l.steps_per_epoch for l in ranks] == [5, 5]
    # evaluation: every sample exactly once over the ranks, unaugmented, last partial batch kept
    val_x, val_y = shards["val"]
    xs, ys = [], []
    for r in range(2):
        ev = loader(shards["val_files"], batch_size=4, train=False, rank=r, world_size=2, num_workers=1,
                    crop="inception", flip=True)
        for x, y in ev:
            xs.append(x), ys.append(y)
    assert [len(y) for y in ys] == [2, 2, 1, 2, 2, 1]  # 5 samples per rank at 2 per rank-batch
    assert torch.equal(torch.cat(xs), normalize(val_x)) and torch.equal(torch.cat(ys), val_y)


def test_flip_and_eval_resize(shards):
    files = shards["train_files"]
    x, _ = loader(files, crop="none", flip=True, batch_size=40).get_batch(0)
    original = normalize(shards["train"][0])
    ids = loader(files, crop="none", batch_size=40).epoch_samples(0)[:40]
    same = [(x[i] == original[g]).all().item() for i, g in enumerate(ids.tolist())]
    mirrored = [(x[i] == original[g].flip(-1)).all().item() for i, g in enumerate(ids.tolist())]
    assert all(a or b for a, b in zip(same, mirrored)) and 5 < sum(mirrored) < 35
    # pad: a window of the reflection-padded image (mirrored or not), as DeviceLoader's crop="pad"
    x, _ = loader(files, crop="pad", crop_padding=2, flip=True, batch_size=40).get_batch(0)
    for i, g in enumerate(ids.tolist()[:10]):
        padded = torch.nn.functional.pad(original[g][None], (2, 2, 2, 2), mode="reflect")[0]
        windows = [padded[:, t:t + SIZE, u:u + SIZE] for t in range(5) for u in range(5)]
        assert any(torch.equal(x[i], w) or torch.equal(x[i], w.flip(-1)) for w in windows)
    ev = loader(shards["val_files"], train=False, image_size=(6, 10))
    assert next(iter(ev))[0].shape == (8, 3, 6, 10)


@pytest.fixture
def tiny_dataset(monkeypatch):
    monkeypatch.setitem(data_lib.DATASETS, "tiny_shards", DatasetInfo(
        "tiny_shards", "none/none", NUM_CLASSES, test_split="validation", heldout_fraction=0.125, image_size=SIZE))


def shard_cfg(tmp_path, folder, **kw) -> TrainConfig:
    base = dict(model="ViT-XXS/8", dataset="tiny_shards", data_dir=str(folder), data_format="shards", image_size=16,
                crop="inception", batch_size=8, steps=6, warmup_steps=2, log_every=1, checkpoint_every=2,
                out_dir=str(tmp_path / "runs"))
    return TrainConfig(**{**base, **kw})


def test_train_on_shards_end_to_end(shards, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_DATA_WORKERS", "1")
    cfg = shard_cfg(tmp_path, shards["folder"])
    assert cfg.identity() != TrainConfig(**{**cfg.to_dict(), "data_format": "decoded"}).identity()
    run = train(cfg, progress=False)
    final = read_final(run)
    # held out: one of the 8 train shards (6 samples, or the 4-sample one); the test split: the 10 validation samples
    assert final["test"]["count"] == 10 and final["val"]["count"] in (4, 6)
    start = next(r for r in read_jsonl(run / "metrics.jsonl") if r["event"] == "start")
    assert start["data_source"]["kind"] == "shards" and start["data_source"]["shards"] == {
        "train": 7, "val": 1, "test": 2}
    assert start["train_examples"] + final["val"]["count"] == 46
    train_loader, evals, _ = make_shard_loaders(cfg, torch.device("cpu"), num_workers=0)
    assert set(evals) == {"val", "test"} and train_loader.num_classes == NUM_CLASSES
    make_shard_loaders(shard_cfg(tmp_path, shards["folder"], data_image_size=16), torch.device("cpu"))  # paper scale
    with pytest.raises(ValueError, match="max_train"):
        make_shard_loaders(shard_cfg(tmp_path, shards["folder"], max_train=10), torch.device("cpu"))
    with pytest.raises(data_lib.DatasetNotFoundError, match="no tar shards"):
        train(shard_cfg(tmp_path, tmp_path / "empty", run_name="no_data"), progress=False)


TORCHRUN_SCRIPT = """
import json, sys
from repro import data as data_lib
from repro.runconfig import TrainConfig
from repro.runtime import setup_distributed
from repro.train import train
from repro.data.streaming import make_shard_loaders
data_lib.register_dataset(data_lib.DatasetInfo("tiny_shards", "none/none", 4, test_split="validation",
                                               heldout_fraction=0.125, image_size=12))
base, out = json.loads(sys.argv[1]), sys.argv[2]
dist, device = setup_distributed("cpu")
# which samples each rank reads in epochs 0 and 1
loader, _, _ = make_shard_loaders(TrainConfig(**base), device, dist.rank, dist.world_size, num_workers=0)
seen = {e: loader.epoch_samples(e).tolist() for e in (0, 1)}
with open(f"{out}/rank{dist.rank}.json", "w") as f:
    json.dump({"seen": seen, "steps_per_epoch": loader.steps_per_epoch}, f)
def stop(step, record):
    if step == 5:  # mid-epoch (3 or 4 steps per epoch)
        raise KeyboardInterrupt  # on both ranks, as SIGTERM from torchrun would
interrupted = TrainConfig(**{**base, "run_name": "interrupted"})
try:
    train(interrupted, callback=stop, progress=False)
except KeyboardInterrupt:
    pass
train(interrupted, progress=False)  # the same command again: resumes at step 5
train(TrainConfig(**{**base, "run_name": "whole"}), progress=False)
"""


def test_torchrun_ranks_read_disjoint_shards_and_resume_exactly(shards, tmp_path):
    """2 CPU ranks (gloo): disjoint samples per epoch, and a run interrupted at step 5 ends like one that was not."""
    cfg = TrainConfig(model="ViT-XXS/8", dataset="tiny_shards", data_dir=str(shards["folder"]), data_format="shards",
                      image_size=16, crop="inception", batch_size=8, steps=8, warmup_steps=2, log_every=1,
                      checkpoint_every=2, out_dir=str(tmp_path / "runs"), device="cpu",
                      model_overrides={"dropout": 0.1})
    script = tmp_path / "shard_train.py"
    script.write_text(TORCHRUN_SCRIPT)
    base = cfg.to_dict()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "REPRO_DATA_WORKERS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
         json.dumps(base), str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for e in ("0", "1"):
        a, b = (set(r["seen"][e]) for r in ranks)
        assert a and b and not a & b
    # 7 train shards over 2 ranks: the worst 3 hold 3 x 4 or 3 x 6 samples -> at least 12 -> 3 steps of 4
    assert ranks[0]["steps_per_epoch"] == ranks[1]["steps_per_epoch"] >= 3

    def losses(name):
        return [r["loss"] for r in read_jsonl(tmp_path / "runs" / name / "metrics.jsonl") if r["event"] == "train"]

    records = read_jsonl(tmp_path / "runs" / "interrupted" / "metrics.jsonl")
    assert any(r["event"] == "resume" and r["step"] == 5 for r in records)
    assert len(losses("whole")) == 8
    assert losses("interrupted") == pytest.approx(losses("whole"), abs=1e-6)
    assert read_final(tmp_path / "runs" / "interrupted")["test"] == pytest.approx(
        read_final(tmp_path / "runs" / "whole")["test"], abs=1e-6)

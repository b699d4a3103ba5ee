"""Streaming batches from webdataset-style tar shards: ``StreamingLoader``, for ImageNet-size data under torchrun.

``repro.data.loader.DeviceLoader`` keeps a whole decoded split on every rank's
device; ImageNet-1k at 224 px is ~190 GB decoded, so the ``paper`` scale reads
it instead from tar shards as published for timm (``timm/imagenet-1k-wds``:
``imagenet1k-train-0000.tar`` ... ``imagenet1k-validation-0063.tar`` and an
``_info.json`` with the sample count of every shard). A shard holds one sample
per key, as consecutive members ``<key>.jpg`` (or ``.png`` / ``.webp``) and
``<key>.cls`` (the integer label as text); other members (``<key>.json``) are
ignored. The key is the member name up to the first dot of its base name (the
webdataset convention).

How an epoch is made (train):

1. The split's shards (sorted by name) are put in a random order drawn from
   (seed, epoch); rank r of W takes every W-th of them from position r, so the
   ranks read disjoint shards and all of them together read each shard once.
2. A rank's samples, in that reading order, pass a bounded shuffle buffer
   (``shuffle_buffer`` samples, seeded by (seed, epoch, rank)); the result is
   cut into batches of ``batch_size // world_size``. Every rank makes the same
   number of steps per epoch: what the rank with the fewest samples can fill
   in the worst shard draw (all shards equal: every sample is used; ImageNet's
   1251-or-1252-sample shards: at most a few hundred of 1.28M left out per
   epoch, other ones each epoch).
3. DataLoader worker processes decode, augment and stack the batches: worker
   w of n makes batches w, w + n, w + 2n ... of the rank's epoch, which the
   DataLoader hands back in order. Decoding uses PIL; the Inception crop draws
   its box with ``repro.data.loader.inception_crop_boxes`` (area 5-100%, aspect
   3/4-4/3, the official pipeline's fallback to the whole image), from a
   generator seeded by (seed, epoch, sample), then resizes the box straight to
   the output size and flips with probability 1/2. Evaluation resizes the
   whole image (no central crop), as ``DeviceLoader`` does.

Steps 1-2 only shuffle sample numbers (the shard lengths are known), never
bytes, so the batch at a step is a pure function of (seed, step, world_size)
and the shards: it does not depend on the number of workers or on where the
loader started. ``get_batch(step)`` has ``DeviceLoader``'s contract for steps
taken in order; asking for another step (a resumed run) plans the epoch again
and starts the workers at that batch: shards none of whose samples are still
needed are not opened, the others are scanned header by header (tar seeks past
member data) and only the samples still to come are read and decoded. The cost
of a resume is the plan (a shuffle of the rank's sample numbers, about a second
per million samples) and those header scans.

Each worker reads the headers of all of its rank's shards for an epoch and the
bytes of its own samples only; the samples it has read but not yet emitted (at
most about ``shuffle_buffer / num_workers`` encoded images) wait in memory.
Batches leave the workers as uint8 and are normalised to [-1, 1] on the device.

Departures from ``DeviceLoader``: the ranks see different samples, so a run on
N GPUs does not follow the curve of one process exactly (it does with
DeviceLoader); the crop is resampled with PIL's antialiased bilinear filter
instead of ``grid_sample``; ``crop="pad"`` pads and crops after the image is
resized to the output size.

The shards are read with the standard ``tarfile`` module rather than the
``webdataset`` package: resume by skipping whole shards, the shuffle on sample
numbers and reading only a worker's own members need random access by member,
which webdataset's pipelines (streams of already-read samples) do not give, and
it adds no dependency.
"""
from __future__ import annotations

import io
import json
import os
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..config import ImageSize
from .decode import as_hw, normalize
from .loader import StepLoader, check_loader_args, inception_crop_boxes
from .registry import get_info
from .seeding import (TAG_BUFFER, TAG_HELDOUT_SHARDS, TAG_SAMPLE_AUG, TAG_SHARD_ORDER, derive_seed,
                           seeded_generator)
from .sources import DataError, DatasetNotFoundError

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")  # the first one a sample holds is its image
LABEL_EXTENSION = "cls"
INFO_FILE = "_info.json"  # timm's wds layout: {"splits": {split: {"filenames": [...], "shard_lengths": [...]}}}
DEFAULT_SHUFFLE_BUFFER = 8192  # samples; timm's WDS_SHUFFLE_SIZE


# --------------------------------------------------------------------------- reading and writing shards


def _split_name(name: str) -> tuple[str, str]:
    """Member name -> (sample key, extension): the key ends at the first dot of the base name (webdataset)."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{head}/{stem}" if head else stem), (ext.lower() if dot else "")


def _iter_groups(tf: tarfile.TarFile, path: Path) -> Iterator[tuple[str, dict[str, tarfile.TarInfo]]]:
    """(key, {extension: member}) for each sample of an open shard, in order; a sample without an image or a
    label is a DataError (a sample count that silently differs would break the step plan)."""
    key, members = None, {}

    def finished():
        if not any(e in members for e in IMAGE_EXTENSIONS) or LABEL_EXTENSION not in members:
            raise DataError(f"{path}: sample {key!r} has members {sorted(members)}; a sample needs an image "
                            f"({'/'.join(IMAGE_EXTENSIONS)}) and a .{LABEL_EXTENSION} label")
        return key, members

    for m in tf:  # seekable "r:" mode: iterating reads headers and seeks past the data
        if not m.isfile():
            continue
        k, ext = _split_name(m.name)
        if k != key:
            if key is not None:
                yield finished()
            key, members = k, {}
        members[ext] = m
    if key is not None:
        yield finished()


def count_samples(path: Union[str, os.PathLike]) -> int:
    """The number of samples in one shard, from its headers (no image is read)."""
    with tarfile.open(path, "r:") as tf:
        return sum(1 for _ in _iter_groups(tf, Path(path)))


def read_samples(path: Union[str, os.PathLike], wanted: Optional[Iterable[int]] = None
                 ) -> Iterator[tuple[int, bytes, int]]:
    """(index in shard, encoded image bytes, label) of the samples of one shard, in order.

    With ``wanted`` only those indices are read (the other members are skipped
    by seeking), and the scan stops after the last of them.
    """
    path = Path(path)
    todo = None if wanted is None else set(wanted)
    if todo is not None and not todo:
        return
    with tarfile.open(path, "r:") as tf:
        for i, (key, members) in enumerate(_iter_groups(tf, path)):
            if todo is not None and i not in todo:
                continue
            image = next(members[e] for e in IMAGE_EXTENSIONS if e in members)
            text = tf.extractfile(members[LABEL_EXTENSION]).read().decode().strip()
            try:
                label = int(text)
            except ValueError:
                raise DataError(f"{path}: label of sample {key!r} is {text!r}, not an integer") from None
            yield i, tf.extractfile(image).read(), label
            if todo is not None:
                todo.discard(i)
                if not todo:
                    return
    if todo:
        raise DataError(f"{path} has fewer samples than its recorded length (index {min(todo)} not found); "
                        f"fix or delete {INFO_FILE} beside it")


def _encode(image: Any, fmt: str) -> bytes:
    """A PIL image, encoded bytes, or a uint8 array (3, H, W) / (H, W, 3) -> bytes in `fmt`."""
    from PIL import Image

    if isinstance(image, (bytes, bytearray)):
        return bytes(image)
    if not isinstance(image, Image.Image):
        arr = np.asarray(image, dtype=np.uint8)
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)
        image = Image.fromarray(arr.squeeze(-1) if arr.shape[-1] == 1 else arr)
    buf = io.BytesIO()
    image.save(buf, format={"jpg": "JPEG"}.get(fmt, fmt.upper()))
    return buf.getvalue()


def write_shards(images: Union[torch.Tensor, np.ndarray, Sequence[Any]], labels: Sequence[int],
                 out_dir: Union[str, os.PathLike], samples_per_shard: int, *, split: str = "train",
                 prefix: str = "data", image_format: str = "png", num_classes: Optional[int] = None) -> list[Path]:
    """Write ``images`` and ``labels`` as tar shards ``<prefix>-<split>-0000.tar`` ... in ``out_dir``.

    ``images``: uint8 (N, 3, H, W) (the ``repro.data`` layout), or a sequence of PIL
    images, uint8 arrays or already-encoded bytes (stored as they are, named
    ``.<image_format>``). Members are ``<key>.<image_format>`` and ``<key>.cls``
    (timm's wds layout); the tar headers carry no time or owner, so the same
    input gives the same bytes. The split's shard lengths go into
    ``<out_dir>/_info.json`` (other splits there are kept). Returns the shard paths.
    """
    if samples_per_shard <= 0:
        raise ValueError(f"samples_per_shard={samples_per_shard}: must be positive")
    if image_format not in IMAGE_EXTENSIONS:
        raise ValueError(f"image_format={image_format!r}; choose one of {IMAGE_EXTENSIONS}")
    labels = [int(y) for y in labels]
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, lengths = [], []
    for shard, start in enumerate(range(0, len(labels), samples_per_shard)):
        path = out / f"{prefix}-{split}-{shard:04d}.tar"
        stop = min(start + samples_per_shard, len(labels))
        with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
            for i in range(start, stop):
                key = f"{split}_{i:08d}"
                for ext, payload in ((image_format, _encode(images[i], image_format)),
                                     (LABEL_EXTENSION, str(labels[i]).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size, info.mtime, info.mode = len(payload), 0, 0o644
                    tf.addfile(info, io.BytesIO(payload))
        paths.append(path)
        lengths.append(stop - start)
    info_path = out / INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info.setdefault("name", prefix)
    if num_classes is not None:
        info["num_classes"] = int(num_classes)
    info.setdefault("splits", {})[split] = {"name": split, "num_samples": sum(lengths),
                                            "filenames": [p.name for p in paths], "shard_lengths": lengths}
    info_path.write_text(json.dumps(info, indent=1))
    return paths


def find_shards(folder: Union[str, os.PathLike], split: str) -> list[Path]:
    """The shards of ``split`` (``"a+b"`` joins splits) in ``folder`` or one sub-folder down: files
    ``*-<split>-*.tar`` (``imagenet1k-train-0000.tar``), sorted by name within each split."""
    folder = Path(folder)
    found: list[Path] = []
    for part in (s for s in split.split("+") if s):
        for d in [folder] + sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = sorted(d.glob(f"*-{part}-*.tar"))
            if files:
                found += files
                break
    return found


def shard_lengths(paths: Sequence[Path]) -> list[int]:
    """Samples per shard: from the ``_info.json`` beside them (timm's layout) when it names the file, otherwise
    counted from the tar headers (for ImageNet's 1024 train shards, about a minute on a local disk)."""
    known: dict[Path, int] = {}
    for folder in {p.parent for p in paths}:
        info_path = folder / INFO_FILE
        if info_path.exists():
            for entry in (json.loads(info_path.read_text()).get("splits") or {}).values():
                names, counts = entry.get("filenames") or [], entry.get("shard_lengths") or []
                if len(names) == len(counts):
                    known.update({folder / Path(n).name: int(c) for n, c in zip(names, counts)})
    return [known[p] if p in known else count_samples(p) for p in paths]


# --------------------------------------------------------------------------- the plan of an epoch (sample numbers only)


def buffer_shuffle(items: Sequence[int], buffer_size: int, rng: random.Random) -> list[int]:
    """A bounded shuffle of ``items`` (webdataset's ``shuffle``): keep a buffer of ``buffer_size``; once it is
    full, each new item replaces a random one, which is emitted; the rest leaves in random order at the end.
    No item moves earlier than its position minus ``buffer_size``, so a reader keeps at most that many waiting."""
    out, buf = [], []
    for x in items:
        if len(buf) < buffer_size:
            buf.append(x)
            continue
        j = rng.randrange(buffer_size)
        out.append(buf[j])
        buf[j] = x
    rng.shuffle(buf)
    return out + buf


def rank_shards(num_shards: int, *, train: bool, seed: int, epoch: int, rank: int, world_size: int) -> list[int]:
    """Indices of the shards rank ``rank`` reads in ``epoch``, in reading order: a permutation seeded by
    (seed, epoch) at train, the sorted order at eval; then every ``world_size``-th from ``rank``."""
    if train:
        order = torch.randperm(num_shards, generator=seeded_generator(seed, TAG_SHARD_ORDER, epoch)).tolist()
    else:
        order = list(range(num_shards))
    return order[rank::world_size]


@dataclass(frozen=True)
class _Transform:
    """Decode + augment one sample in a worker: encoded bytes -> uint8 (3, H, W)."""

    image_size: tuple[int, int]
    train: bool
    crop: str
    crop_padding: int
    flip: bool
    seed: int

    def __call__(self, payload: bytes, sample: int, epoch: int) -> torch.Tensor:
        from PIL import Image

        out_h, out_w = self.image_size
        with Image.open(io.BytesIO(payload)) as im:
            im = im.convert("RGB")
        if not self.train:  # evaluation: the whole image, resized (official pipeline: no central crop)
            if im.size != (out_w, out_h):
                im = im.resize((out_w, out_h), Image.BILINEAR)
            return _to_chw(im)
        # One generator per (seed, epoch, sample): the crop of a sample does not depend on who decodes it.
        g = seeded_generator(self.seed, TAG_SAMPLE_AUG, epoch, sample)
        if self.crop == "inception":
            top, left, ch, cw = inception_crop_boxes(1, im.height, im.width, g)[0].tolist()
            # Crop and resize in one resampling step, straight to the output size (PIL: antialiased bilinear).
            im = im.resize((out_w, out_h), Image.BILINEAR, box=(left, top, left + cw, top + ch))
        elif im.size != (out_w, out_h):
            im = im.resize((out_w, out_h), Image.BILINEAR)
        x = np.asarray(im)  # (H, W, 3) uint8
        if self.crop == "pad" and self.crop_padding:
            p = self.crop_padding
            top, left = torch.randint(0, 2 * p + 1, (2,), generator=g).tolist()
            x = np.pad(x, ((p, p), (p, p), (0, 0)), mode="reflect")[top:top + out_h, left:left + out_w]
        if self.flip and bool(torch.rand((), generator=g) < 0.5):
            x = x[:, ::-1]
        return _to_chw(x)


def _to_chw(x) -> torch.Tensor:
    """A PIL image or (H, W, 3) uint8 array -> (3, H, W) uint8 tensor. numpy makes the layout change: torch's
    uint8 permute + contiguous took ~10 ms per 224 px image on our 2-core CPU, numpy ~0.05 ms."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(2, 0, 1)))


class _EpochBatches(IterableDataset):
    """The batches ``first_batch ..`` of one rank's epoch; DataLoader worker w of n makes batches
    first_batch + w, first_batch + w + n, ...; each is (uint8 (b, 3, H, W), int64 labels (b,), int64 samples (b,))."""

    def __init__(self, shards: Sequence[Path], offsets: np.ndarray, read_order: Sequence[int], stream: np.ndarray,
                 batch_size: int, first_batch: int, transform: _Transform, epoch: int):
        self.shards, self.offsets, self.read_order = list(shards), offsets, list(read_order)
        self.stream, self.batch_size, self.first_batch = stream, batch_size, first_batch
        self.transform, self.epoch = transform, epoch

    def _batch_ids(self, k: int) -> np.ndarray:
        return self.stream[k * self.batch_size:(k + 1) * self.batch_size]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        num_batches = -(-len(self.stream) // self.batch_size)
        mine = range(self.first_batch + worker, num_batches, num_workers)
        if not len(mine):
            return
        wanted = np.concatenate([self._batch_ids(k) for k in mine])
        shard_of = np.searchsorted(self.offsets, wanted, side="right") - 1
        per_shard: dict[int, list[int]] = {}
        for s, g in zip(shard_of.tolist(), wanted.tolist()):
            per_shard.setdefault(s, []).append(g - int(self.offsets[s]))
        reader = self._read(per_shard)
        waiting: dict[int, tuple[bytes, int]] = {}  # sample -> (encoded image, label), read but not yet emitted
        for k in mine:
            ids = self._batch_ids(k).tolist()
            for g in ids:
                while g not in waiting:
                    sample, payload, label = next(reader)
                    waiting[sample] = (payload, label)
            items = [waiting.pop(g) for g in ids]
            images = torch.stack([self.transform(p, g, self.epoch) for (p, _), g in zip(items, ids)])
            yield images, torch.tensor([y for _, y in items], dtype=torch.long), torch.tensor(ids, dtype=torch.long)

    def _read(self, per_shard: dict[int, list[int]]) -> Iterator[tuple[int, bytes, int]]:
        """The wanted samples in reading order; shards with none of them are never opened."""
        for s in self.read_order:
            if s in per_shard:
                base = int(self.offsets[s])
                for i, payload, label in read_samples(self.shards[s], per_shard[s]):
                    yield base + i, payload, label


# --------------------------------------------------------------------------- the loader


class StreamingLoader(StepLoader):
    """Batches streamed from tar shards, with ``DeviceLoader``'s interface (see the module docstring).

    Args:
        shards: the split's shard files (their order defines the sample numbers; keep it sorted).
        batch_size: the GLOBAL batch size (over all ranks); each rank makes ``batch_size // world_size``.
        device: where batches are delivered.
        train: shuffle (shards per (seed, epoch), samples in a ``shuffle_buffer``) and augment, equal steps on
            every rank; False: every sample once over all ranks, in shard order, last partial batch kept.
        seed: the run's data seed.
        num_classes: labels must lie in [0, num_classes).
        image_size: int or (H, W) of the batches.
        crop, crop_padding, flip: training augmentation as in ``DeviceLoader`` ("inception" at paper scale).
        rank, world_size: which shards this process reads.
        num_workers: DataLoader worker processes decoding and augmenting (0: in this process). The batches do
            not depend on it.
        shuffle_buffer: samples in the shuffle buffer (train).
        lengths: samples per shard when known (default: ``shard_lengths(shards)``).
    """

    def __init__(self, shards: Sequence[Union[str, os.PathLike]], batch_size: int,
                 device: Union[str, torch.device] = "cpu", *, train: bool, num_classes: int, image_size: ImageSize,
                 seed: int = 0, crop: str = "inception", crop_padding: int = 0, flip: bool = True, rank: int = 0,
                 world_size: int = 1, num_workers: int = 2, shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                 lengths: Optional[Sequence[int]] = None, name: str = "", split: str = ""):
        check_loader_args(batch_size, rank, world_size, crop)
        self.shards = [Path(p) for p in shards]
        if len(self.shards) < world_size:
            raise ValueError(f"{len(self.shards)} shards cannot give each of {world_size} ranks its own; "
                             "write the data in more, smaller shards")
        self.lengths = [int(n) for n in (lengths if lengths is not None else shard_lengths(self.shards))]
        if len(self.lengths) != len(self.shards):
            raise ValueError(f"{len(self.lengths)} lengths for {len(self.shards)} shards")
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)  # (S + 1,) first sample
        self.device = torch.device(device)
        self.batch_size, self.local_batch_size = batch_size, batch_size // world_size
        self.train, self.seed, self.num_classes, self.name, self.split = train, seed, num_classes, name, split
        self.rank, self.world_size = rank, world_size
        self.num_workers, self.shuffle_buffer = num_workers, shuffle_buffer
        self.transform = _Transform(as_hw(image_size), train, crop, int(crop_padding), bool(flip) and train, seed)
        self._stream_epoch: Optional[int] = None
        self._stream: Optional[np.ndarray] = None
        self._read_order: list[int] = []
        self._batches: Optional[Iterator] = None
        self._next_step: Optional[int] = None

    @property
    def num_examples(self) -> int:
        """Samples in the split (all ranks)."""
        return int(self.offsets[-1])

    @property
    def steps_per_epoch(self) -> int:
        """Train: full batches the rank with the fewest samples fills in the worst shard draw (the same on every
        rank and epoch). Eval: this rank's batches over its shards, the last one partial."""
        b = self.local_batch_size
        if self.train:
            # Rank r reads floor(S/W) or ceil(S/W) shards; at worst the floor(S/W) smallest ones.
            worst = sum(sorted(self.lengths)[:len(self.lengths) // self.world_size])
            return worst // b
        mine = rank_shards(len(self.shards), train=False, seed=self.seed, epoch=0, rank=self.rank,
                           world_size=self.world_size)
        return -(-sum(self.lengths[s] for s in mine) // b)

    def epoch_samples(self, epoch: int) -> np.ndarray:
        """This rank's sample numbers of ``epoch`` in batch order, int64 (steps_per_epoch * b,) at train."""
        if self._stream_epoch != epoch:
            order = rank_shards(len(self.shards), train=self.train, seed=self.seed, epoch=epoch, rank=self.rank,
                                world_size=self.world_size)
            read = [g for s in order for g in range(int(self.offsets[s]), int(self.offsets[s + 1]))]
            if self.train:
                rng = random.Random(derive_seed(self.seed, TAG_BUFFER, epoch, self.rank))
                read = buffer_shuffle(read, self.shuffle_buffer, rng)[:self.steps_per_epoch * self.local_batch_size]
            self._stream, self._read_order, self._stream_epoch = np.asarray(read, dtype=np.int64), order, epoch
        return self._stream

    def _start(self, epoch: int, first_batch: int) -> None:
        """Workers for ``epoch`` from batch ``first_batch`` on (a fresh epoch, or a resume mid-epoch)."""
        stream = self.epoch_samples(epoch)
        dataset = _EpochBatches(self.shards, self.offsets, self._read_order, stream, self.local_batch_size,
                                first_batch, self.transform, epoch)
        loader = DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda",
                            prefetch_factor=4 if self.num_workers else None)
        self._batches = iter(loader)

    def get_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's batch at global ``step``: (x float32 (b, 3, H, W) in [-1, 1], y int64 (b,)) on the device.

        Steps in order cost one batch each; any other step restarts the stream there (see the module docstring).
        """
        spe = self.steps_per_epoch
        if spe == 0:
            raise ValueError(f"the shards hold too few samples for one batch of {self.local_batch_size} per rank")
        epoch, i = divmod(int(step), spe)
        if self._batches is None or self._next_step != step:
            self._start(epoch, i)
        images, labels, samples = next(self._batches)
        b = self.local_batch_size
        expected = torch.from_numpy(self.epoch_samples(epoch)[i * b:(i + 1) * b])
        if not torch.equal(samples, expected):  # the DataLoader must hand batches back in the planned order
            raise RuntimeError(f"step {step}: the workers delivered other samples than planned")
        if labels.numel() and not (0 <= int(labels.min()) and int(labels.max()) < self.num_classes):
            raise DataError(f"labels {labels.min().item()}..{labels.max().item()} in the shards of {self.name!r} "
                            f"{self.split} lie outside [0, {self.num_classes})")
        self._next_step = step + 1
        if i + 1 == spe:  # end of the epoch: let the workers go; the next epoch starts its own
            self._batches = None
        non_blocking = self.device.type == "cuda"
        x = normalize(images.to(self.device, non_blocking=non_blocking))
        return x, labels.to(self.device, non_blocking=non_blocking)



# --------------------------------------------------------------------------- training's hook


def shard_folder(dataset: str, data_dir: Union[str, os.PathLike, None] = None) -> tuple[Path, str]:
    """The folder holding ``dataset``'s shards and its portable name: ``data_dir`` (or ``data_dir/<name>``),
    else ``$REPRO_DATA_DIR/<name>``. Raises DatasetNotFoundError naming what was tried."""
    info = get_info(dataset)
    split = info.train_split
    tried = []
    candidates = []
    if data_dir is not None:
        candidates += [(Path(data_dir).expanduser(), "data_dir"),
                       (Path(data_dir).expanduser() / dataset, f"data_dir/{dataset}")]
    elif os.environ.get("REPRO_DATA_DIR"):
        candidates.append((Path(os.environ["REPRO_DATA_DIR"]).expanduser() / dataset, f"$REPRO_DATA_DIR/{dataset}"))
    else:
        tried.append("$REPRO_DATA_DIR is not set")
    for folder, label in candidates:
        if folder.is_dir() and find_shards(folder, split):
            return folder, label
        tried.append(f"{label} = {folder}")
    raise DatasetNotFoundError(
        f"no tar shards of {dataset!r} ({' / '.join(f'*-{s}-*.tar' for s in split.split('+'))}) found "
        f"(tried: {'; '.join(tried)}). Fix: put the webdataset shards there, e.g. `huggingface-cli download "
        f"--repo-type dataset timm/imagenet-1k-wds --local-dir $REPRO_DATA_DIR/imagenet1k`, or write them with "
        f"repro.data.streaming.write_shards; or use data_format='decoded'")


def default_num_workers() -> int:
    """Decoding workers per rank: ``$REPRO_DATA_WORKERS``, else the CPUs per local rank less one (1 to 8)."""
    if os.environ.get("REPRO_DATA_WORKERS"):
        return int(os.environ["REPRO_DATA_WORKERS"])
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return max(1, min(8, (os.cpu_count() or 1) // local - 1))


def make_shard_loaders(cfg: Any, device: torch.device, rank: int = 0, world_size: int = 1,
                       num_workers: Optional[int] = None) -> tuple[StreamingLoader, dict[str, StreamingLoader], dict]:
    """``repro.train``'s data when ``cfg.data_format == "shards"``: (train loader, eval loaders by split name,
    the portable data-source record for metrics.jsonl).

    With ``cfg.heldout`` the held-out "val" split is a seeded choice of whole train shards (the data set's
    ``heldout_fraction`` of them, at least one), as timm's pre-shuffled shards allow. The eval loaders read
    every sample in one process (``repro.train.evaluate`` runs on rank 0 only).
    """
    if cfg.max_train is not None or cfg.max_test is not None or cfg.data_image_size not in (None, cfg.image_size):
        raise ValueError("max_train, max_test and a data_image_size other than image_size do not apply to "
                         "data_format='shards' (take fewer shards instead; images are decoded at image_size)")
    info = get_info(cfg.dataset)
    folder, where = shard_folder(cfg.dataset, cfg.data_dir)
    train_files, test_files = find_shards(folder, info.train_split), find_shards(folder, info.test_split)
    lengths = dict(zip(train_files + test_files, shard_lengths(train_files + test_files)))
    splits = {"train": train_files}
    if cfg.heldout:
        n_held = max(1, round(len(train_files) * info.heldout_fraction))
        perm = torch.randperm(len(train_files), generator=seeded_generator(cfg.seed, TAG_HELDOUT_SHARDS)).tolist()
        held = set(perm[:n_held])
        splits = {"train": [p for i, p in enumerate(train_files) if i not in held],
                  "val": [p for i, p in enumerate(train_files) if i in held]}
    if cfg.eval_on_test and test_files:
        splits["test"] = test_files
    workers = default_num_workers() if num_workers is None else num_workers
    common = dict(device=device, num_classes=info.num_classes, image_size=cfg.image_size, seed=cfg.seed,
                  num_workers=workers, name=cfg.dataset)
    train_loader = StreamingLoader(splits["train"], cfg.batch_size, train=True, crop=cfg.crop,
                                   crop_padding=cfg.crop_padding, flip=cfg.flip, rank=rank, world_size=world_size,
                                   lengths=[lengths[p] for p in splits["train"]], split="train", **common)
    eval_loaders = {name: StreamingLoader(files, max(cfg.batch_size, 256), train=False,
                                          lengths=[lengths[p] for p in files], split=name, **common)
                    for name, files in splits.items() if name != "train"}
    base, _, rel = where.partition("/")
    record = {"kind": "shards", "root": base, "path": rel or ".", "description": f"local tar shards {where}",
              "images": {name: sum(lengths[p] for p in files) for name, files in splits.items()},
              "shards": {name: len(files) for name, files in splits.items()}}
    return train_loader, eval_loaders, record

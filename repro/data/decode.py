"""Decoding a split once: ``load_split`` decodes it with PIL into a ``(N, 3, H, W)`` uint8 tensor (``ImageArrays``)
and caches it on disk as ``.npy`` under ``default_cache_dir()`` (size and checksum recorded in its ``.json`` and
checked on open; later calls memory-map the cache); ``content_checksum`` and ``fingerprint`` identify the decoded
data, ``local_split_size`` counts a local split without decoding, and ``normalize`` / ``denormalize`` give the
pixel convention ([-1, 1]). Parquet is read with pyarrow batch by batch rather than through
``datasets.load_dataset("parquet")``, which would first copy every file into a second Arrow cache on disk before
we decode it once anyway. Departure from the paper's input pipeline (BiT pre-processing, Kolesnikov et al. 2020):
images are decoded (and, when asked, resized) once, not per step; the random crops of ``repro.data.loader`` then
work on the decoded pixels. The local CIFAR-10 copy in this environment is the JPEG-compressed one (quality ~75),
so accuracies on it run a little under those on the original PNGs."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
import os
import uuid
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from ..config import ImageSize, to_2tuple
from ..fileio import NoSpaceError, atomic_write, is_no_space
from ..progress import ProgressLine, format_seconds, lines_mode
from .registry import DatasetInfo, get_info
from .sources import (DataError, DatasetNotFoundError, Source, download_command, local_source, parquet_files,
                      resolve_source, split_parts)

# Bump when the decoded bytes for the same inputs would change (resize filter,
# layout of the cache files ...), so stale caches are never read.
CACHE_VERSION = 2

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff")


@dataclass(eq=False)
class ImageArrays:
    """A decoded split: the whole set as one uint8 tensor plus labels.

    images: uint8 (N, 3, H, W), RGB, unnormalised (may be a copy-on-write
    memory map of the on-disk cache); labels: int64 (N,).
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    name: str
    split: str
    source: str
    # sha1 of the whole decoded split these images were taken from (``content_checksum``; subsets keep it)
    checksum: Optional[str] = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def subset(self, idx: Union[torch.Tensor, Sequence[int]], split: Optional[str] = None) -> "ImageArrays":
        """The rows `idx` (copied), optionally renamed to `split`."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        return replace(self, images=self.images[idx], labels=self.labels[idx], split=split or self.split)


def as_hw(image_size: Optional[ImageSize]) -> Optional[tuple[int, int]]:
    """An image size (int or (H, W)) as an (H, W) tuple; None stays None (keep the native size)."""
    return None if image_size is None else to_2tuple(image_size)


def _decode_one(payload: Union[bytes, str], size: Optional[tuple[int, int]]) -> np.ndarray:
    """One encoded image (bytes or a file path) -> uint8 (3, H, W), resized to `size` when it differs."""
    from PIL import Image

    if payload is None:
        raise ValueError("the row holds no image (null)")
    with Image.open(io.BytesIO(payload) if isinstance(payload, (bytes, bytearray)) else payload) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size[1], size[0]):
            # PIL's bicubic widens its kernel when shrinking, i.e. antialiased.
            im = im.resize((size[1], size[0]), Image.BICUBIC)
        return np.asarray(im).transpose(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def _arrow_payloads(col: Any, base: Optional[Path]) -> list[Union[bytes, str, None]]:
    """An arrow image column (struct{bytes, path} or binary) -> encoded bytes, a path when bytes are absent, or None."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if pa.types.is_struct(col.type):
        blobs = col.field("bytes").to_pylist()
        paths = col.field("path").to_pylist() if col.type.get_field_index("path") >= 0 else [None] * len(blobs)
        out = []
        for b, p in zip(blobs, paths):
            if b is None and p is not None:
                p = Path(p)
                out.append(str(p if p.is_absolute() or base is None else base / p))
            else:
                out.append(b)  # None: _decode_all reports the row
        return out
    if pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        return col.to_pylist()  # raw encoded bytes
    raise TypeError(f"the image column is {col.type}, not image bytes (struct{{bytes, path}} or binary)")


def _arrow_labels(col: Any, where: str, column: str) -> np.ndarray:
    """An arrow label column -> int64 (n,); strings, floats and nulls are a DataError naming `where`."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if not pa.types.is_integer(col.type):
        example = next((v for v in col.to_pylist()[:3] if v is not None), None)
        raise DataError(
            f"{where}: labels in column {column!r} are {col.type} (e.g. {example!r}), not integer class indices "
            "0..K-1; map them to indices when writing the file (the hub's ClassLabel columns are stored as int64), "
            "or use an image folder, whose class folder names become the labels")
    if col.null_count:
        raise DataError(f"{where}: {col.null_count} rows have no label in column {column!r}")
    return col.to_numpy().astype(np.int64)


def _pick_column(names: Sequence[str], wanted: str, fallbacks: Sequence[str], what: str, where: str) -> str:
    for c in (wanted, *fallbacks):
        if c in names:
            return c
    raise DataError(f"{where}: no {what} column {wanted!r} (columns: {list(names)})")


@dataclass
class _SplitPlan:
    """What to decode for one split: row count, identity for the cache key, and a batch iterator.

    ``batches()`` yields (payloads, int64 labels, where) with ``where(i)`` naming
    the i-th row of the batch for error messages (a file and row, or an image path).
    """

    num_rows: int
    identity: list
    batches: Any  # () -> Iterator[(list of payloads, np.ndarray int64 labels, (int) -> str)]


def _bad_parquet(f: Path, info: DatasetInfo, err: BaseException) -> DataError:
    return DataError(f"{f}: not a readable parquet file, it is truncated or corrupt ({type(err).__name__}: "
                     f"{str(err).splitlines()[0] if str(err) else ''}); delete it and download it again, e.g. "
                     f"`{download_command(info)}`")


def _plan_parquet(root: Path, info: DatasetInfo, split: str) -> _SplitPlan:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [f for part in split_parts(split) for f in _need_files(root, part)]
    num_rows = 0
    for f in files:  # reads only the footers: a truncated file is found here, before any decoding
        try:
            num_rows += pq.ParquetFile(f).metadata.num_rows
        except (pa.ArrowException, OSError) as e:
            raise _bad_parquet(f, info, e) from e
    identity = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]

    def batches() -> Iterator[tuple[list, np.ndarray, Any]]:
        for f in files:
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            img_col = _pick_column(names, info.image_column, ("image", "img"), "image", str(f))
            lab_col = _pick_column(names, info.label_column, ("label", "labels"), "label", str(f))
            row = 0
            try:
                for b in pf.iter_batches(batch_size=1024, columns=[img_col, lab_col]):
                    start = row
                    where = lambda i, f=f, start=start: f"{f} row {start + i}"  # noqa: E731
                    try:
                        payloads = _arrow_payloads(b.column(img_col), f.parent)
                    except TypeError as e:
                        raise DataError(f"{f}: column {img_col!r}: {e}") from None
                    yield payloads, _arrow_labels(b.column(lab_col), f"{f} rows {start}-{start + b.num_rows - 1}",
                                                  lab_col), where
                    row += b.num_rows
            except (pa.ArrowException, OSError) as e:
                raise _bad_parquet(f, info, e) from e

    return _SplitPlan(num_rows, identity, batches)


def _need_files(root: Path, split: str) -> list[Path]:
    files = parquet_files(root, split)
    if not files:
        raise DatasetNotFoundError(f"{root}: no parquet files for split {split!r} (looked for {split}.parquet, "
                                   f"{split}-*.parquet and {split}/*.parquet in it, in data/ and in its "
                                   f"other sub-folders)")
    return files


def _class_names(root: Path, info: DatasetInfo) -> list[str]:
    """Class folder names over the train and test splits, so both map a class to the same index."""
    names = set()
    for s in split_parts(info.train_split) + split_parts(info.test_split):
        if (root / s).is_dir():
            names.update(p.name for p in (root / s).iterdir() if p.is_dir())
    # Folders named 0..K-1 keep their numbers (lexicographic order would put "10" before "2").
    if names and all(n.isdigit() for n in names):
        return sorted(names, key=int)
    return sorted(names)


def _plan_imagefolder(root: Path, info: DatasetInfo, split: str) -> _SplitPlan:
    classes = _class_names(root, info)
    numeric = bool(classes) and all(c.isdigit() for c in classes)
    index = {c: (int(c) if numeric else i) for i, c in enumerate(classes)}
    if len(classes) > info.num_classes or max(index.values(), default=-1) >= info.num_classes:
        raise DataError(f"{root}: {len(classes)} class folders {classes[:5]}... but {info.name!r} has "
                        f"{info.num_classes} classes (register another dataset with repro.data.register_dataset)")
    items: list[tuple[Path, int]] = []
    for part in split_parts(split):
        d = root / part
        if not d.is_dir():
            raise DatasetNotFoundError(f"{root}: no folder {part}/ for split {split!r}")
        for c in classes:
            cdir = d / c
            if cdir.is_dir():
                items += [(p, index[c]) for p in sorted(cdir.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS]
    # Identity from names, sizes and mtimes: a stat per file, no reading.
    h = hashlib.sha1()
    for p, y in items:
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{y}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    identity = [str(root), len(items), h.hexdigest()]

    def batches() -> Iterator[tuple[list, np.ndarray, Any]]:
        for i in range(0, len(items), 1024):
            chunk = items[i:i + 1024]
            yield ([str(p) for p, _ in chunk], np.array([y for _, y in chunk], dtype=np.int64),
                   lambda j, chunk=chunk: str(chunk[j][0]))

    return _SplitPlan(len(items), identity, batches)


def _plan_hub(src: Source, info: DatasetInfo, split: str) -> _SplitPlan:
    import datasets

    parts = []
    for part in split_parts(split):
        if part not in src.handle:
            raise DatasetNotFoundError(f"hub {src.location}: no split {part!r} (has {list(src.handle)})")
        ds = src.handle[part]
        img_col = _pick_column(ds.column_names, info.image_column, ("image", "img"), "image", src.location)
        lab_col = _pick_column(ds.column_names, info.label_column, ("label",), "label", src.location)
        # decode=False: we want the encoded bytes, PIL decoding is ours.
        parts.append((part, ds.cast_column(img_col, datasets.Image(decode=False)), img_col, lab_col))
    identity = [src.location] + [getattr(ds, "_fingerprint", None) for _, ds, _, _ in parts]

    def batches() -> Iterator[tuple[list, np.ndarray, Any]]:
        for part, ds, img_col, lab_col in parts:
            start = 0
            for t in ds.select_columns([img_col, lab_col]).with_format("arrow").iter(batch_size=1024):
                where = lambda i, part=part, start=start: f"hub {src.location} split {part} row {start + i}"  # noqa: E731
                yield (_arrow_payloads(t.column(img_col), None),
                       _arrow_labels(t.column(lab_col), f"hub {src.location} split {part}", lab_col), where)
                start += t.num_rows

    return _SplitPlan(sum(len(ds) for _, ds, _, _ in parts), identity, batches)


def _plan(src: Source, info: DatasetInfo, split: str) -> _SplitPlan:
    if src.kind in ("parquet", "embedded"):
        return _plan_parquet(Path(src.location), info, split)
    if src.kind == "imagefolder":
        return _plan_imagefolder(Path(src.location), info, split)
    if src.kind == "hub":
        return _plan_hub(src, info, split)
    raise ValueError(f"unknown source kind {src.kind!r}")


def default_cache_dir() -> Path:
    """``$REPRO_CACHE_DIR`` or ``~/.cache/repro``."""
    return Path(os.environ.get("REPRO_CACHE_DIR") or Path.home() / ".cache" / "repro")


def _open_for_write(path: Path):
    """The cache's output file (a seam for tests that fill the disk)."""
    return open(path, "wb", buffering=1 << 20)


def _decode_all(plan: _SplitPlan, size: Optional[tuple[int, int]], out_path: Optional[Path],
                desc: str, num_classes: int) -> tuple[Optional[np.ndarray], np.ndarray]:
    """Decode every image of `plan` into one (N, 3, H, W) uint8 array.

    With `out_path` the array is written there as a .npy file, row by row with
    plain writes (not a sparse memory map, so a full disk is an OSError here
    rather than a bus error later) and None is returned in its place; without,
    it is built in memory. Labels are checked to lie in [0, num_classes).
    """
    n = plan.num_rows
    if n == 0:
        raise DataError(f"{desc}: the split is empty")
    images: Optional[np.ndarray] = None
    shape: Optional[tuple[int, ...]] = None
    labels = np.empty(n, dtype=np.int64)
    i = 0
    # A line that ends as one plain line in a notebook, and leaves nothing in a terminal (repro.progress); none
    # where progress is printed as lines (papermill).
    bar = ProgressLine(n, desc, unit="images", enabled=not lines_mode(), interval=1.0, leave=False)
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)  # an error leaves "stopped at" (after the line below, a second close does nothing)
        out = stack.enter_context(_open_for_write(out_path)) if out_path is not None else None
        for payloads, ys, where in plan.batches():
            bad = np.flatnonzero((ys < 0) | (ys >= num_classes))
            if bad.size:
                j = int(bad[0])
                raise DataError(f"{where(j)}: label {int(ys[j])} is outside [0, {num_classes}) "
                                f"({bad.size} such rows in this batch); {desc.split()[-1]} has {num_classes} classes")
            for j, p in enumerate(payloads):
                try:
                    a = _decode_one(p, size)  # (3, H, W)
                except (OSError, ValueError, SyntaxError, TypeError, EOFError) as e:  # PIL's ways to say "no image"
                    raise DataError(f"{where(j)}: not a readable image ({type(e).__name__}: {e}); "
                                    "fix or remove that row (or file) and run again") from None
                if shape is None:
                    # The first image fixes the size when none was asked for.
                    shape = (n, 3, a.shape[1], a.shape[2])
                    if out is not None:
                        np.lib.format.write_array_header_1_0(
                            out, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                                  "fortran_order": False, "shape": shape})
                    else:
                        images = np.empty(shape, dtype=np.uint8)
                elif a.shape[1:] != shape[2:]:
                    raise DataError(f"{where(j)} is {a.shape[1]}x{a.shape[2]} pixels but the first image of "
                                    f"{desc.split()[-1]} was {shape[2]}x{shape[3]}: images of several sizes must be "
                                    f"resized when decoded; set data_image_size=<pixels> (TrainConfig, e.g. "
                                    f"data_image_size=224), or image_size= when calling repro.data.load_split")
                if out is not None:
                    out.write(np.ascontiguousarray(a).tobytes())
                else:
                    images[i] = a
                i += 1
            labels[i - len(ys):i] = ys
            bar.update(len(payloads))
        bar.close(f"{desc}: {i:,} images in {format_seconds(time.perf_counter() - bar.started)}")
    if i != n:
        raise DataError(f"{desc}: expected {n} images, read {i}")
    return images, labels


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file object: np.save(path) would append ".npy" to the temp name
        np.save(f, arr)


_FULL_HASH_BYTES = 256 << 20  # hash files up to this size whole; bigger ones by samples
_SAMPLE_BLOCKS, _SAMPLE_BYTES = 64, 1 << 16


def _checksum(path: Path) -> str:
    """sha1 of the file (whole up to 256 MiB; beyond, of 64 evenly spread 64 KiB blocks, so opening stays instant).

    Together with the exact byte count it catches a truncated or overwritten
    cache file; it is no defence against deliberate tampering.
    """
    h = hashlib.sha1()
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= _FULL_HASH_BYTES:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            step = (size - _SAMPLE_BYTES) // (_SAMPLE_BLOCKS - 1)
            for k in range(_SAMPLE_BLOCKS):
                f.seek(k * step)
                h.update(f.read(_SAMPLE_BYTES))
    return h.hexdigest()


def _file_record(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha1": _checksum(path)}


def _cache_problem(meta_path: Path, files: dict[str, Path]) -> Optional[str]:
    """None when the cache entry is complete and intact, else what is wrong with it."""
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        return f"{meta_path.name} is unreadable ({e})"
    for key, p in files.items():
        want = meta.get("files", {}).get(key)
        if not isinstance(want, dict) or not p.exists():
            return f"{p.name} is missing or unrecorded"
        size = p.stat().st_size
        if size != want.get("bytes"):
            return f"{p.name} has {size} bytes, {want.get('bytes')} were written (truncated?)"
        if _checksum(p) != want.get("sha1"):
            return f"{p.name} does not match its checksum"
    return None


def load_split(name: str, split: str, *, data_dir: Union[str, os.PathLike, None] = None,
               image_size: Optional[ImageSize] = None, cache_dir: Union[str, os.PathLike, None] = None,
               source: Optional[Source] = None) -> ImageArrays:
    """Decode one split of dataset `name` (once; later calls read the on-disk cache).

    split: "train" or "test" (mapped through the registry, e.g. ImageNet's test
    is the hub's "validation"), or any split name of the source ("a+b" joins).
    image_size: int or (H, W); every image is resized (PIL bicubic,
    antialiased) to it when it differs. None keeps the native size and is an
    error when sizes differ. The decoded tensor is cached under `cache_dir`
    (default ``default_cache_dir()``) keyed by name, source identity (file
    paths + sizes + mtimes, or hub id + fingerprint), split and resolution;
    the cache's ``.json`` records each file's size and checksum, checked on
    every open (a damaged entry is decoded again). Labels are checked to lie
    in [0, num_classes) when decoded.
    `source` skips ``resolve_source`` (get_datasets resolves once for both splits).

    Raises DataError (a ValueError) naming the file and row for a corrupt
    parquet file, a row that is no image, string or out-of-range labels, and
    NoSpaceError (an OSError) when the disk fills while writing the cache.

    Returns ImageArrays with images uint8 (N, 3, H, W) and labels int64 (N,).
    """
    info = get_info(name)
    src = source or resolve_source(name, data_dir)
    raw_split = {"train": info.train_split, "test": info.test_split}.get(split, split)
    size = as_hw(image_size)
    plan = _plan(src, info, raw_split)

    key = json.dumps({"v": CACHE_VERSION, "name": name, "kind": src.kind, "id": plan.identity,
                      "split": raw_split, "size": size}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:16]
    res = "native" if size is None else f"{size[0]}x{size[1]}"
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem = cache / "decoded" / f"{name}-{raw_split}-{res}-{digest}"
    img_path, lab_path, meta_path = (stem.with_name(stem.name + s) for s in (".images.npy", ".labels.npy", ".json"))
    desc = f"decode {name}/{raw_split}"

    images = labels = checksum = None
    if meta_path.exists():
        problem = _cache_problem(meta_path, {"images": img_path, "labels": lab_path})
        if problem is None:
            # mmap_mode="c": copy-on-write, so the tensor is writable (torch wants
            # that) while the file stays untouched and pages load on demand.
            images = np.load(img_path, mmap_mode="c")
            labels = np.load(lab_path)
            # Recorded when the entry was written (and the files were just checked against their checksums).
            checksum = json.loads(meta_path.read_text()).get("content_sha1")
        else:
            warnings.warn(f"decode cache {stem.name} is damaged ({problem}); decoding {name}/{raw_split} again",
                          stacklevel=2)
            meta_path.unlink(missing_ok=True)  # the entry is incomplete until a new .json is written
    if images is None:
        try:
            stem.parent.mkdir(parents=True, exist_ok=True)
            writable = os.access(stem.parent, os.W_OK)
        except OSError:
            writable = False
        if not writable:
            warnings.warn(f"cache folder {stem.parent} is not writable; decoding into memory only")
            images, labels = _decode_all(plan, size, None, desc, info.num_classes)
        else:
            tmp = img_path.with_name(f".{img_path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                _, labels = _decode_all(plan, size, tmp, desc, info.num_classes)
                os.replace(tmp, img_path)
            except OSError as e:
                if is_no_space(e):
                    raise NoSpaceError(img_path, "the decode cache") from e
                raise
            finally:
                tmp.unlink(missing_ok=True)
            atomic_write(lab_path, lambda p: _save_npy(p, labels), what="the decode cache")
            images = np.load(img_path, mmap_mode="c")
            checksum = content_checksum(images, labels)  # once, while the pages are still in memory
            meta = {"key": json.loads(key), "source": src.description, "num_rows": plan.num_rows,
                    "content_sha1": checksum,
                    "files": {"images": _file_record(img_path), "labels": _file_record(lab_path)}}
            # The .json is written last: its presence marks a complete entry.
            atomic_write(meta_path, lambda p: p.write_text(json.dumps(meta, indent=1)), what="the decode cache")

    labels = np.asarray(labels, dtype=np.int64)
    if checksum is None:  # decoded into memory only, or a cache entry written before checksums were recorded
        checksum = content_checksum(images, labels)
    return ImageArrays(images=torch.from_numpy(images), labels=torch.from_numpy(labels),
                       num_classes=info.num_classes, name=name, split=split, source=src.description,
                       checksum=checksum)


def content_checksum(images: np.ndarray, labels: np.ndarray) -> str:
    """sha1 of a decoded split: its shape, labels and pixels (whole up to 256 MiB; beyond, 64 evenly spread
    64 KiB blocks of the pixels, as ``_checksum`` does for files, so that it stays instant for ImageNet).

    Of the arrays, not of the cache files, so that a split decoded into memory only has the same checksum.
    It tells one data set from another (``fingerprint``); it is no defence against deliberate tampering.
    """
    h = hashlib.sha1(json.dumps([list(images.shape), str(images.dtype)]).encode())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    flat = np.ascontiguousarray(images).reshape(-1).view(np.uint8)
    if flat.size <= _FULL_HASH_BYTES:
        h.update(memoryview(flat))
    else:
        step = (flat.size - _SAMPLE_BYTES) // (_SAMPLE_BLOCKS - 1)
        for k in range(_SAMPLE_BLOCKS):
            h.update(flat[k * step:k * step + _SAMPLE_BYTES].tobytes())
    return h.hexdigest()


def fingerprint(splits: dict[str, "ImageArrays"]) -> dict[str, dict]:
    """What identifies the data of a run: per split, its number of images and the checksum of the decoded
    split it was taken from (``ImageArrays.checksum``). Two data folders with other images, or another number
    of them, give other fingerprints; a copy of the same data in another folder gives the same one."""
    return {name: {"images": len(arrays), "sha1": (arrays.checksum or "")[:16]} for name, arrays in splits.items()}


def local_split_size(name: str, data_dir: Union[str, os.PathLike, None] = None, split: str = "train") -> Optional[int]:
    """The number of images in a split of ``name`` when a copy is on this machine (``data_dir``, the embedded
    copy, or ``$REPRO_DATA_DIR/<name>``), read from parquet footers or a folder listing without decoding; None
    when no local copy is found (the hub is not asked: this is for checks that must stay instant)."""
    info = get_info(name)
    try:
        if data_dir is not None:
            src = resolve_source(name, data_dir)
        else:
            env = os.environ.get("REPRO_DATA_DIR")
            root = Path(env).expanduser() / name if env else None
            src = local_source(root, info, f"$REPRO_DATA_DIR/{name}") if root and root.is_dir() else None
        if src is None:
            return None
        return _plan(src, info, {"train": info.train_split, "test": info.test_split}.get(split, split)).num_rows
    except (DatasetNotFoundError, DataError, OSError):
        return None


# --------------------------------------------------------------------------- pixel convention


def normalize(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], i.e. (x/255 - 0.5)/0.5 (the ViT/BiT convention)."""
    return x.float().div_(127.5).sub_(1.0)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of ``normalize``, as float in [0, 1] (for plotting)."""
    return (x + 1.0) / 2.0

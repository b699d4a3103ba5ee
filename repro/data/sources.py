"""Finding a data set's files: ``resolve_source`` tries an explicit ``data_dir``, then ``$REPRO_DATA_DIR/<name>``
(in the layouts ``huggingface-cli download`` writes, or an image folder), then the Hugging Face hub through
``datasets.load_dataset``, and returns a ``Source``; not found is a ``DatasetNotFoundError`` naming the download
command (``download_command``), and the mini CIFAR-10 embedded in the package (``EMBEDDED_DIR``) is used only when
asked for (``data_dir="embedded"``). Also the two errors of the data code (``DatasetNotFoundError``, ``DataError``)
and the helpers that read the hub's folder layouts (``split_parts``, ``parquet_files``, ``local_source``)."""
from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union
from urllib.parse import urlparse

from ..paths import in_repo
from .registry import DATASETS, DatasetInfo, get_info

# The package's mini copies (repro/_data), beside this package.
EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "_data"


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found by any of the ways ``resolve_source`` tries."""


class DataError(ValueError):
    """A dataset's files are there but unusable (corrupt file, a row that is no image, bad labels); names file and fix."""


@dataclass(frozen=True)
class Source:
    """Where a dataset's files come from.

    kind: "parquet" (hub schema on disk), "imagefolder", "hub" or "embedded"
    (the package's mini copy, parquet). ``location`` is the folder (absolute,
    for this machine only) or hub id; ``root`` and ``path`` say the same
    portably: ``root`` is "$REPRO_DATA_DIR", "data_dir", "hub" or "embedded"
    and ``path`` the folder relative to it (or the hub id). ``description`` is
    the human-readable, portable provenance stored in every
    ``ImageArrays.source``. ``handle`` holds the loaded ``datasets.DatasetDict``
    for the hub kind.
    """

    kind: str
    location: str
    description: str
    handle: Any = field(default=None, compare=False, repr=False)
    root: str = ""
    path: str = ""

    def record(self) -> dict:
        """The portable record of this source (no absolute path), e.g. for a run's metrics.jsonl."""
        return {"kind": self.kind, "root": self.root, "path": self.path, "description": self.description}


def split_parts(split: str) -> list[str]:
    """The parts of a split name: ``"train+validation"`` -> ``["train", "validation"]``."""
    return [s for s in split.split("+") if s]


def _candidate_dirs(root: Path) -> list[Path]:
    """Folders that may hold a split's parquet files, in the order they are tried.

    ``root`` itself, then ``data/`` (``huggingface-cli download`` of e.g.
    timm/oxford-iiit-pet), then every other visible sub-folder: the hub's
    config folders (``plain_text/`` of uoft-cs/cifar10, ``cifar100/`` of
    uoft-cs/cifar100). Hidden folders (the ``.cache/`` that
    ``huggingface-cli download --local-dir`` leaves) are skipped.
    """
    dirs = [root]
    if (root / "data").is_dir():
        dirs.append(root / "data")
    with contextlib.suppress(OSError):
        dirs += sorted(p for p in root.iterdir()
                       if p.is_dir() and not p.name.startswith(".") and p.name != "data")
    return dirs


def parquet_files(root: Path, split: str) -> list[Path]:
    """Parquet files of one split in the hub's layouts, first layout that matches wins.

    In each of ``_candidate_dirs(root)``: ``<split>.parquet``,
    ``<split>-*.parquet`` (``train-00000-of-00001.parquet``) or
    ``<split>/*.parquet``.
    """
    for d in _candidate_dirs(root):
        for pattern in (f"{split}.parquet", f"{split}-*.parquet", f"{split}/*.parquet"):
            files = sorted(d.glob(pattern))
            if files:
                return files
    return []


def _has_image_folder(root: Path, split: str) -> bool:
    d = root / split
    return d.is_dir() and any(p.is_dir() for p in d.iterdir())


def _local_kind(root: Path, info: DatasetInfo) -> Optional[str]:
    """"parquet", "imagefolder" or None for a folder, judged by its train and test splits."""
    splits = split_parts(info.train_split) + split_parts(info.test_split)
    if any(parquet_files(root, s) for s in splits):
        return "parquet"
    if any(_has_image_folder(root, s) for s in splits):
        return "imagefolder"
    return None


def local_source(root: Path, info: DatasetInfo, root_label: str) -> Optional[Source]:
    """A Source for `root` or for `root/<name>`, None when neither holds the dataset.

    `root_label` names `root` portably ("data_dir" or "$REPRO_DATA_DIR/<name>").
    """
    for d, label in ((root, root_label), (root / info.name, f"{root_label}/{info.name}")):
        if d.is_dir():
            kind = _local_kind(d, info)
            if kind is not None:
                where = label
                if kind == "parquet":  # name the folder the files sit in (plain_text/, data/ ...)
                    first = parquet_files(d, split_parts(info.train_split)[0]) or parquet_files(
                        d, info.test_split)
                    sub = first[0].parent.relative_to(d).as_posix() if first else "."
                    if sub != ".":
                        where = f"{label}/{sub}"
                base, _, rel = where.partition("/")
                text = "local parquet" if kind == "parquet" else "local image folder"
                return Source(kind, str(d.resolve()), f"{text} {where}", root=base, path=rel or ".")
    return None


def _embedded_source(info: DatasetInfo) -> Optional[Source]:
    if info.embedded is None:
        return None
    root = EMBEDDED_DIR / info.embedded
    files = {s: parquet_files(root, s) for s in (info.train_split, info.test_split)}
    if not all(files.values()):
        return None
    import pyarrow.parquet as pq

    rows = {s: sum(pq.ParquetFile(f).metadata.num_rows for f in fs) for s, fs in files.items()}
    desc = (f"embedded mini {info.name} ({rows[info.train_split]} {info.train_split} / "
            f"{rows[info.test_split]} {info.test_split})")
    if info.name == "cifar10":
        desc = f"embedded mini CIFAR-10 ({rows['train']} train / {rows['test']} test)"
    return Source("embedded", str(root), desc, root="embedded", path=info.embedded)


def _hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Quick TCP probe of the hub endpoint.

    Without it an offline machine spends ~25 s in huggingface_hub's retries
    (measured: 5 retries with back-off) before ``load_dataset`` gives up.
    Behind a proxy the probe says nothing, so it is skipped there.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True, "proxy set, not probed"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, f"{host}:{port} reachable"
    except OSError as e:
        return False, f"{host}:{port} unreachable ({e})"


def _hub_source(info: DatasetInfo) -> tuple[Optional[Source], str]:
    """Load `info.hub_id` with ``datasets`` (its own cache first); returns (source or None, why not)."""
    try:
        import datasets
        import datasets.config
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        return None, f"the `datasets` package is not importable ({e})"
    # datasets reads HF_HUB_OFFLINE / HF_DATASETS_OFFLINE once, at import.
    # Offline it answers at once from its cache (or fails at once); online we
    # probe first so that a machine without network does not wait on retries.
    if not datasets.config.HF_HUB_OFFLINE:
        ok, why = _hub_reachable()
        if not ok:
            return None, why
    try:
        dd = datasets.load_dataset(info.hub_id)
    except Exception as e:  # noqa: BLE001 - any failure means "not from the hub"; don't retry
        return None, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return Source("hub", info.hub_id, f"hub {info.hub_id}", handle=dd, root="hub", path=info.hub_id), ""


def download_command(info: DatasetInfo) -> str:
    """The shell command that puts a copy of `info` where ``resolve_source`` looks (``$REPRO_DATA_DIR/<name>``)."""
    return (f"huggingface-cli download --repo-type dataset {info.hub_id} "
            f"--local-dir $REPRO_DATA_DIR/{info.name}")


def resolve_source(name: str, data_dir: Union[str, os.PathLike, None] = None) -> Source:
    """Find dataset `name`. Tried in order, first hit wins:

    1. ``data_dir`` (or ``data_dir/<name>``): parquet in the hub's schema in any
       of the hub's layouts (``train.parquet``, ``train-*.parquet``,
       ``data/train-*.parquet``, ``<config>/train-*.parquet`` as
       ``huggingface-cli download`` writes them, same for the test split) or an
       image folder ``train/<class>/*.png|jpg``, ``test/<class>/...``.
       ``data_dir="embedded"`` picks the mini copy embedded in the package
       (CIFAR-10 only, 4000/1000 images; the smoke scale's choice).
       An explicit folder that holds neither is an error, never skipped.
    2. ``$REPRO_DATA_DIR/<name>``, same layouts.
    3. The Hugging Face hub, ``datasets.load_dataset(hub_id)`` (downloads once
       into the datasets cache; offline it fails fast).

    There is no silent fallback to the embedded copy: results on it are not
    comparable to the full data set, so it is used only when asked for.

    Raises ValueError for an unknown name, DatasetNotFoundError (a
    FileNotFoundError) whose one-line message names the download command, the
    hub id and ``REPRO_DATA_DIR`` otherwise.
    """
    info = get_info(name)
    if data_dir is not None and str(data_dir) == "embedded":
        src = _embedded_source(info)
        if src is None:
            raise DatasetNotFoundError(f"no embedded copy of {name!r}; only "
                                       f"{[d.name for d in DATASETS.values() if d.embedded]} ship one")
        return src
    if data_dir is not None:
        folder = in_repo(data_dir)  # a relative data_dir is read against the repository, not the working directory
        src = local_source(folder, info, "data_dir")
        if src is None:
            why = "holds no" if folder.is_dir() else "does not exist, so it holds no"
            raise DatasetNotFoundError(f"data_dir={str(data_dir)!r} {why} {name!r} data. " + _ways_to_provide(info))
        return src

    tried = []
    env = os.environ.get("REPRO_DATA_DIR")
    if env:
        root = in_repo(env) / name
        src = local_source(root, info, f"$REPRO_DATA_DIR/{name}") if root.is_dir() else None
        if src is not None:
            return src
        tried.append(f"$REPRO_DATA_DIR/{name} = {root}: " + ("no data in it" if root.is_dir() else "no such folder"))
    else:
        tried.append("$REPRO_DATA_DIR is not set")

    src, why = _hub_source(info)
    if src is not None:
        return src
    tried.append(f"hub {info.hub_id}: {why}")
    raise DatasetNotFoundError(f"dataset {name!r} not found (tried: {'; '.join(tried)}). " + _ways_to_provide(info))


def _ways_to_provide(info: DatasetInfo) -> str:
    """One line: the download command first (the usual fix), then the other ways."""
    tr, te = info.train_split.split("+")[0], info.test_split
    text = (f"Fix: export REPRO_DATA_DIR=<folder> and download it once with `{download_command(info)}`; "
            f"or pass data_dir=<folder> holding {tr}.parquet / {te}.parquet (columns {info.image_column!r} image "
            f"bytes, {info.label_column!r} int labels; the hub's data/{tr}-*.parquet and <config>/{tr}-*.parquet "
            f"layouts work too) or an image folder {tr}/<class>/*.png; or give the hub "
            f"(datasets.load_dataset({info.hub_id!r})) network access")
    if info.embedded:
        text += (f"; or data_dir='embedded' for the mini copy shipped in the package (plumbing tests only: "
                 f"results on it are not comparable to the full {info.name})")
    return text + "."

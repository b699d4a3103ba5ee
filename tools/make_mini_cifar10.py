"""Write the embedded mini CIFAR-10 that ships inside the package.

Draws a fixed, seeded, class-balanced subset of the real CIFAR-10 (the Hugging
Face hub's parquet schema: column ``img`` = struct{bytes: JPEG, path}, column
``label`` = int64) and writes it, in the same schema and with the original
JPEG bytes untouched, to ``repro/_data/cifar10_mini/{train,test}.parquet``.

    .venv/bin/python tools/make_mini_cifar10.py \
        [--src ../shared/data/cifar10] [--train-per-class 400] [--test-per-class 100]

The defaults give 4000 train + 1000 test images (about 5 MB). The draw is a
pure function of (source files, seed, counts): rerunning the script rewrites
byte-identical rows. Rows keep the source order (CIFAR-10's order is already
random), so the subset's first rows are not sorted by class.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "data" / "cifar10"
DEFAULT_OUT = REPO / "repro" / "_data" / "cifar10_mini"


def balanced_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Sorted row indices: `per_class` rows of every class, drawn without replacement."""
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < per_class:
            raise ValueError(f"class {c} has only {len(rows)} rows, {per_class} asked")
        picked.append(rng.choice(rows, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def write_subset(src: Path, dst: Path, per_class: int, seed: int) -> pa.Table:
    """Read `src` parquet, keep a balanced subset, write it to `dst` (schema and metadata kept)."""
    table = pq.read_table(src)
    labels = table.column("label").to_numpy()
    sub = table.take(pa.array(balanced_indices(labels, per_class, seed)))
    # Record how the file was made beside the hub's own schema metadata.
    meta = dict(sub.schema.metadata or {})
    meta[b"repro"] = json.dumps(
        {"made_by": "tools/make_mini_cifar10.py", "source": src.name, "seed": seed,
         "per_class": per_class, "rows": sub.num_rows}
    ).encode()
    sub = sub.replace_schema_metadata(meta)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # One row group and no dictionary encoding of the (unique) JPEG blobs; JPEG
    # bytes do not compress further, so no codec either.
    pq.write_table(sub, dst, compression="none", use_dictionary=["label"], row_group_size=sub.num_rows)
    return sub


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", type=Path, default=DEFAULT_SRC, help="folder with train.parquet and test.parquet")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--train-per-class", type=int, default=400)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    total = 0
    for split, per_class, seed in (("train", args.train_per_class, args.seed),
                                   ("test", args.test_per_class, args.seed + 1)):
        dst = args.out / f"{split}.parquet"
        sub = write_subset(args.src / f"{split}.parquet", dst, per_class, seed)
        size = dst.stat().st_size
        total += size
        counts = np.bincount(sub.column("label").to_numpy())
        print(f"{dst}: {sub.num_rows} rows, {size / 1e6:.2f} MB, per class {counts.tolist()}")
    print(f"total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()

"""Record the weights digest of committed runs whose weights were never committed (one-off, run once).

A fine-tuning run is named by the SHA-256 of the weights it started from (``repro.train.TrainConfig.identity``).
Since this project records that digest in the ``model.json`` beside the weights (``weights_sha256``), a
committed run stays findable where its weights are not kept. Runs committed before that recorded it only in the
config of the runs initialised from them (``identity.init_from = "sha256:<digest>"``); this script copies
that recorded digest into the parent's ``model.json``. It computes nothing itself: every digest it writes was
measured from the weights file by the run that read it.

Usage: python tools/backfill_weight_digests.py [results]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def backfill(results: Path) -> int:
    written = 0
    for config_path in sorted(results.glob("*/*/runs/*/config.json")):
        config = json.loads(config_path.read_text())
        recorded = (config.get("identity") or {}).get("init_from") or ""
        if not (config.get("init_from") and recorded.startswith("sha256:")):
            continue
        # init_from is written relative to the notebook's folder (the kernel's working directory)
        weights = (REPO / "notebooks" / config["init_from"]).resolve()
        meta_path = weights.with_name(weights.name.removesuffix(".safetensors") + ".json")
        if not meta_path.exists():
            print(f"skip {config_path.parent.name}: no {meta_path.relative_to(REPO)}")
            continue
        meta = json.loads(meta_path.read_text())
        digest = recorded.removeprefix("sha256:")
        if meta.get("weights_sha256") not in (None, digest):
            raise SystemExit(f"{meta_path}: records {meta['weights_sha256']}, a child recorded {digest}")
        if meta.get("weights_sha256") is None:
            meta["weights_sha256"] = digest
            meta_path.write_text(json.dumps(meta, indent=2))
            written += 1
    return written


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "results"
    print(f"recorded {backfill(root)} weights digests")

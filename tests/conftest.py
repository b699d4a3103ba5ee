"""Test-wide settings: offline, deterministic, small, and the real CIFAR-10 when it lies beside the repo."""
import os
from pathlib import Path

import pytest
import torch

# No hub can be reached in CI; make `datasets`/`huggingface_hub` fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
if SHARED_DATA.is_dir():
    os.environ.setdefault("REPRO_DATA_DIR", str(SHARED_DATA))

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets the same session-wide decode cache, never the user's ~/.cache."""
    cache = tmp_path_factory.getbasetemp() / "repro-cache"
    monkeypatch.setenv("REPRO_CACHE_DIR", str(cache))

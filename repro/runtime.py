"""Where a run executes: the device and its checks, torchrun's process group, bf16 autocast, the per-step seeds,
a stop request on SIGINT / SIGTERM, and the provenance written beside every run (``env.json``)."""
from __future__ import annotations

import contextlib
import os
import platform
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import timm
import torch


@dataclass
class Distributed:
    """Where this process sits: rank 0 of 1 unless started by torchrun."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun process group if there is one; pick the device (``cuda:LOCAL_RANK`` under torchrun)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    dist = Distributed(int(os.environ.get("RANK", "0")), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device_pref == "auto":
        device = torch.device(f"cuda:{dist.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_pref)
        if device.type == "cuda" and device.index is None and world_size > 1:
            device = torch.device(f"cuda:{dist.local_rank}")  # one GPU per rank
    if world_size > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist, device


def check_device_name(name: str) -> None:
    """Raise a ValueError unless `name` is auto, cpu, cuda, cuda:N or mps (a typo is caught before any work)."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", name):
        raise ValueError(f"device={name!r}; choose auto, cpu, cuda, cuda:N or mps")


def check_device(name: str) -> None:
    """``check_device_name``, and that the device is there: cuda without a GPU is a one-line ValueError."""
    check_device_name(name)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} but torch sees no CUDA GPU (torch {torch.__version__}, "
                             f"CUDA build {torch.version.cuda or 'none'}); use device=cpu or device=auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r} but only {torch.cuda.device_count()} GPU(s) are visible")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device='mps' but the MPS backend is not available here; use device=cpu or device=auto")


def autocast_context(amp: str, device: torch.device):
    """bf16 autocast on CUDA (``amp="auto"``) or when asked (``"bf16"``), nothing otherwise."""
    use_bf16 = amp == "bf16" or (amp == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_for(seed: int, step: int) -> int:
    """The global RNG seed of one step (dropout, drop-path): a pure function of (seed, step)."""
    return (seed * 1_000_003 + step) % (2**63 - 1)


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_name() -> str:
    """The CPU model and how many threads torch uses, e.g. 'Intel Xeon ... (2 threads)'."""
    model = platform.processor() or "cpu"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model} ({torch.get_num_threads()} threads)"


def environment(device: torch.device, seed: int, dist: Distributed) -> dict:
    """The provenance of a run (``env.json``): code revision, library versions, device, seed, host."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "git_revision": git_revision(), "torch": torch.__version__, "timm": timm.__version__,
        "python": sys.version.split()[0], "device": str(device), "device_name": name,
        "cpu_threads": torch.get_num_threads(), "world_size": dist.world_size, "seed": seed,
        "hostname": platform.node(),
    }


class StopRequest:
    """Turns SIGINT (Ctrl-C, a Jupyter interrupt) and SIGTERM (torchrun, SLURM) into a flag that the loop reads
    between steps, so the checkpoint it then saves always matches its step."""

    def __init__(self):
        self.signal_name: Optional[str] = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signal_name is not None:  # a second Ctrl-C: stop at once
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False



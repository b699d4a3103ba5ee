"""Pre-training and fine-tuning, per App. B of the paper, in one visible loop.

``train(cfg)`` runs one job and returns its run directory. ``pretrain`` and
``finetune`` are ``train`` with the paper's recipe filled in:

- pre-training (App. B.1): Adam(W) with beta1 0.9, beta2 0.999, weight decay
  0.1, linear warm-up then linear decay, optional dropout and label smoothing;
- fine-tuning (App. B.1.1): SGD with momentum 0.9, no weight decay, cosine
  decay, gradient clipping at global norm 1, a fresh zero-initialised head, an
  optional higher resolution with interpolated position embeddings (Sec. 3.2);
  ``finetune_sweep`` picks the learning rate on the held-out split.

A run directory holds ``config.json``, ``metrics.jsonl`` (one JSON object per
log or eval event), ``env.json`` (git revision, versions, device, seed),
``checkpoint.pt`` (model + optimiser + step, written atomically) and, once done,
``final.json`` and the weights ``model.safetensors`` + ``model.json``. Running
the same config again resumes from the checkpoint, or returns at once when the
run has finished. Batches and dropout are pure functions of (seed, step), so a
resumed run ends with the same metrics as an uninterrupted one.

Departures: weight decay is decoupled (AdamW) and skips biases, norms, tokens
and position embeddings (the official code decays every kernel; timm and
big_vision skip the 1-D parameters too).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import hashlib
import json
import math
import os
import platform
import re
import signal
import subprocess
import threading
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import data as data_lib
from .fileio import atomic_write, atomic_write_text, check_writable, read_jsonl
from .data.loader import DeviceLoader
from .models import create_model
from .mpp import build_mpp_model, evaluate_mpp, mpp_objective, save_mpp_head


@dataclass
class TrainConfig:
    """Everything that defines a run. Two runs with equal configs are the same run.

    Defaults are the paper's pre-training recipe (App. B.1) at a small size;
    ``finetune_config`` gives the fine-tuning recipe.
    """

    # What to train
    model: str = "ViT-XS/4"
    model_overrides: dict = field(default_factory=dict)  # pos_embed, pool, dropout, representation_size...
    init_from: Optional[str] = None   # checkpoint to start from (fine-tuning); any format repro.checkpoints reads
    objective: str = "classification"  # classification | mpp (masked patch prediction, Sec. 4.6)
    mpp_target: str = "mean_color"    # mpp only: mean_color | downsized | pixels (App. B.1.2)
    mpp_corrupt_rate: float = 0.5     # mpp only: fraction of patches corrupted per image
    # Data
    dataset: str = "cifar10"
    data_dir: Optional[str] = None
    data_image_size: Optional[int] = None  # decode resolution; None keeps the dataset's native size
    image_size: int = 32              # the model's input resolution (batches are resized on the device)
    heldout: bool = True              # train on 90% (98% ImageNet), evaluate on the held-out rest
    heldout_size: Optional[int] = None  # held-out images instead of the data set's fraction (lr choice on >= 1000)
    eval_on_test: bool = True         # also report the test split at the end
    max_train: Optional[int] = None
    max_test: Optional[int] = None
    classes: Optional[tuple] = None   # keep these classes only, relabelled 0..k-1 (a source or target task)
    train_part: Optional[str] = None  # source | target: the rest, or a fixed balanced target_size of the train set
    target_size: int = 5000           # images in the target part (train_part only)
    data_format: str = "decoded"      # decoded (whole split on each device) | shards (tar shards, repro.streaming)
    crop: str = "pad"                 # pad (CIFAR-style, crop_padding px) | inception (official, area 5-100%) | none
    crop_padding: int = 4
    flip: bool = True
    # Optimisation
    optimizer: str = "adamw"          # adamw (pre-training) | sgd (fine-tuning)
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.999)
    momentum: float = 0.9
    batch_size: int = 128             # global batch, split over ranks under torchrun
    steps: int = 1000
    warmup_steps: int = 100
    schedule: str = "linear"          # linear | cosine decay after warm-up
    grad_clip: Optional[float] = None  # 1.0 at fine-tuning
    label_smoothing: float = 0.0
    # Runtime
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda | cuda:N
    amp: str = "auto"                 # auto (bf16 on CUDA) | bf16 | off
    compile: bool = False
    log_every: int = 50
    eval_every: int = 0               # 0: only at the end
    keep_best: bool = False           # report and keep the weights of the best held-out evaluation (early stopping)
    checkpoint_every: int = 200
    out_dir: str = "runs"
    run_name: Optional[str] = None    # default: model, dataset and a hash of the config

    def __post_init__(self):
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer={self.optimizer!r}; choose 'adamw' or 'sgd'")
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}; choose 'linear' or 'cosine'")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective={self.objective!r}; choose one of {sorted(OBJECTIVES)}")
        if self.steps <= 0 or self.batch_size <= 0:
            raise ValueError("steps and batch_size must be positive")
        self.betas = tuple(self.betas)
        if self.classes is not None:
            self.classes = tuple(self.classes)
        self._check_values()

    # Counts that must be >= 1 (0 would divide by zero or train on nothing), and their meaning for the message.
    _POSITIVE = {"log_every": "steps between log lines", "checkpoint_every": "steps between checkpoints",
                 "heldout_size": "held-out images (None: the data set's held-out fraction)",
                 "image_size": "pixels", "data_image_size": "pixels (None keeps the native size)",
                 "max_train": "training images (None: all of them)", "max_test": "test images (None: all of them)"}

    def _check_values(self) -> None:
        """One clear ValueError per value that would otherwise fail mid-run or be silently ignored."""
        for key, meaning in self._POSITIVE.items():
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"{key}={value!r}: must be a positive number of {meaning}")
        for key in ("eval_every", "warmup_steps", "crop_padding", "seed"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{key}={value!r}: must be an integer >= 0")
        if self.train_part not in (None, *data_lib.TRAIN_PARTS):
            raise ValueError(f"train_part={self.train_part!r}; choose one of {data_lib.TRAIN_PARTS} or None (all)")
        if not isinstance(self.target_size, int) or self.target_size <= 0:
            raise ValueError(f"target_size={self.target_size!r}: must be a positive number of images")
        if self.data_format == "shards" and (self.classes is not None or self.train_part is not None):
            raise ValueError("classes= and train_part= select from a decoded data set; data_format='shards' "
                             "streams whole shards")
        if self.data_format not in ("decoded", "shards"):
            raise ValueError(f"data_format={self.data_format!r}; choose 'decoded' or 'shards'")
        if self.amp == "fp16":
            raise ValueError("amp='fp16' is not supported: fp16 needs loss scaling (torch.amp.GradScaler), which this "
                             "loop does not do; use amp='bf16' (same speed on GPUs since Ampere, no scaling needed), "
                             "'auto' (bf16 on CUDA) or 'off'")
        if self.amp not in ("auto", "bf16", "off"):
            raise ValueError(f"amp={self.amp!r}; choose 'auto' (bf16 on CUDA), 'bf16' or 'off'")
        if self.keep_best and not (self.heldout and self.eval_every):
            raise ValueError("keep_best=True keeps the weights of the best held-out evaluation: it needs heldout=True "
                             "and eval_every > 0")
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing}: must lie in [0, 1] (0.1 is usual)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr}: must be a positive number")
        if self.weight_decay < 0 or (self.grad_clip is not None and self.grad_clip <= 0):
            raise ValueError(f"weight_decay={self.weight_decay} must be >= 0 and grad_clip={self.grad_clip} > 0 "
                             "(or None)")
        if not isinstance(self.model_overrides, dict):
            raise ValueError(f"model_overrides must be a dict, e.g. {{'pos_embed': '2d'}}, got {self.model_overrides!r}")
        owned = {"num_classes": "it comes from the dataset (register_dataset to change it)",
                 "img_size": "set image_size= instead"}
        for key in sorted(set(self.model_overrides) & set(owned)):
            raise ValueError(f"model_overrides may not set {key}: {owned[key]}")
        check_device_name(self.device)
        self._check_used()

    # Fields that only masked patch prediction reads, at their defaults.
    _MPP_ONLY = {"mpp_target": "mean_color", "mpp_corrupt_rate": 0.5}

    def _check_used(self) -> None:
        """Refuse values that this run would ignore: the masked-patch options of a classification run, label
        smoothing of a masked-patch run (its loss is not a smoothed cross-entropy), a boolean as a class id."""
        if self.objective != "mpp":
            unused = [f"{key}={getattr(self, key)!r}" for key, default in self._MPP_ONLY.items()
                      if getattr(self, key) != default]
            if unused:
                raise ValueError(f"{', '.join(unused)}: only masked patch prediction reads it; add objective='mpp' "
                                 f"or leave it out (objective={self.objective!r})")
        elif self.label_smoothing:
            raise ValueError(f"label_smoothing={self.label_smoothing}: masked patch prediction does not smooth its "
                             "targets; leave label_smoothing at 0 with objective='mpp'")
        if self.classes is not None and not all(isinstance(c, int) and not isinstance(c, bool) for c in self.classes):
            raise ValueError(f"classes={list(self.classes)}: class ids are integers, e.g. classes=[5, 6, 7] "
                             "(True and False are not class ids)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def num_classes(self) -> int:
        """The classifier's width: the dataset's classes, or those ``classes`` keeps."""
        return len(self.classes) if self.classes is not None else data_lib.get_info(self.dataset).num_classes

    # Fields that change where a run is written, how often it logs or how fast it runs, not what it computes.
    NOT_IDENTITY = ("out_dir", "run_name", "log_every", "checkpoint_every", "compile", "device")

    LATER_FIELDS = {"data_format": "decoded", "classes": None, "train_part": None, "target_size": 5000,
                    "heldout_size": None, "keep_best": False}

    def identity_fields(self) -> dict:
        """The fields that define what the run computes, as JSON-ready values.

        Nothing here depends on where files live, so a clone in any folder gets the same run names: the
        ``init_from`` checkpoint counts by the SHA-256 of its bytes, and ``data_dir`` only when it picks
        the embedded mini copy (a local copy of a data set is the same data wherever it lies).
        """
        fields = {k: v for k, v in self.to_dict().items() if k not in self.NOT_IDENTITY}
        if self.init_from:
            fields["init_from"] = f"sha256:{checkpoint_digest(self.init_from)}"
        if fields["data_dir"] != "embedded":
            fields["data_dir"] = None
        # Fields added after runs were committed: at their default they are left out, which keeps those runs' names.
        for key, default in self.LATER_FIELDS.items():
            if fields[key] == default:
                del fields[key]
        return json.loads(json.dumps(fields, default=str))

    def identity(self) -> str:
        """A short hash of everything that changes the result (not where it is written or how often logged)."""
        return hashlib.sha1(json.dumps(self.identity_fields(), sort_keys=True).encode()).hexdigest()[:10]

    @property
    def run_dir(self) -> Path:
        name = self.run_name or f"{self.model.replace('/', '-').replace('+', '_')}_{self.dataset}_{self.identity()}"
        return Path(self.out_dir) / name


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """``weights_digest`` cached per (path, size, mtime): the same file is hashed once per process."""
    from .checkpoints import weights_digest

    return weights_digest(path)


def checkpoint_digest(path: str) -> str:
    """A short SHA-256 of a checkpoint's weights file (cached per path, size and mtime): its identity.

    A run's weights are not committed, but their digest is, in the ``model.json`` beside them: when the
    weights file is gone, that recorded digest names the runs that started from it (a fine-tuning of a
    committed pre-training keeps its name in any clone)."""
    from .checkpoints import recorded_weights_digest, resolve_checkpoint_path

    try:
        weights = resolve_checkpoint_path(path)
    except FileNotFoundError:
        recorded = recorded_weights_digest(path)
        if recorded is None:
            raise
        return recorded
    st = weights.stat()
    return _file_digest(str(weights.resolve()), st.st_size, st.st_mtime_ns)


def finetune_config(**overrides) -> TrainConfig:
    """The paper's fine-tuning recipe (App. B.1.1): SGD 0.9, no weight decay, cosine, clip at norm 1.

    Steps, batch, warm-up, resolution and lr grid per data set are in ``repro.recipes`` (Table 4); the
    scales fill them in (``Scale.train_fields("finetune")``).
    """
    recipe = dict(optimizer="sgd", weight_decay=0.0, schedule="cosine", grad_clip=1.0, lr=0.01, warmup_steps=0)
    return TrainConfig(**{**recipe, **overrides})


# --- objectives: what a batch costs. Masked patch prediction (Sec. 4.6) plugs in here. ------------

class Objective(Protocol):
    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, cfg: TrainConfig
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (loss, number of correct predictions) for one batch, both 0-dim tensors on the device."""


def classification_objective(model, images, labels, cfg):
    logits = model(images)  # (B, K)
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=cfg.label_smoothing)
    return loss, (logits.argmax(-1) == labels).sum()


OBJECTIVES: dict[str, Objective] = {"classification": classification_objective, "mpp": mpp_objective}


# --- pieces of the loop ----------------------------------------------------------------------------

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


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``cfg.lr`` over ``warmup_steps``, then linear or cosine decay to 0 at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * (1 - progress)


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW or SGD; weight decay only on matrices and kernels (ndim >= 2) that the model does not name in
    ``no_weight_decay()`` (tokens and position tables, timm's convention)."""
    named_no_decay = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim < 2 or name in named_no_decay
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, **fast)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, **fast)


def autocast_context(cfg: TrainConfig, device: torch.device):
    """bf16 autocast on CUDA (and when asked), nothing otherwise."""
    use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
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


def environment(device: torch.device, cfg: TrainConfig, dist: Distributed) -> dict:
    import timm
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "git_revision": git_revision(), "torch": torch.__version__, "timm": timm.__version__,
        "python": sys.version.split()[0], "device": str(device), "device_name": name,
        "cpu_threads": torch.get_num_threads(), "world_size": dist.world_size, "seed": cfg.seed,
        "hostname": platform.node(),
    }


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temp file and a rename: a crash never leaves half a checkpoint.

    torch's C++ writer reports a failed write (a full disk) only as ``RuntimeError: [enforce fail at
    inline_container.cc] ... unexpected pos``, so it writes through a Python file object here that keeps the
    OSError behind it; that is raised instead, and ``atomic_write`` turns ENOSPC into a NoSpaceError naming
    the file.
    """
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            sink = _KeepWriteError(f)
            try:
                torch.save(obj, sink)
            except RuntimeError:
                if sink.error is not None:
                    raise sink.error from None
                raise

    atomic_write(path, write, what="the checkpoint")


class _KeepWriteError:
    """A writable file that remembers the OSError of a failed write (torch's writer swallows it)."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


class MetricsLog:
    """Append-only JSON lines; on resume, lines after the checkpoint's step are dropped (they will be redone)."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if not (self.enabled and self.path.exists()):
            return
        kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, **record) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg: TrainConfig, device: torch.device) -> dict:
    """Loss and top-1 accuracy of ``model`` over every example of ``loader`` (in order, no augmentation);
    for masked patch prediction, its loss and per-prediction accuracy under a fixed corruption."""
    if cfg.objective == "mpp":
        return evaluate_mpp(model, loader, seed=cfg.seed, autocast=lambda: autocast_context(cfg, device))
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for images, labels in loader:
        with autocast_context(cfg, device):
            logits = model(images)
        total_loss += F.cross_entropy(logits.float(), labels, reduction="sum")
        correct += (logits.argmax(-1) == labels).sum()
        count += labels.numel()
    model.train(was_training)
    return {"loss": total_loss.item() / max(count, 1), "accuracy": correct.item() / max(count, 1), "count": count}


def build_model_for(cfg: TrainConfig, num_classes: int, device: torch.device) -> tuple[nn.Module, dict]:
    """The model of ``cfg``, initialised from ``cfg.init_from`` when given (head reset, positions resampled)."""
    model = create_model(cfg.model, num_classes=num_classes, img_size=cfg.image_size, **cfg.model_overrides)
    info = {}
    if cfg.init_from:
        from .checkpoints import load_checkpoint
        # "reset": fine-tuning always starts from a zero head (Sec. 3.2), whatever the checkpoint's head.
        report = load_checkpoint(model, cfg.init_from, num_classes_mismatch="reset")
        info = dataclasses.asdict(report)
    if cfg.objective == "mpp":  # the ViT inside a wrapper with the [mask] embedding and the colour head
        model = build_mpp_model(model, cfg.mpp_target, cfg.mpp_corrupt_rate)
    return model.to(device), info


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


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


def check_run_dir_matches(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse to resume or reuse a run directory that holds another config (e.g. a reused ``run_name``)."""
    path = run_dir / "config.json"
    if path.exists():
        saved = json.loads(path.read_text())
        # Run directories written before config.json carried its identity: compare the fields as saved.
        saved = saved.get("identity") or {k: v for k, v in saved.items() if k not in TrainConfig.NOT_IDENTITY}
        current = cfg.identity_fields()
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if diff:
            raise ValueError(f"{run_dir} holds a run with another config (differs in {diff}); "
                             f"pick another run_name or out_dir, or delete the folder")


def weights_are_finite(model: nn.Module) -> bool:
    """True when every parameter is finite (one sync; called only before a checkpoint is written)."""
    return bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all())


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


class RunDirBusy(RuntimeError):
    """Another process holds the lock of a run directory (it is training the same config)."""


class RunDirLock:
    """An exclusive ``fcntl.flock`` on ``<run_dir>/.lock`` for as long as a run writes there.

    flock is released by the kernel when the holder exits or dies (kill -9,
    OOM), so a crashed run never leaves a stale lock. The holder's pid and host
    are written into the file for the error message of the next taker. The file
    is removed on release; a taker that locked a file removed meanwhile tries again.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: Optional[int] = None

    @staticmethod
    def holder(path: Path) -> str:
        with contextlib.suppress(OSError):
            text = path.read_text().split()
            if text:
                return f"pid {text[0]}" + (f" on {text[1]}" if len(text) > 1 else "")
        return "an unknown process"

    def busy_error(self) -> RunDirBusy:
        return RunDirBusy(f"{self.path.parent} is in use by another process ({self.holder(self.path)}) running the "
                          f"same config; wait for it to finish or stop it (its checkpoint lets this run resume), "
                          f"then run the same command again")

    def __enter__(self) -> "RunDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self.busy_error() from None
            try:  # the file we locked must still be the one at the path (the last holder removes it)
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {platform.node()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)  # closing releases the flock
            self.fd = None

    @classmethod
    def check_free(cls, run_dir: Path) -> None:
        """Raise RunDirBusy now if another process holds the lock (creates nothing)."""
        path = Path(run_dir) / ".lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise cls(run_dir).busy_error() from None
        finally:
            os.close(fd)


def remove_stale_temp_files(run_dir: Path) -> list[str]:
    """Delete the hidden ``.*.tmp`` files an atomic write leaves when killed mid-write (call with the lock held)."""
    removed = []
    for p in Path(run_dir).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p.name)
    return removed


class BestWeights:
    """The weights of the evaluation with the best held-out top-1 so far (``TrainConfig.keep_best``: early
    stopping, as the paper reports the best validation accuracy along training in Fig. 3 and 4). Kept on the
    host; ``state()`` goes into ``checkpoint.pt`` so that a resumed run keeps the same best."""

    def __init__(self, state: Optional[dict] = None):
        state = state or {}
        self.step, self.accuracy, self.weights = state.get("step"), state.get("accuracy", -1.0), state.get("weights")

    def offer(self, step: int, accuracy: float, model: nn.Module) -> None:
        """Keep ``model``'s weights when ``accuracy`` beats the best so far (the earlier evaluation wins a tie)."""
        if accuracy > self.accuracy:
            self.step, self.accuracy = step, accuracy
            self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def state(self) -> dict:
        return {"step": self.step, "accuracy": self.accuracy, "weights": self.weights}


class ResumeError(ValueError):
    """A run directory's ``checkpoint.pt`` cannot be resumed from."""


# Set (to "1") by ``repro reproduce --redraw``: tables, claims and figures are rebuilt from the files that
# finished runs left (config, metrics, final.json, probes) without training anything; their weights need
# not be there (they are not committed).
REDRAW_ENV = "REPRO_REDRAW"


def redraw_only() -> bool:
    """True in redraw mode (``REPRO_REDRAW=1``): ``train`` returns finished runs without their weights and
    trains nothing."""
    return os.environ.get(REDRAW_ENV) == "1"


class RunNotFinished(LookupError):
    """Redraw mode asked for a run that has not finished here: only a run that trains can provide it."""


def preflight(cfg: TrainConfig, run_dir: Path) -> Optional["data_lib.Source"]:
    """Check everything ``cfg`` needs before any data is decoded, weights read or file written.

    The device, the dataset name and its class count, the model (name, patch and
    image size, overrides: built on the meta device, so no memory is used), the
    ``init_from`` file (present, a known format, not truncated), that the run
    directory can be written and is not in use, and that the data can be found.
    Returns the data source, so it is resolved once (None for ``data_format="shards"``).
    """
    check_device(cfg.device)
    info = data_lib.get_info(cfg.dataset)
    if info.num_classes <= 0:
        raise ValueError(f"dataset {cfg.dataset!r} is registered with num_classes={info.num_classes}; a classifier "
                         "needs at least 1 class")
    if cfg.classes is not None and (len(set(cfg.classes)) != len(cfg.classes)
                                    or not all(isinstance(c, int) and 0 <= c < info.num_classes for c in cfg.classes)):
        raise ValueError(f"classes={list(cfg.classes)}: give distinct class indices in [0, {info.num_classes}) of "
                         f"{cfg.dataset}")
    with torch.device("meta"):
        create_model(cfg.model, num_classes=cfg.num_classes(), img_size=cfg.image_size, **cfg.model_overrides)
    if cfg.init_from:
        from .checkpoints import _sniff, resolve_checkpoint_path
        _sniff(resolve_checkpoint_path(cfg.init_from))
    check_writable(run_dir, "run directory")
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun rank 0 locks for all ranks; others would see it busy
        RunDirLock.check_free(run_dir)
    if cfg.data_format == "shards":
        from .data.streaming import shard_folder
        shard_folder(cfg.dataset, cfg.data_dir)  # raises DatasetNotFoundError when there are no shards
        return None
    return data_lib.resolve_source(cfg.dataset, cfg.data_dir)


def train(cfg: TrainConfig, *, callback: Optional[Callable[[int, dict], None]] = None, progress: bool = True,
          at_steps: Sequence[int] = (), on_step: Optional[Callable[[int, nn.Module], None]] = None,
          label: Optional[str] = None) -> Path:
    """Run (or resume, or return) the job ``cfg``; returns its run directory.

    ``callback(step, record)`` is called after every logged step; raising
    ``KeyboardInterrupt`` from it behaves like Ctrl-C (a checkpoint is saved).
    ``on_step(step, model)`` is called after each step of ``at_steps`` (before the
    last), with the model in eval mode, e.g. to probe it along training; its time is
    left out of the run's seconds and images/s. ``label`` names the progress bar
    (model, stage, seed) instead of the run directory's hash.
    Everything the run needs is checked first (``preflight``); the run directory
    is made only once the data is decoded and the model built, and is locked
    while the run writes there (a second process on it gets ``RunDirBusy``).
    In redraw mode (``redraw_only``) a finished run is returned without its weights
    and a run that has not finished is a ``RunNotFinished`` error.
    """
    with contextlib.ExitStack() as held:  # the run directory's lock, released however the run ends
        return _train(cfg, held, callback=callback, progress=progress, at_steps=at_steps, on_step=on_step,
                      label=label)


def _train(cfg: TrainConfig, held: contextlib.ExitStack, *, callback: Optional[Callable[[int, dict], None]],
           progress: bool, at_steps: Sequence[int], on_step: Optional[Callable[[int, nn.Module], None]],
           label: Optional[str]) -> Path:
    check_device(cfg.device)
    run_dir = cfg.run_dir
    final_path = run_dir / "final.json"
    check_run_dir_matches(run_dir, cfg)
    if redraw_only():
        if final_path.exists():
            return run_dir
        raise RunNotFinished(f"redraw: no finished run {run_dir.name} ({cfg.model}, seed {cfg.seed}, lr {cfg.lr:g}) "
                             "in the results; run without --redraw to train it")
    dist, device = setup_distributed(cfg.device)
    if final_path.exists():
        if (run_dir / "model.safetensors").exists():
            check_finished_run_data(cfg, run_dir)  # handed back only for the data it was trained on
            return run_dir  # finished before: runs are addressed by their config
        # Its metrics are here but not its weights (they are not committed): train it again, from scratch.
        if dist.is_main:
            final_path.unlink()
    source = preflight(cfg, run_dir)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    if cfg.data_format == "shards":  # ImageNet-size sets: each rank streams its own tar shards
        from .data.streaming import make_shard_loaders
        train_loader, eval_loaders, data_source = make_shard_loaders(cfg, device, dist.rank, dist.world_size)
    else:
        splits = decode_splits(cfg, source)
        data_source = describe_data(cfg, source, splits)
        check_data_fingerprint(run_dir, data_source)  # a checkpoint of a run on other data is not resumed
        train_data = splits["train"]
        resize_to = resize_target(cfg.image_size, train_data)
        train_loader = DeviceLoader(
            train_data, cfg.batch_size, device=device, train=True, seed=cfg.seed, crop=cfg.crop,
            crop_padding=cfg.crop_padding, flip=cfg.flip, image_size=resize_to, rank=dist.rank,
            world_size=dist.world_size,
        )
        eval_loaders = {
            name: DeviceLoader(arrays, max(cfg.batch_size, 256), device=device, train=False, seed=cfg.seed,
                               image_size=resize_to)
            for name, arrays in splits.items() if name == "val" or (name == "test" and cfg.eval_on_test)
        }
    check_full_batch(cfg, train_loader)  # before the run directory is made: a run that cannot train writes nothing
    num_classes = train_loader.num_classes

    torch.manual_seed(cfg.seed)  # model init
    model, init_info = build_model_for(cfg, num_classes, device)
    optimizer = make_optimizer(model, cfg, device)
    if dist.is_main:  # only now, with data and model ready, is the run directory made (and locked)
        held.enter_context(RunDirLock(run_dir))
        remove_stale_temp_files(run_dir)
        # The config as given, plus what identifies it (init_from as a content hash, see identity_fields).
        atomic_write_text(run_dir / "config.json",
                          json.dumps({**cfg.to_dict(), "identity": cfg.identity_fields()}, indent=2, default=str))
        atomic_write_text(run_dir / "env.json", json.dumps(environment(device, cfg, dist), indent=2))
    start_step, resumed_window, seconds_before, resumed_best = 0, None, 0.0, None
    ckpt_path = run_dir / "checkpoint.pt"
    log = MetricsLog(run_dir / "metrics.jsonl", dist.is_main)
    if ckpt_path.exists():
        try:
            state = torch.load(ckpt_path, map_location=device, weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError ... for a bad file
            raise ResumeError(f"{ckpt_path} is truncated or corrupt and cannot be resumed from "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); delete it to "
                              "restart this run from step 0") from None
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            start_step = int(state["step"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ResumeError(f"{ckpt_path} does not fit this run's model and optimiser (another architecture or "
                              f"another version of the code: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); delete it to restart this run from "
                              "step 0") from None
        resumed_window = state.get("window")
        seconds_before = state.get("seconds", 0.0)
        resumed_best = state.get("best")
        log.truncate_after(start_step)
        log.write(event="resume", step=start_step)
    elif dist.is_main:
        log.truncate_after(-1)
        n_params = sum(p.numel() for p in model.parameters())
        log.write(event="start", step=0, params=n_params, train_examples=train_loader.num_examples,
                  data_source=data_source, init=init_info)

    train_model = model
    if dist.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)
    objective = OBJECTIVES[cfg.objective]
    best = BestWeights(resumed_best) if cfg.keep_best else None

    def save_checkpoint(step: int) -> None:
        # Weights are identical on every rank under DDP, so all ranks reach the same verdict here.
        if not weights_are_finite(model):
            raise NonFiniteLoss(f"the weights of {run_dir} became NaN/inf by step {step}; stopping without "
                                f"overwriting the last good checkpoint. Lower the learning rate or check the data.")
        if dist.is_main:
            # The open logging window goes in too, so a resumed run logs the same averages.
            window = {"loss": window_loss.item(), "correct": window_correct.item(), "images": window_images,
                      "steps": window_steps, "seconds": time.perf_counter() - window_start}
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                               "window": window, "seconds": seconds_before + time.perf_counter() - t_run,
                               **({"best": best.state()} if best is not None else {})}, ckpt_path)

    def check_finite(loss_value: float, step: int) -> None:
        if not math.isfinite(loss_value):
            raise NonFiniteLoss(
                f"loss became {loss_value} by step {step} of {run_dir}; stopping. The last good checkpoint "
                f"({ckpt_path.name}, if any) is kept: lower the learning rate or check the data."
            )

    model.train()
    step = start_step
    window_loss = torch.zeros((), device=device)
    window_correct = torch.zeros((), device=device, dtype=torch.long)
    window_images, window_steps, window_start, t_run = 0, 0, time.perf_counter(), time.perf_counter()
    if resumed_window:
        window_loss += resumed_window["loss"]
        window_correct += resumed_window["correct"]
        window_images, window_steps = resumed_window["images"], resumed_window["steps"]
        window_start -= resumed_window["seconds"]
    # Off a terminal (a notebook, a log file) refresh rarely, so executed notebooks stay small.
    hook_steps = {s for s in at_steps if start_step < s < cfg.steps} if on_step is not None else set()
    bar = tqdm(total=cfg.steps, initial=start_step, desc=label or run_dir.name, disable=not (progress and dist.is_main),
               dynamic_ncols=True, mininterval=0.5 if sys.stderr.isatty() else 30.0)
    try:
        with StopRequest() as stop:
            while step < cfg.steps:
                if stop.signal_name:
                    raise KeyboardInterrupt(stop.signal_name)
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images, labels = train_loader.get_batch(step)  # (b, 3, H, W) float, (b,) int64
                torch.manual_seed(seed_for(cfg.seed, step) + dist.rank)
                with autocast_context(cfg, device):
                    loss, correct = objective(train_model, images, labels, cfg)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                step += 1
                window_loss += loss.detach()
                window_correct += correct
                window_images += labels.numel()
                window_steps += 1
                bar.update(1)

                if step % cfg.log_every == 0 or step == cfg.steps:
                    stats = torch.stack([window_loss, window_correct.float(),
                                         torch.tensor(float(window_images), device=device)])
                    if dist.world_size > 1:
                        torch.distributed.all_reduce(stats)
                        stats[0] /= dist.world_size
                    loss_value = stats[0].item() / window_steps  # the one host-device sync of a window
                    check_finite(loss_value, step)
                    elapsed = time.perf_counter() - window_start
                    record = {"event": "train", "step": step, "loss": loss_value, "lr": lr,
                              "accuracy": stats[1].item() / stats[2].item(),
                              "images_per_s": stats[2].item() / elapsed,
                              "seconds": seconds_before + time.perf_counter() - t_run}
                    log.write(**record)
                    bar.set_postfix(loss=f"{loss_value:.3f}", img_s=f"{record['images_per_s']:.0f}")
                    window_loss.zero_(), window_correct.zero_()
                    window_images, window_steps, window_start = 0, 0, time.perf_counter()
                    if callback:
                        callback(step, record)
                if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps and dist.is_main:
                    for name, loader in eval_loaders.items():
                        metrics = evaluate(model, loader, cfg, device)
                        log.write(event="eval", split=name, step=step, **metrics)
                        if best is not None and name == "val":
                            best.offer(step, metrics["accuracy"], model)
                if step in hook_steps and dist.is_main:
                    paused = time.perf_counter()
                    model.eval()
                    on_step(step, model)
                    model.train()
                    paused = time.perf_counter() - paused  # left out of the run's seconds and images/s
                    t_run += paused
                    window_start += paused
                if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                    save_checkpoint(step)
    except KeyboardInterrupt:
        if step > start_step:
            save_checkpoint(step)
            print(f"\ninterrupted at step {step}: checkpoint saved in {ckpt_path}; run the same command to resume",
                  file=sys.stderr)
        raise
    finally:
        bar.close()

    results = {"step": step, "train_seconds": seconds_before + time.perf_counter() - t_run}
    if dist.is_main:
        if best is not None:  # early stopping: the last held-out evaluation competes, then the best weights stay
            last_val = evaluate(model, eval_loaders["val"], cfg, device)
            log.write(event="eval", split="val", step=step, **last_val)
            best.offer(step, last_val["accuracy"], model)
            model.load_state_dict(best.weights)
            results["best_step"], results["last_val"] = best.step, last_val
        for name, loader in eval_loaders.items():
            metrics = evaluate(model, loader, cfg, device)
            # With keep_best the reported numbers are those of the best held-out step's weights.
            log.write(event="eval" if best is None else "best", split=name, step=step if best is None else best.step,
                      **metrics)
            results[name] = metrics
        from .checkpoints import save_checkpoint as save_weights
        # A plain ViT checkpoint (fine-tuning starts from it); masked patch prediction keeps its head apart.
        save_weights(getattr(model, "vit", model), run_dir / "model", extra={"train_config": cfg.to_dict()})
        if cfg.objective == "mpp":
            save_mpp_head(model, run_dir / "mpp_head.safetensors")
        atomic_write_text(final_path, json.dumps(results, indent=2))
        ckpt_path.unlink(missing_ok=True)  # the final weights replace the resumable state
    if dist.world_size > 1:
        torch.distributed.barrier()
    return run_dir


def decode_splits(cfg: TrainConfig, source: "data_lib.Source") -> dict[str, "data_lib.ImageArrays"]:
    """The decoded splits of ``cfg`` (``repro.data.get_datasets``: train, val when held out, test)."""
    return data_lib.get_datasets(
        cfg.dataset, data_dir=cfg.data_dir, image_size=cfg.data_image_size, seed=cfg.seed,
        heldout=cfg.heldout, max_train=cfg.max_train, max_test=cfg.max_test, source=source,
        classes=cfg.classes, train_part=cfg.train_part, target_size=cfg.target_size, heldout_size=cfg.heldout_size,
    )


def describe_data(cfg: TrainConfig, source: "data_lib.Source", splits: dict) -> dict:
    """The "start" event's ``data_source``: portable (no absolute path) and complete. Where the data came from
    (the last two parts of a local folder tell two folders apart), how many images each split has, and the
    data's ``fingerprint``, which a later run of the same config compares (``check_data_fingerprint``)."""
    record = {**source.record(), "images": {name: len(arrays) for name, arrays in splits.items()},
              **({"classes": list(cfg.classes)} if cfg.classes is not None else {}),
              **({"train_part": cfg.train_part} if cfg.train_part is not None else {})}
    if source.kind in ("parquet", "imagefolder", "embedded"):
        record["folder"] = ".../" + "/".join(Path(source.location).parts[-2:])
    record["fingerprint"] = data_lib.fingerprint(splits)
    return record


class DataMismatch(ValueError):
    """A run of the same config exists, trained on other data (another folder with other images)."""


def recorded_data_source(run_dir: Path) -> Optional[dict]:
    """The ``data_source`` of a run's "start" event (None when there is none, or it is from before records)."""
    start = next((r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if r.get("event") == "start"), {})
    record = start.get("data_source")
    return record if isinstance(record, dict) else None


def _data_words(record: dict) -> str:
    """A data record as a few words for an error message: source, folder, images and checksum per split."""
    splits = ", ".join(f"{name} {v.get('images')} images sha1 {str(v.get('sha1'))[:8]}"
                       for name, v in (record.get("fingerprint") or {}).items())
    where = " ".join(str(record[k]) for k in ("description", "folder") if record.get(k))
    return f"{where or '?'} ({splits})"


def check_data_fingerprint(run_dir: Path, data_source: Optional[dict]) -> None:
    """Refuse to hand back or resume the run in ``run_dir`` for other data than it was trained on.

    A run's name does not depend on which local folder holds its data (a copy of a data set is the same data
    wherever it lies), so ``data_dir=A`` and ``data_dir=B`` name the same run; its "start" event records the
    data's fingerprint (``describe_data``), compared here with ``data_source`` of the data just decoded. Checked
    when the run holds something that would be reused (``checkpoint.pt``, or final metrics with weights);
    runs recorded before fingerprints existed, and shard-streamed data, are not checked. Raises a one-line
    ``DataMismatch`` naming both data sources and the fixes.
    """
    current = (data_source or {}).get("fingerprint")
    run_dir = Path(run_dir)
    finished = (run_dir / "final.json").exists() and (run_dir / "model.safetensors").exists()
    if current is None or not (finished or (run_dir / "checkpoint.pt").exists()):
        return
    recorded = recorded_data_source(run_dir)
    if not recorded or recorded.get("fingerprint") in (None, current):
        return
    raise DataMismatch(f"{run_dir} holds a run of this config on other data: {_data_words(recorded)}; this run "
                       f"reads {_data_words(data_source)}. Its results are not handed back for other data: give "
                       f"this data another out_dir, or delete {run_dir} to train it again")


def check_finished_run_data(cfg: TrainConfig, run_dir: Path) -> None:
    """``check_data_fingerprint`` for a finished run about to be handed back: decodes ``cfg``'s data (from the
    decode cache) only when the run recorded a fingerprint; a run recorded before, or streamed from shards,
    is handed back as it is."""
    recorded = recorded_data_source(run_dir)
    if cfg.data_format == "shards" or not (recorded and recorded.get("fingerprint")):
        return
    source = data_lib.resolve_source(cfg.dataset, cfg.data_dir)
    check_data_fingerprint(run_dir, describe_data(cfg, source, decode_splits(cfg, source)))


def check_full_batch(cfg: TrainConfig, train_loader) -> None:
    """A ValueError naming the training images, the batch and the settings that chose them when the training
    set makes no full batch (the loop drops a last partial batch, so it would have nothing to train on)."""
    if train_loader.steps_per_epoch > 0:
        return
    chosen = {"max_train": None, "classes": None, "train_part": None}
    picked = [f"{key}={getattr(cfg, key)!r}" for key, default in chosen.items() if getattr(cfg, key) != default]
    if cfg.train_part is not None:
        picked.append(f"target_size={cfg.target_size}")
    if cfg.heldout:
        picked.append("heldout=True")
    n = train_loader.num_examples
    raise ValueError(f"the training set has {n} image{'s' if n != 1 else ''}, which make no full batch of "
                     f"batch_size={cfg.batch_size}" + (f" (chosen by {', '.join(picked)})" if picked else "")
                     + f"; lower batch_size to at most {n} or train on more images")


def resize_target(image_size: int, data: "data_lib.ImageArrays") -> Optional[int]:
    """The size batches are resized to on the device, or None when the decoded images already have it."""
    return image_size if image_size != data.images.shape[-1] else None


def pretrain(cfg: Optional[TrainConfig] = None, **overrides) -> Path:
    """Pre-train from scratch with the paper's recipe (Adam(W), wd 0.1, warm-up + linear decay)."""
    cfg = dataclasses.replace(cfg, **overrides) if cfg else TrainConfig(**overrides)
    return train(cfg)


def finetune(cfg: Optional[TrainConfig] = None, **overrides) -> Path:
    """Fine-tune ``init_from`` with the paper's recipe (SGD 0.9, cosine, clip 1, zero head)."""
    cfg = dataclasses.replace(cfg, **overrides) if cfg else finetune_config(**overrides)
    if not cfg.init_from:
        raise ValueError("finetune needs init_from=<checkpoint path> (a run's model.safetensors, a timm or .npz file)")
    return train(cfg)


def read_final(run_dir: Path) -> dict:
    """The final metrics of a finished run (``final.json``)."""
    return json.loads((Path(run_dir) / "final.json").read_text())


def finetune_sweep(cfg: TrainConfig, lrs=None, *, refit: bool = True, extend: bool = True, **train_kwargs) -> dict:
    """Fine-tune once per learning rate on the training split minus the held-out part; pick the lr with the
    best held-out accuracy (never the test set), as in App. B.1.1. Returns the chosen run and all of them.

    ``lrs`` defaults to Table 4's grid for ``cfg.dataset``. With ``extend`` (the default), a choice at an edge
    of the grid is checked one grid step further out (the ratio of the two grid values at that edge) and the
    choice made again, so that the grid cannot cut off the best rate. With ``refit`` (the default, as the
    paper) the chosen lr then trains once more on the whole training split (the held-out part included) and
    that run is ``best_run``, the one to report; ``refit=False`` returns the sweep's run as ``best_run``.

    Returns ``best_lr``, ``best_run``, ``val_accuracy`` and ``runs`` (each lr of the final grid -> the run it
    was judged by), ``grid`` (sorted), ``extended_to`` (the lr added past an edge, or None),
    ``extension_missing`` (in redraw mode, an extension that was never trained, or None), ``at_edge``
    (the choice still lies at an edge of the final grid) and ``heldout_images``.
    """
    if lrs is None:
        from .recipes import finetune_recipe
        lrs = finetune_recipe(cfg.dataset).lr_grid
    if not cfg.heldout:
        raise ValueError("the learning rate is chosen on the held-out split: set heldout=True")
    lrs = sorted(float(lr) for lr in lrs)
    runs = {lr: train(dataclasses.replace(cfg, lr=lr), **train_kwargs) for lr in lrs}
    scores = {lr: read_final(d)["val"]["accuracy"] for lr, d in runs.items()}
    best = max(scores, key=scores.get)
    extended_to = missing = None
    if extend and len(lrs) >= 2 and best in (lrs[0], lrs[-1]):
        ratio = lrs[1] / lrs[0] if best == lrs[0] else lrs[-1] / lrs[-2]
        further = float(f"{(best / ratio if best == lrs[0] else best * ratio):.3g}")
        try:
            runs[further] = train(dataclasses.replace(cfg, lr=further), **train_kwargs)
        except RunNotFinished:  # redraw mode: the extension was not run; the claims say so
            missing = further
        else:
            extended_to = further
            scores[further] = read_final(runs[further])["val"]["accuracy"]
            best = max(scores, key=scores.get)
    grid = sorted(runs)
    result = {"best_lr": best, "best_run": runs[best], "val_accuracy": {lr: scores[lr] for lr in grid},
              "runs": {lr: runs[lr] for lr in grid}, "grid": grid, "extended_to": extended_to,
              "extension_missing": missing, "at_edge": best in (grid[0], grid[-1]) and len(grid) > 1,
              "heldout_images": read_final(runs[best])["val"].get("count")}
    if refit:  # the chosen lr again, on the whole training split; its test number is the one to report
        result["best_run"] = train(dataclasses.replace(cfg, lr=best, heldout=False), **train_kwargs)
    return result

"""What defines a run: ``TrainConfig``, its checks, its identity (the run directory's name), and the fine-tuning recipe.

Two runs with equal configs are the same run: ``TrainConfig.identity`` hashes every field that changes what a
run computes (not where it is written or how often it logs), so a finished run is found again by its config in
any clone. ``TrainConfig``'s defaults are the only defaults of a run: a scale (``repro.scales``) and an
experiment's presets (``repro.experiments``) are differences applied to them, and the paper's fine-tuning recipe
(``repro.recipes.FINETUNE_TRAINING``) is applied by ``finetune_config``.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .checkpoints import recorded_weights_digest, resolve_checkpoint_path, weights_digest
from .data import get_info, TARGET_SIZE, TRAIN_PARTS
from .recipes import FINETUNE_TRAINING
from .runtime import check_device_name

# The training objectives ``repro.train`` implements (what a batch costs): plain classification, and masked patch
# prediction (Sec. 4.6).
OBJECTIVE_NAMES = ("classification", "mpp")


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
    target_size: int = TARGET_SIZE    # images in the target part (train_part only)
    data_format: str = "decoded"      # decoded (whole split on each device) | shards (tar shards, repro.data.streaming)
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
        if self.objective not in OBJECTIVE_NAMES:
            raise ValueError(f"objective={self.objective!r}; choose one of {sorted(OBJECTIVE_NAMES)}")
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
        if self.train_part not in (None, *TRAIN_PARTS):
            raise ValueError(f"train_part={self.train_part!r}; choose one of {TRAIN_PARTS} or None (all)")
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
        return len(self.classes) if self.classes is not None else get_info(self.dataset).num_classes

    # Fields that change where a run is written, how often it logs or how fast it runs, not what it computes.
    NOT_IDENTITY = ("out_dir", "run_name", "log_every", "checkpoint_every", "compile", "device")

    LATER_FIELDS = {"data_format": "decoded", "classes": None, "train_part": None, "target_size": TARGET_SIZE,
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
    return weights_digest(path)


def checkpoint_digest(path: str) -> str:
    """A short SHA-256 of a checkpoint's weights file (cached per path, size and mtime): its identity.

    A run's weights are not committed, but their digest is, in the ``model.json`` beside them: when the
    weights file is gone, that recorded digest names the runs that started from it (a fine-tuning of a
    committed pre-training keeps its name in any clone)."""
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
    """A fine-tuning's config: ``TrainConfig``'s defaults, the paper's fine-tuning recipe (App. B.1.1, kept in
    ``repro.recipes.FINETUNE_TRAINING``: SGD 0.9, no weight decay, cosine, clip at norm 1), then ``overrides``.

    Steps, batch, warm-up, resolution and lr grid per data set are Table 4's rows (``repro.recipes``); the
    scales fill them in (``repro.scales.Scale.run_config("finetune")``).
    """
    return TrainConfig(**{**FINETUNE_TRAINING, **overrides})

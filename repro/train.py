"""Pre-training and fine-tuning, per App. B of the paper, in one visible loop.

``train(cfg)`` runs one job (a ``repro.runconfig.TrainConfig``) and returns its run directory
(``repro.rundir``: config, metrics, env, resumable checkpoint, final metrics and weights). The recipes are
the paper's:

- pre-training (App. B.1): Adam(W) with beta1 0.9, beta2 0.999, weight decay
  0.1, linear warm-up then linear decay, optional dropout and label smoothing;
- fine-tuning (App. B.1.1, ``repro.runconfig.finetune_config``): SGD with momentum 0.9, no weight decay,
  cosine decay, gradient clipping at global norm 1, a fresh zero-initialised head, an optional higher
  resolution with interpolated position embeddings (Sec. 3.2); ``finetune_sweep`` picks the learning rate
  on the held-out split.

Running the same config again resumes from the checkpoint, or returns at once when the run has finished.
Batches and dropout are pure functions of (seed, step), so a resumed run ends with the same metrics as an
uninterrupted one.

Departures: weight decay is decoupled (AdamW) and skips biases, norms, tokens
and position embeddings (the official code decays every kernel; timm and
big_vision skip the 1-D parameters too).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import data as data_lib
from .checkpoints import check_checkpoint_file, load_checkpoint
from .checkpoints import save_checkpoint as save_weights
from .fileio import check_writable
from .data.loader import DeviceLoader
from .models import create_model
from .progress import ProgressLine, format_seconds
from .mpp import build_mpp_model, evaluate_mpp, mpp_objective, save_mpp_head
from .runconfig import TrainConfig
from .rundir import (FINAL_FILE, METRICS_FILE, MPP_HEAD_FILE, WEIGHTS_BASE, MetricsLog, ResumeError, RunDirLock, RunNotFinished,
                     check_data_fingerprint, check_run_dir_matches, has_weights, is_finished, load_resume_state,
                     read_final, recorded_data_source, redraw_only, remove_resume_state, remove_stale_temp_files,
                     save_resume_state, write_config, write_env, write_final)
from .runtime import (Distributed, StopRequest, autocast_context, check_device, environment, seed_for,
                      setup_distributed)

# Evaluation batches: at least this many images (inference needs no gradients, so it affords more).
EVAL_BATCH = 256


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


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg: TrainConfig, device: torch.device) -> dict:
    """Loss and top-1 accuracy of ``model`` over every example of ``loader`` (in order, no augmentation);
    for masked patch prediction, its loss and per-prediction accuracy under a fixed corruption."""
    if cfg.objective == "mpp":
        return evaluate_mpp(model, loader, seed=cfg.seed, autocast=lambda: autocast_context(cfg.amp, device))
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for images, labels in loader:
        with autocast_context(cfg.amp, device):
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
        # "reset": fine-tuning always starts from a zero head (Sec. 3.2), whatever the checkpoint's head.
        report = load_checkpoint(model, cfg.init_from, num_classes_mismatch="reset")
        info = dataclasses.asdict(report)
    if cfg.objective == "mpp":  # the ViT inside a wrapper with the [mask] embedding and the colour head
        model = build_mpp_model(model, cfg.mpp_target, cfg.mpp_corrupt_rate)
    return model.to(device), info


class NonFiniteLoss(FloatingPointError):
    """The loss became NaN or inf; the last good checkpoint is kept."""


def weights_are_finite(model: nn.Module) -> bool:
    """True when every parameter is finite (one sync; called only before a checkpoint is written)."""
    return bool(torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all())


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
        check_checkpoint_file(cfg.init_from)
    check_writable(run_dir, "run directory")
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun rank 0 locks for all ranks; others would see it busy
        RunDirLock.check_free(run_dir)
    if cfg.data_format == "shards":
        from .data.streaming import shard_folder
        shard_folder(cfg.dataset, cfg.data_dir)  # raises DatasetNotFoundError when there are no shards
        return None
    return data_lib.resolve_source(cfg.dataset, cfg.data_dir)


class Window:
    """The running sums of one logging window: loss, correct predictions, images, steps and its start. Kept on
    the device between logs (one host sync per window); saved in a checkpoint so a resumed run logs the same."""

    def __init__(self, device: torch.device, state: Optional[dict] = None):
        self.loss = torch.zeros((), device=device)
        self.correct = torch.zeros((), device=device, dtype=torch.long)
        self.images, self.steps, self.start = 0, 0, time.perf_counter()
        if state:
            self.loss += state["loss"]
            self.correct += state["correct"]
            self.images, self.steps = state["images"], state["steps"]
            self.start -= state["seconds"]

    def add(self, loss: torch.Tensor, correct: torch.Tensor, images: int) -> None:
        self.loss += loss
        self.correct += correct
        self.images += images
        self.steps += 1

    def state(self) -> dict:
        return {"loss": self.loss.item(), "correct": self.correct.item(), "images": self.images,
                "steps": self.steps, "seconds": time.perf_counter() - self.start}


@dataclass
class Job:
    """Everything one run's loop uses: its config and directory, where it runs, the data, the model (and the
    wrapper that trains it under DDP / compile), the optimiser, the log, and the state carried across a resume."""

    cfg: TrainConfig
    run_dir: Path
    dist: Distributed
    device: torch.device
    train_loader: DeviceLoader
    eval_loaders: dict
    model: nn.Module
    train_model: nn.Module
    optimizer: torch.optim.Optimizer
    log: MetricsLog
    window: Window
    best: Optional[BestWeights]
    start_step: int = 0
    seconds_before: float = 0.0                         # training seconds of the run before this resume
    started: float = dataclasses.field(default_factory=time.perf_counter)
    last_record: Optional[dict] = None                  # the last logged window (loss, training top-1)

    def seconds(self) -> float:
        """Training seconds so far (evaluations and probes along the way left out)."""
        return self.seconds_before + time.perf_counter() - self.started


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
    In redraw mode (``repro.rundir.redraw_only``) a finished run is returned without its weights
    and a run that has not finished is a ``RunNotFinished`` error.
    """
    check_device(cfg.device)
    run_dir = cfg.run_dir
    check_run_dir_matches(run_dir, cfg)
    if redraw_only():
        if is_finished(run_dir):
            return run_dir
        raise RunNotFinished(f"redraw: no finished run {run_dir.name} ({cfg.model}, seed {cfg.seed}, lr {cfg.lr:g}) "
                             "in the results; run without --redraw to train it")
    dist, device = setup_distributed(cfg.device)
    if is_finished(run_dir):
        if has_weights(run_dir):
            check_finished_run_data(cfg, run_dir)  # handed back only for the data it was trained on
            return run_dir  # finished before: runs are addressed by their config
        # Its metrics are here but not its weights (they are not committed): train it again, from scratch.
        if dist.is_main:
            (run_dir / FINAL_FILE).unlink()
    with contextlib.ExitStack() as held:  # the run directory's lock, released however the run ends
        job = _prepare(cfg, run_dir, dist, device, held)
        hook_steps = {s for s in at_steps if job.start_step < s < cfg.steps} if on_step is not None else set()
        bar = _progress_line(job, progress, label)
        try:
            step = _run_steps(job, callback=callback, hook_steps=hook_steps, on_step=on_step, bar=bar)
            _finish(job, step)
            bar.close(_final_line(job, bar))
        finally:
            bar.close()  # an interrupted or failed run's line says where it stopped
    if dist.world_size > 1:
        torch.distributed.barrier()
    return run_dir


def _prepare(cfg: TrainConfig, run_dir: Path, dist: Distributed, device: torch.device,
             held: contextlib.ExitStack) -> Job:
    """Check, decode the data, build the model and optimiser, make (and lock) the run directory, and load the
    resume state when there is one."""
    source = preflight(cfg, run_dir)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if cfg.data_format == "shards":  # ImageNet-size sets: each rank streams its own tar shards
        from .data.streaming import make_shard_loaders  # webdataset is imported only where shards are read
        train_loader, eval_loaders, data_source = make_shard_loaders(cfg, device, dist.rank, dist.world_size)
    else:
        splits = decode_splits(cfg, source)
        data_source = describe_data(cfg, source, splits)
        check_data_fingerprint(run_dir, data_source)  # a checkpoint of a run on other data is not resumed
        resize_to = resize_target(cfg.image_size, splits["train"])
        train_loader = DeviceLoader(splits["train"], cfg.batch_size, device=device, train=True, seed=cfg.seed,
                                    crop=cfg.crop, crop_padding=cfg.crop_padding, flip=cfg.flip, image_size=resize_to,
                                    rank=dist.rank, world_size=dist.world_size)
        eval_loaders = {name: DeviceLoader(arrays, max(cfg.batch_size, EVAL_BATCH), device=device, train=False,
                                           seed=cfg.seed, image_size=resize_to)
                        for name, arrays in splits.items() if name == "val" or (name == "test" and cfg.eval_on_test)}
    check_full_batch(cfg, train_loader)  # before the run directory is made: a run that cannot train writes nothing
    torch.manual_seed(cfg.seed)  # model init
    model, init_info = build_model_for(cfg, train_loader.num_classes, device)
    optimizer = make_optimizer(model, cfg, device)
    if dist.is_main:  # only now, with data and model ready, is the run directory made (and locked)
        held.enter_context(RunDirLock(run_dir))
        remove_stale_temp_files(run_dir)
        write_config(run_dir, cfg.to_dict(), cfg.identity_fields())
        write_env(run_dir, environment(device, cfg.seed, dist))
    log = MetricsLog(run_dir / METRICS_FILE, dist.is_main)
    state = load_resume_state(run_dir, device) or {}
    if state:
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise ResumeError(f"{run_dir}'s checkpoint does not fit this run's model and optimiser (another "
                              f"architecture or another version of the code: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); delete it to restart this run from "
                              "step 0") from None
        log.truncate_after(int(state["step"]))
        log.write(event="resume", step=int(state["step"]))
    elif dist.is_main:
        log.truncate_after(-1)
        log.write(event="start", step=0, params=sum(p.numel() for p in model.parameters()),
                  train_examples=train_loader.num_examples, data_source=data_source, init=init_info)
    train_model = model
    if dist.world_size > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)
    model.train()
    return Job(cfg, run_dir, dist, device, train_loader, eval_loaders, model, train_model, optimizer, log,
               Window(device, state.get("window")), BestWeights(state.get("best")) if cfg.keep_best else None,
               start_step=int(state.get("step", 0)), seconds_before=state.get("seconds", 0.0))


def run_label(cfg: TrainConfig, label: Optional[str]) -> str:
    """What a run's progress line is called: ``label`` (model, stage, seed) with the model put in front where the
    label does not name it and the learning rate after it (a sweep's runs share one label); without a label,
    the run directory's name."""
    if not label:
        return cfg.run_dir.name
    return f"{label if cfg.model in label else f'{cfg.model} {label}'}, lr {cfg.lr:g}"


def _progress_line(job: Job, progress: bool, label: Optional[str]) -> ProgressLine:
    """The run's progress line over its steps (``repro.progress.ProgressLine``), labelled by ``run_label``."""
    return ProgressLine(job.cfg.steps, run_label(job.cfg, label), unit="steps", initial=job.start_step,
                        enabled=progress and job.dist.is_main)


def _final_line(job: Job, bar: ProgressLine) -> str:
    """The one line a finished run leaves: steps, the last logged loss and training top-1, the held-out and test
    top-1 of ``final.json`` and the training time."""
    parts = [f"{bar.desc}: {bar.n:,} steps"]
    last = (job.last_record or {})
    if "loss" in last:
        parts.append(f"loss {last['loss']:.3f}, train top-1 {100 * last['accuracy']:.1f}%")
    final = read_final(job.run_dir) if job.dist.is_main and (job.run_dir / FINAL_FILE).exists() else {}
    for split, name in (("val", "held-out"), ("test", "test")):
        if isinstance(final.get(split), dict) and "accuracy" in final[split]:
            parts.append(f"{name} top-1 {100 * final[split]['accuracy']:.1f}%")
    parts.append(format_seconds(final.get("train_seconds", job.seconds())))
    return ", ".join(parts)


def _run_steps(job: Job, *, callback, hook_steps: set, on_step, bar) -> int:
    """The step loop: one batch, one optimiser step; a log line every ``log_every`` steps, held-out evaluations
    every ``eval_every``, ``on_step`` at ``hook_steps``, a resumable checkpoint every ``checkpoint_every``. Ctrl-C
    (or SIGTERM) saves a checkpoint at the step reached. Returns the last step."""
    cfg, model, optimizer = job.cfg, job.model, job.optimizer
    objective = OBJECTIVES[cfg.objective]
    step = job.start_step
    try:
        with StopRequest() as stop:
            while step < cfg.steps:
                if stop.signal_name:
                    raise KeyboardInterrupt(stop.signal_name)
                lr = lr_at(step, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images, labels = job.train_loader.get_batch(step)  # (b, 3, H, W) float, (b,) int64
                torch.manual_seed(seed_for(cfg.seed, step) + job.dist.rank)
                with autocast_context(cfg.amp, job.device):
                    loss, correct = objective(job.train_model, images, labels, cfg)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                step += 1
                job.window.add(loss.detach(), correct, labels.numel())
                bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    record = job.last_record = _log_window(job, step, lr)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", top1=f"{100 * record['accuracy']:.1f}%",
                                    img_s=f"{record['images_per_s']:.0f}")
                    if callback:
                        callback(step, record)
                if cfg.eval_every and step % cfg.eval_every == 0 and step < cfg.steps and job.dist.is_main:
                    _evaluate_along(job, step)
                if step in hook_steps and job.dist.is_main:
                    _pause(job, lambda: on_step(step, model))
                if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                    _save_resume_state(job, step)
    except KeyboardInterrupt:
        if step > job.start_step:
            _save_resume_state(job, step)
            print(f"\ninterrupted at step {step}: checkpoint saved in {job.run_dir}; run the same command to resume",
                  file=sys.stderr)
        raise
    return step


def _log_window(job: Job, step: int, lr: float) -> dict:
    """Close the logging window: its mean loss and accuracy over every rank (the one host sync of a window),
    written to the metrics log; a NaN or infinite loss stops the run."""
    w, device = job.window, job.device
    stats = torch.stack([w.loss, w.correct.float(), torch.tensor(float(w.images), device=device)])
    if job.dist.world_size > 1:
        torch.distributed.all_reduce(stats)
        stats[0] /= job.dist.world_size
    loss_value = stats[0].item() / w.steps
    if not math.isfinite(loss_value):
        raise NonFiniteLoss(f"loss became {loss_value} by step {step} of {job.run_dir}; stopping. The last good "
                            "checkpoint (checkpoint.pt, if any) is kept: lower the learning rate or check the data.")
    record = {"event": "train", "step": step, "loss": loss_value, "lr": lr, "accuracy": stats[1].item() / stats[2].item(),
              "images_per_s": stats[2].item() / (time.perf_counter() - w.start), "seconds": job.seconds()}
    job.log.write(**record)
    job.window = Window(device)
    return record


def _evaluate_along(job: Job, step: int) -> None:
    """Evaluate the held-out (and test) splits at ``step``; with ``keep_best``, offer the held-out score."""
    for name, loader in job.eval_loaders.items():
        metrics = evaluate(job.model, loader, job.cfg, job.device)
        job.log.write(event="eval", split=name, step=step, **metrics)
        if job.best is not None and name == "val":
            job.best.offer(step, metrics["accuracy"], job.model)


def _pause(job: Job, work: Callable[[], None]) -> None:
    """Run ``work`` (a probe) with the model in eval mode, its time left out of the run's seconds and images/s."""
    started = time.perf_counter()
    job.model.eval()
    work()
    job.model.train()
    paused = time.perf_counter() - started
    job.started += paused
    job.window.start += paused


def _save_resume_state(job: Job, step: int) -> None:
    """Write ``checkpoint.pt`` (model, optimiser, step, open window, seconds, best weights); refuse to overwrite
    the last good one with NaN weights."""
    # Weights are identical on every rank under DDP, so all ranks reach the same verdict here.
    if not weights_are_finite(job.model):
        raise NonFiniteLoss(f"the weights of {job.run_dir} became NaN/inf by step {step}; stopping without "
                            f"overwriting the last good checkpoint. Lower the learning rate or check the data.")
    if job.dist.is_main:
        save_resume_state(job.run_dir, {"model": job.model.state_dict(), "optimizer": job.optimizer.state_dict(),
                                        "step": step, "window": job.window.state(), "seconds": job.seconds(),
                                        **({"best": job.best.state()} if job.best is not None else {})})


def _finish(job: Job, step: int) -> None:
    """The final evaluations (with ``keep_best``, of the best held-out evaluation's weights), the weights and
    ``final.json``; the resumable checkpoint goes."""
    results = {"step": step, "train_seconds": job.seconds()}
    if not job.dist.is_main:
        return
    cfg, model, best = job.cfg, job.model, job.best
    if best is not None:  # early stopping: the last held-out evaluation competes, then the best weights stay
        last_val = evaluate(model, job.eval_loaders["val"], cfg, job.device)
        job.log.write(event="eval", split="val", step=step, **last_val)
        best.offer(step, last_val["accuracy"], model)
        model.load_state_dict(best.weights)
        results["best_step"], results["last_val"] = best.step, last_val
    for name, loader in job.eval_loaders.items():
        metrics = evaluate(model, loader, cfg, job.device)
        # With keep_best the reported numbers are those of the best held-out step's weights.
        job.log.write(event="eval" if best is None else "best", split=name, step=step if best is None else best.step,
                      **metrics)
        results[name] = metrics
    # A plain ViT checkpoint (fine-tuning starts from it); masked patch prediction keeps its head apart.
    save_weights(getattr(model, "vit", model), job.run_dir / WEIGHTS_BASE, extra={"train_config": cfg.to_dict()})
    if cfg.objective == "mpp":
        save_mpp_head(model, job.run_dir / MPP_HEAD_FILE)
    write_final(job.run_dir, results)
    remove_resume_state(job.run_dir)


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


def finetune_sweep(cfg: TrainConfig, lrs: Sequence[float], *, refit: bool = True, extend: bool = True,
                   **train_kwargs) -> dict:
    """Fine-tune once per learning rate on the training split minus the held-out part; pick the lr with the
    best held-out accuracy (never the test set), as in App. B.1.1. Returns the chosen run and all of them.

    ``lrs`` is the grid (Table 4's for the paper's data sets: ``repro.recipes``). With ``extend`` (the default), a
    choice at an edge
    of the grid is checked one grid step further out (the ratio of the two grid values at that edge) and the
    choice made again, so that the grid cannot cut off the best rate. With ``refit`` (the default, as the
    paper) the chosen lr then trains once more on the whole training split (the held-out part included) and
    that run is ``best_run``, the one to report; ``refit=False`` returns the sweep's run as ``best_run``.

    Returns ``best_lr``, ``best_run``, ``val_accuracy`` and ``runs`` (each lr of the final grid -> the run it
    was judged by), ``grid`` (sorted), ``extended_to`` (the lr added past an edge, or None),
    ``extension_missing`` (in redraw mode, an extension that was never trained, or None), ``at_edge``
    (the choice still lies at an edge of the final grid) and ``heldout_images``.
    """
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

"""Helpers shared by the benchmark scripts: hardware lines, the engine's test-accuracy curve with evaluation
time taken out, seconds to a target accuracy, plain tables.

How evaluation time is taken out of ``repro.train.train``'s clock: the engine's train records carry
``seconds`` (wall time since the loop started, which includes the evaluations it ran). ``run_engine``
wraps ``repro.train.evaluate`` (the one function the loop calls to evaluate) with a timer for the length
of the run, and its ``callback`` (called at every log step, before that step's evaluation) notes how many
evaluation seconds had passed by then. Training seconds at step s = the record's ``seconds`` minus those.
The accuracies themselves are read back from the run's ``metrics.jsonl``.
"""
from __future__ import annotations

import dataclasses
import math
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence
from unittest import mock

import timm
import torch

import repro.train as engine
from repro.cli import parse_overrides
from repro.runconfig import TrainConfig
from repro.rundir import METRICS_FILE, read_metrics
from repro.runtime import cpu_name
from repro.scales import get_scale, PRETRAIN


@dataclass
class CurvePoint:
    step: int
    seconds: float   # training seconds (evaluation excluded) when the evaluation at ``step`` began
    accuracy: float  # test top-1 in [0, 1]


def command_line() -> str:
    """The exact command that ran this process, ready to paste into a shell."""
    return " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])


def hardware_lines(device: torch.device) -> list[str]:
    """Where the figures were measured: CPU model and threads, SIMD level, GPU, library versions."""
    lines = [f"cpu: {cpu_name()}, torch CPU capability {torch.backends.cpu.get_cpu_capability()}",
             f"torch {torch.__version__}, timm {timm.__version__}, python {sys.version.split()[0]}"]
    if device.type == "cuda":
        lines.insert(0, f"gpu: {torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})")
    return lines


def resolve_device(name: str) -> torch.device:
    """The device a TrainConfig's ``device`` field picks (``auto``: the GPU if there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so that a clock read after it is honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def config_from_args(scale: str, changes: dict, set_pairs: Sequence[str]) -> TrainConfig:
    """The ViT pre-training run of ``scale`` (``repro.scales.Scale.run_config``) with the script's ``changes``
    and ``--set key=value`` pairs (parsed and type-checked by ``repro.cli.parse_overrides``)."""
    return get_scale(scale).run_config(PRETRAIN, "vit", **{**changes, **parse_overrides(TrainConfig, set_pairs)})


def with_patch(model_name: str, patch: Optional[int]) -> str:
    """``ViT-XS/4`` with patch 8 -> ``ViT-XS/8``."""
    return model_name if patch is None else f"{model_name.rsplit('/', 1)[0]}/{patch}"


class EvalTimer:
    """Wraps ``repro.train.evaluate`` while active: adds up the seconds spent in it and keeps the last
    accuracy per split. The GPU is synchronised first, so queued training work is not billed to evaluation."""

    def __init__(self):
        self.seconds, self.last = 0.0, {}
        self._evaluate = engine.evaluate

    def _timed(self, model, loader, cfg, device):
        sync(device)
        start = time.perf_counter()
        metrics = self._evaluate(model, loader, cfg, device)  # ends in .item(): synchronised
        self.seconds += time.perf_counter() - start
        self.last[getattr(loader, "split", "?")] = metrics["accuracy"]
        return metrics

    def __enter__(self):
        self._patch = mock.patch.object(engine, "evaluate", self._timed)
        self._patch.start()
        return self

    def __exit__(self, *exc):
        self._patch.stop()
        return False


def run_engine(cfg: TrainConfig, *, stop_at: Optional[float] = None, budget_s: Optional[float] = None
               ) -> tuple[Path, list[CurvePoint], str]:
    """Train ``cfg`` with ``repro.train.train`` into a fresh run directory; return it, the test-accuracy curve
    against training seconds (evaluation excluded) and why it stopped.

    ``log_every`` is made to divide ``eval_every`` so that every evaluation step has a train record. The run
    stops early (the engine's own Ctrl-C path, a checkpoint is kept) at the first log step after the test
    accuracy reached ``stop_at``, or once the training seconds pass ``budget_s``.
    """
    if cfg.eval_every:
        cfg = dataclasses.replace(cfg, log_every=math.gcd(cfg.log_every, cfg.eval_every))
    if (cfg.run_dir / METRICS_FILE).exists():
        raise FileExistsError(f"{cfg.run_dir} already holds a run; the benchmark needs a fresh directory")
    train_seconds: dict[int, float] = {}
    stopped = "all steps done"

    with EvalTimer() as timer:
        def callback(step: int, record: dict) -> None:
            nonlocal stopped
            train_seconds[step] = record["seconds"] - timer.seconds
            if stop_at is not None and timer.last.get("test", -1.0) >= stop_at:  # -1: no evaluation yet
                stopped = f"test top-1 reached {100 * stop_at:g}%"
                raise KeyboardInterrupt
            if budget_s is not None and train_seconds[step] >= budget_s:
                stopped = f"training-time budget of {budget_s:g} s spent"
                raise KeyboardInterrupt

        try:
            run_dir = engine.train(cfg, callback=callback, progress=False)
        except KeyboardInterrupt:
            if stopped == "all steps done":
                raise  # a real Ctrl-C
            run_dir = cfg.run_dir
    curve = [CurvePoint(r["step"], train_seconds[r["step"]], r["accuracy"])
             for r in read_metrics(run_dir) if r.get("event") == "eval" and r.get("split") == "test"]
    return run_dir, curve, stopped


def seconds_to(curve: Sequence[CurvePoint], target: float) -> Optional[float]:
    """Training seconds at the first evaluation whose accuracy is at least ``target`` (None: never)."""
    return next((p.seconds for p in curve if p.accuracy >= target), None)


def timm_vit_like(cfg, **kwargs) -> torch.nn.Module:
    """timm's own VisionTransformer, timm's own initialisation, with the width, depth, heads, MLP size, patch
    and pooling of one of our ViT configs (``model.cfg``)."""
    return timm.models.vision_transformer.VisionTransformer(
        img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_dim / cfg.embed_dim, num_classes=cfg.num_classes,
        global_pool="avg" if cfg.pool == "gap" else "token", class_token=cfg.pool != "gap", **kwargs)


def table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (pastes into RESULTS.md as it is)."""
    cells = [[str(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in cells])


def fmt_s(seconds: Optional[float]) -> str:
    return "not reached" if seconds is None else f"{seconds:.1f}"

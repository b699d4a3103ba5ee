"""Test fakes shared by every test that needs one: a finished run directory with made-up numbers, written through
the file names of ``repro.rundir`` (the one owner of a run directory's layout), and a tiny run config."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from repro.experiments.probes import FEWSHOT_FILE
from repro.flops import FLOPS_COUNTED_WITH, FLOPS_FILE
from repro.runconfig import TrainConfig
from repro.rundir import CONFIG_FILE, ENV_FILE, FINAL_FILE, METRICS_FILE


def fake_run(run_dir: Path, *, model: str = "ViT-XXS/8", test: Optional[float] = None, val: Optional[float] = None,
             val_count: Optional[int] = None, steps: int = 10, image_size: int = 32, batch_size: int = 8,
             lr: Optional[float] = None, config: Optional[dict] = None, train_seconds: float = 60.0,
             params: int = 150_000, data_source="embedded mini CIFAR-10", images_per_s: Sequence[float] = (120.0,),
             train_accuracy: float = 0.4, events: Sequence[dict] = (), fewshot: Optional[float] = None,
             probe_steps: Sequence[int] = (), draws: int = 5, classifier_top1: Optional[float] = None,
             flops: Optional[float] = None) -> Path:
    """A finished run directory as ``repro.train.train`` (and ``train_and_probe``) leave it, numbers in %.

    ``test`` / ``val``: the final test and held-out top-1 (None: that split is not in ``final.json``);
    ``images_per_s``: one training window each (the first is skipped by ``load_run`` when there are several);
    ``events``: more metrics lines (e.g. held-out evaluations along training); ``fewshot``: the final 5-shot score
    of a probe with ``draws`` support draws, probed also at ``probe_steps`` (10 points lower per step before the
    end); ``classifier_top1``: the probe's classifier score (default: ``test``); ``flops``: the run's training
    FLOPs (``flops.json``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = {"model": model, "model_overrides": {}, "dataset": "cifar10", "image_size": image_size,
           "batch_size": batch_size, "steps": steps, "seed": 0, **({"lr": lr} if lr is not None else {}),
           **(config or {})}
    (run_dir / CONFIG_FILE).write_text(json.dumps(cfg))
    final = {"step": steps, "train_seconds": train_seconds}
    if test is not None:
        final["test"] = {"accuracy": test / 100, "loss": 1.0}
    if val is not None:
        final["val"] = {"accuracy": val / 100, "loss": 1.0, **({"count": val_count} if val_count else {})}
    (run_dir / FINAL_FILE).write_text(json.dumps(final))
    (run_dir / ENV_FILE).write_text(json.dumps({"device_name": "test CPU"}))
    windows = len(images_per_s)
    lines = [{"event": "start", "step": 0, "params": params, "data_source": data_source}]
    lines += [{"event": "train", "step": steps * (i + 1) // windows, "loss": 1.5, "accuracy": train_accuracy,
               "images_per_s": speed} for i, speed in enumerate(images_per_s)]
    lines += list(events)
    (run_dir / METRICS_FILE).write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    if fewshot is not None:
        top1 = classifier_top1 if classifier_top1 is not None else test
        points = [{"step": s, "fewshot": {"5": {"mean": fewshot - (steps - s) / steps * 10, "std": 0.5,
                                                "per_seed": []}},
                   "classifier_test_top1": None if top1 is None else top1 - (steps - s) / steps * 10}
                  for s in (*probe_steps, steps)]
        (run_dir / FEWSHOT_FILE).write_text(json.dumps({"probe": {"seeds": list(range(draws))}, "points": points}))
    if flops is not None:
        (run_dir / FLOPS_FILE).write_text(json.dumps({"flops_per_image": flops / steps / batch_size,
                                                      "train_flops": flops, "counted_with": FLOPS_COUNTED_WITH}))
    return run_dir


def fake_probed_run(run_dir: Path, *, fewshot: float, test: float, model: str = "ViT-XXS/8", draws: int = 5) -> Path:
    """A finished run probed at steps 5 and 10 of 10 (``train_and_probe``), made-up numbers (%); its held-out
    top-1 (on 1,000 images) equals its test top-1."""
    return fake_run(run_dir, model=model, fewshot=fewshot, test=test, val=test, val_count=1000, probe_steps=(5,),
                    draws=draws)


def tiny_config(out_dir: Path, **changes) -> TrainConfig:
    """A run that trains in about a second: ViT-XXS/8 on 64 images of the embedded mini CIFAR-10, two steps,
    logged and checkpointed at each; ``changes`` replace any field."""
    fields = dict(model="ViT-XXS/8", dataset="cifar10", data_dir="embedded", max_train=64, max_test=32, batch_size=16,
                  steps=2, warmup_steps=1, log_every=1, checkpoint_every=1, out_dir=str(out_dir))
    return TrainConfig(**{**fields, **changes})

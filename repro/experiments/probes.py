"""Few-shot probes of a run's frozen representation, at the end of training and along it, kept beside the run.

``Probe`` says how a representation is probed (``repro.fewshot``'s ridge, big_vision's ``fewshot_lsr``);
``train_and_probe`` trains a run (or finds it finished) and writes its probe points to ``fewshot.json``;
``read_probes`` / ``fewshot_top1`` / ``support_std`` read them back for tables and claims.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..checkpoints import load_model
from ..claims import MIN_SUPPORT_DRAWS
from ..data import get_datasets
from ..fewshot import classifier_logits, extract_features, fewshot_results
from ..fileio import atomic_write_text
from ..progress import RunProgress
from ..rundir import (CHECKPOINT_FILE, FINAL_FILE, has_weights, read_final, redraw_only, RunNotFinished,
                      weights_path)
from .. import train as engine

FEWSHOT_FILE = "fewshot.json"
PARTIAL_FILE = "fewshot.partial.json"   # the probe points along training so far (kept across an interruption)

# The probe of Table 8 and Fig. 9: 5-shot linear accuracy.
FEWSHOT_SHOTS = 5


@dataclass(frozen=True)
class Probe:
    """How a run's frozen representation is probed: ``repro.fewshot``'s ridge (big_vision ``fewshot_lsr``) on
    the pre-logits features (or another of ``repro.fewshot.REPRESENTATIONS``), seeds of the support sampling,
    and the images used (None: the whole split)."""

    dataset: str = "cifar10"
    data_dir: Optional[str] = None
    shots: tuple = (FEWSHOT_SHOTS,)
    seeds: tuple = tuple(range(MIN_SUPPORT_DRAWS))  # support draws: the score is their mean (repro.claims)
    max_train: Optional[int] = None   # support sets are drawn from this many training images (class-balanced)
    max_test: Optional[int] = None
    classes: Optional[tuple] = None   # probe on these classes only (``repro.data.get_datasets``), e.g. a target task
    train_part: Optional[str] = None  # support sets from the "source" or "target" part of the training set
    target_size: Optional[int] = None  # images of the target part (None: repro.data's default)
    features: str = "pre_logits"      # what is probed: "pre_logits" or "patch_mean" (repro.fewshot.REPRESENTATIONS)

    @classmethod
    def of_run(cls, cfg, max_train: Optional[int] = None, **changes) -> "Probe":
        """The probe of a run's own data (data set, folder, test images), support sets drawn from ``max_train``
        training images (None: the run's own ``max_train``)."""
        return cls(dataset=cfg.dataset, data_dir=cfg.data_dir, max_train=max_train or cfg.max_train,
                   max_test=cfg.max_test, **changes)

    def record(self) -> dict:
        """What identifies the probe in ``fewshot.json`` (not where the data lies); the task selection and the
        features only when they differ from the defaults, so probes recorded before they existed still match."""
        view = {"classes": list(self.classes) if self.classes is not None else None, "train_part": self.train_part,
                "features": self.features if self.features != "pre_logits" else None}
        view = {**view, "target_size": self.target_size} if self.train_part else view
        return {"dataset": self.dataset, "shots": list(self.shots), "seeds": list(self.seeds),
                "max_train": self.max_train, "max_test": self.max_test, "embedded": self.data_dir == "embedded",
                **{k: v for k, v in view.items() if v is not None}}


def probe_model(model, probe: Probe, device: str = "auto") -> dict:
    """Few-shot accuracy (%) of a frozen model and its classifier's test top-1 (%), from one pass over the data.

    The classifier's logits are its head applied to the same pre-logits test features, so both numbers come
    from the same weights and the same test images. Returns ``{"fewshot": {k: {"mean", "std", "per_seed"}},
    "classifier_test_top1": float}``, accuracies in %; the classifier's is None when the probe reads other
    features than the pre-logits ones (the head does not read them).
    """
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model = model.to(device)
    task = {"target_size": probe.target_size} if probe.target_size is not None else {}
    splits = get_datasets(probe.dataset, data_dir=probe.data_dir, heldout=False, max_train=probe.max_train,
                          max_test=probe.max_test, classes=probe.classes, train_part=probe.train_part, **task)
    train, test = splits["train"], splits["test"]
    train_x = extract_features(model, train, features=probe.features)  # (N, F) float32 on the CPU
    test_x = extract_features(model, test, features=probe.features)    # (M, F)
    found = fewshot_results(train_x, train.labels, test_x, test.labels, probe.shots, probe.seeds,
                            num_classes=train.num_classes)
    top1 = None  # the head reads pre-logits features only
    if probe.features == "pre_logits":
        with torch.no_grad():  # (M, K): the trained classifier on the same features
            logits = classifier_logits(model, test_x.to(device)).float().cpu()
        top1 = 100 * float((logits.argmax(-1) == torch.as_tensor(test.labels)).float().mean())
    return {"fewshot": {str(k): {"mean": 100 * v["mean"], "std": 100 * v["std"],
                                 "per_seed": [100 * a for a in v["per_seed"]]} for k, v in found.items()},
            "classifier_test_top1": top1}


def _digest(path: Path) -> Optional[str]:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else None


def _read_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.exists() else None


def read_probes(run_dir) -> list[dict]:
    """The probe points of a run (``fewshot.json``), one per evaluated step, in step order."""
    saved = _read_json(Path(run_dir) / FEWSHOT_FILE)
    return saved["points"] if saved else []


def support_draws(run_dir) -> int:
    """How many support draws each few-shot score of a run averages (its probe's sampling seeds)."""
    return len(json.loads((Path(run_dir) / FEWSHOT_FILE).read_text())["probe"]["seeds"])


def draws_text(run_dirs: Sequence) -> str:
    """The support draws behind these runs' few-shot scores, for a table note: "drawn 5 times (support seeds
    0-4), their mean per run"."""
    counts = sorted({support_draws(d) for d in run_dirs})
    if not counts:
        return "no probe"
    times = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"drawn {times} times (support seeds 0-{counts[-1] - 1}), their mean per run"


def support_std(run_dirs: Sequence, shots: int = FEWSHOT_SHOTS) -> Optional[float]:
    """The std of a few-shot score over its support draws (points), averaged over ``run_dirs``: the part of a
    score's noise that comes from which images were drawn as the support set (kept beside the score in tables)."""
    stds = [read_probes(d)[-1]["fewshot"][str(shots)]["std"] for d in run_dirs if read_probes(d)]
    return sum(stds) / len(stds) if stds else None


def fewshot_top1(run_dir, shots: int = FEWSHOT_SHOTS) -> float:
    """A run's final ``shots``-shot linear accuracy (%), the mean over the probe's support draws."""
    return read_probes(run_dir)[-1]["fewshot"][str(shots)]["mean"]


def _same_probe_but_draws(saved: dict, probe: Probe) -> bool:
    """The saved probe is ``probe`` except, perhaps, for its number of support draws (redraw mode keeps it:
    the claims see the draws and ask for the next run where they are too few)."""
    wanted = {k: v for k, v in probe.record().items() if k != "seeds"}
    return {k: v for k, v in saved.items() if k != "seeds"} == wanted


def train_and_probe(cfg, probe: Probe, *, label: str, at_steps: Sequence[int] = (),
                    progress: Optional[RunProgress] = None) -> Path:
    """Train ``cfg`` (or find it finished) and probe its representation at ``at_steps`` and at the end.

    The intermediate probes are ``train``'s ``on_step`` hook: at each step of ``at_steps`` the engine hands
    over the model of this very run, which is probed (its time left out of the run's) and trains on, so the
    probes cost no extra training. Points along the way are kept in ``fewshot.partial.json``, so an
    interrupted run resumes with them. The points go to ``<run_dir>/fewshot.json`` with the probe's settings
    and a digest of ``final.json``; a later call with the same settings reads them back. In redraw mode a
    saved probe that differs only in its number of support draws is kept (``support_draws`` tells the claims).
    The probe runs on the run's device (``cfg.device``).
    """
    run_dir = cfg.run_dir
    path = run_dir / FEWSHOT_FILE
    saved = _read_json(path)
    current = saved is not None and saved.get("final_digest") == _digest(run_dir / FINAL_FILE) and \
        saved.get("at_steps") == sorted(at_steps)
    kwargs = progress.train_kwargs(label) if progress else {"label": label}
    if redraw_only():
        if not (current and _same_probe_but_draws(saved["probe"], probe)):
            raise RunNotFinished(f"redraw: {run_dir.name} ({label}) has no probe with these settings; run without "
                                 "--redraw to probe it")
        engine.train(cfg, **kwargs)  # checks that the run itself is there
    elif current and saved["probe"] == probe.record() and has_weights(run_dir):
        pass
    else:
        partial_path = run_dir / PARTIAL_FILE
        partial = _read_json(partial_path) if (run_dir / CHECKPOINT_FILE).exists() else None  # a resumed run
        points = partial["points"] if partial and partial.get("probe") == probe.record() else []

        def probe_along(step: int, model) -> None:
            points.append({"step": step, **probe_model(model, probe, cfg.device)})
            atomic_write_text(partial_path, json.dumps({"probe": probe.record(), "points": points}, indent=1))

        steps = sorted(set(at_steps))
        engine.train(cfg, at_steps=steps, on_step=probe_along, **kwargs)
        final_step = read_final(run_dir)["step"]
        points = [p for p in points if p["step"] < final_step]
        points.append({"step": final_step, **probe_model(load_model(weights_path(run_dir)), probe, cfg.device)})
        atomic_write_text(path, json.dumps({"probe": probe.record(), "at_steps": steps,
                                            "final_digest": _digest(run_dir / FINAL_FILE), "points": points},
                                           indent=1))
        partial_path.unlink(missing_ok=True)
    if progress:
        progress.finished(label, f"{probe.shots[0]}-shot {fewshot_top1(run_dir, probe.shots[0]):.1f}%")
    return run_dir

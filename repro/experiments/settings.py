"""What an experiment runs at one scale: its preset as differences from the scale's run configs, the checks of
its settings, and its "paper vs this notebook" table.

An experiment's ``PRESETS[scale]`` holds ``train``, the ``repro.runconfig.TrainConfig`` fields its pre-training
changes from the scale's (``repro.scales.Scale.run_config``), and its own knobs (seeds, grids, probe sizes).
``get_config`` applies the notebook's parameters on top (``apply_preset``) and returns the run configs
themselves: ``Pretraining.train`` is the run every other run of the experiment varies.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..config import parse_variant
from ..paths import results_root
from ..runconfig import TrainConfig
from ..scales import PAPER_SETTINGS, PRETRAIN, Scale, settings_rows
from .probes import Probe

# Rows of repro.scales.PAPER_SETTINGS that a pre-training-only experiment (notebooks 02-07) departs in.
PRETRAIN_SETTING_ROWS = ("models (ViT / BiT / hybrid)", "pre-training data", "pre-training resolution",
                         "pre-training batch", "pre-training length", "pre-training warm-up",
                         "pre-training lr, decay, weight decay", "pre-training dropout / clipping",
                         "pre-logits layer", "pre-training augmentation")


def experiment_out(name: str, scale: str, out_dir: str | Path | None) -> Path:
    """Where a notebook's tables, figures and runs go: ``<out_dir>/<notebook>/<scale>`` (created by ``run``), an
    absolute path whatever the working directory: a relative ``out_dir`` is read against the repository, None is
    the interactive default (``repro.paths.results_root``: ``lab/results`` or ``$REPRO_RESULTS_DIR``)."""
    return results_root(out_dir) / name / scale


def preset_of(presets: dict, scale: str, refusal: str) -> dict:
    """``presets[scale]``; a scale the experiment does not run at is a ValueError: ``refusal`` says why."""
    if scale not in presets:
        raise ValueError(refusal.format(scales=sorted(presets)))
    return presets[scale]


def apply_preset(preset: dict, *, what: str, train: Optional[dict] = None, **knobs) -> tuple[dict, dict]:
    """A preset with a notebook's parameters applied: ``(train changes, knobs)``.

    ``train`` holds parameters that are ``TrainConfig`` fields (model, steps, lr...), ``knobs`` the
    experiment's own (seeds, grids...); None keeps the preset's value. Seed lists become tuples; every value is
    checked (``check_settings``)."""
    changes = {**preset.get("train", {}), **{k: v for k, v in (train or {}).items() if v is not None}}
    values = {k: v for k, v in preset.items() if k != "train"}
    values.update({k: v for k, v in knobs.items() if v is not None})
    check_settings({**changes, **values}, what)
    return changes, {k: tuple(v) if k.endswith("seeds") and v is not None else v for k, v in values.items()}


def pretraining_run(scale: Scale, changes: dict, *, data_dir: Optional[str], out: Path, device: str,
                    family: str = "vit", **more) -> TrainConfig:
    """The pre-training ``TrainConfig`` of an experiment at ``scale``: the scale's, the preset's ``changes``,
    then ``more``; ``data_dir`` (None: the scale's) and the run folder ``<out>/runs``."""
    data = {} if data_dir is None else {"data_dir": data_dir}
    return scale.run_config(PRETRAIN, family, **{**changes, **data, "out_dir": str(out / "runs"), "device": device,
                                                 **more})


@dataclass(frozen=True)
class Pretraining:
    """The settings of a notebook that pre-trains its own models: its scale, ``train`` (the pre-training run
    every run of the experiment varies: its seed, a model setting, its lr) and ``out`` (where its results go)."""

    scale: Scale
    train: TrainConfig
    out: Path

    # The budget, read from the run (tables and texts name it).
    model = property(lambda self: self.train.model)
    image_size = property(lambda self: self.train.image_size)
    batch_size = property(lambda self: self.train.batch_size)
    steps = property(lambda self: self.train.steps)
    warmup_steps = property(lambda self: self.train.warmup_steps)
    lr = property(lambda self: self.train.lr)
    data_dir = property(lambda self: self.train.data_dir)
    device = property(lambda self: self.train.device)

    def run_config(self, **changes) -> TrainConfig:
        """``train`` with ``changes``; ``model_overrides`` in ``changes`` are added to the run's own."""
        if "model_overrides" in changes:
            changes["model_overrides"] = {**self.train.model_overrides, **changes["model_overrides"]}
        return dataclasses.replace(self.train, **changes)

    @property
    def decidable(self) -> bool:
        """False at smoke scale: a few steps on a few hundred images test the plumbing, not the claims."""
        return self.scale.name != "smoke"


@dataclass(frozen=True)
class ProbedPretraining(Pretraining):
    """``Pretraining`` whose runs are probed by a few-shot linear regression (``probe``)."""

    probe: Probe


def pretrain_departures_markdown(scale_name: str, pre: TrainConfig, rows: Optional[dict] = None,
                                 setting_rows: Sequence[str] = PRETRAIN_SETTING_ROWS, *,
                                 fine: Optional[TrainConfig] = None, finetune_lrs: tuple = ()) -> str:
    """The "paper vs this notebook" table for ``setting_rows`` (default: the pre-training rows), read from the
    experiment's pre-training run ``pre`` (and fine-tuning run ``fine`` with its lr grid, for the fine-tuning
    rows). The models row names ``pre``'s model; ``rows`` replaces any row's text."""
    ours = {**settings_rows(pre, fine, finetune_lrs=finetune_lrs), **(rows or {})}
    lines = [f"| setting | paper | this notebook (`{scale_name}`) |", "|---|---|---|"]
    for row in setting_rows:
        value = ours[row]
        lines.append(f"| {row} | {PAPER_SETTINGS[row]} | {'= paper' if value == PAPER_SETTINGS[row] else value} |")
    return "\n".join(lines) + "\n"


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _members(v) -> list:
    return list(v.values()) if isinstance(v, dict) else list(v) if isinstance(v, (list, tuple)) else [v]


# The range of each setting the experiments share a name for, as (what it must be, test). get_config refuses a
# value outside it with one line, so ``repro reproduce`` finds it before any notebook runs.
_RANGES = {
    **{key: ("a positive integer", lambda v: _integer(v) and v > 0)
       for key in ("image_size", "batch_size", "steps", "finetune_steps", "ablation_steps", "target_size",
                   "inspect_images", "rollout_images", "cost_image_size", "cost_batch", "cost_repeats",
                   "fit_min_tokens")},
    **{key: ("an integer >= 0", lambda v: _integer(v) and v >= 0) for key in ("warmup_steps", "probes", "eval_every")},
    **{key: ("a positive integer or None", lambda v: v is None or (_integer(v) and v > 0))
       for key in ("fewshot_max_train", "explicit_max_tokens", "heldout_images")},
    **{key: ("a positive number", lambda v: _number(v) and v > 0) for key in ("lr", "bit_lr", "mpp_lr")},
    "warmup_fraction": ("a fraction in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    **{key: ("a non-empty list of positive numbers",
             lambda v: isinstance(v, (list, tuple, dict)) and len(v) > 0 and all(_number(x) and x > 0 for x in _members(v)))
       for key in ("lrs", "finetune_lrs", "scratch_lrs")},
    "cost_patches": ("a non-empty list of positive integers",
                     lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_integer(x) and x > 0 for x in v)),
    **{key: ("a list of integers >= 0",
             lambda v: isinstance(v, (list, tuple)) and all(_integer(x) and x >= 0 for x in v))
       for key in ("seeds", "placement_seeds", "ablation_seeds", "transfer_seeds")},
}


def check_settings(values: dict, what: str) -> None:
    """A one-line ValueError for a setting of ``values`` of the right type but out of range (``lrs=[]``,
    ``inspect_images=0``, a negative seed), or a model name that names no model (``model``, ``bit``)."""
    for key, value in values.items():
        if key in _RANGES and not _RANGES[key][1](value):
            raise ValueError(f"{what}: {key}={value!r} must be {_RANGES[key][0]}")
        if key in ("model", "bit") and isinstance(value, str):
            try:
                parse_variant(value)
            except ValueError as err:
                raise ValueError(f"{what}: {key}={value!r}: {str(err).split('. Valid names')[0]}") from None

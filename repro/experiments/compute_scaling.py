"""Notebook 05: accuracy against pre-training compute for ViTs, BiT ResNets and hybrids (Sec. 4.4, Fig. 5).

Each family (ViT, BiT ResNet-v2, hybrid = ResNet stages + ViT, ``repro.hybrid``) is pre-trained at several
sizes on the same data with the same recipe, so that its models span at least 10x in pre-training compute.
Compute is counted two ways: in FLOPs (``repro.flops.training_flops``: ``torch.utils.flop_counter`` on one
forward + backward, times batch and steps; kept in each run's ``flops.json``) and in wall time (the run's
training seconds, evaluation left out). Accuracy is read two ways from the same weights: the trained
classifier's test top-1, and the 5-shot linear accuracy of the frozen pre-logits representation
(``repro.experiments.probes.train_and_probe``). Each family's Pareto front (``pareto_front``: the points that no
cheaper point beats) is drawn like Fig. 5, and the claims are decided on the fronts:

- ViT beats BiT at equal compute: per seed that every point shares, each family's front (``seed_fronts``),
  interpolated on log-compute at ``GRID_POINTS`` costs over the range both cover; ``verdict_front_above`` asks
  the 90% interval of ViT's front minus BiT's to lie above zero at every one of them (``repro.claims``).
  Beside it, the paper's own measure on the mean fronts: how many times ViT's compute BiT's front needs for
  the same accuracy (``equal_accuracy_cost_ratio``; paper 2-4x).
- Hybrids beat ViT at small compute, the gap shrinking at larger compute (``verdict_gap_shrinks``). A point
  trained at one seed enters every front, so the fronts share only the seeds that every point has.

Scales (``PRESETS``): ``smoke`` runs a few steps per model on the embedded mini CIFAR-10 (plumbing only, every
verdict None). ``cpu`` trains one model per family, ViT-XXS/4, BiT R14x1 and R14+ViT-XXS/4, at four budgets of
0.8, 2, 4 and 8 TFLOPs (10x), 3 seeds each, on the real CIFAR-10 at 32 px on 2 cores in about 40 minutes (the
arithmetic is beside ``PRESETS``). ``gpu`` has the same shape at 20-200 TFLOPs with ViT-Ti/4, BiT R26x1 and
R26+ViT-Ti/4; not yet run.

Departures: models from scratch on CIFAR-10 at 32 px for a few epochs at most instead of 7-14 epochs of
JFT-300M at 224 px; accuracy on CIFAR-10 itself (its test split, and 5-shot probes of its training split)
instead of transfer to five data sets; one lr per family, chosen on held-out at one budget; the project's small
sizes (XXS, Ti; the hybrids' ResNet cut to its first stage at /4, ``repro.config``); one model per family trained
for different lengths instead of models of different sizes. Every BiT
keeps the paper's 7x7/2 + max-pool stem (the hybrids' stem too) at every scale.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from ..claims import (VERDICT_WORDS, Verdict, at_scale, claim_entry, decide_positive, mean_interval, needs_next_run,
                      requirements_unmet, seed_stats, verdict_all)
from ..figures import place_labels, pyplot, save_figure
from ..flops import run_training_flops
from ..paper import PAPER
from ..paths import repo_relative
from ..progress import RunProgress
from ..runconfig import TrainConfig
from ..rundir import load_run
from ..scales import PRETRAIN, get_scale
from ..summary import curve_sentence, curve_status, epochs_text
from .. import train as engine
from .probes import (FEWSHOT_SHOTS, draws_text, fewshot_top1, Probe, read_probes, support_draws, support_std,
                     train_and_probe)
from .reporting import cost_columns, finish_note, RunSet, summary_markdown, with_csv_only
from .settings import apply_preset, experiment_out, preset_of, pretrain_departures_markdown, ProbedPretraining

NAME = "05_compute_scaling"
FAMILIES = ("ViT", "BiT", "hybrid")
SCALE_FAMILY = {"ViT": "vit", "BiT": "bit", "hybrid": "hybrid"}  # the family names of repro.scales
SHOTS = FEWSHOT_SHOTS
METRICS = {"test": "test top-1 (%)", "fewshot": f"{SHOTS}-shot linear top-1 (%)"}
AXES = {"flops": "pre-training compute (FLOPs)", "seconds": "pre-training wall time (s)"}
# Fronts are compared at this many costs, log-spaced over the range both cover.
GRID_POINTS = 5
# "Small" vs "larger" compute needs a common range of at least this factor between its ends.
MIN_SPAN = 2.0

VIT_BIT_CLAIM = "For the same pre-training compute, ViT beats BiT ResNets (Sec. 4.4, Fig. 5)"
VIT_BIT_TIME_CLAIM = "For the same pre-training wall time, ViT beats BiT ResNets (Table 2's TPU-core-days, Fig. 5)"
HYBRID_CLAIM = ("Hybrids beat ViT at small pre-training compute; the difference vanishes for larger models "
                "(Sec. 4.4, Fig. 5)")


@dataclass(frozen=True)
class Rung:
    """One point of a family's ladder: a model trained for ``steps`` steps, at these seeds."""

    family: str      # ViT | BiT | hybrid
    model: str       # a repro.config variant name
    steps: int
    seeds: tuple


# This experiment's own choices per scale: ``train`` is what every run changes from the scale's pre-training
# (repro.scales), the rest its own knobs. A ladder row is (family, model, steps, seeds); each family's lr is chosen
# on the held-out split from ``lr_grids`` at the rung of ``lr_steps`` (seed 0), then used for every rung of the family.
PRESETS = {
    "smoke": dict(train=dict(batch_size=16), warmup_fraction=0.1, fewshot_max_train=200,
                  lr_grids={"ViT": (1e-3, 2e-3), "BiT": (1e-3,), "hybrid": (1e-3,)},
                  lr_steps={"ViT": 3, "BiT": 3, "hybrid": 3},
                  ladder=(("ViT", "ViT-XXS/8", 3, (0, 1)), ("ViT", "ViT-XXS/8", 6, (0, 1)),
                          ("BiT", "R14x1", 3, (0, 1)), ("BiT", "R14x1", 6, (0, 1)),
                          ("hybrid", "R14+ViT-XXS/4", 3, (0, 1)), ("hybrid", "R14+ViT-XXS/4", 6, (0, 1)))),
    # One model per family, each at 4 budgets of training FLOPs, 0.8 / 2 / 4 / 8 TFLOPs (10x), 3 seeds each, so that
    # the fronts share 3 seeds at every point. FLOPs per training image at 32 px (torch.utils.flop_counter, forward
    # + backward): ViT-XXS/4 0.065 G, BiT R14x1 0.175 G, hybrid R14+ViT-XXS/4 0.108 G (its ResNet keeps the stem
    # alone, stride 4: an 8x8 map, the ViT's 64 tokens); steps = budget / (FLOPs per image x 128). Measured at 32 px
    # on 2 cores (2026-12-04, Intel Xeon, synthetic batches): 1,265 / 426 / 774 images/s, ~1,150 / ~400 / ~700 in the
    # loop. Per seed: ViT 1,780 steps 198 s, BiT 666 steps 213 s, hybrid 1,075 steps 197 s = 608 s; 3 seeds 30 min.
    # The lr choice adds two runs per family at the 2-TFLOP rung (~3 min); probes and FLOP counts ~5 min. ~39 min.
    "cpu": dict(train=dict(), warmup_fraction=0.1, fewshot_max_train=5000,
                lr_grids={"ViT": (1e-3, 2e-3, 4e-3), "BiT": (5e-4, 1e-3, 2e-3), "hybrid": (1e-3, 2e-3, 4e-3)},
                lr_steps={"ViT": 240, "BiT": 90, "hybrid": 145},
                ladder=(("ViT", "ViT-XXS/4", 100, (0, 1, 2)), ("ViT", "ViT-XXS/4", 240, (0, 1, 2)),
                        ("ViT", "ViT-XXS/4", 480, (0, 1, 2)), ("ViT", "ViT-XXS/4", 960, (0, 1, 2)),
                        ("BiT", "R14x1", 36, (0, 1, 2)), ("BiT", "R14x1", 90, (0, 1, 2)),
                        ("BiT", "R14x1", 180, (0, 1, 2)), ("BiT", "R14x1", 360, (0, 1, 2)),
                        ("hybrid", "R14+ViT-XXS/4", 60, (0, 1, 2)), ("hybrid", "R14+ViT-XXS/4", 145, (0, 1, 2)),
                        ("hybrid", "R14+ViT-XXS/4", 290, (0, 1, 2)), ("hybrid", "R14+ViT-XXS/4", 580, (0, 1, 2)))),
    # Not yet run on a GPU: the same shape at 20 / 50 / 100 / 200 TFLOPs with ViT-Ti/4 (2.19 GFLOPs per image), BiT
    # R26x1 (0.28) and R26+ViT-Ti/4 (2.27), batch 512.
    "gpu": dict(train=dict(), warmup_fraction=0.1, fewshot_max_train=10000,
                lr_grids={"ViT": (5e-4, 1e-3, 2e-3), "BiT": (5e-4, 1e-3, 2e-3), "hybrid": (5e-4, 1e-3, 2e-3)},
                lr_steps={"ViT": 45, "BiT": 350, "hybrid": 43},
                ladder=(("ViT", "ViT-Ti/4", 18, (0, 1, 2)), ("ViT", "ViT-Ti/4", 45, (0, 1, 2)),
                        ("ViT", "ViT-Ti/4", 90, (0, 1, 2)), ("ViT", "ViT-Ti/4", 180, (0, 1, 2)),
                        ("BiT", "R26x1", 140, (0, 1, 2)), ("BiT", "R26x1", 350, (0, 1, 2)),
                        ("BiT", "R26x1", 700, (0, 1, 2)), ("BiT", "R26x1", 1400, (0, 1, 2)),
                        ("hybrid", "R26+ViT-Ti/4", 17, (0, 1, 2)), ("hybrid", "R26+ViT-Ti/4", 43, (0, 1, 2)),
                        ("hybrid", "R26+ViT-Ti/4", 86, (0, 1, 2)), ("hybrid", "R26+ViT-Ti/4", 172, (0, 1, 2)))),
}


@dataclass(frozen=True)
class Config(ProbedPretraining):
    """What notebook 05 runs at one scale: ``changes`` (what every run changes from the scale's pre-training),
    each family's lr grid and ladder; ``train`` is the first ViT rung at its grid's middle lr (the settings
    table's column), ``rung_run`` builds every run."""

    changes: dict
    warmup_fraction: float    # of each run's steps
    lr_grids: dict            # family -> the lrs its held-out choice is made from
    lr_steps: dict            # family -> the rung length (steps) the choice is made at
    ladder: tuple             # Rung, in the order they run

    def rung_run(self, rung: Rung, lr: float, seed: int) -> TrainConfig:
        """One rung's run at ``lr`` and ``seed``. BiTs keep the paper's 7x7/2 + max-pool stem at every scale (the
        hybrids' stem too; the CIFAR stem would cost ~10x more FLOPs): no family overrides of the scale."""
        return self.scale.run_config(PRETRAIN, SCALE_FAMILY[rung.family], family_overrides=False,
                                     **self.changes, model=rung.model, steps=rung.steps, lr=lr, seed=seed,
                                     warmup_steps=max(1, round(rung.steps * self.warmup_fraction)))

    def lr_rung(self, family: str) -> Rung:
        """The rung a family's lr is chosen at (seed 0)."""
        first = next(r for r in self.ladder if r.family == family)
        return Rung(family, first.model, self.lr_steps[family], (0,))

    def budget(self) -> str:
        runs = sum(len(r.seeds) for r in self.ladder)
        images = sum(len(r.seeds) * r.steps * self.batch_size for r in self.ladder)
        ladders = "; ".join(f"{family}: {next(r.model for r in self.ladder if r.family == family)} at "
                            + "/".join(str(r.steps) for r in self.ladder if r.family == family) + " steps, lr from "
                            + "/".join(f"{lr:g}" for lr in self.lr_grids[family])
                            for family in FAMILIES if any(r.family == family for r in self.ladder))
        return (f"{runs} training runs, {images:,} images in all, at {self.image_size} px, batch {self.batch_size} "
                f"({ladders}; each lr chosen on held-out, seed 0)")


def get_config(scale: str = "cpu", *, seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
               out_dir: str | Path | None = None, device: str = "auto", length_scale: Optional[float] = None,
               image_size: Optional[int] = None, batch_size: Optional[int] = None,
               warmup_fraction: Optional[float] = None, lr_grids: Optional[dict] = None,
               lr_steps: Optional[dict] = None, fewshot_max_train: Optional[int] = None,
               ladder: Optional[Sequence] = None) -> Config:
    """The runs of notebook 05 at ``scale``: the preset, with any parameter that is not None in its place.
    ``seeds`` replaces every rung's seeds; ``length_scale`` (None: 1) multiplies every rung's steps and the lr
    choices' (e.g. 0.5 for a quicker look); ``ladder`` is rows of (family, model, steps, seeds)."""
    preset = preset_of(PRESETS, scale, "notebook 05 runs at {scales}; at 'paper' scale Fig. 5 needs JFT-300M")
    if length_scale is not None and not (isinstance(length_scale, (int, float)) and length_scale > 0):
        raise ValueError(f"length_scale={length_scale!r}: must be a positive number (1 keeps the preset's steps)")
    changes, knobs = apply_preset(preset, what="notebook 05", warmup_fraction=warmup_fraction, lr_grids=lr_grids,
                                  lr_steps=lr_steps, fewshot_max_train=fewshot_max_train, ladder=ladder,
                                  train=dict(image_size=image_size, batch_size=batch_size))

    def scaled(steps: int) -> int:
        return max(1, round(steps * (length_scale or 1)))

    knobs["lr_steps"] = {f: scaled(n) for f, n in knobs["lr_steps"].items()}
    rungs = tuple(Rung(family, model, scaled(int(steps)), tuple(seeds if seeds is not None else rung_seeds))
                  for family, model, steps, rung_seeds in knobs.pop("ladder"))
    unknown = sorted({r.family for r in rungs} - set(FAMILIES))
    if unknown or not all(r.seeds for r in rungs) or not all(r.steps > 0 for r in rungs):
        raise ValueError(f"ladder families must be among {FAMILIES}, every rung needs a seed and positive steps "
                         f"(got families {unknown})")
    missing = sorted({r.family for r in rungs} - (set(knobs["lr_grids"]) & set(knobs["lr_steps"])))
    if missing:
        raise ValueError(f"no lr grid or lr_steps for the famil(ies) {missing}: give lr_grids={{family: (lr, ...)}} "
                         "and lr_steps={family: steps}")
    out = experiment_out(NAME, scale, out_dir)
    # eval_every=0, eval_on_test=False: the probe scores the classifier on the whole test split from the same pass
    # that extracts the test features, so a second pass over it would only cost time; the held-out evaluation at
    # the end chooses the lr.
    changes = {**changes, **({} if data_dir is None else {"data_dir": data_dir}), "out_dir": str(out / "runs"),
               "device": device, "eval_every": 0, "eval_on_test": False}
    fewshot_max_train = knobs.pop("fewshot_max_train")
    config = Config(scale=get_scale(scale), train=get_scale(scale).pretraining, out=out, probe=Probe(),
                    changes=changes, ladder=rungs, **knobs)
    first = next((r for r in rungs if r.family == "ViT"), rungs[0])
    grid = config.lr_grids[first.family]
    train = config.rung_run(first, grid[len(grid) // 2], 0)
    return dataclasses.replace(config, train=train, probe=Probe.of_run(train, fewshot_max_train))


def settings_markdown(config: Config) -> str:
    """Where this notebook's pre-training departs from the paper (for the first ViT rung; its lr is chosen on
    held-out from its family's grid, shown here at the grid's middle)."""
    return pretrain_departures_markdown(config.scale.name, config.train, rows={
        "pre-training lr, decay, weight decay": "per family, chosen on held-out from " + "; ".join(
            f"{f} {'/'.join(f'{lr:g}' for lr in g)}" for f, g in config.lr_grids.items())
        + f", {config.train.schedule} wd {config.train.weight_decay:g}",
        "pre-training length": "; ".join(f"{f} " + "/".join(str(r.steps) for r in config.ladder if r.family == f)
                                         + " steps" for f in FAMILIES if any(r.family == f for r in config.ladder))})


@dataclass(frozen=True)
class RunRecord:
    family: str
    model: str
    steps: int
    seed: int
    run_dir: Path


@dataclass
class Runs(RunSet):
    """The runs of one execution of notebook 05 (``RunRecord`` each), with where its results go, and each family's
    held-out lr choice (``lr_choices``: family -> {lr: run dir})."""

    lr_choices: dict = field(default_factory=dict)

    def chosen_lr(self, family: str) -> float:
        """The lr with the best held-out top-1 among the family's choice runs."""
        scores = {lr: load_run(d)["val_accuracy"] for lr, d in self.lr_choices[family].items()}
        return max(scores, key=scores.get)


def point_name(model: str, steps: int) -> str:
    """'ViT-XS/4 @ 320 steps': how one point of a ladder is named in claims, tables and figures."""
    return f"{model} @ {steps} steps"


def run(config: Config) -> Runs:
    """Per family: choose the lr on the held-out split (its grid at ``lr_steps``, seed 0), then pre-train every
    rung at each of its seeds with it, probe it, and count its FLOPs. Runs that finished before are found by their
    config and not trained again (the choice run of the chosen lr is a rung's seed-0 run)."""
    runs = Runs(config, config.out)
    families = [f for f in FAMILIES if any(r.family == f for r in config.ladder)]
    progress = RunProgress(sum(len(r.seeds) for r in config.ladder)
                           + sum(len(config.lr_grids[f]) for f in families), "training runs")
    for family in families:
        rung = config.lr_rung(family)
        runs.lr_choices[family] = {}
        for lr in config.lr_grids[family]:
            label = f"{point_name(rung.model, rung.steps)} lr {lr:g} (held-out lr choice)"
            runs.lr_choices[family][lr] = engine.train(config.rung_run(rung, lr, 0), **progress.train_kwargs(label))
            progress.finished(label, f"held-out top-1 {100 * load_run(runs.lr_choices[family][lr])['val_accuracy']:.1f}%")
        lr = runs.chosen_lr(family)
        for rung in (r for r in config.ladder if r.family == family):
            for seed in rung.seeds:
                run_dir = train_and_probe(config.rung_run(rung, lr, seed), config.probe,
                                          label=f"{point_name(rung.model, rung.steps)} seed {seed}", progress=progress)
                run_training_flops(run_dir)
                runs.records.append(RunRecord(rung.family, rung.model, rung.steps, seed, run_dir))
    return runs


def lr_table(runs: Runs) -> pd.DataFrame:
    """Each family's held-out lr choice: every lr of its grid, the held-out top-1 (%) at the choice's rung, and
    which was chosen."""
    rows = []
    for family, choices in runs.lr_choices.items():
        chosen = runs.chosen_lr(family)
        for lr, run_dir in choices.items():
            loaded = load_run(run_dir)
            rows.append({"family": family, "model": loaded["model"], "steps": loaded["steps"], "lr": f"{lr:g}",
                         "held-out top-1 (%)": 100 * loaded["val_accuracy"], "chosen": lr == chosen})
    return pd.DataFrame(rows)


# --- fronts: pure functions on (cost, accuracy) points ---------------------------------------------------

Front = list  # [(cost, accuracy), ...], cost ascending, accuracy strictly ascending


def pareto_front(points: Sequence[tuple[float, float]]) -> Front:
    """The non-dominated points of ``(cost, accuracy)`` pairs: those that no other point matches or beats in
    accuracy at the same or a lower cost. Sorted by cost; along the front the accuracy strictly increases
    (of equal points one is kept). Costs must be positive (fronts are read on log-cost)."""
    points = [(float(c), float(a)) for c, a in points]
    if any(not c > 0 for c, _ in points):
        raise ValueError("costs must be positive")
    front: Front = []
    for cost, acc in sorted(points, key=lambda p: (p[0], -p[1])):  # equal cost: the most accurate first
        if not front or acc > front[-1][1]:
            front.append((cost, acc))
    return front


def front_value(front: Front, cost: float) -> float:
    """The front's accuracy at ``cost``: linear in log-cost between its points, and flat past its last point (a
    larger budget can always buy the front's best model); ``cost`` below the front's cheapest point is an error."""
    costs = np.log([c for c, _ in front])
    x = math.log(cost)
    if x < costs[0] - 1e-9:
        raise ValueError(f"cost {cost:g} lies below the front's cheapest point {front[0][0]:g}")
    return float(np.interp(x, costs, [a for _, a in front]))


def common_range(costs_a: Sequence[float], costs_b: Sequence[float]) -> Optional[tuple[float, float]]:
    """The costs both families cover, from the dearer of the two cheapest points to the cheaper of the two
    dearest ones; None when they do not overlap (or meet in one cost)."""
    lo, hi = max(min(costs_a), min(costs_b)), min(max(costs_a), max(costs_b))
    return (lo, hi) if hi > lo else None


def grid_costs(lo: float, hi: float, points: int = GRID_POINTS) -> list[float]:
    """``points`` costs log-spaced from ``lo`` to ``hi``, the ends exact."""
    costs = np.geomspace(lo, hi, points)
    costs[0], costs[-1] = lo, hi
    return [float(c) for c in costs]


def equal_accuracy_cost_ratio(a: Front, b: Front, points: int = GRID_POINTS) -> Optional[float]:
    """How many times ``a``'s cost ``b`` needs for the same accuracy: the geometric mean of cost_b / cost_a at
    ``points`` accuracies spread over the range both fronts reach (each front inverted, linear in log-cost).
    None when no accuracy is reached by both. The paper's "2-4x less compute" is this with a = ViT, b = BiT."""
    lo, hi = max(a[0][1], b[0][1]), min(a[-1][1], b[-1][1])
    if hi < lo:
        return None

    def log_cost(front: Front, acc: float) -> float:  # the front strictly increases, so it inverts
        return float(np.interp(acc, [y for _, y in front], np.log([c for c, _ in front])))

    accs = np.linspace(lo, hi, points)
    return float(np.exp(np.mean([log_cost(b, y) - log_cost(a, y) for y in accs])))


def seed_fronts(points: Sequence[dict]) -> dict[int, Front]:
    """One Pareto front per seed that every point has: ``{seed: pareto_front([(cost, value at seed)])}``.
    ``points``: ``{"cost", "values": {seed: value}}`` (``family_points``)."""
    seeds = set.intersection(*(set(p["values"]) for p in points)) if points else set()
    return {s: pareto_front([(p["cost"], p["values"][s]) for p in points]) for s in sorted(seeds)}


def front_gaps(a: Sequence[dict], b: Sequence[dict], costs: Sequence[float]) -> dict[float, dict[int, float]]:
    """``{cost: {seed: front_a - front_b}}`` at ``costs``, per seed the two families share (``seed_fronts``)."""
    fa, fb = seed_fronts(a), seed_fronts(b)
    seeds = sorted(set(fa) & set(fb))
    return {c: {s: front_value(fa[s], c) - front_value(fb[s], c) for s in seeds} for c in costs}


def _range_or_why(a: Sequence[dict], b: Sequence[dict], names: tuple[str, str],
                  cost_text: Callable[[float], str]) -> tuple[Optional[tuple[float, float]], str]:
    found = common_range([p["cost"] for p in a], [p["cost"] for p in b])
    if found is not None:
        return found, ""
    ranges = ", ".join(f"{name} {cost_text(min(p['cost'] for p in pts))}-{cost_text(max(p['cost'] for p in pts))}"
                       for name, pts in zip(names, (a, b)))
    return None, f"the families share no range of cost ({ranges})"


def verdict_front_above(a: Sequence[dict], b: Sequence[dict], *, names: tuple[str, str],
                        cost_text: Callable[[float], str] = "{:.3g}".format, unit: str = "points") -> Verdict:
    """Does family ``a``'s front lie above family ``b``'s at equal cost?

    Per seed that both families' points share, each family's Pareto front (``seed_fronts``); at ``GRID_POINTS``
    costs over the range both cover, the gap a - b per seed and its 90% interval (``repro.claims``). Every
    interval above zero -> holds; one below zero (``b`` clearly above somewhere) -> does not hold; otherwise,
    or with fewer than 2 shared seeds, undecided.
    """
    found, why = _range_or_why(a, b, names, cost_text)
    if found is None:
        return Verdict(None, why + ": nothing to compare at equal cost")
    gaps = front_gaps(a, b, grid_costs(*found))
    intervals = {c: mean_interval(g) for c, g in gaps.items() if g}
    if not intervals or not all(iv.decidable for iv in intervals.values()):
        n = min((len(g) for g in gaps.values()), default=0)
        return Verdict(None, f"the fronts of {names[0]} and {names[1]} share {n} seed(s) at every point: one seed, "
                             "which never decides a verdict (a point trained at one seed enters every front)")
    numbers = "; ".join(f"{iv.mean:+.2f} [{iv.low:+.2f}, {iv.high:+.2f}] at {cost_text(c)}"
                        for c, iv in intervals.items())
    text = f"{names[0]} - {names[1]} fronts ({unit}, 90% intervals over {next(iter(intervals.values())).n} seeds): {numbers}"
    worst = min(intervals.values(), key=lambda iv: iv.mean)
    if all(iv.low > 0 for iv in intervals.values()):
        return Verdict(True, f"{text}: above zero over the whole common range", worst)
    below = [c for c, iv in intervals.items() if iv.high < 0]
    if below:
        return Verdict(False, f"{text}: {names[1]}'s front is above at {cost_text(below[0])}",
                       intervals[below[0]])
    return Verdict(None, f"{text}: somewhere in the common range the interval straddles zero", worst)


def verdict_gap_shrinks(a: Sequence[dict], b: Sequence[dict], *, names: tuple[str, str],
                        cost_text: Callable[[float], str] = "{:.3g}".format, unit: str = "points") -> Verdict:
    """Is family ``a`` above family ``b`` at small cost, with the gap shrinking at larger cost?

    On the common range (it must span at least ``MIN_SPAN``x), per shared seed the front gap g_lo at its
    cheapest end and g_hi at its dearest; two conditions (``repro.claims.verdict_all``): g_lo above zero, and
    the shrink g_lo - g_hi above zero (each by its 90% interval, ``decide_positive``).
    """
    found, why = _range_or_why(a, b, names, cost_text)
    if found is None:
        return Verdict(None, why)
    lo, hi = found
    if hi / lo < MIN_SPAN:
        return Verdict(None, f"the common range {cost_text(lo)}-{cost_text(hi)} spans only {hi / lo:.2g}x, too little "
                             "to tell small from larger compute")
    gaps = front_gaps(a, b, [lo, hi])
    small = {s: g for s, g in gaps[lo].items()}
    shrink = {s: gaps[lo][s] - gaps[hi][s] for s in small}
    if len(small) < 2:
        return Verdict(None, f"the fronts of {names[0]} and {names[1]} share {len(small)} seed(s) at every point: "
                             "one seed, which never decides a verdict")
    return verdict_all([decide_positive(mean_interval(small), what=f"{names[0]} - {names[1]} at {cost_text(lo)} =",
                                        unit=unit),
                        decide_positive(mean_interval(shrink), what=f"the gap's shrink from {cost_text(lo)} to "
                                        f"{cost_text(hi)} =", unit=unit)],
                       labels=["ahead at small compute", "the gap shrinks"])


# --- numbers from the runs ----------------------------------------------------------------------------

def groups(runs: Runs) -> dict[tuple[str, str, int], list[RunRecord]]:
    """The records by point (family, model, steps), in the order they ran."""
    found: dict[tuple[str, str, int], list[RunRecord]] = {}
    for r in runs.records:
        found.setdefault((r.family, r.model, r.steps), []).append(r)
    return found


def metric_values(records: Sequence[RunRecord], metric: str) -> dict[int, float]:
    """``{seed: value}``: the classifier's test top-1 (%) (``metric="test"``, scored by the probe's pass over the
    test split) or the final 5-shot linear top-1 (%) (``"fewshot"``, the mean over the probe's support draws)."""
    if metric == "test":
        return {r.seed: read_probes(r.run_dir)[-1]["classifier_test_top1"] for r in records}
    return {r.seed: fewshot_top1(r.run_dir, SHOTS) for r in records}


def point_cost(records: Sequence[RunRecord], axis: str) -> float:
    """A point's pre-training cost: FLOPs of one run (``axis="flops"``) or mean training seconds (``"seconds"``)."""
    if axis == "flops":
        return run_training_flops(records[0].run_dir)
    return float(np.mean([load_run(r.run_dir)["train_seconds"] for r in records]))


def family_points(runs: Runs, metric: str, axis: str) -> dict[str, list[dict]]:
    """Per family, its points: ``{"name", "cost", "values" ({seed: value}), "stats" ([mean, std, seeds])}``."""
    out: dict[str, list[dict]] = {}
    for (family, model, steps), records in groups(runs).items():
        values = metric_values(records, metric)
        out.setdefault(family, []).append({"name": point_name(model, steps), "cost": point_cost(records, axis),
                                           "values": values, "stats": seed_stats(values.values())})
    return out


def fronts(runs: Runs, metric: str, axis: str) -> dict[str, Front]:
    """Each family's Pareto front of (cost, mean accuracy)."""
    return {family: pareto_front([(p["cost"], p["stats"][0]) for p in points])
            for family, points in family_points(runs, metric, axis).items()}


def flops_text(flops: float) -> str:
    """FLOPs in the SI unit that keeps 1-3 digits before the point: 2.1e13 -> '21 TFLOPs'."""
    for unit, size in (("EFLOPs", 1e18), ("PFLOPs", 1e15), ("TFLOPs", 1e12), ("GFLOPs", 1e9), ("MFLOPs", 1e6)):
        if flops >= size:
            return f"{flops / size:.3g} {unit}"
    return f"{flops:.3g} FLOPs"


def cost_text(axis: str) -> Callable[[float], str]:
    return flops_text if axis == "flops" else (lambda c: f"{c:.3g} s")


def _claims_with_families(runs: Runs) -> list[tuple[dict, tuple[str, ...]]]:
    """Every claim entry with the families it compares (for the table's 'paper' column)."""
    config = runs.config
    ratio_paper = f"{PAPER['fig5/compute_ratio/low'].value:g}-{PAPER['fig5/compute_ratio/high'].value:g}x"
    tests = [(VIT_BIT_CLAIM, "test", "flops"), (VIT_BIT_CLAIM, "fewshot", "flops"),
             (VIT_BIT_TIME_CLAIM, "test", "seconds"), (HYBRID_CLAIM, "test", "flops"), (HYBRID_CLAIM, "fewshot", "flops")]
    out = []
    for claim, metric, axis in tests:
        a, b = ("hybrid", "ViT") if claim == HYBRID_CLAIM else ("ViT", "BiT")
        points = family_points(runs, metric, axis)
        if a not in points or b not in points:
            continue
        what = (f"CIFAR-10 {METRICS[metric]} against {AXES[axis]}, each family's Pareto front, models trained from "
                f"scratch at {config.image_size} px")
        ours = {f"{f} {p['name']}": p["values"] for f in (a, b) for p in points[f]}
        kwargs = dict(names=(a, b), cost_text=cost_text(axis))
        if claim == HYBRID_CLAIM:
            verdict = verdict_gap_shrinks(points[a], points[b], **kwargs)
            paper = ("Fig. 5: hybrids slightly outperform ViT at small computational budgets; the difference "
                     "vanishes for larger models (JFT-300M, transfer accuracy)")
            rule = ("per shared seed, the hybrid's front minus ViT's at the cheapest and the dearest end of the common "
                    "range: holds when the gap at the cheap end and its shrink both have 90% intervals above zero; "
                    "does not hold when either lies below zero")
        else:
            verdict = verdict_front_above(points[a], points[b], **kwargs)
            front = fronts(runs, metric, axis)
            ratio = equal_accuracy_cost_ratio(front[a], front[b])
            verdict = Verdict(verdict.holds, verdict.why + (
                "; no accuracy is reached by both mean fronts" if ratio is None else
                f"; for equal accuracy BiT's mean front needs {ratio:.2g}x ViT's "
                f"{'FLOPs' if axis == 'flops' else 'time'} (paper: {ratio_paper})"), verdict.difference)
            paper = (f"Sec. 4.4: ViT uses about {ratio_paper} less compute than BiT ResNets for the same performance "
                     "(JFT-300M, average over 5 transfer data sets)" if axis == "flops" else
                     "Table 2: ViT-L/16 (JFT) 0.68k TPUv3-core-days vs BiT-L 9.9k, at higher accuracy")
            rule = (f"per shared seed, ViT's front minus BiT's at {GRID_POINTS} costs over the common range: holds when "
                    "every 90% interval lies above zero, does not hold when one lies below zero")
        if metric == "fewshot":
            verdict = needs_next_run(verdict, requirements_unmet(
                support_draws=[support_draws(r.run_dir) for r in runs.records if r.family in (a, b)]))
        out.append((claim_entry(f"{claim} [{METRICS[metric]}]", paper, what, ours, at_scale(verdict, config.decidable),
                                rule=rule), (a, b)))
    return out


def claims(runs: Runs) -> list[dict]:
    """The claims of Sec. 4.4 with ours per point (per-seed values) and verdicts computed on the fronts.

    - ViT vs BiT at equal FLOPs, on test top-1 and on 5-shot linear top-1 (``verdict_front_above``; the
      noise is the run-to-run std pooled over the two families' points with several seeds), and at equal
      wall time on test top-1; beside each, the equal-accuracy compute ratio (paper: 2-4x).
    - hybrid vs ViT at equal FLOPs, on both metrics (``verdict_gap_shrinks``).
    Verdicts are None at smoke scale and where the fronts share no range, with why.
    """
    return [entry for entry, _ in _claims_with_families(runs)]


# --- table, figure, summary ------------------------------------------------------------------------------

def table(runs: Runs) -> pd.DataFrame:
    """One row per point (family, model, steps): test top-1 and 5-shot linear top-1 over seeds, FLOPs, wall
    time, whether the point is on its family's FLOPs front (test top-1), the claims it enters and our
    verdicts, cost and provenance."""
    found = _claims_with_families(runs)
    on_front = {family: {c for c, _ in front} for family, front in fronts(runs, "test", "flops").items()}
    rows = []
    for (family, model, steps), records in groups(runs).items():
        loaded = [load_run(r.run_dir) for r in records]
        test = seed_stats(metric_values(records, "test").values())
        few = seed_stats(metric_values(records, "fewshot").values())
        flops = run_training_flops(records[0].run_dir)
        per_claim: dict[str, list[str]] = {}  # claim -> our verdict per metric
        for c, families in found:
            if family in families:
                claim, metric = c["claim"].rsplit(" [", 1)
                per_claim.setdefault(claim, []).append(f"{VERDICT_WORDS[c['holds']]} ({metric.rstrip(']')})")
        verdicts = "; ".join(f"claim: {claim} — ours: {', '.join(v)}" for claim, v in per_claim.items())
        rows.append({
            "family": family, "model": model, "steps": steps, "batch": loaded[0].get("batch_size"),
            "lr": f"{loaded[0]['lr']:g}", "seeds": test[2],
            "test top-1 (%)": test[0], "test top-1 std (points)": test[1],
            f"{SHOTS}-shot linear top-1 (%)": few[0], f"{SHOTS}-shot std (points)": few[1],
            f"{SHOTS}-shot std over support draws (points)": support_std([r.run_dir for r in records]),
            "train GFLOPs / image": flops / (steps * loaded[0]["batch_size"]) / 1e9, "train TFLOPs": flops / 1e12,
            "on FLOPs front (test top-1)": flops in on_front.get(family, set()),
            **cost_columns(loaded),
            "paper": verdicts or "claim: (no comparison: the other family did not run) — ours: undecided",
            "run dirs": "; ".join(repo_relative(r.run_dir) for r in records),
        })
    return with_csv_only(pd.DataFrame(rows), "batch", "lr", "train GFLOPs / image", "params (M)", "train min / run")


def front_table(runs: Runs) -> pd.DataFrame:
    """Every front point: metric, axis, family, point and its (cost, mean accuracy), for ``fronts.csv``."""
    rows = []
    for metric, metric_label in METRICS.items():
        for axis, axis_label in AXES.items():
            points = family_points(runs, metric, axis)
            for family, front in fronts(runs, metric, axis).items():
                for cost, acc in front:
                    name = next(p["name"] for p in points[family] if p["cost"] == cost and p["stats"][0] == acc)
                    rows.append({"metric": metric_label, "axis": axis_label, "family": family, "point": name,
                                 "cost": cost, "accuracy (%)": acc})
    return pd.DataFrame(rows)


def table_note(runs: Runs) -> str:
    """What a reader needs to read the table right (printed under it)."""
    c = runs.config
    several = sorted({point_name(r.model, r.steps) for r in c.ladder if len(r.seeds) > 1})
    lrs = ", ".join(f"{f} {runs.chosen_lr(f):g}" for f in runs.lr_choices)
    note = (f"Every model: trained from scratch on CIFAR-10 at {c.image_size} px, batch {c.batch_size}, AdamW with "
            f"the scale's weight decay and linear decay after a {c.warmup_fraction:.0%} warm-up; lr per family, "
            f"chosen on the held-out split at one rung with seed 0 ({lrs}; lr_table.md has every lr). Seeds: "
            f"{', '.join(several) if several else 'none'} with several (mean ± std); one seed elsewhere. The "
            "verdicts compare the families' fronts seed by seed, over the seeds that every point has. Test top-1: "
            "the trained classifier on the whole test split; "
            f"{SHOTS}-shot linear top-1: a ridge probe (lambda 2^10) on the frozen pre-logits features, {SHOTS} "
            f"training images per class {draws_text([r.run_dir for r in runs.records])}. FLOPs: torch.utils."
            "flop_counter on one forward + backward (matrix products, convolutions and attention; norms, "
            "activations and the optimiser left out), times batch and steps; wall time: training seconds, "
            "evaluation left out. BiTs and hybrids keep the paper's 7x7/2 + max-pool stem. The paper's Fig. 5 is JFT-300M pre-training "
            "(7-14 epochs, 224 px) scored by transfer: only the directions are comparable.")
    return finish_note(note, c, cifar10="CIFAR-10 here is the JPEG copy (quality ~75).")


COLOURS = {"ViT": "tab:red", "BiT": "tab:blue", "hybrid": "tab:green"}
MARKERS = {"ViT": "o", "BiT": "s", "hybrid": "^"}


def plot(runs: Runs) -> Path:
    """``accuracy_vs_compute.png`` (Fig. 5): accuracy against FLOPs (left, in TFLOPs) and wall time (right), log x
    with 1-2-5 ticks, test top-1 (top) and 5-shot linear top-1 (bottom); one colour and marker per family, bars
    one std over seeds, each family's Pareto front drawn as a line, every point labelled without overlaps
    (``repro.figures.place_labels``)."""
    plt = pyplot()
    from matplotlib import ticker  # matplotlib on first use, as repro.figures.pyplot

    scale_of = {"flops": 1e-12, "seconds": 1.0}
    label_of = {"flops": "pre-training compute (TFLOPs, forward + backward)", "seconds": "pre-training wall time (s)"}
    fig, axes = plt.subplots(len(METRICS), len(AXES), figsize=(12, 9), squeeze=False)
    for row, (metric, metric_label) in enumerate(METRICS.items()):
        for col, axis in enumerate(AXES):
            ax = axes[row][col]
            points, front = family_points(runs, metric, axis), fronts(runs, metric, axis)
            labels = []
            k = scale_of[axis]
            for family, family_pts in points.items():
                xs = [k * p["cost"] for p in family_pts]
                ys = [p["stats"][0] for p in family_pts]
                errs = [p["stats"][1] or 0.0 for p in family_pts]
                ax.errorbar(xs, ys, yerr=errs, fmt=MARKERS[family], color=COLOURS[family], capsize=3, label=family)
                ax.plot([k * c for c, _ in front[family]], [a for _, a in front[family]], "-", color=COLOURS[family],
                        alpha=0.7)
                labels += [(x, y, p["name"].removesuffix(" steps"), COLOURS[family]) for x, y, p in zip(xs, ys, family_pts)]
            ax.set(xscale="log", xlabel=label_of[axis], ylabel=metric_label)
            ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            ax.grid(alpha=0.3, which="both")
            place_labels(ax, labels, fontsize=6)
    axes[0][0].legend(fontsize=8, loc="lower right")
    c = runs.config
    fig.suptitle(f"notebook 05, scale {c.scale.name}: accuracy vs pre-training compute (Fig. 5), CIFAR-10 at "
                 f"{c.image_size} px, ViT / BiT / hybrid ladders; lines: Pareto fronts (mean over seeds)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, runs.out / "accuracy_vs_compute.png")


def summary(runs: Runs, found: Sequence[dict]) -> str:
    """A closing paragraph in Markdown, generated from the claims' numbers and verdicts, with each family's
    FLOPs front on test top-1."""
    names = {(p["cost"], p["stats"][0]): p["name"] for pts in family_points(runs, "test", "flops").values() for p in pts}
    lines = [f"- FLOPs front on test top-1, {family}: " + " → ".join(f"{names[pt]} {pt[1]:.1f}%" for pt in pts)
             for family, pts in fronts(runs, "test", "flops").items()]
    c = runs.config
    return summary_markdown(f"scale `{c.scale.name}`, {sum(len(r.seeds) for r in c.ladder)} runs at "
                            f"{c.image_size} px, each family at {len({r.steps for r in c.ladder}) // len(FAMILIES)} "
                            "budgets",
                            load_run(runs.records[0].run_dir) if runs.records else {}, found,
                            decidable=c.decidable, extra_lines=lines)



def findings(runs: Runs) -> dict:
    """What the paper found and the measured reasons why ours may differ, for ``results/SUMMARY.md``."""
    c = runs.config
    why = [f"Every model is trained from scratch on CIFAR-10 at {c.image_size} px for "
           f"{epochs_text([r.run_dir for r in runs.records])}; Fig. 5 is 7-14 epochs of JFT-300M at 224 px, scored "
           "by transfer.", curve_sentence(curve_status([r.run_dir for r in runs.records]), "runs")]
    for family, points in family_points(runs, "test", "flops").items():
        if len(points) >= 2:  # is the family's accuracy still rising between its two largest budgets?
            (a, b) = sorted(points, key=lambda p: p["cost"])[-2:]
            why.append(f"{family}: test top-1 {a['stats'][0]:.1f}% at {flops_text(a['cost'])} and {b['stats'][0]:.1f}% "
                       f"at {flops_text(b['cost'])} ({b['stats'][0] - a['stats'][0]:+.1f} points for "
                       f"{b['cost'] / a['cost']:.1f}x the compute)"
                       + (f"; lr {runs.chosen_lr(family):g} chosen on held-out" if family in runs.lr_choices else "")
                       + ".")
    seeds = {family: min(len(p["values"]) for p in points)
             for family, points in family_points(runs, "test", "flops").items()}
    if seeds and min(seeds.values()) < 2:
        why.append("Some points were trained at one seed only, and every point enters its family's front, so the "
                   "fronts share one seed and no front verdict can be decided.")
    return {"title": "Compute scaling (Sec. 4.4, Fig. 5)",
            "paper": "For the same pre-training compute ViT beats BiT ResNets (2-4x less compute for the same "
                     "accuracy); hybrids beat ViT at small compute, the difference vanishing for larger models.",
            "why": why}

__all__ = ["findings", "NAME", "FAMILIES", "Rung", "Config", "RunRecord", "Runs", "get_config", "settings_markdown", "run",
           "lr_table", "pareto_front", "front_value", "common_range", "grid_costs", "equal_accuracy_cost_ratio", "seed_fronts",
           "front_gaps", "verdict_front_above", "verdict_gap_shrinks", "family_points", "fronts", "claims", "table",
           "front_table", "table_note", "plot", "summary"]

"""Notebook 05: accuracy against pre-training compute for ViTs, BiT ResNets and hybrids (Sec. 4.4, Fig. 5).

Each family (ViT, BiT ResNet-v2, hybrid = ResNet stages + ViT, ``repro.hybrid``) is pre-trained at several
sizes on the same data with the same recipe, so that its models span at least 10x in pre-training compute.
Compute is counted two ways: in FLOPs (``repro.results.training_flops``: ``torch.utils.flop_counter`` on one
forward + backward, times batch and steps; kept in each run's ``flops.json``) and in wall time (the run's
training seconds, evaluation left out). Accuracy is read two ways from the same weights: the trained
classifier's test top-1, and the 5-shot linear accuracy of the frozen pre-logits representation
(``repro.experiments.train_and_probe``). Each family's Pareto front (``pareto_front``: the points that no
cheaper point beats) is drawn like Fig. 5, and the claims are decided on the fronts:

- ViT beats BiT at equal compute: both fronts are interpolated on log-compute at ``GRID_POINTS`` costs
  spread over the range both cover (``compare_fronts``); ``verdict_front_above`` says whether ViT's front
  lies above BiT's beyond the seed spread everywhere there. Beside it, the paper's own measure: how many
  times ViT's compute BiT's front needs for the same accuracy (``equal_accuracy_cost_ratio``; paper 2-4x).
- Hybrids beat ViT at small compute, the gap shrinking at larger compute (``verdict_gap_shrinks``).

Scales (``PRESETS``): ``smoke`` runs a few steps per model on the embedded mini CIFAR-10 (plumbing only, every
verdict None). ``cpu`` trains 20 runs on the real CIFAR-10 at 32 px on 2 cores in about 21 minutes: ViT-XXS/8
to ViT-XS/4, BiT R14x1 to R50x1, and R14+ViT-XXS/4 to R50+ViT-XS/8, each family's smallest model also at a
quarter of the length (3 seeds there: the seed spread of the verdicts); one seed elsewhere. ``gpu`` is a
bigger ladder (ViT up to S/4, BiT up to R101x1, hybrids up to R50+ViT-Ti/4), 3 seeds each; not yet run.

Departures: models from scratch on CIFAR-10 at 32 px for about one epoch instead of 7-14 epochs of
JFT-300M at 224 px; accuracy on CIFAR-10 itself (its test split, and 5-shot probes of its training split)
instead of transfer to five data sets; one lr per family, not tuned per model; the project's small sizes
(XXS, XS; the hybrids' ResNet cut to its first one or two stages at /4 and /8, ``repro.config``). Every BiT
keeps the paper's 7x7/2 + max-pool stem (the hybrids' stem too) at every scale.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from ..results import PAPER, claim_entry, load_run, repo_relative, results_dir, seed_stats
from ..scales import Scale, get_scale
from . import (FEWSHOT_SHOTS, VERDICT_WORDS, Probe, ProbedPretraining, RunSet, cost_columns, fewshot_top1, pooled_std,
               preset_values, pretrain_departures_markdown, read_probes, run_training_flops, summary_markdown, train_and_probe,
               train_fields)

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
UNDECIDABLE = "smoke scale: a few steps on a few hundred images test the plumbing, not the claim"


@dataclass(frozen=True)
class Rung:
    """One point of a family's ladder: a model trained for ``length`` x the base steps, at these seeds."""

    family: str      # ViT | BiT | hybrid
    model: str       # a repro.config variant name
    length: float    # fraction of the base steps
    seeds: tuple


# This experiment's own choices per scale (the rest comes from repro.scales.SCALES). A ladder row is
# (family, model, fraction of the base steps, seeds).
PRESETS = {
    "smoke": dict(image_size=32, batch_size=16, steps=6, warmup_fraction=0.1, fewshot_max_train=200,
                  lrs={"ViT": 1e-3, "BiT": 1e-3, "hybrid": 1e-3},
                  ladder=(("ViT", "ViT-XXS/8", 0.5, (0, 1)), ("ViT", "ViT-XXS/8", 1.0, (0,)),
                          ("BiT", "R14x1", 0.5, (0,)), ("BiT", "R14x1", 1.0, (0,)),
                          ("hybrid", "R14+ViT-XXS/4", 0.5, (0,)), ("hybrid", "R14+ViT-XXS/4", 1.0, (0,)))),
    # Sized for ~21 minutes on 2 idle cores. Base length 320 steps x batch 128 = 40,960 images (0.84 epoch of
    # 49,000); the quarter length 80 steps = 10,240 images. Idle training throughput at 32 px (images/s):
    # measured (benchmarks/RESULTS.md) ViT-XXS/4 1100, ViT-XS/8 1160, ViT-XS/4 290, R14x1 490; rough guesses
    # from one-thread speed ratios to ViT-XXS/4 taken on a busy machine, rounded down: ViT-XXS/8 ~2500,
    # R26x1 ~330, R50x1 ~200, R14+ViT-XXS/4 ~700, R50+ViT-XS/8 ~220. Training seconds:
    #   ViT    XXS/8 3 x 10,240/2500 + 3 x 40,960/2500 = 12 + 49; XXS/4 37; XS/8 35; XS/4 141     -> 274 s
    #   BiT    R14x1 3 x 10,240/490 + 40,960/490 = 63 + 84; R26x1 124; R50x1 205                  -> 476 s
    #   hybrid R14+ViT-XXS/4 3 x 10,240/700 + 40,960/700 = 44 + 59; R50+ViT-XS/8 186              -> 289 s
    # = ~1040 s for 20 runs, plus per run ~9 s (start-up, held-out eval, the probe's 15,000 forward images):
    # ~180 s, plus FLOP counting and figures: ~21 minutes (~26 if the estimated throughputs are 25% high).
    # FLOPs per run (GFLOPs/image x images): ViT 0.15-14.2 TFLOPs (92x), BiT 1.8-20.3 (11x), hybrid 1.1-12.6 (11x).
    # lrs: per family the rate this project already trains it with at cpu scale (notebooks 01-03).
    "cpu": dict(image_size=32, batch_size=128, steps=320, warmup_fraction=0.1, fewshot_max_train=5000,
                lrs={"ViT": 2e-3, "BiT": 1e-3, "hybrid": 2e-3},
                ladder=(("ViT", "ViT-XXS/8", 0.25, (0, 1, 2)), ("ViT", "ViT-XXS/8", 1.0, (0, 1, 2)),
                        ("ViT", "ViT-XXS/4", 1.0, (0,)), ("ViT", "ViT-XS/8", 1.0, (0,)), ("ViT", "ViT-XS/4", 1.0, (0,)),
                        ("BiT", "R14x1", 0.25, (0, 1, 2)), ("BiT", "R14x1", 1.0, (0,)), ("BiT", "R26x1", 1.0, (0,)),
                        ("BiT", "R50x1", 1.0, (0,)),
                        ("hybrid", "R14+ViT-XXS/4", 0.25, (0, 1, 2)), ("hybrid", "R14+ViT-XXS/4", 1.0, (0,)),
                        ("hybrid", "R50+ViT-XS/8", 1.0, (0,)))),
    # Not yet run on a GPU: the same shape, 3000 x 512 images (~31 epochs) per full-length run, bigger models,
    # 3 seeds everywhere.
    "gpu": dict(image_size=32, batch_size=512, steps=3000, warmup_fraction=0.1, fewshot_max_train=10000,
                lrs={"ViT": 1e-3, "BiT": 1e-3, "hybrid": 1e-3},
                ladder=(("ViT", "ViT-XXS/4", 0.25, (0, 1, 2)), ("ViT", "ViT-XXS/4", 1.0, (0, 1, 2)),
                        ("ViT", "ViT-XS/4", 1.0, (0, 1, 2)), ("ViT", "ViT-Ti/4", 1.0, (0, 1, 2)),
                        ("ViT", "ViT-S/4", 1.0, (0, 1, 2)),
                        ("BiT", "R14x1", 0.25, (0, 1, 2)), ("BiT", "R14x1", 1.0, (0, 1, 2)),
                        ("BiT", "R26x1", 1.0, (0, 1, 2)), ("BiT", "R50x1", 1.0, (0, 1, 2)),
                        ("BiT", "R101x1", 1.0, (0, 1, 2)),
                        ("hybrid", "R26+ViT-XXS/4", 0.25, (0, 1, 2)), ("hybrid", "R26+ViT-XXS/4", 1.0, (0, 1, 2)),
                        ("hybrid", "R26+ViT-XS/4", 1.0, (0, 1, 2)), ("hybrid", "R26+ViT-Ti/4", 1.0, (0, 1, 2)),
                        ("hybrid", "R50+ViT-Ti/4", 1.0, (0, 1, 2)))),
}


@dataclass(frozen=True)
class Config:
    """What notebook 05 runs at one scale: the recipe shared by every model and each family's ladder."""

    scale: Scale
    data_dir: Optional[str]
    image_size: int           # px
    batch_size: int
    steps: int                # the base length; a rung trains for round(steps x its length)
    warmup_fraction: float    # of each run's steps
    lrs: dict                 # family -> lr
    fewshot_max_train: Optional[int]
    ladder: tuple             # Rung, in the order they run

    def steps_of(self, rung: Rung) -> int:
        return max(1, round(self.steps * rung.length))

    def pretraining(self, rung: Rung) -> ProbedPretraining:
        """One rung's model and budget in the settings that notebooks 02 and 03 use."""
        steps = self.steps_of(rung)
        return ProbedPretraining(scale=self.scale, data_dir=self.data_dir, model=rung.model,
                                 image_size=self.image_size, batch_size=self.batch_size, steps=steps,
                                 warmup_steps=round(steps * self.warmup_fraction),
                                 fewshot_max_train=self.fewshot_max_train)

    def train_scale(self, rung: Rung) -> Scale:
        """The scale's preset with this rung's model, budget and family lr. BiTs keep the paper's 7x7/2 +
        max-pool stem at every scale (the hybrids' stem too; the CIFAR stem would cost ~10x more FLOPs)."""
        family = SCALE_FAMILY[rung.family]
        return dataclasses.replace(self.pretraining(rung).scale_with_budget(self.lrs[rung.family], family),
                                   bit_overrides={})

    @property
    def probe(self) -> Probe:
        return self.pretraining(self.ladder[0]).probe

    @property
    def decidable(self) -> bool:
        return self.pretraining(self.ladder[0]).decidable

    def budget(self) -> str:
        runs = sum(len(r.seeds) for r in self.ladder)
        images = sum(len(r.seeds) * self.steps_of(r) * self.batch_size for r in self.ladder)
        ladders = "; ".join(f"{family}: " + ", ".join(f"{r.model} x{r.length:g}" + (f" ({len(r.seeds)} seeds)"
                                                                                   if len(r.seeds) > 1 else "")
                                                      for r in self.ladder if r.family == family)
                            for family in FAMILIES if any(r.family == family for r in self.ladder))
        return (f"{runs} training runs, {images:,} images in all, at {self.image_size} px, batch {self.batch_size}, "
                f"base length {self.steps} steps ({ladders})")


def get_config(scale: str = "cpu", *, seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
               **overrides) -> Config:
    """The settings of notebook 05 at ``scale``; ``seeds`` (None: each rung's own) replaces every rung's seeds;
    ``overrides`` (image_size, batch_size, steps, warmup_fraction, lrs, fewshot_max_train, ladder) replace the
    preset's, None keeps it; unknown keys are errors."""
    if scale not in PRESETS:
        raise ValueError(f"notebook 05 runs at {sorted(PRESETS)}; at 'paper' scale Fig. 5 needs JFT-300M")
    preset = get_scale(scale)
    values = preset_values(PRESETS, scale, overrides, what="notebook 05", seed_fields={})
    ladder = tuple(Rung(family, model, float(length), tuple(seeds if seeds is not None else rung_seeds))
                   for family, model, length, rung_seeds in values.pop("ladder"))
    unknown = sorted({r.family for r in ladder} - set(FAMILIES))
    if unknown or not all(r.seeds for r in ladder):
        raise ValueError(f"ladder families must be among {FAMILIES} and every rung needs a seed (got {unknown})")
    missing = sorted({r.family for r in ladder} - set(values["lrs"]))
    if missing:
        raise ValueError(f"no lr for the famil(ies) {missing}: give lrs={{family: lr}}")
    return Config(scale=preset, data_dir=data_dir if data_dir is not None else preset.data_dir, ladder=ladder,
                  **values)


def settings_markdown(config: Config) -> str:
    """Where this notebook's pre-training departs from the paper (for the first ViT of the ladder)."""
    first = next((r for r in config.ladder if r.family == "ViT"), config.ladder[0])
    return pretrain_departures_markdown(config.train_scale(first))


@dataclass(frozen=True)
class RunRecord:
    family: str
    model: str
    steps: int
    seed: int
    run_dir: Path


class Runs(RunSet):
    """The runs of one execution of notebook 05 (``RunRecord`` each), with where its results go."""


def point_name(model: str, steps: int) -> str:
    """'ViT-XS/4 @ 320 steps': how one point of a ladder is named in claims, tables and figures."""
    return f"{model} @ {steps} steps"


def run(scale: str, seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
        out_dir: str | Path = "../results", device: str = "auto", **overrides) -> Runs:
    """Pre-train every rung of every family at each of its seeds, probe it, and count its FLOPs. Runs that
    finished before are found by their config and not trained again."""
    from ..train import TrainConfig

    config = get_config(scale, seeds=seeds, data_dir=data_dir, **overrides)
    runs = Runs(config, results_dir(NAME, scale, out_dir))
    print(config.budget(), flush=True)
    for rung in config.ladder:
        for seed in rung.seeds:
            # eval_on_test=False: the probe scores the classifier on the whole test split from the same pass
            # that extracts the test features, so a second pass over it would only cost time.
            fields = train_fields(config.train_scale(rung), "pretrain", SCALE_FAMILY[rung.family],
                                  data_dir=config.data_dir, out_dir=runs.out / "runs", device=device, seed=seed,
                                  eval_every=0, eval_on_test=False)
            cfg = TrainConfig(**fields)
            run_dir = train_and_probe(cfg, config.probe, label=f"{point_name(rung.model, cfg.steps)} seed {seed}",
                                      device=device)
            run_training_flops(run_dir)
            runs.records.append(RunRecord(rung.family, rung.model, cfg.steps, seed, run_dir))
    return runs


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
    """The front's accuracy at ``cost``, linear in log-cost between its points; ``cost`` must lie in its range."""
    costs = np.log([c for c, _ in front])
    x = math.log(cost)
    if not costs[0] - 1e-9 <= x <= costs[-1] + 1e-9:
        raise ValueError(f"cost {cost:g} lies outside the front's range {front[0][0]:g}-{front[-1][0]:g}")
    return float(np.interp(x, costs, [a for _, a in front]))


def compare_fronts(a: Front, b: Front, points: int = GRID_POINTS) -> Optional[dict]:
    """Front ``a`` minus front ``b`` at ``points`` costs log-spaced over the range both cover:
    ``{"costs": [...], "gaps": [...]}`` (gaps in accuracy units), or None when the ranges do not overlap
    (or meet in a single cost)."""
    lo, hi = max(a[0][0], b[0][0]), min(a[-1][0], b[-1][0])
    if not hi > lo:
        return None
    costs = np.geomspace(lo, hi, points)
    costs[0], costs[-1] = lo, hi  # exactly the ends, so rounding never leaves a front's range
    return {"costs": [float(c) for c in costs], "gaps": [front_value(a, c) - front_value(b, c) for c in costs]}


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


def difference_spread(noise: Optional[float]) -> Optional[float]:
    """The seed spread of the difference of two single-seed values with run-to-run std ``noise`` each."""
    return None if noise is None else math.hypot(noise, noise)


def _spread_text(spread: Optional[float]) -> str:
    return ("seed spread unknown (no point has several seeds): the signs decide" if spread is None
            else f"seed spread of a difference {spread:.2f}")


def _compared_or_why(a: Front, b: Front, names: tuple[str, str], cost_text: Callable[[float], str],
                     decidable: bool, why_undecidable: str) -> tuple[Optional[dict], str]:
    """``(compare_fronts(a, b), "")``, or ``(None, why)`` naming both ranges when they share none."""
    found = compare_fronts(a, b)
    if found is not None:
        return found, ""
    ranges = ", ".join(f"{name} {cost_text(f[0][0])}-{cost_text(f[-1][0])}" for name, f in zip(names, (a, b)))
    return None, f"{why_undecidable}; " * (not decidable) + f"the fronts share no range of cost ({ranges})"


def verdict_front_above(a: Front, b: Front, noise: Optional[float], *, names: tuple[str, str],
                        cost_text: Callable[[float], str] = "{:.3g}".format, unit: str = "points",
                        decidable: bool = True, why_undecidable: str = "") -> tuple[Optional[bool], str]:
    """Does front ``a`` lie above front ``b`` at equal cost? ``(holds, why)``.

    The fronts are compared at ``GRID_POINTS`` costs over the range both cover (``compare_fronts``); the gaps
    a - b are weighed against the seed spread of a difference, ``difference_spread(noise)`` (``noise``: the
    run-to-run std, e.g. pooled over points with several seeds; None: unknown, the signs decide). Every gap
    above the spread -> True; any gap below minus the spread (``b`` clearly above somewhere) -> False;
    otherwise None. No common range, or ``decidable=False``, -> None with why.
    """
    name_a, name_b = names
    found, why = _compared_or_why(a, b, names, cost_text, decidable, why_undecidable)
    if found is None:
        return None, why + ": nothing to compare at equal cost"
    costs, gaps = found["costs"], found["gaps"]
    numbers = (f"{name_a} - {name_b} = " + ", ".join(f"{g:+.2f}" for g in gaps) + f" {unit} at "
               + ", ".join(cost_text(c) for c in costs))
    if not decidable:
        return None, f"{why_undecidable} ({numbers})"
    spread = difference_spread(noise)
    s = spread or 0.0
    worst = int(np.argmin(gaps))
    if min(gaps) > s:
        return True, f"{name_a}'s front is above {name_b}'s over the whole common range ({numbers}; {_spread_text(spread)})"
    if gaps[worst] < -s:
        return False, (f"{name_b}'s front is above {name_a}'s by {-gaps[worst]:.2f} {unit} at "
                       f"{cost_text(costs[worst])} ({numbers}; {_spread_text(spread)})")
    return None, f"somewhere in the common range the fronts are within the seed spread ({numbers}; {_spread_text(spread)})"


def verdict_gap_shrinks(a: Front, b: Front, noise: Optional[float], *, names: tuple[str, str],
                        cost_text: Callable[[float], str] = "{:.3g}".format, unit: str = "points",
                        decidable: bool = True, why_undecidable: str = "") -> tuple[Optional[bool], str]:
    """Is front ``a`` above front ``b`` at small cost, with the gap shrinking at larger cost? ``(holds, why)``.

    On the common range (``compare_fronts``; it must span at least ``MIN_SPAN``x), g_lo and g_hi are the gaps
    a - b at its cheapest and dearest ends, s = ``difference_spread(noise)`` (0 when unknown: the signs decide).
    g_lo < -s -> False (``b`` is above at small cost); |g_lo| <= s -> None (no clear difference at small cost);
    g_lo > s: the shrink g_lo - g_hi, whose spread is sqrt(2) s, beyond it -> True, below minus it (the gap
    grows) -> False, within it -> None.
    """
    name_a, name_b = names
    found, why = _compared_or_why(a, b, names, cost_text, decidable, why_undecidable)
    if found is None:
        return None, why
    costs, gaps = found["costs"], found["gaps"]
    lo, hi = costs[0], costs[-1]
    numbers = (f"{name_a} - {name_b} = {gaps[0]:+.2f} {unit} at {cost_text(lo)}, {gaps[-1]:+.2f} at {cost_text(hi)}")
    if not decidable:
        return None, f"{why_undecidable} ({numbers})"
    if hi / lo < MIN_SPAN:
        return None, (f"the common range {cost_text(lo)}-{cost_text(hi)} spans only {hi / lo:.2g}x, too little to "
                      f"tell small from larger compute ({numbers})")
    spread = difference_spread(noise)
    s = spread or 0.0
    g_lo, g_hi = gaps[0], gaps[-1]
    tail = f"{numbers}; {_spread_text(spread)}"
    if g_lo < -s:
        return False, f"at the smallest common compute {name_b} is above {name_a} ({tail})"
    if g_lo <= s:
        return None, f"at the smallest common compute the two are within the seed spread ({tail})"
    shrink, shrink_spread = g_lo - g_hi, math.sqrt(2) * s
    if shrink > shrink_spread:
        return True, f"{name_a} is ahead at small compute and the gap shrinks by {shrink:.2f} {unit} ({tail})"
    if shrink < -shrink_spread:
        return False, f"{name_a} is ahead at small compute but the gap grows by {-shrink:.2f} {unit} ({tail})"
    return None, (f"{name_a} is ahead at small compute; the change of the gap ({-shrink:+.2f} {unit}) is within "
                  f"its spread ({shrink_spread:.2f}) ({tail})")


# --- numbers from the runs ----------------------------------------------------------------------------

def groups(runs: Runs) -> dict[tuple[str, str, int], list[RunRecord]]:
    """The records by point (family, model, steps), in the order they ran."""
    found: dict[tuple[str, str, int], list[RunRecord]] = {}
    for r in runs.records:
        found.setdefault((r.family, r.model, r.steps), []).append(r)
    return found


def metric_values(records: Sequence[RunRecord], metric: str) -> list[float]:
    """Per seed: the classifier's test top-1 (%) (``metric="test"``, scored by the probe's pass over the test
    split) or the final 5-shot linear top-1 (%) (``"fewshot"``, the mean over the probe's sampling seeds)."""
    if metric == "test":
        return [read_probes(r.run_dir)[-1]["classifier_test_top1"] for r in records]
    return [fewshot_top1(r.run_dir, SHOTS) for r in records]


def point_cost(records: Sequence[RunRecord], axis: str) -> float:
    """A point's pre-training cost: FLOPs of one run (``axis="flops"``) or mean training seconds (``"seconds"``)."""
    if axis == "flops":
        return run_training_flops(records[0].run_dir)
    return float(np.mean([load_run(r.run_dir)["train_seconds"] for r in records]))


def family_points(runs: Runs, metric: str, axis: str) -> dict[str, list[dict]]:
    """Per family, its points: ``{"name", "cost", "values" (per seed), "stats" ([mean, std, seeds])}``."""
    out: dict[str, list[dict]] = {}
    for (family, model, steps), records in groups(runs).items():
        values = metric_values(records, metric)
        out.setdefault(family, []).append({"name": point_name(model, steps), "cost": point_cost(records, axis),
                                           "values": values, "stats": seed_stats(values)})
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
        front = fronts(runs, metric, axis)
        noise = pooled_std([p["stats"] for f in (a, b) for p in points[f]])
        what = (f"CIFAR-10 {METRICS[metric]} against {AXES[axis]}, each family's Pareto front, models trained from "
                f"scratch at {config.image_size} px")
        ours = {f"{f} {p['name']}": p["values"] for f in (a, b) for p in points[f]}
        kwargs = dict(names=(a, b), cost_text=cost_text(axis), decidable=config.decidable,
                      why_undecidable=UNDECIDABLE)
        if claim == HYBRID_CLAIM:
            verdict = verdict_gap_shrinks(front[a], front[b], noise, **kwargs)
            paper = ("Fig. 5: hybrids slightly outperform ViT at small computational budgets; the difference "
                     "vanishes for larger models (JFT-300M, transfer accuracy)")
        else:
            holds, why = verdict_front_above(front[a], front[b], noise, **kwargs)
            ratio = equal_accuracy_cost_ratio(front[a], front[b])
            why += ("; no accuracy is reached by both fronts" if ratio is None else
                    f"; for equal accuracy BiT's front needs {ratio:.2g}x ViT's {'FLOPs' if axis == 'flops' else 'time'}"
                    f" (paper: {ratio_paper})")
            verdict = (holds, why)
            paper = (f"Sec. 4.4: ViT uses about {ratio_paper} less compute than BiT ResNets for the same performance "
                     "(JFT-300M, average over 5 transfer data sets)" if axis == "flops" else
                     "Table 2: ViT-L/16 (JFT) 0.68k TPUv3-core-days vs BiT-L 9.9k, at higher accuracy")
        out.append((claim_entry(f"{claim} [{METRICS[metric]}]", paper, what, ours, verdict), (a, b)))
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
        test, few = seed_stats(metric_values(records, "test")), seed_stats(metric_values(records, "fewshot"))
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
            "train GFLOPs / image": flops / (steps * loaded[0]["batch_size"]) / 1e9, "train TFLOPs": flops / 1e12,
            "on FLOPs front (test top-1)": flops in on_front.get(family, set()),
            **cost_columns(loaded),
            "paper": verdicts or "claim: (no comparison: the other family did not run) — ours: undecided",
            "run dirs": "; ".join(repo_relative(r.run_dir) for r in records),
        })
    return pd.DataFrame(rows)


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
    several = sorted({point_name(r.model, c.steps_of(r)) for r in c.ladder if len(r.seeds) > 1})
    note = (f"Every model: trained from scratch on CIFAR-10 at {c.image_size} px, batch {c.batch_size}, AdamW with "
            f"the scale's weight decay and linear decay after a {c.warmup_fraction:.0%} warm-up; lr per family "
            f"({', '.join(f'{k} {v:g}' for k, v in c.lrs.items())}), not tuned per model. Seeds: "
            f"{', '.join(several) if several else 'none'} with several (mean ± std); one seed elsewhere. The "
            "verdicts weigh gaps against the run-to-run std pooled over the points with several seeds. Test top-1: "
            "the trained classifier on the whole test split; "
            f"{SHOTS}-shot linear top-1: a ridge probe (lambda 2^10) on the frozen pre-logits features, {SHOTS} "
            "training images per class drawn with sampling seeds 0, 1, 2 (their mean). FLOPs: torch.utils."
            "flop_counter on one forward + backward (matrix products, convolutions and attention; norms, "
            "activations and the optimiser left out), times batch and steps; wall time: training seconds, "
            "evaluation left out. BiTs and hybrids keep the paper's 7x7/2 + max-pool stem. The paper's Fig. 5 is JFT-300M pre-training "
            "(7-14 epochs, 224 px) scored by transfer: only the directions are comparable.")
    caveats = {"CIFAR-10 here is the JPEG copy (quality ~75).": c.scale.dataset == "cifar10",
               "Smoke scale: a few steps on a few hundred images prove the plumbing, not the claims.": not c.decidable}
    return " ".join([note, *(text for text, applies in caveats.items() if applies)])


COLOURS = {"ViT": "tab:red", "BiT": "tab:blue", "hybrid": "tab:green"}
MARKERS = {"ViT": "o", "BiT": "s", "hybrid": "^"}


def plot(runs: Runs) -> Path:
    """``accuracy_vs_compute.png`` (Fig. 5): accuracy against FLOPs (left) and wall time (right), log x, test
    top-1 (top) and 5-shot linear top-1 (bottom); one colour and marker per family, bars one std over seeds,
    each family's Pareto front drawn as a line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(len(METRICS), len(AXES), figsize=(11, 8), squeeze=False)
    for row, (metric, metric_label) in enumerate(METRICS.items()):
        for col, (axis, axis_label) in enumerate(AXES.items()):
            ax = axes[row][col]
            points, front = family_points(runs, metric, axis), fronts(runs, metric, axis)
            for family, family_pts in points.items():
                xs = [p["cost"] for p in family_pts]
                ys = [p["stats"][0] for p in family_pts]
                errs = [p["stats"][1] or 0.0 for p in family_pts]
                ax.errorbar(xs, ys, yerr=errs, fmt=MARKERS[family], color=COLOURS[family], capsize=3, label=family)
                ax.plot(*zip(*front[family]), "-", color=COLOURS[family], alpha=0.7)
                for p in family_pts:  # "R14x1 @ 80": model and steps
                    ax.annotate(p["name"].removesuffix(" steps"), (p["cost"], p["stats"][0]), xytext=(3, 3),
                                textcoords="offset points", fontsize=6, color=COLOURS[family])
            ax.set(xscale="log", xlabel=axis_label, ylabel=metric_label)
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())  # narrow ranges would label every minor tick
            ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=8)
    c = runs.config
    fig.suptitle(f"notebook 05, scale {c.scale.name}: accuracy vs pre-training compute (Fig. 5), CIFAR-10 at "
                 f"{c.image_size} px; lines: Pareto fronts", fontsize=10)
    path = runs.out / "accuracy_vs_compute.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def summary(runs: Runs, found: Sequence[dict]) -> str:
    """A closing paragraph in Markdown, generated from the claims' numbers and verdicts, with each family's
    FLOPs front on test top-1."""
    names = {(p["cost"], p["stats"][0]): p["name"] for pts in family_points(runs, "test", "flops").values() for p in pts}
    lines = [f"- FLOPs front on test top-1, {family}: " + " → ".join(f"{names[pt]} {pt[1]:.1f}%" for pt in pts)
             for family, pts in fronts(runs, "test", "flops").items()]
    c = runs.config
    return summary_markdown(f"scale `{c.scale.name}`, {sum(len(r.seeds) for r in c.ladder)} runs at "
                            f"{c.image_size} px, base length {c.steps} steps",
                            load_run(runs.records[0].run_dir) if runs.records else {}, found,
                            decidable=c.decidable, extra_lines=lines)


__all__ = ["NAME", "FAMILIES", "Rung", "Config", "RunRecord", "Runs", "get_config", "settings_markdown", "run",
           "pareto_front", "front_value", "compare_fronts", "equal_accuracy_cost_ratio", "difference_spread",
           "verdict_front_above", "verdict_gap_shrinks", "family_points", "fronts", "claims", "table",
           "front_table", "table_note", "plot", "summary"]

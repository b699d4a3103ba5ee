"""Notebook 04: data scaling (Sec. 4.3, Fig. 3, 4).

A small ViT and a BiT ResNet are pre-trained from scratch on nested random subsets of CIFAR-10's training
split (``TrainConfig.max_train``: a seeded, class-balanced subset; for one seed each smaller subset lies
inside the larger ones, and the ViT and the BiT of one seed see the same images). Each run is scored two ways:

- Fig. 4's metric: the 5-shot linear accuracy of the frozen pre-logits representation (``repro.fewshot``,
  big_vision's ``fewshot_lsr``; support sets from a fixed pool of training images, 5 support draws;
  tested on the whole test split), through ``repro.experiments.probes.train_and_probe``;
- Fig. 3's metric: top-1 on the target task after training on it. Here the target task is the pre-training
  task itself (CIFAR-10), so the trained classifier is the model that is scored, on the test split (the probe
  applies its head to the same test features). This stands in for Fig. 3's fine-tuning: fine-tuning every
  one of the runs on a separate target with an lr sweep would cost more than the pre-training itself at
  ``cpu`` scale, and notebook 01 tests transfer to an unseen task below paper scale.

Accuracy is plotted against the pre-training set size on a log axis (mean ± std over seeds), and the claim
is read as a direction: a least-squares line through (log10 size, accuracy) per model and seed gives the
points gained per decade of data; the ViT should gain more per decade than the BiT (``fit_log10``,
``slopes_per_seed``; verdict through ``repro.claims.verdict_above``). Whether the ViT overtakes the BiT
within the measured range, and where the fitted lines would cross, is stated beside it.

Budget: every size gets the same training steps, so the smaller sets are seen for more epochs. The paper
does the same (same hyper-parameters for every JFT subset, no extra regularisation on the small ones) and
reports the best validation accuracy during training (early stopping); so does this notebook: every run is
evaluated on the held-out split along training and keeps the weights of its best evaluation
(``TrainConfig.keep_best``), which are the ones probed and scored. The table shows where each run's best was
("best held-out step") and how far the training accuracy ran ahead of the held-out one (over-fitting on the
small sets: the regime Fig. 4 speaks of). Scales: ``smoke`` (seconds, the embedded mini copy, one seed:
plumbing only), ``cpu`` (ViT-XXS/4 vs BiT R14x1, 1k-49k images, 400 steps, 3 seeds, ~39 minutes on 2 cores;
the arithmetic is beside ``PRESETS``), ``gpu`` (ViT-Ti/4 vs BiT R26x1, 1k-49k images, not yet run).

Departures: CIFAR-10 subsets of 10^3-10^4.5 images at 32 px instead of JFT-300M subsets of 9M-300M at 224 px,
probed on CIFAR-10 instead of ImageNet; models of ~0.15M (ViT) and ~8M (BiT) parameters instead of ViT-B/L and
BiT R50-R152; the BiT is the costlier of the pair on a CPU (~2.2x the ViT's time per image), which favours it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ..claims import (VERDICT_WORDS, Verdict, at_scale, claim_entry, needs_next_run, requirements_unmet, seed_stats,
                      verdict_above)
from ..figures import plot_claims as draw_claims, pyplot, save_figure
from ..paths import repo_relative
from ..progress import RunProgress
from ..runconfig import TrainConfig
from ..rundir import load_run, read_metrics
from ..scales import get_scale
from ..summary import curve_sentence, curve_status
from .probes import (FEWSHOT_SHOTS, draws_text, fewshot_top1, Probe, read_probes, support_draws, support_std,
                     train_and_probe)
from .reporting import cost_columns, finish_note, RunSet, summary_markdown, with_csv_only
from .settings import (apply_preset, check_settings, experiment_out, preset_of, pretrain_departures_markdown,
                       pretraining_run, ProbedPretraining)

NAME = "04_data_scaling"
FAMILIES = ("ViT", "BiT")
SHOTS = FEWSHOT_SHOTS
FEWSHOT_METRIC = f"{SHOTS}-shot linear top-1 (%)"
TEST_METRIC = "test top-1 (%)"
SLOPE_UNIT = "points per decade"
# The smallest difference of slopes the claims count (points per decade of data): Fig. 4's ViTs gain several points
# per decade more than the ResNets between 9M and 300M images; a difference below 1 point per decade would need
# 10x the data for each point of catching up, too slow to call "catching up" at any scale this project runs.
SLOPE_FLOOR = 1.0

FEWSHOT_CLAIM = (f"ViT gains more {SHOTS}-shot linear accuracy per decade of pre-training data than a BiT ResNet, "
                 f"by at least {SLOPE_FLOOR:g} point per decade (Sec. 4.3, Fig. 4)")
TEST_CLAIM = ("ViT gains more top-1 accuracy per decade of pre-training data than a BiT ResNet, by at least "
              f"{SLOPE_FLOOR:g} point per decade (Sec. 4.3, Fig. 3)")
PAPER_TEXT = {  # Sec. 4.3; the figures give no table of numbers comparable with CIFAR-10 subsets
    FEWSHOT_CLAIM: "Fig. 4: ViTs vs BiT ResNets on random JFT-300M subsets of 9M, 30M, 90M and 300M images, same "
                   "hyper-parameters for every subset, ImageNet 5-shot linear: the ResNets are better on the small "
                   "subsets and plateau sooner, the ViTs climb faster and overtake on the larger ones",
    TEST_CLAIM: "Fig. 3: pre-trained on ImageNet-1k (1.3M), ImageNet-21k (14M) or JFT-300M and fine-tuned on "
                "ImageNet: the BiT ResNets are above the large ViTs after ImageNet-1k; the ViTs catch up and "
                "pull ahead with the larger sets",
}

# This experiment's own choices per scale: ``train`` is what the ViT's pre-training changes from the scale's
# (repro.scales), ``bit_train`` what the BiT's changes besides them, the rest its own knobs.
PRESETS = {
    # 8 runs of a few steps at a small batch: the BiT's steps dominate the notebook's smoke time.
    "smoke": dict(train=dict(batch_size=16, steps=6, warmup_steps=2, eval_every=3), bit_train=dict(),
                  sizes=(100, 250, 600, 1500), seeds=(0,), fewshot_max_train=200),
    # The regime of Fig. 3/4 is over-fitting on the small sets, so every size trains as long as the smallest needs
    # to over-fit (its held-out top-1 peaks before the end) and reports its best held-out evaluation (early stopping,
    # keep_best), from 1,000 images to the whole training split (49,000 after the held-out 2%). 400 steps x 128 =
    # 51,200 images: 51 epochs of 1,000 images, 5 of 10,000, 1 of 49,000. Measured at 32 px on 2 cores
    # (2026-12-04, Intel Xeon; synthetic batches): ViT-XXS/4 1,265 images/s, BiT R14x1 426; in the loop ~1,150 and
    # ~400. One (size, seed) pair: 51,200 / 1,150 + 51,200 / 400 = 45 + 128 = 173 s; 4 sizes x 3 seeds = 12 pairs =
    # 35 min; 10 held-out evaluations of 1,000 images per run and the probe (1,000 support-pool + 10,000 test
    # images) add ~6 s (ViT) / ~12 s (BiT) per run, ~4 min: ~39 minutes.
    "cpu": dict(train=dict(model="ViT-XXS/4", steps=400, warmup_steps=40, lr=2e-3, eval_every=40), bit_train=dict(),
                sizes=(1000, 3000, 10000, 49000), seeds=(0, 1, 2), fewshot_max_train=1000),
    # Not measured on a GPU yet: 2,000 steps x 512 = 1M images per run (21 epochs of 49,000, 1,024 of 1,000).
    "gpu": dict(train=dict(steps=2000, warmup_steps=200, eval_every=100), bit_train=dict(),
                sizes=(1000, 3000, 10000, 49000), seeds=(0, 1, 2), fewshot_max_train=10000),
}
# The fields of ``train`` that are the ViT's own; the BiT's run takes the others (batch, steps...) as they are.
VIT_ONLY = ("model", "lr")


@dataclass(frozen=True)
class Config(ProbedPretraining):
    """What notebook 04 runs at one scale: the ViT's pre-training run (``train``) and the BiT's (``bit_train``),
    which every (size, seed) varies, the probe, the pre-training set sizes and the seeds."""

    bit_train: TrainConfig
    sizes: tuple             # pre-training images per run, ascending (nested subsets for one seed)
    seeds: tuple             # training seeds; each also draws its own subsets (at least 3 outside smoke)

    bit = property(lambda self: self.bit_train.model)
    bit_lr = property(lambda self: self.bit_train.lr)
    eval_every = property(lambda self: self.train.eval_every)  # steps between held-out evaluations

    @property
    def models(self) -> dict[str, str]:
        return {"ViT": self.model, "BiT": self.bit}

    def size_run(self, family: str, size: int, seed: int) -> TrainConfig:
        """The run of one model on the subset of ``size`` images drawn with ``seed``."""
        return dataclasses.replace(self.train if family == "ViT" else self.bit_train, seed=seed, max_train=size)

    def epochs(self, size: int) -> float:
        """Passes over a pre-training set of ``size`` images in one run."""
        return self.steps * self.batch_size / size

    def budget(self) -> str:
        runs = len(FAMILIES) * len(self.sizes) * len(self.seeds)
        epochs = ", ".join(f"{s:,} images: {self.epochs(s):.1f}" for s in self.sizes)
        return (f"2 models ({self.model} / {self.bit}) x {len(self.sizes)} sizes x {len(self.seeds)} seeds = {runs} "
                f"runs x {self.steps} steps x batch {self.batch_size} = {runs * self.steps * self.batch_size:,} "
                f"images at {self.image_size} px; epochs per run ({epochs})")


def get_config(scale: str = "cpu", *, seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
               out_dir: str | Path | None = None, device: str = "auto", model: Optional[str] = None,
               bit: Optional[str] = None, image_size: Optional[int] = None, batch_size: Optional[int] = None,
               steps: Optional[int] = None, warmup_steps: Optional[int] = None, lr: Optional[float] = None,
               bit_lr: Optional[float] = None, sizes: Optional[Sequence[int]] = None,
               fewshot_max_train: Optional[int] = None, eval_every: Optional[int] = None) -> Config:
    """The runs of notebook 04 at ``scale``: the preset, with any parameter that is not None in its place
    (``model`` and ``lr`` are the ViT's, ``bit`` and ``bit_lr`` the BiT's)."""
    preset = preset_of(PRESETS, scale, "notebook 04 runs at {scales}; at 'paper' scale Fig. 4 needs JFT-300M subsets")
    changes, knobs = apply_preset(
        preset, what="notebook 04", seeds=seeds, sizes=sizes, fewshot_max_train=fewshot_max_train,
        train=dict(model=model, image_size=image_size, batch_size=batch_size, steps=steps, warmup_steps=warmup_steps,
                   lr=lr, eval_every=eval_every))
    check_settings({"bit": bit, "bit_lr": bit_lr} if bit_lr is not None else {"bit": bit}, "notebook 04")
    bit_changes = {**knobs.pop("bit_train"), **{k: v for k, v in (("model", bit), ("lr", bit_lr)) if v is not None}}
    sizes = tuple(sorted(int(s) for s in knobs["sizes"]))
    if len(set(sizes)) < 2 or sizes[0] <= 0:
        raise ValueError(f"sizes={list(knobs['sizes'])}: give at least two distinct positive numbers of images "
                         "(a slope needs two points)")
    out, preset_scale = experiment_out(NAME, scale, out_dir), get_scale(scale)
    # The test split is scored by the probe (the classifier's head on its test features), not twice; keep_best:
    # the weights of the best held-out evaluation are the ones probed and reported.
    every_run = dict(data_dir=data_dir, out=out, device=device, seed=knobs["seeds"][0] if knobs["seeds"] else 0,
                     eval_on_test=False, keep_best=True)
    train = pretraining_run(preset_scale, changes, **every_run)
    shared = {k: v for k, v in changes.items() if k not in VIT_ONLY}
    bit_train = pretraining_run(preset_scale, {**shared, **bit_changes}, family="bit", **every_run)
    return Config(scale=preset_scale, train=train, bit_train=bit_train, out=out, sizes=sizes, seeds=knobs["seeds"],
                  probe=Probe.of_run(train, knobs["fewshot_max_train"]))


def settings_markdown(config: Config) -> str:
    """Where this notebook's pre-training departs from the paper."""
    c = config
    return pretrain_departures_markdown(c.scale.name, c.train, rows={
        "models (ViT / BiT / hybrid)": f"{c.model} / {c.bit} / —",
        "pre-training data": (f"{c.train.dataset}: nested random subsets of "
                              f"{', '.join(f'{s:,}' for s in c.sizes)} images"),
        "pre-training length": (f"{c.steps} steps at every size ({c.epochs(c.sizes[-1]):.1f}-"
                                f"{c.epochs(c.sizes[0]):.1f} epochs); the best held-out evaluation's weights "
                                "(early stopping)"),
        "pre-training lr, decay, weight decay": (f"{c.lr:g} (ViT) / {c.bit_lr:g} (BiT), "
                                                 f"{c.train.schedule} wd {c.train.weight_decay:g}"),
    })


@dataclass(frozen=True)
class RunRecord:
    """One finished run: a model pre-trained on one subset size at one seed."""

    family: str        # ViT | BiT
    model: str
    size: int          # pre-training images
    seed: int
    run_dir: Path


class Runs(RunSet):
    """The runs of one execution of notebook 04 (``RunRecord`` each), with where its results go."""


def run(config: Config) -> Runs:
    """Pre-train the ViT and the BiT on each subset size and seed, then probe each. Seeds are the outer loop, so
    an interrupted run has whole seeds first; runs that finished before (same probe) are not trained again."""
    runs = Runs(config, config.out)
    progress = RunProgress(len(FAMILIES) * len(config.sizes) * len(config.seeds), "training runs")
    for seed in config.seeds:
        for size in config.sizes:
            for family in FAMILIES:
                model = config.models[family]
                run_dir = train_and_probe(config.size_run(family, size, seed), config.probe,
                                          label=f"{model} on {size:,} images seed {seed}", progress=progress)
                runs.records.append(RunRecord(family, model, size, seed, run_dir))
    return runs


# --- pure numbers: slopes per decade, where lines cross, overtaking ------------------------------------------

def fit_log10(sizes: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """The least-squares line through (log10(size), value): ``(slope, intercept)``, the slope in value units
    per decade (10x) of data, the intercept at one image. Needs at least two distinct sizes."""
    x = np.log10(np.asarray(sizes, dtype=float))
    y = np.asarray(values, dtype=float)
    if x.shape != y.shape or len(np.unique(x)) < 2:
        raise ValueError(f"a line needs values at two or more distinct sizes, got sizes {list(sizes)} and "
                         f"{len(y)} values")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def slopes_per_seed(per_seed: dict[int, dict[int, float]]) -> dict[int, float]:
    """``{seed: {size: value}}`` -> ``{seed: slope per decade}`` (``fit_log10`` over that seed's sizes)."""
    return {seed: fit_log10(list(by_size), list(by_size.values()))[0] for seed, by_size in per_seed.items()}


def crossing_size(fit_a: tuple[float, float], fit_b: tuple[float, float]) -> Optional[float]:
    """The set size (images) where two fitted lines ``(slope, intercept)`` meet; None when they are parallel."""
    (slope_a, icpt_a), (slope_b, icpt_b) = fit_a, fit_b
    if slope_a == slope_b:
        return None
    return 10 ** ((icpt_b - icpt_a) / (slope_a - slope_b))


def overtake_size(sizes: Sequence[int], vit: Sequence[float], bit: Sequence[float]) -> Optional[int]:
    """The smallest size from which the ViT's mean stays above the BiT's up to the largest size; None when the
    ViT is not above at the largest size. ``vit`` and ``bit`` are means per size, in the order of ``sizes``."""
    order = np.argsort(sizes)
    above = [vit[i] > bit[i] for i in order]
    if not above[-1]:
        return None
    first = len(above) - 1
    while first > 0 and above[first - 1]:
        first -= 1
    return int(sizes[order[first]])


def overtaking_text(sizes: Sequence[int], vit: Sequence[float], bit: Sequence[float], vit_fit: tuple[float, float],
                    bit_fit: tuple[float, float], vit_name: str = "ViT", bit_name: str = "BiT") -> str:
    """In words: whether the ViT overtakes the BiT within the measured sizes (means per size) and where the
    fitted lines cross (``crossing_size``), marked as an extrapolation when that is outside the range."""
    lo, hi = min(sizes), max(sizes)
    first = overtake_size(sizes, vit, bit)
    at = dict(zip(sizes, zip(vit, bit)))
    gaps = (f"{vit_name} - {bit_name}: {at[lo][0] - at[lo][1]:+.2f} points at {lo:,} images, "
            f"{at[hi][0] - at[hi][1]:+.2f} at {hi:,}")
    if first is None:
        where = f"{vit_name} does not overtake {bit_name} within {lo:,}-{hi:,} images ({gaps})"
    elif first == lo:
        where = f"{vit_name} is above {bit_name} at every size ({gaps})"
    else:
        where = f"{vit_name} overtakes {bit_name} within the range, from {first:,} images on ({gaps})"
    cross = crossing_size(vit_fit, bit_fit)
    if cross is None or vit_fit[0] <= bit_fit[0]:
        return where + f"; the fitted lines do not converge as data grows ({vit_name}'s slope is not the larger)"
    # 3 significant digits: 6,810 images; beyond a billion, powers of ten (2.51e+22), not float noise in digits.
    images = f"{float(f'{cross:.3g}'):,.0f}" if cross < 1e9 else f"{cross:.2e}"
    if cross > hi:
        return where + f"; the fitted lines would cross at ~{images} images, an extrapolation beyond the range"
    return where + f"; the fitted lines cross at ~{images} images"


# --- numbers of the runs ----------------------------------------------------------------------------------

def _test_top1(run_dir: Path) -> float:
    """The trained classifier's test top-1 (%) at the end (the probe scores it on the test features)."""
    return read_probes(run_dir)[-1]["classifier_test_top1"]


METRICS = {FEWSHOT_METRIC: lambda d: fewshot_top1(d, SHOTS), TEST_METRIC: _test_top1}


def points(runs: Runs, family: str, metric: str) -> dict[int, dict[int, float]]:
    """``{seed: {size: value}}`` of one model's ``metric`` (a key of ``METRICS``)."""
    out: dict[int, dict[int, float]] = {}
    for r in runs.select(family=family):
        out.setdefault(r.seed, {})[r.size] = METRICS[metric](r.run_dir)
    return out


def size_stats(per_seed: dict[int, dict[int, float]]) -> dict[int, list]:
    """``{size: [mean, std, seeds]}`` over seeds (``repro.claims.seed_stats``), sizes ascending."""
    sizes = sorted({s for by_size in per_seed.values() for s in by_size})
    return {s: seed_stats([v[s] for v in per_seed.values() if s in v]) for s in sizes}


def _claim(runs: Runs, metric: str, claim: str) -> Optional[dict]:
    config = runs.config
    per_model = {f: points(runs, f, metric) for f in FAMILIES}
    if not all(per_model.values()):
        return None
    vit_name, bit_name = config.model, config.bit
    slopes = {f: slopes_per_seed(per_model[f]) for f in FAMILIES}
    names = {"ViT": f"{vit_name} slope", "BiT": f"{bit_name} slope"}
    verdict = verdict_above(slopes["ViT"], slopes["BiT"], names=(names["ViT"], names["BiT"]), unit=SLOPE_UNIT,
                            floor=SLOPE_FLOOR)
    by_size = {f: size_stats(per_model[f]) for f in FAMILIES}
    sizes = [s for s in by_size["ViT"] if s in by_size["BiT"]]
    means = {f: [by_size[f][s][0] for s in sizes] for f in FAMILIES}
    fits = {f: fit_log10(sizes, means[f]) for f in FAMILIES}
    slope_text = "; ".join(f"{names[f]} " + _mean_std_text(slopes[f].values()) for f in FAMILIES)
    why = (f"{verdict.why}; slopes ({SLOPE_UNIT}, mean ± std over seeds): {slope_text}; "
           + overtaking_text(sizes, means["ViT"], means["BiT"], fits["ViT"], fits["BiT"], vit_name, bit_name))
    verdict = Verdict(verdict.holds, why, verdict.difference)
    if metric == FEWSHOT_METRIC:
        verdict = needs_next_run(verdict, requirements_unmet(support_draws=[support_draws(r.run_dir)
                                                                            for r in runs.records]))
    ours = {names[f]: slopes[f] for f in FAMILIES}
    for f in FAMILIES:  # the accuracy at each size beside the slopes
        ours.update({f"{config.models[f]} @ {s:,} images": {seed: v[s] for seed, v in per_model[f].items() if s in v}
                     for s in sizes})
    metric_text = (f"{metric.replace(' (%)', '')} after pre-training on a random CIFAR-10 subset ({config.steps} "
                   f"steps at every size; {config.model} vs {config.bit} at {config.image_size} px); ours: the "
                   f"slope of a least-squares line through (log10 images, accuracy) per seed, in {SLOPE_UNIT}, "
                   "and the accuracy (%) at each size")
    return claim_entry(claim, PAPER_TEXT[claim], metric_text, ours, at_scale(verdict, config.decidable),
                       rule=f"ViT's slope minus BiT's, paired by seed: holds when the 90% interval lies above zero and "
                            f"the mean difference is at least {SLOPE_FLOOR:g} {SLOPE_UNIT}; does not hold when the "
                            "interval lies below zero; undecided otherwise")


def _mean_std_text(values) -> str:
    mean, std, n = seed_stats(values)
    return f"{mean:+.2f}" + (f" ± {std:.2f}" if std is not None else "")


def claims(runs: Runs) -> list[dict]:
    """Fig. 4 (5-shot linear) and Fig. 3 (test top-1 of the trained classifier): does the ViT gain more per
    decade of data? ViT's slope minus the BiT's, paired by seed (``repro.claims.verdict_above`` with the
    ``SLOPE_FLOOR``); the ``why`` adds the slopes and whether the ViT overtakes in the range."""
    found = [_claim(runs, FEWSHOT_METRIC, FEWSHOT_CLAIM), _claim(runs, TEST_METRIC, TEST_CLAIM)]
    return [c for c in found if c is not None]


def _heldout(run_dir: Path) -> tuple[Optional[float], Optional[int], Optional[float]]:
    """The last held-out top-1 (%), the step of the best held-out evaluation along training, and the running
    training top-1 at the end minus that last held-out top-1 (points: how far the run over-fits)."""
    records = read_metrics(run_dir)
    evals = [r for r in records if r.get("event") == "eval" and r.get("split") == "val"]
    train = [r for r in records if r.get("event") == "train"]
    if not evals:
        return None, None, None
    best = max(evals, key=lambda r: (r["accuracy"], -r["step"]))
    gap = 100 * (train[-1]["accuracy"] - evals[-1]["accuracy"]) if train else None
    return 100 * evals[-1]["accuracy"], best["step"], gap


def table(runs: Runs) -> pd.DataFrame:
    """One row per (model, pre-training set size): epochs, 5-shot linear and test top-1 (mean ± std over seeds),
    the held-out top-1 at the end and the step of its best, the claims' verdicts, cost and provenance."""
    config = runs.config
    verdicts = "; ".join(f"claim: {c['claim']} — ours: {VERDICT_WORDS[c['holds']]}" for c in claims(runs))
    rows = []
    for family in FAMILIES:
        for size in config.sizes:
            records = runs.select(family=family, size=size)
            if not records:
                continue
            few = seed_stats([fewshot_top1(r.run_dir, SHOTS) for r in records])
            top1 = seed_stats([_test_top1(r.run_dir) for r in records])
            heldout = [_heldout(r.run_dir) for r in records]
            finals = [h for h, _, _ in heldout if h is not None]
            gaps = [g for _, _, g in heldout if g is not None]
            rows.append({
                "model": records[0].model, "pre-training images": size, "epochs": config.epochs(size),
                "seeds": few[2], FEWSHOT_METRIC: few[0], f"{SHOTS}-shot std (points)": few[1],
                f"{SHOTS}-shot std over support draws (points)": support_std([r.run_dir for r in records]),
                TEST_METRIC: top1[0], "test top-1 std (points)": top1[1],
                "held-out top-1 (%)": sum(finals) / len(finals) if finals else None,
                "best held-out step": ", ".join(str(s) for _, s, _ in heldout if s is not None) or None,
                "train - held-out (points)": sum(gaps) / len(gaps) if gaps else None,
                **cost_columns([load_run(r.run_dir) for r in records]),
                "paper": verdicts or "—",
                "run dirs": "; ".join(repo_relative(r.run_dir) for r in records),
            })
    return with_csv_only(pd.DataFrame(rows), "params (M)", "train min / run")


def slopes_table(runs: Runs) -> pd.DataFrame:
    """One row per (model, metric): the slope per decade of data (mean, std, per seed) and the fitted line's
    accuracy at the smallest and the largest size."""
    config, rows = runs.config, []
    for metric in METRICS:
        for family in FAMILIES:
            per_seed = points(runs, family, metric)
            if not per_seed:
                continue
            slopes = slopes_per_seed(per_seed)
            mean, std, n = seed_stats(slopes.values())
            stats = size_stats(per_seed)
            fit = fit_log10(list(stats), [m for m, _, _ in stats.values()])
            lo, hi = min(stats), max(stats)
            rows.append({"model": config.models[family], "metric": metric, f"slope ({SLOPE_UNIT})": mean,
                         "slope std": std, "seeds": n,
                         "per seed": ", ".join(f"{s}: {v:+.2f}" for s, v in slopes.items()),
                         f"fit at {lo:,} images (%)": fit[1] + fit[0] * math.log10(lo),
                         f"fit at {hi:,} images (%)": fit[1] + fit[0] * math.log10(hi)})
    return pd.DataFrame(rows)


def table_note(runs: Runs) -> str:
    c = runs.config
    note = (f"Every run: {c.steps} steps of batch {c.batch_size} at {c.image_size} px from scratch, whatever the set "
            f"size (so the smaller sets are seen for more epochs), lr {c.lr:g} ({c.model}) / {c.bit_lr:g} ({c.bit}); "
            "the subsets are seeded and class-balanced, nested for one seed and shared by the two models. "
            f"{SHOTS}-shot linear top-1: a ridge probe (lambda 2^10) on the frozen pre-logits features, {SHOTS} "
            f"images per class from a pool of {c.probe.max_train or 'all'} training images, "
            f"{draws_text([r.run_dir for r in runs.records])}. Test top-1: the trained classifier, scored by the probe on the same test "
            f"features. Mean ± std over {len(c.seeds)} training seed(s). The held-out split (2% of the training split, "
            f"never in a subset) is evaluated every {c.eval_every} steps and each run keeps the weights of its best "
            "evaluation (early stopping, as the paper): 'best held-out step' per seed; 'train - held-out (points)' is "
            "the running training top-1 at the end minus the last held-out top-1 (over-fitting). "
            "No number of the paper is comparable (JFT subsets of 9M-300M images probed on ImageNet), so the "
            "'paper' column gives the claims and our verdicts; slopes.md has the slopes. ")
    return finish_note(note, c, cifar10="CIFAR-10 here is the JPEG-compressed copy (quality ~75).")


def plot(runs: Runs) -> Path:
    """``data_scaling.png`` (Fig. 3/4): accuracy against pre-training set size on a log axis, one panel per
    metric, per model the mean over seeds with one-std bars and the least-squares line through the means."""
    plt = pyplot()

    config = runs.config
    fig, axes = plt.subplots(1, len(METRICS), figsize=(11, 4.2))
    colours = {"ViT": "tab:blue", "BiT": "tab:orange"}
    for ax, metric in zip(axes, METRICS):
        for family in FAMILIES:
            per_seed = points(runs, family, metric)
            if not per_seed:
                continue
            stats = size_stats(per_seed)
            sizes = np.array(list(stats), dtype=float)
            means = np.array([m for m, _, _ in stats.values()])
            stds = np.array([s or 0.0 for _, s, _ in stats.values()])
            slope = seed_stats(slopes_per_seed(per_seed).values()) if len(stats) > 1 else None
            label = config.models[family] + (f" ({slope[0]:+.1f} per decade)" if slope else "")
            ax.errorbar(sizes, means, yerr=stds, marker="o", capsize=3, color=colours[family], label=label)
            if len(stats) > 1:
                fit = fit_log10(sizes, means)
                xs = np.geomspace(sizes[0], sizes[-1], 50)
                ax.plot(xs, fit[1] + fit[0] * np.log10(xs), "--", color=colours[family], alpha=0.6)
        ax.set_xscale("log")
        ax.set_xticks(list(config.sizes), [f"{s:,}" for s in config.sizes])
        ax.minorticks_off()
        ax.set(xlabel="pre-training images (log scale)", ylabel=metric,
               title=("Fig. 4: " if metric == FEWSHOT_METRIC else "Fig. 3: ") + metric.replace(" (%)", ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"notebook 04, scale {config.scale.name}: {config.model} vs {config.bit} on CIFAR-10 subsets at "
                 f"{config.image_size} px, {config.steps} steps each; mean ± std over {len(config.seeds)} seed(s); "
                 "dashed: least-squares fit", fontsize=10)
    fig.tight_layout()
    out = runs.out / "data_scaling.png"
    return save_figure(fig, out)


def summary(runs: Runs, found: Sequence[dict]) -> str:
    """A closing paragraph in Markdown, generated from the claims' numbers and verdicts."""
    c = runs.config
    return summary_markdown(f"scale `{c.scale.name}`, {c.model} vs {c.bit} at {c.image_size} px, {c.steps} steps, "
                            f"sizes {list(c.sizes)}, seeds {list(c.seeds)}", runs.first_run(), found,
                            decidable=c.decidable)



def _last_eval_step(run_dir: Path) -> int:
    """The step of the run's last held-out evaluation (0 when it has none)."""
    return max((r["step"] for r in read_metrics(run_dir) if r.get("event") == "eval" and r.get("split") == "val"),
               default=0)


def regime_sentences(runs: Runs) -> list[str]:
    """Per model, which regime the smallest and the largest subsets reached, from the held-out evaluations along
    training: on the smallest, how far training top-1 ran ahead of held-out and in how many seeds held-out peaked
    before the end (over-fitting, the regime of Fig. 4's small subsets); on the largest, in how many seeds the
    best held-out evaluation was the last one (still learning when the budget ends: compute-bound)."""
    config = runs.config
    small, large = min(config.sizes), max(config.sizes)
    sentences, over_fit = [], {}
    for family in FAMILIES:
        by_size = {size: [(r, _heldout(r.run_dir)) for r in runs.select(family=family, size=size)]
                   for size in (small, large)}
        if not by_size[small] or not by_size[large]:
            continue
        gaps = [g for _, (_, _, g) in by_size[small] if g is not None]
        peaked = sum(1 for r, (_, best, _) in by_size[small] if best is not None and best < _last_eval_step(r.run_dir))
        at_end = sum(1 for r, (_, best, _) in by_size[large] if best is not None and best >= _last_eval_step(r.run_dir))
        model = by_size[small][0][0].model
        text = f"{model}: on {small:,} images ({config.epochs(small):.0f} epochs) "
        if gaps:
            text += f"training top-1 ends {sum(gaps) / len(gaps):.1f} points above held-out and "
        text += (f"held-out peaked before the last step in {peaked} of {len(by_size[small])} seeds; on "
                 f"{large:,} images ({config.epochs(large):.1f} epochs) the best held-out evaluation is the last one "
                 f"in {at_end} of {len(by_size[large])} seeds")
        text += (" (still learning when the budget ends: the large subsets are compute-bound, so more data cannot "
                 "pay off within these steps)." if at_end > len(by_size[large]) / 2 else ".")
        sentences.append(text)
        over_fit[model] = (sum(gaps) / len(gaps) if gaps else None,
                           sum(h for _, (h, _, _) in by_size[small] if h is not None) / len(by_size[small]))
    if len(over_fit) == 2 and all(gap is not None for gap, _ in over_fit.values()):
        (vit, (vit_gap, vit_top1)), (bit, (bit_gap, bit_top1)) = over_fit.items()
        if bit_gap > vit_gap and bit_top1 > vit_top1:
            sentences.append(f"On {small:,} images {bit} over-fits more than {vit} (training top-1 {bit_gap:.1f} vs "
                             f"{vit_gap:.1f} points above held-out) and still scores higher on held-out ({bit_top1:.1f}% "
                             f"vs {vit_top1:.1f}%): at this size and resolution the paper's reason, that ViT over-fits "
                             "more on small data, does not appear here.")
    return sentences


def findings(runs: Runs) -> dict:
    """What the paper found and the measured reasons why ours may differ, for ``results/SUMMARY.md``."""
    c = runs.config
    status = curve_status([r.run_dir for r in runs.records])
    why = [f"Subsets of {min(c.sizes):,}-{max(c.sizes):,} CIFAR-10 images at {c.image_size} px, every one trained "
           f"{c.steps} steps of {c.batch_size} ({c.epochs(max(c.sizes)):.1f}-{c.epochs(min(c.sizes)):.1f} epochs); the "
           "paper's subsets are 9M-300M JFT images, and its argument is that ViT over-fits the small ones.",
           curve_sentence(status, "runs")]
    why += regime_sentences(runs)
    if status["with_heldout"] and status["best_last"] == status["with_heldout"]:
        why.append("No run's held-out score peaked before its last evaluation, so not even the smallest subset was "
                   "over-fitted: these runs measure training speed, not the data-size effect of Fig. 4.")
    return {"title": "Data scaling (Sec. 4.3, Fig. 3, 4)",
            "paper": "On small pre-training sets BiT ResNets beat ViT; as the data grows (9M -> 300M JFT images) ViT "
                     "gains more and overtakes, because ViT over-fits more on small data.",
            "why": why}


def plot_claims(runs: Runs, found: Sequence[dict]) -> Optional[Path]:
    """``claims.png``: the two models' slopes per decade, each seed a dot, the means with their 90% intervals."""
    c = runs.config
    return draw_claims(found, runs.out / "claims.png",
                       arms_of=lambda entry: [arm for arm in entry["per_seed"] if arm.endswith(" slope")],
                       title=f"notebook 04, scale {c.scale.name}: {c.model} vs {c.bit} on CIFAR-10 subsets at "
                             f"{c.image_size} px, slope in {SLOPE_UNIT}")

__all__ = ["plot_claims", "findings", "regime_sentences", "NAME", "FAMILIES", "Config", "RunRecord", "Runs", "get_config", "settings_markdown", "run", "fit_log10",
           "slopes_per_seed", "crossing_size", "overtake_size", "overtaking_text", "points", "size_stats", "claims",
           "table", "slopes_table", "table_note", "plot", "summary"]

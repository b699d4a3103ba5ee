"""Notebook 06: masked patch prediction, self-supervised pre-training (Sec. 4.6, App. B.1.2).

The paper's experiment at small scale. CIFAR-10's training set is cut into a large source part and a small,
labelled target part (``train_part``: a fixed, class-balanced ``target_size`` images, the same for every seed;
the source is the disjoint rest). Three ways to a classifier of the target part, with the same model:

- (a) from scratch on the target part;
- (b) masked patch prediction (``repro.mpp``: 50% of the patch embeddings corrupted, the 3-bit mean colour of
  each predicted) on the source images, labels unused, then fine-tuned on the target part;
- (c) supervised pre-training on the source part with its labels, then fine-tuned on the target part.

(b) and (c) pre-train with the same model, steps, batch, optimiser and schedule (``lr`` and ``mpp_lr`` may
differ; the presets set them equal). (a), (b) and (c) end with the same fine-tuning recipe (App. B.1.1 through
the scale's fine-tune stage: SGD 0.9, cosine, clip 1, no weight decay, the same steps, batch and resolution),
the lr chosen on a held-out part of the target (``repro.train.finetune_sweep``). (a) starts from a random
initialisation, so its grid (``scratch_lrs``) is shifted 3x up from the fine-tuning grid: from scratch,
SGD wants a larger step. Reported: test top-1 on the whole CIFAR-10 test split, mean ± std over seeds.

The ablation of App. B.1.2, by the metric the paper used to pick the target: 5-shot linear accuracy of the
frozen MPP representation (``repro.experiments.probes.train_and_probe``; support sets from the target part, the
whole test split). Targets: 3-bit mean colour (512 classes), the 4x4 downsized patch in 3-bit colours
(16 x 512 classes), the full patch by L2 regression; corruption rate 50% vs 15%. The probe reads the mean of
the final-LayerNorm patch tokens (``repro.fewshot.patch_mean_representation``): MPP trains each patch's own
output token, while the class token's output never enters its loss (the class token stays in the sequence,
so the checkpoint is a plain ViT to fine-tune). MPP models are built without the tanh pre-logits layer,
which MPP would leave untrained; the supervised pre-training keeps it (App. B.1), and fine-tuning drops it,
so (a), (b) and (c) fine-tune the very same architecture.

Scales. ``smoke``: seconds, the plumbing only (verdicts None). ``cpu``: ViT-XXS/4 at 32 px (an 8x8 grid of
4x4-px patches), target part 5,000 images, source 45,000; pre-training 600 steps of batch 128 (1.7 epochs of
the source), fine-tuning 200 steps (5 epochs of the target), 3 seeds; the ablation at 250 steps, one seed
(the downsized target's 16 x 512-way head costs ~6x a step); about 22 minutes on 2 cores (the arithmetic is in
``PRESETS``). ``gpu``: ViT-Ti/4, 3000 pre-training steps of batch 512, fine-tuning 500 steps, 3 seeds, the
ablation at the main length (plausible sizes, not yet run on a GPU).

Departures from the paper: ViT-B/16 pre-trained by MPP on JFT-300M (1M steps, batch 4096) and fine-tuned on
ImageNet at 384 px, vs a tiny ViT whose source and target are two parts of CIFAR-10 (the JPEG copy), a few
hundred steps, fine-tuned at the pre-training resolution (32 px). No number is comparable; the paper's
77.9 / 79.9 / 83.9 stand beside ours as a direction: (b) between (a) and (c).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..checkpoints import load_model
from ..claims import (VERDICT_WORDS, at_scale, claim_entry, needs_next_run, requirements_unmet, seed_stats,
                      verdict_above, verdict_all)
from ..data import denormalize, get_datasets, local_split_size, normalize
from ..figures import plot_claims as draw_claims, pyplot
from ..models import create_model
from ..mpp import MASKED, RANDOM, decode_mean_color, load_mpp_model, mean_color_targets, predict_mean_colors
from ..paper import PAPER
from ..paths import repo_relative
from ..progress import RunProgress
from ..runconfig import TrainConfig
from ..rundir import load_run, MPP_HEAD_FILE, redraw_only, RunNotFinished, weights_path
from ..scales import FINETUNE, get_scale
from ..summary import curve_sentence, curve_status, epochs_text
from .. import train as engine
from .probes import (FEWSHOT_SHOTS, draws_text, fewshot_top1, Probe, probe_model, support_draws, support_std,
                     train_and_probe)
from .reporting import cost_columns, finish_note, RunSet, summary_markdown, with_csv_only
from .settings import (apply_preset, experiment_out, preset_of, pretrain_departures_markdown, pretraining_run,
                       ProbedPretraining)
from .sweeps import run_sweep, SweepResult

NAME = "06_masked_patch_prediction"
ARMS = ("scratch", "mpp", "supervised")
ARM_LABELS = {"scratch": "(a) from scratch", "mpp": "(b) MPP pre-training", "supervised": "(c) supervised pre-training"}
PAPER_KEYS = {"scratch": "mpp/scratch", "mpp": "mpp/vit-b16-imagenet", "supervised": "mpp/supervised"}
# The ablation of App. B.1.2: (target, corruption rate). The first is the paper's choice (and the main runs').
ABLATION = (("mean_color", 0.5), ("downsized", 0.5), ("pixels", 0.5), ("mean_color", 0.15))
TARGET_LABELS = {"mean_color": "mean colour", "downsized": "4x4 downsized", "pixels": "pixels (L2)"}
SHOTS = FEWSHOT_SHOTS
FEATURES = "patch_mean"   # what the few-shot probe reads of an MPP model (see the module docstring)

BETWEEN_CLAIM = ("Masked patch prediction lands between training from scratch and supervised pre-training: above "
                 "the first, below the second (Sec. 4.6)")
TARGET_CLAIM = "Of the MPP targets, the 3-bit mean colour gives the best few-shot score (App. B.1.2)"
RATE_CLAIM = "Corrupting 15% of the patches is worse than 50% by few-shot score (App. B.1.2)"

# This experiment's own choices per scale: ``train`` is what its supervised pre-training changes from the scale's
# (repro.scales; the MPP runs take the same with ``mpp_lr``), the rest its own knobs.
PRESETS = {
    "smoke": dict(train=dict(steps=8, warmup_steps=2), mpp_lr=1e-3,
                  target_size=400, finetune_steps=6, finetune_lrs=(0.01, 0.03), scratch_lrs=(0.03, 0.1),
                  refit=False, heldout_images=80, ablation_steps=8, seeds=(0,), ablation_seeds=(0, 1),
                  fewshot_max_train=None),
    # Long enough that the MPP representation's 5-shot score can rise clearly above a randomly initialised model's
    # (both are shown), with 2 seeds per ablation cell (one seed decides nothing). A step of batch 128 of ViT-XXS/4
    # at 32 px takes 128 / 1,150 images/s = 0.111 s in the loop (measured 2026-12-04, Intel Xeon, 2 cores); per
    # step, relative to that (measured on one thread): MPP with the mean colour ~1.2 (its 512-way head), pixels
    # ~0.7, the 4x4 downsized target ~6 (a 16 x 512-way head on every patch).
    #   pre-training: 3 seeds x (MPP 1.2 + supervised 1.0) x 1200 steps (3.4 epochs of 45k)   = 7920 units ->  880 s
    #   fine-tuning:  3 arms x 3 seeds x 3 lrs (2 + one past the edge, no refit) x 200 steps   = 5400       ->  600 s
    #   ablation, 2 seeds x 300 steps: (1.2 + 6 + 0.7 + 1.2 at 15%) x 300 x 2                 = 5460       ->  606 s
    #   = 2090 s of training; + evaluations of 27 fine-tunings (11k images each, ~90 s), 11 probes and 3 of random
    #   initialisations (~70 s), data and start-up (~40 s): ~2290 s, about 38 minutes.
    "cpu": dict(train=dict(model="ViT-XXS/4", steps=1200, warmup_steps=120, lr=2e-3), mpp_lr=2e-3,
                target_size=5000, finetune_steps=200, finetune_lrs=(0.01, 0.03), scratch_lrs=(0.03, 0.1),
                refit=False, heldout_images=1000, ablation_steps=300, seeds=(0, 1, 2), ablation_seeds=(0, 1),
                fewshot_max_train=None),
    # Not yet run on a GPU: ViT-Ti/4 on the 45k source for 3000 steps of 512 (34 epochs), fine-tuning 500 steps
    # of the scale's batch 512 (51 epochs of the target) with the lr refit on the whole target part; the ablation
    # at the main length shares its mean-colour run with (b).
    "gpu": dict(train=dict(steps=3000, warmup_steps=300), mpp_lr=1e-3,
                target_size=5000, finetune_steps=500, finetune_lrs=(0.003, 0.01, 0.03), scratch_lrs=(0.01, 0.03, 0.1),
                refit=True, heldout_images=1000, ablation_steps=3000, seeds=(0, 1, 2), ablation_seeds=(0, 1),
                fewshot_max_train=None),
}


def ablation_name(target: str, rate: float) -> str:
    """'mean colour @ 50%': how an ablation cell is named in claims and tables."""
    return f"{TARGET_LABELS[target]} @ {rate:.0%}"


@dataclass(frozen=True)
class Config(ProbedPretraining):
    """What notebook 06 runs at one scale: the supervised pre-training on the source part (``train``, (c)), the
    MPP pre-training (``mpp_train``, (b) and the ablation), the fine-tuning on the target part (``finetune``, of
    (a), (b) and (c) alike), their lr grids and the seeds."""

    mpp_train: TrainConfig
    finetune: TrainConfig
    finetune_lrs: tuple      # the held-out grid of (b) and (c)
    scratch_lrs: tuple       # the held-out grid of (a)
    refit: bool              # train the chosen lr again on the whole target part (else report the sweep's run)
    ablation_steps: int
    seeds: tuple             # training seeds of (a), (b), (c) (at least 3 outside smoke)
    ablation_seeds: tuple

    mpp_lr = property(lambda self: self.mpp_train.lr)
    target_size = property(lambda self: self.train.target_size)    # images in the labelled target part
    finetune_steps = property(lambda self: self.finetune.steps)
    heldout_images = property(lambda self: self.finetune.heldout_size)  # None: the data set's 2% of the target part

    def supervised_run(self, seed: int) -> TrainConfig:
        """(c)'s pre-training at ``seed``."""
        return dataclasses.replace(self.train, seed=seed)

    def mpp_run(self, seed: int, target: str = "mean_color", rate: float = 0.5,
                steps: Optional[int] = None) -> TrainConfig:
        """An MPP pre-training at ``seed`` with ``target`` and corruption ``rate``, for ``steps`` (the ablation's;
        the warm-up keeps its fraction of the run)."""
        steps = steps or self.steps
        return dataclasses.replace(self.mpp_train, seed=seed, mpp_target=target, mpp_corrupt_rate=rate, steps=steps,
                                   warmup_steps=round(self.warmup_steps * steps / self.steps))

    def finetune_run(self, seed: int, init_from: Optional[str]) -> TrainConfig:
        """A fine-tuning of ``init_from`` (None: from scratch, (a)) on the target part at ``seed``."""
        return dataclasses.replace(self.finetune, seed=seed, init_from=init_from)

    def budget(self) -> str:
        """The notebook's training budget in one line."""
        n = len(self.seeds)
        tunes = n * (len(self.finetune_lrs) * 2 + len(self.scratch_lrs) + 3 * self.refit)
        return (f"{self.model} at {self.image_size} px; target part {self.target_size} images, the rest is the source. "
                f"Pre-training: {2 * n} runs (MPP, supervised) x {self.steps} steps x batch {self.batch_size}; "
                f"fine-tuning: {tunes} runs x {self.finetune_steps} steps x batch {self.finetune.batch_size} "
                f"(lr grids {list(self.finetune_lrs)}, from scratch {list(self.scratch_lrs)}); ablation: "
                f"{len(ABLATION)} MPP variants x {len(self.ablation_seeds)} seed(s) x {self.ablation_steps} steps; "
                f"seeds {list(self.seeds)}")


def get_config(scale: str = "cpu", *, seeds: Optional[Sequence[int]] = None,
               ablation_seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
               out_dir: str | Path | None = None, device: str = "auto", model: Optional[str] = None,
               image_size: Optional[int] = None, batch_size: Optional[int] = None, steps: Optional[int] = None,
               warmup_steps: Optional[int] = None, lr: Optional[float] = None, mpp_lr: Optional[float] = None,
               target_size: Optional[int] = None, finetune_steps: Optional[int] = None,
               finetune_lrs: Optional[Sequence[float]] = None, scratch_lrs: Optional[Sequence[float]] = None,
               refit: Optional[bool] = None, heldout_images: Optional[int] = None,
               ablation_steps: Optional[int] = None, fewshot_max_train: Optional[int] = None) -> Config:
    """The runs of notebook 06 at ``scale``: the preset, with any parameter that is not None in its place
    (``lr`` is the supervised pre-training's, ``mpp_lr`` MPP's)."""
    preset = preset_of(PRESETS, scale, "notebook 06 runs at {scales}; at 'paper' scale Sec. 4.6 needs JFT-300M")
    changes, knobs = apply_preset(
        preset, what="notebook 06", seeds=seeds, ablation_seeds=ablation_seeds, mpp_lr=mpp_lr, target_size=target_size,
        finetune_steps=finetune_steps, finetune_lrs=finetune_lrs, scratch_lrs=scratch_lrs, refit=refit,
        heldout_images=heldout_images, ablation_steps=ablation_steps, fewshot_max_train=fewshot_max_train,
        train=dict(model=model, image_size=image_size, batch_size=batch_size, steps=steps, warmup_steps=warmup_steps,
                   lr=lr))
    the_scale = get_scale(scale)
    target = knobs.pop("target_size")
    images = local_split_size(the_scale.dataset, data_dir if data_dir is not None else the_scale.data_dir)
    if images is not None and target >= images:  # images: None when the data is not on this machine yet
        raise ValueError(f"notebook 06: target_size={target} must be smaller than the {images} training images of "
                         f"{the_scale.dataset} (the source part is the rest)")
    out = experiment_out(NAME, scale, out_dir)
    # Pre-training on the source part; eval_every=0: the probe and the fine-tunings score the runs.
    source = dict(data_dir=data_dir, out=out, device=device, eval_every=0, train_part="source", target_size=target)
    train = pretraining_run(the_scale, changes, **source)
    # MPP builds the ViT without the pre-logits layer (its head reads the patch tokens, repro.mpp).
    mpp_train = pretraining_run(the_scale, {**changes, "lr": knobs.pop("mpp_lr")}, objective="mpp", **source)
    mpp_train = dataclasses.replace(mpp_train, model_overrides={
        k: v for k, v in mpp_train.model_overrides.items() if k != "representation_size"})
    # Fine-tuning on the target part, at the pre-training resolution (no resolution change mixed in).
    heldout = knobs.pop("heldout_images")
    finetune = the_scale.run_config(
        FINETUNE, **({} if data_dir is None else {"data_dir": data_dir}), out_dir=str(out / "runs"), device=device,
        model=train.model, image_size=train.image_size, steps=knobs.pop("finetune_steps"), eval_every=0,
        train_part="target", target_size=target, **({} if heldout is None else {"heldout_size": heldout}))
    # The probe: 5-shot linear regression on the mean patch token, support sets from the target part.
    probe = Probe.of_run(train, knobs.pop("fewshot_max_train"), train_part="target", target_size=target,
                         features=FEATURES)
    return Config(scale=the_scale, train=train, out=out, probe=probe, mpp_train=mpp_train, finetune=finetune,
                  **{**knobs, "finetune_lrs": tuple(float(lr) for lr in knobs["finetune_lrs"]),
                     "scratch_lrs": tuple(float(lr) for lr in knobs["scratch_lrs"])})


def settings_markdown(config: Config) -> str:
    """Where this notebook departs from the paper: the pre-training rows, then MPP's and the transfer's own."""
    rows = [
        ("data: pre-training / target", "JFT-300M (MPP) / ImageNet (1.3M, labelled)",
         f"the source part of the {config.train.dataset} training set (all but {config.target_size} images; labels "
         f"unused by MPP) / the target part ({config.target_size} images, class-balanced, fixed)"),
        ("MPP length, batch, optimiser", "1M steps, 4096, Adam lr 2e-4, 10k warm-up, cosine",
         f"{config.steps} steps, {config.batch_size}, AdamW lr {config.mpp_lr:g} wd {config.mpp_train.weight_decay:g}, "
         f"{config.warmup_steps} warm-up, {config.mpp_train.schedule} (as the supervised run)"),
        ("MPP head, corruption", "not stated; 50%: 80% [mask], 10% random patch, 10% kept",
         "one linear layer on each patch's final token; the paper's 50% / 80-10-10, before the position embeddings"),
        ("fine-tuning (a), (b), (c)", "ImageNet at 384 px (App. B.1.1)",
         f"{config.finetune_steps} steps of {config.finetune.batch_size} at {config.finetune.image_size} px, SGD 0.9, "
         f"cosine, clip 1; lr on {config.heldout_images or '2% of the target part as'} held-out images from "
         f"{list(config.finetune_lrs)} (from scratch: "
         f"{list(config.scratch_lrs)})" + ("; refit on the whole target part" if config.refit else
                                           "; the sweep's run is reported (no refit)")),
    ]
    extra = "\n".join(f"| {name} | {paper} | {ours} |" for name, paper, ours in rows)
    return pretrain_departures_markdown(config.scale.name, config.train) + extra + "\n"


@dataclass(frozen=True)
class RunRecord:
    """One finished run and what it stands for."""

    stage: str                      # pre-train | fine-tune | ablation
    arm: str                        # scratch | mpp | supervised (ablation runs: mpp)
    seed: int
    run_dir: Path
    lr: float
    target: Optional[str] = None    # MPP runs: mean_color | downsized | pixels
    rate: Optional[float] = None    # MPP runs: the corruption rate
    sweep: Optional[SweepResult] = None  # fine-tuning: the held-out lr choice


@dataclass
class Runs(RunSet):
    """The runs of one execution of notebook 06 (``RunRecord`` each), with where its results go, and the 5-shot
    score of the randomly initialised model per seed (``random_init_fewshot``)."""

    random_init: dict = field(default_factory=dict)


def _finetune(config: Config, runs: Runs, *, arm: str, seed: int, init_from: Optional[str],
              progress: Optional[RunProgress] = None) -> None:
    """Fine-tune (or, for (a), train from scratch) on the target part: one run per lr on all but the held-out
    part, the lr with the best held-out top-1 chosen (the grid extended one step past an edge), then
    (``refit``) trained again on the whole target part."""
    lrs = config.scratch_lrs if arm == "scratch" else config.finetune_lrs
    sweep = run_sweep(config.finetune_run(seed, init_from), lrs=lrs, refit=config.refit,
                      label=f"{ARM_LABELS[arm]} -> target part, seed {seed}", progress=progress)
    runs.records.append(RunRecord("fine-tune", arm, seed, sweep["best_run"], sweep["best_lr"],
                                  sweep=SweepResult.of(sweep)))


def run(config: Config) -> Runs:
    """Per seed: MPP and supervised pre-training on the source part, then (a), (b), (c) on the target part;
    then the ablation's MPP variants, each probed by 5-shot linear accuracy. Runs that finished before are
    found by their config and not trained again (an ablation run equal to a main run is the same run)."""
    runs = Runs(config, config.out)
    progress = RunProgress(5 * len(config.seeds) + len(ABLATION) * len(config.ablation_seeds),
                           "pre-trainings and lr sweeps")
    for seed in config.seeds:
        mpp = config.mpp_run(seed)
        mpp_dir = train_and_probe(mpp, config.probe, label=f"MPP pre-training seed {seed}", progress=progress)
        runs.records.append(RunRecord("pre-train", "mpp", seed, mpp_dir, mpp.lr, mpp.mpp_target, mpp.mpp_corrupt_rate))
        sup = config.supervised_run(seed)
        label = f"supervised pre-training seed {seed}"
        sup_dir = engine.train(sup, **progress.train_kwargs(label))
        progress.finished(label)
        runs.records.append(RunRecord("pre-train", "supervised", seed, sup_dir, sup.lr))
        for arm, init in (("scratch", None), ("mpp", mpp_dir), ("supervised", sup_dir)):
            _finetune(config, runs, arm=arm, seed=seed, init_from=str(weights_path(init)) if init else None,
                      progress=progress)
    for seed in config.ablation_seeds:
        for target, rate in ABLATION:
            cfg = config.mpp_run(seed, target, rate, steps=config.ablation_steps)
            run_dir = train_and_probe(cfg, config.probe, label=f"MPP {ablation_name(target, rate)} seed {seed}",
                                      progress=progress)
            runs.records.append(RunRecord("ablation", "mpp", seed, run_dir, cfg.lr, target, rate))
    runs.random_init = random_init_fewshot(config, runs.out)
    return runs


RANDOM_INIT_FILE = "random_init_fewshot.json"


def random_init_fewshot(config: Config, out: Path) -> dict[int, float]:
    """``{seed: 5-shot linear top-1 (%)}`` of the MPP model's architecture at its random initialisation (the seed's
    own init), probed like the MPP runs: the floor that pre-training must rise above. Kept in
    ``random_init_fewshot.json`` beside the runs (read back, and in redraw mode only read)."""
    path = out / RANDOM_INIT_FILE
    probe = config.probe
    saved = json.loads(path.read_text()) if path.exists() else None
    if saved and {k: v for k, v in saved["probe"].items() if k != "seeds"} == \
            {k: v for k, v in probe.record().items() if k != "seeds"} and \
            sorted(map(int, saved["scores"])) == sorted(config.seeds):
        return {int(k): v for k, v in saved["scores"].items()}
    if redraw_only():
        raise RunNotFinished(f"redraw: no {RANDOM_INIT_FILE} for seeds {list(config.seeds)}; run without --redraw")
    scores = {}
    for seed in config.seeds:
        cfg = config.mpp_run(seed)
        torch.manual_seed(seed)  # as train() seeds the model's initialisation
        model = create_model(cfg.model, num_classes=cfg.num_classes(), img_size=cfg.image_size, **cfg.model_overrides)
        scores[seed] = probe_model(model, probe, cfg.device)["fewshot"][str(SHOTS)]["mean"]
    path.write_text(json.dumps({"probe": probe.record(), "scores": {str(k): v for k, v in scores.items()}}, indent=1))
    return scores


# --- numbers ------------------------------------------------------------------------------------------

def _test_top1(records: Sequence[RunRecord]) -> dict[int, float]:
    return {r.seed: 100 * load_run(r.run_dir)["test_accuracy"] for r in records}


def arm_values(runs: Runs) -> dict[str, dict[int, float]]:
    """``{arm label: {seed: test top-1 (%)}}`` of the fine-tuned (a), (b), (c) that ran."""
    return {ARM_LABELS[arm]: _test_top1(runs.select(stage="fine-tune", arm=arm))
            for arm in ARMS if runs.select(stage="fine-tune", arm=arm)}


def ablation_values(runs: Runs) -> dict[str, dict[int, float]]:
    """``{ablation cell name: {seed: 5-shot linear top-1 (%)}}`` of the ablation runs."""
    out = {}
    for target, rate in ABLATION:
        records = runs.select(stage="ablation", target=target, rate=rate)
        if records:
            out[ablation_name(target, rate)] = {r.seed: fewshot_top1(r.run_dir, SHOTS) for r in records}
    return out


TWO_ARM_RULE = ("paired per-seed differences; holds when their 90% t interval lies above zero, does not hold when it "
                "lies below, undecided otherwise or with one seed")


def claims(runs: Runs) -> list[dict]:
    """The claims of Sec. 4.6 and App. B.1.2 with ours per seed and verdicts from ``repro.claims``.

    - (b) lands between (a) and (c): (b) - (a) and (c) - (b) both above zero (``verdict_above``, paired by seed,
      ``verdict_all``), if every lr was chosen on enough held-out images and not at an unextended grid edge.
    - the mean colour is the best target by 5-shot: mean colour minus each other target above zero.
    - 15% corruption is worse than 50%: 50% minus 15% above zero. The ablation's cells decide only with at
      least 2 seeds each.
    """
    config, out = runs.config, []
    arms = arm_values(runs)
    if len(arms) == len(ARMS):
        a, b, c = (ARM_LABELS[arm] for arm in ARMS)
        tuned = runs.select(stage="fine-tune")
        verdict = verdict_all([verdict_above(arms[b], arms[a], names=(b, a)), verdict_above(arms[c], arms[b], names=(c, b))],
                              labels=["above from scratch", "below supervised"])
        missing = requirements_unmet(heldout_images=[r.sweep.heldout_images for r in tuned],
                                     heldout_available=config.target_size // 2,
                                     unextended_edges=[f"{ARM_LABELS[r.arm]} seed {r.seed}" for r in tuned
                                                       if r.sweep.extension_missing is not None])
        paper = ", ".join(f"{ARM_LABELS[arm]} {PAPER[PAPER_KEYS[arm]].value:g}" for arm in ARMS)
        out.append(claim_entry(
            BETWEEN_CLAIM,
            f"ViT-B/16, ImageNet top-1 (%): {paper} (Sec. 4.6: MPP on JFT-300M is +2 points over from scratch, 4 "
            "below supervised pre-training)",
            f"{config.train.dataset} test top-1 (%) after fine-tuning on the {config.target_size}-image target part "
            f"({config.model} at {config.image_size} px, {config.finetune_steps} steps)",
            arms, at_scale(needs_next_run(verdict, missing), config.decidable),
            rule="(b) - (a) and (c) - (b), " + TWO_ARM_RULE + "; both must hold"))
    ablation = ablation_values(runs)
    if not ablation:
        return out
    draws = requirements_unmet(support_draws=[support_draws(r.run_dir) for r in runs.select(stage="ablation")])
    metric = (f"{config.train.dataset} {SHOTS}-shot linear top-1 (%) of the MPP representation (mean patch token), "
              f"support sets from the target part, after {config.ablation_steps} steps")
    best = ablation_name("mean_color", 0.5)
    others = [ablation_name(t, r) for t, r in ABLATION if r == 0.5 and t != "mean_color"]
    if best in ablation and all(o in ablation for o in others):
        verdict = verdict_all([verdict_above(ablation[best], ablation[o], names=(best, o)) for o in others])
        out.append(claim_entry(
            TARGET_CLAIM, "App. B.1.2: all three targets worked, L2 slightly worse; the mean colour had the best "
            "few-shot performance (no numbers given)", metric, {k: ablation[k] for k in (best, *others)},
            at_scale(needs_next_run(verdict, draws), config.decidable),
            rule="the mean colour minus each other target, " + TWO_ARM_RULE + "; every one must hold"))
    low = ablation_name("mean_color", 0.15)
    if best in ablation and low in ablation:
        verdict = verdict_above(ablation[best], ablation[low], names=(best, low))
        out.append(claim_entry(RATE_CLAIM, "App. B.1.2: BERT's 15% was 'slightly worse on our few-shot metrics' "
                               "than 50% (no numbers given)", metric, {k: ablation[k] for k in (low, best)},
                               at_scale(needs_next_run(verdict, draws), config.decidable),
                               rule="50% minus 15%, " + TWO_ARM_RULE))
    return out


def _verdicts(found: Sequence[dict]) -> dict[str, str]:
    return {c["claim"]: VERDICT_WORDS[c["holds"]] for c in found}


def lr_table(runs: Runs) -> pd.DataFrame:
    """Every lr of every held-out choice of (a), (b), (c): held-out and test top-1 (%), which was chosen and
    whether the grid was extended, so a reader sees how much the choice mattered."""
    rows = []
    for r in runs.select(stage="fine-tune"):
        rows += r.sweep.rows(way=ARM_LABELS[r.arm], seed=r.seed)
    return pd.DataFrame(rows)


def table(runs: Runs) -> pd.DataFrame:
    """One row per way to the target classifier, (a), (b), (c): test top-1 over seeds, the chosen lrs, the
    paper's ImageNet number beside it and the claim's verdict, the pre-training's own numbers and cost."""
    verdict = _verdicts(claims(runs)).get(BETWEEN_CLAIM, "not tested")
    rows = []
    for arm in ARMS:
        tuned = runs.select(stage="fine-tune", arm=arm)
        if not tuned:
            continue
        loaded = [load_run(r.run_dir) for r in tuned]
        top1 = seed_stats(_test_top1(tuned).values())
        ref = PAPER[PAPER_KEYS[arm]]
        row = {
            "way": ARM_LABELS[arm], "seeds": top1[2], "test top-1 (%)": top1[0], "test top-1 std (points)": top1[1],
            "held-out top-1 (%)": sum(r.sweep.heldout_top1 for r in tuned) / len(tuned),
            "chosen lrs": ", ".join(f"{r.lr:g}" for r in tuned),
            "paper ImageNet top-1 (%)": ref.value,
            "paper": f"{ref.value:g} ({ref.setting}, {ref.source}); claim: {BETWEEN_CLAIM} — ours: {verdict}",
            **cost_columns(loaded),
        }
        pre = runs.select(stage="pre-train", arm=arm)
        if pre:
            pre_loaded = [load_run(r.run_dir) for r in pre]
            cost = cost_columns(pre_loaded)
            accuracy = seed_stats([100 * r["test_accuracy"] for r in pre_loaded])[0]
            row.update({"pre-training test accuracy (%)": accuracy,
                        "pre-training images/s": cost["train images/s"],
                        "pre-training min / run": cost["train min / run"]})
        row["run dirs"] = "; ".join(repo_relative(r.run_dir) for r in [*tuned, *pre])
        rows.append(row)
    return with_csv_only(pd.DataFrame(rows), "pre-training images/s", "pre-training min / run")


def table_note(runs: Runs) -> str:
    """What a reader needs to read the main table right."""
    c = runs.config
    note = (f"Test top-1: the whole {c.train.dataset} test split, mean ± std over {len(c.seeds)} seed(s), after "
            f"{c.finetune_steps} fine-tuning steps on the target part ({c.target_size} labelled training images; "
            f"the lr chosen on {_heldout_text(runs)} held-out images of it, 'held-out top-1', the grid extended one step past "
            "an edge; every lr's scores are in lr_table.md"
            + (", then trained again on all of it" if c.refit else ", the sweep's run reported") +
            "). 'Pre-training test accuracy': for (c) the source classifier's test top-1, for (b) the per-patch "
            "accuracy of the predicted 3-bit mean colour of the corrupted test patches (50% corrupted). (b) and (c) "
            f"pre-train {c.model} for {c.steps} steps of batch {c.batch_size} on the source part (the other "
            "training images; MPP does not read its labels); 'train images/s' is the fine-tuning's. The paper's "
            "numbers are ViT-B/16 on ImageNet, MPP on JFT-300M (Sec. 4.6; 77.9 and 83.9 from its '+2%' and "
            "'4% behind'): a direction, not a comparable number. ")
    return finish_note(note, c, cifar10="CIFAR-10 here is the JPEG copy (quality ~75), a little harder than the original PNGs.")


ABLATION_PAPER = {("mean_color", 0.5): "the paper's choice: best few-shot score",
                  ("downsized", 0.5): "worked, below the mean colour by few-shot",
                  ("pixels", 0.5): "worked, slightly worse (L2)",
                  ("mean_color", 0.15): "slightly worse than 50% by few-shot"}


def _heldout_text(runs: Runs) -> str:
    counts = sorted({r.sweep.heldout_images for r in runs.select(stage="fine-tune") if r.sweep.heldout_images})
    return "/".join(f"{n:,}" for n in counts) or "the"


def ablation_table(runs: Runs) -> pd.DataFrame:
    """One row per MPP variant of the ablation (and the main MPP runs for reference): 5-shot linear top-1 of
    the representation over seeds, MPP's own test accuracy, the paper's finding and our verdict, cost."""
    verdicts = _verdicts(claims(runs))
    rows = []
    groups = [(f"{ablation_name(t, r)}", t, r, runs.select(stage="ablation", target=t, rate=r)) for t, r in ABLATION]
    groups.append((f"{ablation_name('mean_color', 0.5)}, main runs", "mean_color", 0.5,
                   runs.select(stage="pre-train", arm="mpp")))
    for name, target, rate, records in groups:
        if not records:
            continue
        loaded = [load_run(r.run_dir) for r in records]
        few = seed_stats([fewshot_top1(r.run_dir, SHOTS) for r in records])
        claim = RATE_CLAIM if rate != 0.5 else TARGET_CLAIM
        rows.append({
            "MPP variant": name, "target": target, "corruption rate": rate, "steps": loaded[0]["steps"],
            "seeds": few[2], f"{SHOTS}-shot linear top-1 (%)": few[0], f"{SHOTS}-shot std (points)": few[1],
            f"{SHOTS}-shot std over support draws (points)": support_std([r.run_dir for r in records]),
            "MPP test accuracy (%)": seed_stats([100 * r["test_accuracy"] for r in loaded])[0],
            "paper": f"{ABLATION_PAPER[(target, rate)]}; claim: {claim} — ours: {verdicts.get(claim, 'not tested')}",
            **cost_columns(loaded),
            "run dirs": "; ".join(repo_relative(r.run_dir) for r in records),
        })
    if runs.random_init:  # the floor: the same architecture, untrained
        few = seed_stats(runs.random_init.values())
        rows.append({"MPP variant": "random initialisation (untrained)", "target": None, "corruption rate": None,
                     "steps": 0, "seeds": few[2], f"{SHOTS}-shot linear top-1 (%)": few[0],
                     f"{SHOTS}-shot std (points)": few[1],
                     "paper": "the representation pre-training must rise above"})
    return pd.DataFrame(rows)


def ablation_note(runs: Runs) -> str:
    """What a reader needs to read the ablation table right."""
    c = runs.config
    return (f"{SHOTS}-shot linear top-1: a ridge probe (lambda 2^10) on the frozen mean of the final-LayerNorm patch "
            f"tokens (MPP never trains the class token's output), {SHOTS} images per class of the target part "
            f"{draws_text([r.run_dir for r in runs.records if r.stage != 'fine-tune' and r.arm == 'mpp'])}, the whole "
            "test split. MPP test accuracy: per "
            "prediction on the corrupted test patches (per 4x4 cell for 'downsized'; for 'pixels' the 3-bit mean "
            f"colour of the regressed patch), so it is not comparable across targets. Ablation runs: {c.ablation_steps} "
            f"steps, seeds {list(c.ablation_seeds)} (a cell of one seed decides no verdict); the last row is (b)'s "
            f"pre-training ({c.steps} steps), for reference.").strip()


# --- figure and summary ----------------------------------------------------------------------------------

def _grid_colours(colours, grid: tuple[int, int], patch: int):
    """(N, 3) per-patch colours -> an (H, W, 3) image of flat patches."""
    gh, gw = grid
    return colours.reshape(gh, gw, 3).repeat(patch, axis=0).repeat(patch, axis=1)


def plot(runs: Runs, num_images: int = 6) -> Optional[Path]:
    """``mpp_predictions.png``: a few test images, their corrupted patches (grey: [mask]; black: replaced by
    another patch; framed: every corrupted patch, the unchanged 10% too), the true 3-bit mean colours and the
    ones the first seed's MPP model predicts at the corrupted patches (``repro.mpp.predict_mean_colors``)."""
    plt = pyplot()

    mpp = runs.select(stage="pre-train", arm="mpp")
    out = runs.out / "mpp_predictions.png"
    if not mpp or not (mpp[0].run_dir / "mpp_head.safetensors").exists():
        return out if out.exists() else None  # weights not kept (redraw): the figure their run drew
    c = runs.config
    wrapper = load_mpp_model(load_model(weights_path(mpp[0].run_dir)), mpp[0].run_dir / MPP_HEAD_FILE)
    test = get_datasets(c.train.dataset, data_dir=c.data_dir, heldout=False, max_test=c.train.max_test)["test"]
    x = normalize(torch.as_tensor(test.images[:num_images]))                    # (n, 3, H, W) in [-1, 1]
    if x.shape[-1] != c.image_size:
        x = F.interpolate(x, size=(c.image_size, c.image_size), mode="bilinear", antialias=True, align_corners=False)
    predicted, kind = predict_mean_colors(wrapper, x, generator=torch.Generator().manual_seed(0),
                                          return_corruption=True)                # (n, N), (n, N)
    truth = mean_color_targets(denormalize(x), wrapper.patch_size)               # (n, N)
    grid, P = tuple(wrapper.vit.grid_size), wrapper.patch_size
    images = denormalize(x).clamp(0, 1).permute(0, 2, 3, 1).numpy()             # (n, H, W, 3)
    rows = ["input", "corrupted input", "true 3-bit mean colour", "predicted mean colour"]
    fig, axes = plt.subplots(len(rows), len(x), figsize=(1.6 * len(x), 1.7 * len(rows)), squeeze=False)
    for i in range(len(x)):
        k = kind[i].numpy()
        corrupted = k > 0
        cell = np.repeat(np.repeat(corrupted.reshape(grid), P, 0), P, 1)[..., None]  # (H, W, 1)
        shown = images[i].copy()
        shown[np.repeat(np.repeat((k == MASKED).reshape(grid), P, 0), P, 1)] = 0.5
        shown[np.repeat(np.repeat((k == RANDOM).reshape(grid), P, 0), P, 1)] = 0.0
        faded = 0.25 * images[i] + 0.75                                          # the uncorrupted patches, pale
        true_rgb = _grid_colours(decode_mean_color(truth[i]).numpy(), grid, P)
        pred_rgb = _grid_colours(decode_mean_color(predicted[i]).numpy(), grid, P)
        panels = [images[i], shown, np.where(cell, true_rgb, faded), np.where(cell, pred_rgb, faded)]
        right = int((predicted[i] == truth[i])[torch.as_tensor(corrupted)].sum())
        for r, panel in enumerate(panels):
            ax = axes[r, i]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 1:
                for n in np.flatnonzero(corrupted):
                    gy, gx = divmod(int(n), grid[1])
                    ax.add_patch(plt.Rectangle((gx * P - 0.5, gy * P - 0.5), P, P, fill=False, lw=0.6, ec="red"))
            if i == 0:
                ax.set_ylabel(rows[r], fontsize=8)
        axes[-1, i].set_xlabel(f"{right}/{int(corrupted.sum())} right", fontsize=8)
    fig.suptitle(f"notebook 06, scale {c.scale.name}: masked patch prediction, {c.model} on CIFAR-10 at "
                 f"{c.image_size} px (seed {mpp[0].seed}); "
                 "grey = [mask], black = another patch, red frame = corrupted", fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def summary(runs: Runs, found: Sequence[dict]) -> str:
    """A closing paragraph in Markdown, generated from the claims' numbers and verdicts."""
    first = load_run(runs.records[0].run_dir) if runs.records else {}
    c = runs.config
    extra = []
    arms = arm_values(runs)
    if arms:
        extra.append("- Test top-1 after fine-tuning: " + "; ".join(
            f"{k} {m:.2f}" + (f" ± {s:.2f}" if s is not None else "") + f" ({n} seed{'s' * (n > 1)})"
            for k, (m, s, n) in ((k, seed_stats(v.values())) for k, v in arms.items())) +
            f" (paper, ViT-B/16 ImageNet: {', '.join(f'{PAPER[PAPER_KEYS[a]].value:g}' for a in ARMS)}).")
    ablation = ablation_values(runs)
    if ablation:
        extra.append(f"- {SHOTS}-shot linear top-1 of the MPP representation after {c.ablation_steps} steps: " + "; ".join(
            f"{k} {seed_stats(v.values())[0]:.2f}"
            for k, v in sorted(ablation.items(), key=lambda kv: -seed_stats(kv[1].values())[0])) + ".")
    return summary_markdown(f"scale `{c.scale.name}`, {c.model} at {c.image_size} px, target part {c.target_size} "
                            f"images, seeds {list(c.seeds)}", first, found, decidable=c.decidable, extra_lines=extra)



def findings(runs: Runs) -> dict:
    """What the paper found and the measured reasons why ours may differ, for ``results/SUMMARY.md``."""
    c = runs.config
    pre = runs.select(stage="pre-train")
    why = [f"Pre-training (MPP and supervised) is {c.steps} steps of {c.batch_size} on the source part of CIFAR-10 "
           f"({epochs_text([r.run_dir for r in pre])}); the paper's MPP runs 1M steps of 4096 on JFT-300M.",
           curve_sentence(curve_status([r.run_dir for r in pre]), "pre-training runs")]
    mpp = [fewshot_top1(r.run_dir, SHOTS) for r in runs.select(stage="pre-train", arm="mpp")]
    if mpp:
        floor = (f", against {seed_stats(runs.random_init.values())[0]:.1f}% for the same architecture untrained"
                 if runs.random_init else "")
        why.append(f"The MPP representation's {SHOTS}-shot score (mean patch token) is {sum(mpp) / len(mpp):.1f}% on "
                   f"the 10 classes (chance 10%){floor}.")
    tuned = runs.select(stage="fine-tune")
    if tuned:
        why.append(f"{sum(r.sweep.at_edge for r in tuned)} of {len(tuned)} fine-tuning lr choices ended at an edge of "
                   f"their grid; lr choices on {_heldout_text(runs)} held-out images (lr_table.md has every lr).")
    return {"title": "Masked patch prediction (Sec. 4.6, App. B.1.2)",
            "paper": "Self-supervised masked patch prediction gives ViT-B/16 79.9% on ImageNet: 2 points above "
                     "training from scratch, 4 below supervised pre-training; of the targets, the 3-bit mean colour "
                     "gives the best few-shot score, and 15% corruption is slightly worse than 50%.",
            "why": why}


def plot_claims(runs: Runs, found: Sequence[dict]) -> Optional[Path]:
    """``claims.png``: every claim's arms, each seed a dot, the means with their 90% intervals."""
    c = runs.config
    return draw_claims(found, runs.out / "claims.png",
                       title=f"notebook 06, scale {c.scale.name}: masked patch prediction, {c.model} on CIFAR-10 at "
                             f"{c.image_size} px")

__all__ = ["plot_claims", "findings", "NAME", "ARMS", "ABLATION", "Config", "RunRecord", "Runs", "get_config", "settings_markdown",
           "run", "arm_values", "ablation_values", "claims", "lr_table", "table", "table_note", "ablation_table", "ablation_note", "plot",
           "summary"]

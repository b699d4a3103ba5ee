"""Notebook 01: pre-training and transfer (Sec. 4.2, Table 2), at the small-data end of Fig. 3.

At ``smoke`` / ``cpu`` / ``gpu`` scale (``run``): a small ViT and a BiT ResNet of similar training cost are
pre-trained from scratch on CIFAR-10 with App. B.1's recipe; the ViT is then fine-tuned with App. B.1.1's
recipe at a higher resolution (position embeddings resampled, Sec. 3.2) and, as a control, at the
pre-training resolution with the same steps and lr grid. The lr is chosen on the held-out split; the
reported model is trained again with it on the whole training split (``finetune_sweep(refit=True)``), except at
``cpu``, whose main part (``MAIN_PRESETS``: ViT-XXS/4, 3 seeds, no refit) is cut to fit 30 minutes.

Transfer below paper scale (``Transfer``, ``TRANSFER_PRESETS``): a ViT and the BiT are pre-trained on a source
task (CIFAR-10 classes 0-4) and fine-tuned on a target task the pre-training never saw (classes 5-9, a few
hundred labelled images per class: ``TrainConfig(classes=..., max_train=...)``, class-balanced and seeded), and
the same models are trained on the target from scratch with the same target budget (steps x batch) and the
same lr selection. Both arms choose their lr on a held-out part of the target classes' training split
(``heldout_images``: 1,000 at ``cpu``) and are not refit: the labelled target set is capped at ``target_images``, so a refit would
train on another draw of as many images, not on more. At ``cpu`` the transfer part uses ViT-XXS/4 (about a
quarter of ViT-XS/4's cost) so that it adds about 10 minutes for 3 seeds.

At ``paper`` scale (``run_paper``): a given pre-trained checkpoint is fine-tuned at 384 px on the
transfer data sets of Table 2 with the paper's recipe; the paper's number stands beside ours.

Claims tested (``claims``): on small pre-training data ViT is worse than a ResNet of similar cost
(Fig. 3, 4); fine-tuning at a higher resolution helps (Sec. 3.2); per model, pre-training on the source task
helps the unseen target task (transfer beats from-scratch beyond the seed spread); at paper scale, the Table 2
accuracy.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from ..checkpoints import check_checkpoint_file
from ..claims import (VERDICT_WORDS, Verdict, at_scale, claim_entry, claims_markdown, mean_interval, needs_next_run,
                      requirements_unmet, seed_stats, verdict_above, verdict_in_band)
from ..data import get_info, resolve_source
from ..figures import plot_claims as draw_claims, plot_curves
from ..flops import training_flops
from ..paper import PAPER
from ..paths import in_repo, repo_relative
from ..progress import RunProgress
from ..recipes import finetune_recipe
from ..rundir import load_run, weights_path
from ..scales import FINETUNE, PAPER_SETTINGS, PRETRAIN, Scale, get_scale
from ..summary import curve_sentence, curve_status, epochs_text
from .. import train as engine
from .reporting import RunSet, summary_markdown, with_csv_only
from .settings import apply_preset, check_settings, experiment_out, preset_of, pretrain_departures_markdown
from .sweeps import run_sweep, SweepResult

NAME = "01_pretrain_and_transfer"
FAMILIES = ("ViT", "BiT")
PAPER_DATASETS = ("cifar10", "cifar100", "oxford_iiit_pet", "oxford_flowers102")
# At paper scale a claim "reaches Table 2" holds when our mean is at most this far below the paper's number.
PAPER_TOLERANCE_POINTS = 1.0

SMALL_DATA_CLAIM = "Pre-trained on small data, ViT is worse than a ResNet of similar cost (Sec. 4.3, Fig. 3, 4)"
RESOLUTION_CLAIM = "Fine-tuning at a higher resolution than pre-training helps (Sec. 3.2)"
# The stages of the transfer part (a RunRecord's ``stage``).
SOURCE_STAGE, TRANSFER_STAGE, SCRATCH_STAGE = "pre-train (source)", "fine-tune (target)", "from scratch (target)"

# The main part's departures from the scale's runs, per scale: ``train`` is what both families' pre-training
# changes, ``vit`` / ``bit`` what one family's changes besides, ``finetune`` what the ViT's fine-tuning changes.
# At cpu the scale's ViT-XS/4 (1500 steps, one seed, refit) took 40 min for one seed; notebook 01 must run in under
# 30 min with 3 seeds, so its main part uses ViT-XXS/4 (~1100 images/s at 32 px vs ~290; lr 2e-3 was its best in
# notebook 03) for 500 steps and fine-tunes 100 steps without a refit. Per seed, from measured idle throughput
# (benchmarks/RESULTS.md): ViT 64k images ~60 s, BiT R14x1 ~130 s, fine-tuning 2 lrs x 12,800 images at 48 px
# (~350 images/s) + the 32 px control ~100 s: ~5 min per seed with evaluations, ~15 min for 3 seeds, plus ~10 min
# for the transfer part. The BiT is now the costlier of the pair (~2x the ViT's seconds per step), which can only
# favour it in the small-data claim; the table gives both costs.
MAIN_PRESETS = {
    "smoke": dict(),
    "cpu": dict(description="minutes per run on 2 CPU cores: ViT-XXS/4 vs BiT R14x1 on CIFAR-10 at 32 px "
                            "(notebook 01's main part)",
                train=dict(steps=500, warmup_steps=50), vit=dict(model="ViT-XXS/4", lr=2e-3),
                finetune=dict(steps=100), seeds=(0, 1, 2), refit=False),
    "gpu": dict(),
    "paper": dict(),
}

# The transfer part per scale (none at paper scale: there the targets are Table 2's data sets). Source and target
# are disjoint sets of CIFAR-10 classes; ``target_images`` labelled training images of the target classes; the lrs
# are chosen on ``heldout_images`` held-out images of those classes (1,000: the standard error of a held-out score
# near 60% is then ~1.5 points, against ~2.2 on the 500 images that 2% of the classes' training split gave).
# ``source`` is what the source pre-training changes from the scale's (both families), ``vit`` / ``bit`` what one
# family's changes besides; ``target`` holds the steps and batch of both target arms (fine-tuning and from scratch).
TRANSFER_PRESETS = {
    "smoke": dict(source=dict(batch_size=16, steps=6), vit=dict(), bit=dict(), target=dict(steps=4, batch_size=16),
                  source_classes=(0, 1, 2, 3, 4), target_classes=(5, 6, 7, 8, 9), target_images=100,
                  scratch_lrs=(1e-3, 3e-3), seeds=(0,), heldout_images=100),
    # Sized from measured idle throughput at 32 px on 2 cores (benchmarks/RESULTS.md): ViT-XXS/4 ~1100 images/s,
    # BiT R14x1 ~490. Per seed and model: source 200 x 128 = 25,600 images; fine-tuning 2 lrs x 100 x 64 = 12,800;
    # from scratch the same 12,800: 51,200 images = 47 s (ViT) + 104 s (BiT) = 151 s, x 3 seeds = 7.6 min. Each of
    # the 30 runs also evaluates ~5,500 held-out + test images and starts up (~4 s on average): ~2 min. ~10 min.
    "cpu": dict(source=dict(steps=200), vit=dict(model="ViT-XXS/4", lr=2e-3), bit=dict(),
                target=dict(steps=100, batch_size=64), source_classes=(0, 1, 2, 3, 4), target_classes=(5, 6, 7, 8, 9),
                target_images=1000, scratch_lrs=(1e-3, 3e-3), seeds=(0, 1, 2), heldout_images=1000),
    # Not measured on a GPU yet.
    "gpu": dict(source=dict(steps=3000), vit=dict(), bit=dict(), target=dict(steps=500, batch_size=128),
                source_classes=(0, 1, 2, 3, 4), target_classes=(5, 6, 7, 8, 9), target_images=2500,
                scratch_lrs=(3e-4, 1e-3, 3e-3), seeds=(0, 1, 2), heldout_images=1000),
}


def _class_range(classes: Sequence[int]) -> str:
    """(0, 1, 2, 3, 4) -> 'classes 0-4'; other selections are listed."""
    c = list(classes)
    contiguous = c == list(range(c[0], c[0] + len(c)))
    return f"classes {c[0]}-{c[-1]}" if contiguous and len(c) > 2 else "classes " + ", ".join(map(str, c))


def _warmup(steps: int) -> int:
    """The transfer part's warm-up: a tenth of the run (at least one step)."""
    return max(1, steps // 10)


@dataclass(frozen=True)
class Transfer:
    """The transfer part of notebook 01 below paper scale: per family, the pre-training on the source classes
    (``source``), the fine-tuning on the unseen target classes (``finetune``, the scale's SGD lr grid) and the
    training on the target from scratch with the same target budget (``scratch``, the pre-training recipe,
    ``scratch_lrs``). Seeds and initialisations vary these runs."""

    source: dict              # family -> TrainConfig
    finetune: dict            # family -> TrainConfig (init_from: the family's source run)
    scratch: dict             # family -> TrainConfig
    finetune_lrs: tuple
    scratch_lrs: tuple
    source_classes: tuple
    target_classes: tuple
    target_images: int        # labelled target training images (class-balanced, seeded)
    seeds: tuple

    vit = property(lambda self: self.source["ViT"].model)
    source_steps = property(lambda self: self.source["ViT"].steps)
    source_batch = property(lambda self: self.source["ViT"].batch_size)
    target_steps = property(lambda self: self.scratch["ViT"].steps)   # fine-tuning and from scratch, each
    target_batch = property(lambda self: self.scratch["ViT"].batch_size)

    @property
    def source_task(self) -> str:
        return _class_range(self.source_classes)

    @property
    def target_task(self) -> str:
        return f"{_class_range(self.target_classes)}, {self.target_images:,} labelled images"

    def budget(self) -> str:
        return (f"transfer: {self.vit} and the BiT pre-trained on {self.source_task} ({self.source_steps} steps x "
                f"{self.source_batch}), then on the target ({self.target_task}) {self.target_steps} steps x "
                f"{self.target_batch} fine-tuned and from scratch, seeds {list(self.seeds)}")


@dataclass(frozen=True)
class Config:
    """What notebook 01 runs at one scale: per family the pre-training run (``pretrain``), the ViT's fine-tuning
    at each resolution (``finetunes``, the first the scale's fine-tuning resolution), their lr grid, the seeds,
    and the transfer part. Seeds and initialisations vary these runs."""

    scale: Scale
    out: Path
    pretrain: dict                 # family -> TrainConfig
    finetunes: tuple               # TrainConfig per resolution, high first
    finetune_lrs: tuple
    seeds: tuple[int, ...]
    description: str
    # Fine-tuning: after the lr is chosen on the held-out split, train again with it on the whole training split.
    refit: bool = True
    transfer: Optional[Transfer] = None   # below paper scale: source -> unseen target task vs from scratch

    vit = property(lambda self: self.pretrain["ViT"].model)
    bit = property(lambda self: self.pretrain["BiT"].model)
    dataset = property(lambda self: self.pretrain["ViT"].dataset)
    image_size = property(lambda self: self.pretrain["ViT"].image_size)           # pre-training, px
    finetune_image_size = property(lambda self: self.finetunes[0].image_size)     # px
    finetune_steps = property(lambda self: self.finetunes[0].steps)

    @property
    def finetune_resolutions(self) -> tuple[int, ...]:
        return tuple(cfg.image_size for cfg in self.finetunes)

    @property
    def decidable(self) -> bool:
        """False at smoke scale: a few steps on a few hundred images test the plumbing, not the claims."""
        return self.scale.name != "smoke"

    def units(self) -> int:
        """Pre-trainings and lr sweeps this notebook runs (what its progress counts)."""
        main = len(self.seeds) * (len(FAMILIES) + len(self.finetune_resolutions))
        transfer = len(self.transfer.seeds) * len(FAMILIES) * 3 if self.transfer is not None else 0
        return main + transfer


def _transfer(scale: Scale, preset: dict, *, transfer_seeds, paths: dict) -> Transfer:
    """The transfer part's runs at ``scale`` from its preset (``TRANSFER_PRESETS``)."""
    changes, knobs = apply_preset(preset, what="the transfer part", train=preset["source"], seeds=transfer_seeds)
    target_task = dict(classes=tuple(knobs["target_classes"]), max_train=knobs["target_images"])
    if knobs["heldout_images"] is not None:  # the lr is chosen on this many held-out images of the target classes
        target_task["heldout_size"] = knobs["heldout_images"]
    target = knobs["target"]
    source, finetune, scratch = {}, {}, {}
    for family in FAMILIES:
        own = knobs[family.lower()]
        first_seed = {"seed": knobs["seeds"][0] if knobs["seeds"] else 0}
        source[family] = scale.run_config(PRETRAIN, family.lower(), **changes, **own, **paths, **first_seed,
                                          warmup_steps=_warmup(changes.get("steps", scale.pretraining.steps)),
                                          classes=tuple(knobs["source_classes"]))
        # Fine-tuning on the target at the pre-training resolution (no resolution change mixed in).
        finetune[family] = scale.run_config(FINETUNE, family.lower(), **paths, **first_seed,
                                            model=source[family].model, image_size=source[family].image_size,
                                            steps=target["steps"], batch_size=target["batch_size"], **target_task)
        # From scratch: the source pre-training's recipe, with the target's steps, batch and images.
        scratch[family] = dataclasses.replace(source[family], **target_task, steps=target["steps"],
                                              batch_size=target["batch_size"], warmup_steps=_warmup(target["steps"]))
    return Transfer(source=source, finetune=finetune, scratch=scratch, finetune_lrs=scale.finetune_lrs,
                    scratch_lrs=tuple(knobs["scratch_lrs"]), source_classes=tuple(knobs["source_classes"]),
                    target_classes=tuple(knobs["target_classes"]), target_images=knobs["target_images"],
                    seeds=knobs["seeds"])


def get_config(scale: str = "cpu", *, seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
               out_dir: str | Path | None = None, device: str = "auto",
               transfer_seeds: Optional[Sequence[int]] = None,
               pretrained_checkpoint: Optional[str] = ...) -> Config:  # type: ignore[assignment]
    """The runs of notebook 01 at ``scale`` (big_vision's per-experiment ``get_config``); ``seeds`` default to
    the preset's (the scale's), ``transfer_seeds`` to the transfer part's (an empty list skips that part).
    ``pretrained_checkpoint``, when passed (``repro reproduce`` passes the notebook's, None included), is checked:
    the paper scale fine-tunes it, so there it must name a checkpoint file."""
    check_settings({"seeds": seeds if seeds is not None else [], "transfer_seeds": transfer_seeds or []},
                   "notebook 01")
    if scale == "paper" and pretrained_checkpoint is not ...:  # ...: not passed (the notebook's own call)
        if not pretrained_checkpoint:
            raise ValueError("notebook 01 at scale 'paper' fine-tunes a pre-trained checkpoint: pass "
                             "-p pretrained_checkpoint=<path> (an official .npz such as ViT-B_16.npz, a timm or a "
                             "repro checkpoint)")
        check_checkpoint_file(in_repo(pretrained_checkpoint))  # a relative path is read against the repository
    the_scale = get_scale(scale)
    main = preset_of(MAIN_PRESETS, scale, "notebook 01 runs at {scales}")
    out = experiment_out(NAME, scale, out_dir)
    seeds = tuple(seeds if seeds is not None else main.get("seeds", the_scale.seeds))
    paths = {**({} if data_dir is None else {"data_dir": data_dir}), "out_dir": str(out / "runs"), "device": device}
    first_seed = {"seed": seeds[0] if seeds else 0}
    pretrain = {family: the_scale.run_config(PRETRAIN, family.lower(), **main.get("train", {}),
                                             **main.get(family.lower(), {}), **paths, **first_seed)
                for family in FAMILIES}
    # The ViT fine-tuned at the scale's resolution and, below paper scale, as a control at the pre-training
    # resolution with the same steps and lr grid, so that the resolution claim compares two fine-tuned models.
    high = the_scale.run_config(FINETUNE, "vit", model=pretrain["ViT"].model, **main.get("finetune", {}), **paths,
                                **first_seed)
    finetunes = (high,) if scale == "paper" else (
        high, the_scale.run_config(FINETUNE, "vit", model=pretrain["ViT"].model, **main.get("finetune", {}), **paths,
                                   **first_seed, image_size=pretrain["ViT"].image_size))
    transfer = (_transfer(the_scale, TRANSFER_PRESETS[scale], transfer_seeds=transfer_seeds, paths=paths)
                if scale in TRANSFER_PRESETS else None)
    return Config(scale=the_scale, out=out, pretrain=pretrain, finetunes=finetunes,
                  finetune_lrs=the_scale.finetune_lrs, seeds=seeds,
                  description=main.get("description", the_scale.description), refit=main.get("refit", True),
                  transfer=transfer)


def settings_markdown(config: Config) -> str:
    """Where this notebook's main part departs from the paper: every row of the "paper vs each scale" table, with
    this notebook's own models, lengths and lr selection (not the scale's generic column)."""
    refit = "then trained again on 100%" if config.refit else "that run reported (no refit at this scale)"
    return pretrain_departures_markdown(config.scale.name, config.pretrain["ViT"], rows={
        "models (ViT / BiT / hybrid)": f"{config.vit} / {config.bit} / —",
        "lr selection": f"on the held-out 2% (1,000 images), the grid extended one step past an edge; {refit}",
    }, setting_rows=tuple(PAPER_SETTINGS), fine=config.finetunes[0], finetune_lrs=config.finetune_lrs)


@dataclass(frozen=True)
class RunRecord:
    """One finished run of this notebook and what it stands for in the table."""

    family: str            # ViT | BiT
    model: str             # e.g. ViT-XS/4
    stage: str             # pre-train | fine-tune
    dataset: str
    resolution: int        # px, the model's input size
    seed: int
    run_dir: Path
    lr: float
    classes: Optional[tuple] = None        # the task's classes of ``dataset`` (transfer part), None: all
    sweep: Optional[SweepResult] = None    # fine-tuning and from-scratch arms: the held-out lr choice

    @property
    def task(self) -> str:
        """The data set, with the classes kept when a task was carved from it, e.g. 'cifar10 (classes 5-9)'."""
        return self.dataset + (f" ({_class_range(self.classes)})" if self.classes is not None else "")

    @property
    def num_classes(self) -> int:
        return len(self.classes) if self.classes is not None else get_info(self.dataset).num_classes


@dataclass
class Runs(RunSet):
    """The runs of one execution of notebook 01 (``RunRecord`` each), with where its results go."""

    unavailable: dict[str, str] = field(default_factory=dict)   # paper scale: data set -> why it was not run
    paper_model: Optional[str] = None             # paper scale: the Table 2 column our checkpoint compares with


def _sweep(runs: Runs, cfg, *, lrs: Sequence[float], refit: bool, family: str, stage: str, label: str,
           progress: Optional[RunProgress]) -> None:
    """Sweep the lr of ``cfg`` on the held-out split (``repro.experiments.sweeps.run_sweep``: extended one step
    past an edge; with ``refit``, the chosen lr trained again on the whole training split) and record the reported
    run under ``stage``."""
    sweep = run_sweep(cfg, lrs=lrs, refit=refit, label=label, progress=progress)
    runs.records.append(RunRecord(family, cfg.model, stage, cfg.dataset, cfg.image_size, cfg.seed, sweep["best_run"],
                                  sweep["best_lr"], cfg.classes, SweepResult.of(sweep)))


def _pretrain(runs: Runs, cfg, *, family: str, stage: str, label: str, progress: Optional[RunProgress]) -> Path:
    """Train one pre-training (or find it finished) and record it under ``stage``."""
    run_dir = engine.train(cfg, **(progress.train_kwargs(label) if progress else {"label": label}))
    if progress:
        progress.finished(label, f"test top-1 {100 * load_run(run_dir)['test_accuracy']:.1f}%"
                          if stage == "pre-train" else "")
    runs.records.append(RunRecord(family, cfg.model, stage, cfg.dataset, cfg.image_size, cfg.seed, run_dir, cfg.lr,
                                  classes=cfg.classes))
    return run_dir


def run_transfer(config: Config, runs: Runs, progress: Optional[RunProgress] = None) -> None:
    """The transfer part: per seed and model, pre-train on the source classes, fine-tune on the target classes
    (the scale's SGD lr grid) and train on the target from scratch (AdamW, ``scratch_lrs``), both with the
    same target steps and batch, each lr chosen on the held-out split; records go to ``runs``."""
    t = config.transfer
    if t is None:
        return
    for seed in t.seeds:
        for family in FAMILIES:
            source = dataclasses.replace(t.source[family], seed=seed)
            run_dir = _pretrain(runs, source, family=family, stage=SOURCE_STAGE, progress=progress,
                                label=f"{source.model} pre-train on {t.source_task} seed {seed}")
            tuned = dataclasses.replace(t.finetune[family], seed=seed, init_from=str(weights_path(run_dir)))
            _sweep(runs, tuned, lrs=t.finetune_lrs, refit=False, family=family, stage=TRANSFER_STAGE,
                   label=f"{tuned.model} fine-tune on {t.target_task} seed {seed}", progress=progress)
            scratch = dataclasses.replace(t.scratch[family], seed=seed)
            _sweep(runs, scratch, lrs=t.scratch_lrs, refit=False, family=family, stage=SCRATCH_STAGE,
                   label=f"{scratch.model} from scratch on {t.target_task} seed {seed}", progress=progress)


def run(config: Config) -> Runs:
    """Pre-train the ViT and the BiT from scratch, then fine-tune the ViT (smoke / cpu / gpu scales); then the
    transfer part (``run_transfer``). Runs that finished before are found by their config and not trained again."""
    if config.scale.name == "paper":
        raise ValueError("at scale='paper' notebook 01 fine-tunes a given checkpoint: call run_paper(checkpoint, ...)")
    runs = Runs(config, config.out)
    progress = RunProgress(config.units(), "pre-trainings and lr sweeps")
    for seed in config.seeds:
        for family in FAMILIES:
            cfg = dataclasses.replace(config.pretrain[family], seed=seed)
            _pretrain(runs, cfg, family=family, stage="pre-train", label=f"{cfg.model} pre-train seed {seed}",
                      progress=progress)
        (vit,) = runs.select(family="ViT", stage="pre-train", seed=seed)
        for finetune in config.finetunes:
            cfg = dataclasses.replace(finetune, seed=seed, init_from=str(weights_path(vit.run_dir)))
            _sweep(runs, cfg, lrs=config.finetune_lrs, refit=config.refit, family="ViT", stage="fine-tune",
                   label=f"{cfg.model} fine-tune {cfg.dataset} @{cfg.image_size}px seed {seed}", progress=progress)
    run_transfer(config, runs, progress)
    return runs


def run_paper(checkpoint: str, datasets: Sequence[str] = PAPER_DATASETS, *, seeds: Optional[Sequence[int]] = None,
              data_dir: Optional[str] = None, out_dir: str | Path | None = None, device: str = "auto",
              paper_model: str = "ViT-L/16 (I21k)") -> Runs:
    """Fine-tune a pre-trained ``checkpoint`` (official .npz, timm or repro) on each of ``datasets`` at the
    paper scale's 384 px with App. B.1.1's recipe and Table 4's steps. Data sets that cannot be found are
    recorded in ``runs.unavailable`` and skipped. ``paper_model`` names the Table 2 column to compare with.
    """
    if not checkpoint:
        raise ValueError("run_paper fine-tunes a pre-trained checkpoint: pass pretrained_checkpoint=<path>")
    config = get_config("paper", seeds=seeds, data_dir=data_dir, out_dir=out_dir, device=device)
    runs = Runs(config, config.out, paper_model=paper_model)
    for dataset in datasets:
        try:
            resolve_source(dataset, config.finetunes[0].data_dir)   # is it there at all? (finds, does not decode)
        except (FileNotFoundError, ValueError) as err:
            runs.unavailable[dataset] = str(err).splitlines()[0]
            continue
        for seed in config.seeds:
            cfg = dataclasses.replace(config.finetunes[0], dataset=dataset, steps=finetune_recipe(dataset).steps,
                                      seed=seed, init_from=str(in_repo(checkpoint)))
            _sweep(runs, cfg, lrs=config.finetune_lrs, refit=config.refit, family="ViT", stage="fine-tune",
                   label=f"{cfg.model} fine-tune {dataset} @{cfg.image_size}px seed {seed}", progress=None)
    return runs


# --- table --------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _flops_per_image(model: str, resolution: int, num_classes: int, overrides_json: str) -> float:
    """Training FLOPs (forward + backward) of one image, counted once per model and resolution."""
    return training_flops(model, resolution, num_classes, json.loads(overrides_json))


def _groups(runs: Runs) -> dict[tuple, list[RunRecord]]:
    """The records by (stage, family, model, task, resolution), in the order they were run (``task``: the data
    set, with the classes of a transfer task)."""
    groups: dict[tuple, list[RunRecord]] = {}
    for r in runs.records:
        groups.setdefault((r.stage, r.family, r.model, r.task, r.resolution), []).append(r)
    return groups


TRANSFER_STAGES = (SOURCE_STAGE, TRANSFER_STAGE, SCRATCH_STAGE)


def transfer_claim(model: str) -> str:
    """The transfer claim of one model (one claims.json entry per model)."""
    return (f"Pre-trained on a source task, {model} does better on a target task the pre-training never saw than "
            "trained there from scratch with the same target budget (Sec. 3.2, 4.2)")


def _row_claim(stage: str, model: str) -> str:
    """The claim a row of the table tests, by its stage."""
    if stage in TRANSFER_STAGES:
        return transfer_claim(model)
    return SMALL_DATA_CLAIM if stage == "pre-train" else RESOLUTION_CLAIM


def _claim_verdicts(runs: Runs) -> dict[str, str]:
    return {c["claim"]: VERDICT_WORDS[c["holds"]] for c in claims(runs)}


def table(runs: Runs) -> pd.DataFrame:
    """One row per (stage, model, data set, resolution): our test top-1 over seeds, cost and provenance.

    Beside each row, the paper: at paper scale its Table 2 number (a comparable setting: fine-tuned from a
    large-data checkpoint at 384 px); at smaller scales the paper's claim the row tests and our verdict,
    since no number of the paper is comparable with a model trained from scratch on CIFAR-10 at 32 px.
    """
    verdicts = _claim_verdicts(runs)
    rows = []
    for (stage, family, model, task, resolution), records in _groups(runs).items():
        loaded = [load_run(r.run_dir) for r in records]
        test = [100 * row["test_accuracy"] for row in loaded if row.get("test_accuracy") is not None]
        mean, std, n = seed_stats(test) if test else (None, None, 0)
        first, dataset = loaded[0], records[0].dataset
        per_image = _flops_per_image(model, resolution, records[0].num_classes,
                                     json.dumps(first.get("model_overrides") or {}, sort_keys=True))
        # An lr sweep's record keeps the chosen lr's held-out score; a single run has its own.
        heldout = ([r.sweep.heldout_top1 for r in records] if records[0].sweep is not None
                   else [100 * row["val_accuracy"] for row in loaded if row.get("val_accuracy") is not None])
        row = {
            "model": model, "stage": stage, "data set": task, "resolution (px)": resolution, "seeds": n,
            "test top-1 (%)": mean, "test top-1 std (points)": std,
            "held-out top-1 (%)": sum(heldout) / len(heldout) if heldout else None,
            "lr": ", ".join(sorted({f"{r.lr:g}" for r in records})),
            "params (M)": (first.get("params") or 0) / 1e6 or None,
            "train GFLOPs / image": per_image / 1e9,
            "train TFLOPs": per_image * first["batch_size"] * first["steps"] / 1e12,
            "train images/s": pd.Series([row.get("images_per_s") for row in loaded], dtype=float).mean(),
            "train min / run": pd.Series([row.get("train_seconds") for row in loaded], dtype=float).mean() / 60,
            "hardware": first.get("device_name"),
            "data source": first.get("data_source"),
        }
        if runs.paper_model:
            ref = PAPER.get(f"table2/{runs.paper_model}/{dataset}")
            row["paper top-1 (%)"] = ref.value if ref else None
            row["paper"] = f"{ref.setting} ({ref.source})" if ref else "—"
        else:
            claim = _row_claim(stage, model)
            row["paper"] = f"claim: {claim} — ours: {verdicts.get(claim, 'not tested')}"
        row["run dirs"] = "; ".join(repo_relative(r.run_dir) for r in records)
        rows.append(row)
    for dataset, why in runs.unavailable.items():
        ref = PAPER.get(f"table2/{runs.paper_model}/{dataset}")
        rows.append({"model": runs.config.vit, "stage": "fine-tune", "data set": dataset, "seeds": 0,
                     "paper top-1 (%)": ref.value if ref else None, "paper": f"not run: data set unavailable ({why})"})
    return with_csv_only(pd.DataFrame(rows), "train GFLOPs / image", "lr")


def table_note(runs: Runs) -> str:
    """What a reader needs to read the table right (printed under table.md)."""
    refit = ("then the model was trained again with it on the whole training split, whose test score is reported"
             if runs.config.refit else "and that run's test score is reported (no refit at this scale, to fit its "
             "time budget)")
    note = ("Test top-1 is the mean over seeds (std in points; '—' with one seed). Fine-tuning: the lr was chosen "
            f"on the held-out split (its score is 'held-out top-1'), {refit}. FLOPs are counted with "
            "torch.utils.flop_counter on one forward + backward (matrix products, convolutions and attention). ")
    if runs.config.dataset == "cifar10":
        note += ("CIFAR-10 here is the JPEG-compressed copy (quality ~75), a little harder than the original "
                 "PNGs. ")
    if not runs.paper_model:
        note += ("The paper's Table 2 numbers (e.g. 99.15% for ViT-L/16 from ImageNet-21k at 384-512 px) are not "
                 "comparable with models trained from scratch on CIFAR-10 at 32-64 px, so the 'paper' column gives "
                 "the claim each row tests and our verdict (claims.json has the numbers). ")
    t = runs.config.transfer
    if t is not None and runs.select(stage=TRANSFER_STAGE):
        note += (f"Transfer rows: pre-trained on {t.source_task} ({t.source_steps} steps x {t.source_batch}); on the "
                 f"target ({t.target_task}, held-out part of those classes for the lr) fine-tuned with SGD "
                 f"(lrs {', '.join(f'{lr:g}' for lr in runs.config.finetune_lrs)}) or trained from scratch with "
                 f"the pre-training recipe (lrs {', '.join(f'{lr:g}' for lr in t.scratch_lrs)}), {t.target_steps} "
                 f"steps x {t.target_batch} each, at the pre-training resolution; the chosen lr's run is reported, "
                 "not refit (the labelled target set is capped, so a refit would not add images). ")
    if not runs.config.decidable:
        note += "Smoke scale: a few steps on a few hundred images prove the plumbing, not the claims."
    return note.strip()


# --- claims -------------------------------------------------------------------------------------------

def _test_top1(records: Sequence[RunRecord]) -> dict[int, float]:
    """``{seed: test top-1 (%)}`` of the reported runs."""
    return {r.seed: 100 * load_run(r.run_dir)["test_accuracy"] for r in records}


def _lr_requirements(records: Sequence[RunRecord]) -> list[str]:
    """What the lr choices behind these records lack (``repro.claims.requirements_unmet``): at least 1,000
    held-out images, and no chosen lr at an edge of a grid that was not extended."""
    swept = [r for r in records if r.sweep is not None]
    return requirements_unmet(heldout_images=[r.sweep.heldout_images for r in swept],
                              unextended_edges=[f"{r.model} {r.stage} @{r.resolution}px seed {r.seed}" for r in swept
                                                if r.sweep.extension_missing is not None])


TWO_ARM_RULE = ("paired per-seed differences; holds when their 90% t interval lies above zero, does not hold when it "
                "lies below, undecided otherwise or with one seed")


def claims(runs: Runs) -> list[dict]:
    """The claims this notebook tests, each with ours per seed and a verdict from ``repro.claims``."""
    return _paper_claims(runs) if runs.paper_model else _small_data_claims(runs) + _transfer_claims(runs)


def _transfer_claims(runs: Runs) -> list[dict]:
    """Per model: the target's test top-1 fine-tuned from the source above the same model trained there from
    scratch (``verdict_above``, paired by seed), if the lr choices of both arms meet the rules."""
    config, t, out = runs.config, runs.config.transfer, []
    for family in FAMILIES:
        tuned = runs.select(stage=TRANSFER_STAGE, family=family)
        scratch = runs.select(stage=SCRATCH_STAGE, family=family)
        if t is None or not (tuned and scratch):
            continue
        names = (f"fine-tuned from {t.source_task}", "from scratch")
        verdict = verdict_above(_test_top1(tuned), _test_top1(scratch), names=names)
        verdict = at_scale(needs_next_run(verdict, _lr_requirements([*tuned, *scratch])), config.decidable)
        out.append(claim_entry(
            transfer_claim(tuned[0].model),
            "Sec. 3.2, 4.2: ViT is pre-trained on large data sets and fine-tuned to smaller downstream tasks "
            f"(Table 2); Sec. 4.6: self-supervised pre-training gives ViT-B/16 {PAPER['mpp/vit-b16-imagenet'].value}% "
            "on ImageNet, 2% above training from scratch and 4% below supervised pre-training. No number of the "
            "paper is comparable with CIFAR-10 classes at 32 px.",
            f"test top-1 (%) on the target ({t.target_task}; {t.target_steps} steps x {t.target_batch} on the "
            f"target, lr chosen on the held-out split) of {tuned[0].model}, fine-tuned after pre-training on "
            f"{t.source_task} ({t.source_steps} steps x {t.source_batch}) or trained from scratch",
            {names[0]: _test_top1(tuned), names[1]: _test_top1(scratch)}, verdict, rule=TWO_ARM_RULE))
    return out


def _small_data_claims(runs: Runs) -> list[dict]:
    config, out = runs.config, []
    vit = runs.select(family="ViT", stage="pre-train")
    bit = runs.select(family="BiT", stage="pre-train")
    if vit and bit:
        verdict = verdict_above(_test_top1(bit), _test_top1(vit), names=(bit[0].model, vit[0].model))
        out.append(claim_entry(
            SMALL_DATA_CLAIM,
            "Fig. 3: pre-trained on ImageNet-1k (1.3M images), BiT ResNets beat ViT-B/L after fine-tuning; ViT "
            "overtakes with ImageNet-21k / JFT-300M. Fig. 4: the same on JFT subsets (9M: ResNet above). No "
            "number of the paper is comparable with CIFAR-10 from scratch.",
            f"{vit[0].dataset} test top-1 (%) after pre-training from scratch at {vit[0].resolution} px",
            {vit[0].model: _test_top1(vit), bit[0].model: _test_top1(bit)},
            at_scale(verdict, config.decidable), rule=TWO_ARM_RULE))
    high, low = config.finetune_image_size, config.image_size
    tuned_high = runs.select(stage="fine-tune", resolution=high)
    tuned_low = runs.select(stage="fine-tune", resolution=low) if high != low else []
    # Without the control the baseline is the pre-trained model itself (fewer steps: says so in the name).
    baseline, baseline_name = (tuned_low, f"fine-tuned @{low}px") if tuned_low else (vit, f"pre-trained @{low}px")
    if tuned_high and baseline:
        names = (f"fine-tuned @{high}px", baseline_name)
        verdict = verdict_above(_test_top1(tuned_high), _test_top1(baseline), names=names)
        verdict = needs_next_run(verdict, _lr_requirements([*tuned_high, *tuned_low]))
        if not tuned_low:
            verdict = Verdict(verdict.holds, verdict.why + "; no same-resolution fine-tuning control, so extra steps "
                              "and resolution are confounded", verdict.difference)
        out.append(claim_entry(
            RESOLUTION_CLAIM,
            "Sec. 3.2: 'it is often beneficial to fine-tune at higher resolution than pre-training'; the paper "
            "pre-trains at 224 px and fine-tunes at 384 px (512 for ViT-L/16), without an ablation number.",
            f"{tuned_high[0].dataset} test top-1 (%) of {tuned_high[0].model} after fine-tuning "
            f"({config.finetune_steps} steps, same lr grid) from the same pre-trained model",
            {names[0]: _test_top1(tuned_high), names[1]: _test_top1(baseline)},
            at_scale(verdict, config.decidable), rule=TWO_ARM_RULE))
    return out


def _paper_claims(runs: Runs) -> list[dict]:
    out = []
    for (stage, family, model, task, resolution), records in _groups(runs).items():
        dataset = records[0].dataset
        ref = PAPER.get(f"table2/{runs.paper_model}/{dataset}")
        if ref is None:
            continue
        values = _test_top1(records)
        verdict = verdict_in_band(mean_interval(values), ref.value - PAPER_TOLERANCE_POINTS, 100.0,
                                  what=f"ours on {dataset}", unit="%")
        out.append(claim_entry(
            f"Fine-tuned at {resolution} px, a large-data pre-trained ViT reaches Table 2's accuracy on {dataset}",
            f"{ref.value:.2f} ({ref.setting}, {ref.source})", f"{dataset} test top-1 (%)", {model: values},
            verdict, rule=f"holds when the 90% interval of our mean lies within {PAPER_TOLERANCE_POINTS:g} point(s) "
                          "below the paper's number or above it; does not hold when it lies wholly below that"))
    return out


def lr_table(runs: Runs) -> pd.DataFrame:
    """Every lr of every held-out choice a claim depends on: held-out and test top-1 (%), which was chosen and
    whether the grid was extended, so a reader sees how much the choice mattered."""
    rows = []
    for r in runs.records:
        if r.sweep is not None:
            rows += r.sweep.rows(model=r.model, stage=r.stage, task=r.task, resolution=r.resolution, seed=r.seed)
    return pd.DataFrame(rows)


# --- figure and summary ----------------------------------------------------------------------------------

def plot(runs: Runs) -> Path:
    """``curves.png``: pre-training and fine-tuning in separate panels, one line per model (mean over seeds);
    the transfer part has its own figure (``plot_transfer``)."""
    panels: dict[str, dict[str, list[Path]]] = {}
    chance: dict[str, float] = {}
    for (stage, family, model, task, resolution), records in _groups(runs).items():
        if stage in TRANSFER_STAGES:
            continue
        verb = "pre-training" if stage == "pre-train" else "fine-tuning"
        title = f"{verb} on {task}" + (f" (from {runs.config.image_size} px)" if stage == "fine-tune" and
                                        not runs.paper_model else "")
        panels.setdefault(title, {})[f"{model} @{resolution}px"] = [r.run_dir for r in records]
        chance[title] = 100 / records[0].num_classes
    c = runs.config
    if runs.paper_model:
        title = f"notebook 01, scale paper: fine-tuning at {c.finetune_image_size} px"
    else:
        title = (f"notebook 01, scale {c.scale.name}: {c.dataset}, pre-training at {c.image_size} px, "
                 f"fine-tuning at {'/'.join(str(r) for r in runs.config.finetune_resolutions)} px")
    return plot_curves(panels, runs.out / "curves.png", title=title, chance_top1=chance)


def plot_transfer(runs: Runs) -> Optional[Path]:
    """``transfer.png``: source pre-training, then the target task fine-tuned vs from scratch, one line per model
    and arm (mean over seeds; markers: held-out and test evaluations). None when the transfer part did not run."""
    t = runs.config.transfer
    if t is None or not runs.select(stage=TRANSFER_STAGE):
        return None
    titles = {SOURCE_STAGE: f"source: pre-training on {t.source_task}",
              TRANSFER_STAGE: f"target: {t.target_task}", SCRATCH_STAGE: f"target: {t.target_task}"}
    arms = {SOURCE_STAGE: "", TRANSFER_STAGE: " fine-tuned", SCRATCH_STAGE: " from scratch"}
    panels: dict[str, dict[str, list[Path]]] = {}
    chance: dict[str, float] = {}
    for (stage, family, model, task, resolution), records in _groups(runs).items():
        if stage in TRANSFER_STAGES:
            panels.setdefault(titles[stage], {})[model + arms[stage]] = [r.run_dir for r in records]
            chance[titles[stage]] = 100 / records[0].num_classes
    return plot_curves(panels, runs.out / "transfer.png", chance_top1=chance,
                       title=f"notebook 01, scale {runs.config.scale.name}: transfer to classes the pre-training "
                             f"never saw, seeds {list(t.seeds)}")


def summary(runs: Runs, found: Sequence[dict]) -> str:
    """A closing paragraph in Markdown, generated from the claims' numbers and verdicts."""
    unavailable = [f"- Not run (data set unavailable): {', '.join(runs.unavailable)}."] if runs.unavailable else []
    t = runs.config.transfer
    transfer = f", transfer seeds {list(t.seeds)}" if t is not None and runs.select(stage=TRANSFER_STAGE) else ""
    return summary_markdown(f"scale `{runs.config.scale.name}`, {len(runs.config.seeds)} seed(s){transfer}",
                            runs.first_run(), found, decidable=runs.config.decidable, extra_lines=unavailable)



def findings(runs: Runs) -> dict:
    """What the paper found and the measured reasons why ours may differ, for ``results/SUMMARY.md``."""
    why = []
    pre = runs.select(stage="pre-train")
    if pre and not runs.paper_model:
        why.append(f"Pre-training here is CIFAR-10 ({pre[0].dataset}, the JPEG copy) from scratch at "
                   f"{pre[0].resolution} px for {epochs_text([r.run_dir for r in pre])}; the paper pre-trains on "
                   "1.3M-303M images at 224 px for 7-300 epochs, so only the small-data end of Fig. 3 can show.")
        why.append(curve_sentence(curve_status([r.run_dir for r in pre]), "pre-training runs"))
        speeds = {f: pd.Series([load_run(r.run_dir).get("images_per_s") for r in pre if r.family == f],
                               dtype=float).mean() for f in FAMILIES}
        if all(speeds.values()):
            why.append(f"Cost: the BiT trains at {speeds['BiT']:.0f} images/s and the ViT at {speeds['ViT']:.0f} on "
                       f"this hardware, so the BiT costs {speeds['ViT'] / speeds['BiT']:.1f}x the ViT's time per image.")
    swept = [r for r in runs.records if r.sweep is not None]
    edges = [r for r in swept if r.sweep.at_edge]
    if swept:
        why.append(f"{len(edges)} of {len(swept)} held-out lr choices ended at an edge of their grid "
                   f"(held-out images per choice: {', '.join(sorted({str(r.sweep.heldout_images) for r in swept}))}); "
                   "lr_table.md lists every lr's held-out and test score.")
    return {"title": "Pre-training and transfer (Sec. 4.2, Table 2; Fig. 3; Sec. 3.2)",
            "paper": "Pre-trained on ImageNet-21k or JFT-300M and fine-tuned, ViT matches or beats BiT ResNets on "
                     "CIFAR-10/100, Pets and Flowers (Table 2); pre-trained on ImageNet-1k alone, the ResNets are "
                     "better (Fig. 3). Fine-tuning at a higher resolution than pre-training helps (Sec. 3.2).",
            "why": why}


def plot_claims(runs: Runs, found: Sequence[dict]) -> Optional[Path]:
    """``claims.png``: every claim's arms, each seed a dot, the means with their 90% intervals."""
    c = runs.config
    return draw_claims(found, runs.out / "claims.png",
                       title=f"notebook 01, scale {c.scale.name}: {c.dataset} at {c.image_size} px, {c.vit} vs {c.bit}")

__all__ = ["plot_claims", "findings", "settings_markdown", "lr_table", "NAME", "Config", "Transfer", "MAIN_PRESETS", "TRANSFER_PRESETS", "RunRecord", "Runs", "get_config", "run",
           "run_transfer", "run_paper", "table", "table_note", "claims", "transfer_claim", "claims_markdown", "plot",
           "plot_transfer", "summary"]

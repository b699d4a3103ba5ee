"""Notebook 02: the position-embedding ablation (App. D.4, Table 8), every cell of the table.

The same ViT, recipe, budget and seeds with each kind of position information — none; learned 1-D; learned
2-D (X and Y tables of D/2, concatenated); 1-D relative attention — and, for 1-D and 2-D, each place it is
added: once at the stem (the default, Eq. 1), a separate table at the input of every layer, or one table
shared by every layer. The metric is the paper's: 5-shot linear accuracy of the frozen pre-trained
representation (``repro.fewshot``, big_vision's ``fewshot_lsr``: pre-logits features after the tanh layer,
support sets of sampling seeds 0, 1, 2, ridge lambda 2^10); beside it the trained classifier's test top-1.

Departures (stated in the table note): the paper trains ViT-B/16 on JFT-300M and probes ImageNet; here a
small ViT is trained from scratch on CIFAR-10 at 32 px and probed on CIFAR-10 too, so the probe measures how
linearly separable the trained representation is, and no number is comparable with the paper's, only the
ordering. The grid is 4x4 patches at ``cpu`` scale (patch 8) and 8x8 at ``gpu`` (patch 4); the paper's is
14x14.

Claims tested (``claims``): no position embedding is clearly worse; the kind of encoding barely matters;
where it is added barely matters. The rules are in ``claims`` and ``repro.claims``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ..analysis import position_similarity
from ..checkpoints import load_model
from ..claims import (VERDICT_WORDS, at_scale, claim_entry, needs_next_run, requirements_unmet, seed_stats,
                      verdict_above, verdict_all, verdict_equivalent)
from ..figures import plot_claims as draw_claims, pyplot, save_figure
from ..models import create_model
from ..paper import PAPER
from ..paths import repo_relative
from ..progress import RunProgress
from ..runconfig import TrainConfig
from ..rundir import load_run, weights_path
from ..scales import get_scale
from ..summary import curve_sentence, curve_status, epochs_text
from .probes import FEWSHOT_SHOTS, fewshot_top1, Probe, support_draws, support_std, train_and_probe
from .reporting import cost_columns, finish_note, RunSet, summary_markdown
from .settings import (apply_preset, experiment_out, preset_of, pretrain_departures_markdown, pretraining_run,
                       ProbedPretraining)

NAME = "02_position_embeddings"
KINDS = ("none", "1d", "2d", "relative")                       # Table 8's rows
PLACEMENTS = ("stem", "every_layer", "every_layer_shared")      # Table 8's columns
# The cells Table 8 fills: every kind at the stem, and 1-D / 2-D at the other two placements.
CELLS = tuple((k, "stem") for k in KINDS) + tuple((k, p) for p in PLACEMENTS[1:] for k in ("1d", "2d"))
KIND_LABELS = {"none": "none", "1d": "1-D", "2d": "2-D", "relative": "relative"}
PLACEMENT_LABELS = {"stem": "stem", "every_layer": "every layer", "every_layer_shared": "every layer, shared"}
SHOTS = FEWSHOT_SHOTS
# "Barely matters" means: every pair of cells differs by less than this many points of 5-shot accuracy (the 90%
# interval of the paired difference within +-MARGIN). Why this size: the paper's cells differ by at most 0.33 points
# while no position embedding costs 2.8 points of 64 (4.4%); at the ~30-40% 5-shot scores of the cpu scale 4.4% is
# ~1.5 points, so a difference below that is smaller than the effect that position information has at all.
MARGIN_POINTS = 1.5

NONE_CLAIM = "Without position embeddings the model is clearly worse (App. D.4, Table 8)"
KIND_CLAIM = (f"The kind of position encoding (1-D, 2-D, relative) barely matters: within +-{MARGIN_POINTS:g} points "
              "(App. D.4, Table 8)")
PLACEMENT_CLAIM = (f"Where the position embedding is added (stem, every layer, shared) barely matters: within "
                   f"+-{MARGIN_POINTS:g} points (App. D.4, Table 8)")
MARGIN_REASON = (f"margin +-{MARGIN_POINTS:g} points: the paper's cells differ by at most 0.33 points while no position "
                 "embedding costs 2.8 of 64 (4.4%), ~1.5 points at this scale's ~35% scores")

# This experiment's own choices per scale: ``train`` is what its pre-training changes from the scale's
# (repro.scales), the rest its own knobs.
PRESETS = {
    "smoke": dict(train=dict(steps=8, warmup_steps=2), seeds=(0,), placement_seeds=(0,), fewshot_max_train=200),
    # Sized from throughput measured at 32 px on 2 cores (2026-12-04, Intel Xeon, synthetic batches): ViT-XXS/4 1,265
    # images/s, 860 with relative attention; ~1,150 / ~800 in the loop. 20 runs (the 4 kinds at the stem with 3 seeds,
    # the 4 every-layer / shared cells with 2: a cell of one seed decides nothing) x 900 steps x 128 images = 115,200
    # images each (2.4 epochs): 17 x 100 s + 3 x 144 s = 34 min, plus ~5 s per run for the probe (5,000 support-pool
    # + 10,000 test images) and the held-out evaluations: ~36 minutes. 900 steps, not 600: the curves of the old
    # 600-step runs still rose 3.6 points over their last quarter. Patch 4 gives the 8x8 grid (patch 8: 4x4).
    "cpu": dict(train=dict(model="ViT-XXS/4", steps=900, warmup_steps=90, lr=2e-3),
                seeds=(0, 1, 2), placement_seeds=(0, 1), fewshot_max_train=5000),
    "gpu": dict(train=dict(steps=3000, warmup_steps=300), seeds=(0, 1, 2), placement_seeds=(0, 1, 2),
                fewshot_max_train=10000),
}


def cell_name(kind: str, placement: str) -> str:
    """'1-D @ every layer': how a cell is named in claims, tables and figures."""
    return f"{KIND_LABELS[kind]} @ {PLACEMENT_LABELS[placement]}"


@dataclass(frozen=True)
class Config(ProbedPretraining):
    """What notebook 02 runs at one scale: the pre-training run every cell varies, the probe and the seeds."""

    seeds: tuple             # training seeds of the stem column (at least 3 outside smoke)
    placement_seeds: tuple   # training seeds of the every-layer and shared columns (may be fewer)

    @property
    def grid(self) -> tuple[int, int]:
        """Patches per side, (rows, columns)."""
        with torch.device("meta"):
            model = create_model(self.model, num_classes=10, img_size=self.image_size)
        return tuple(model.grid_size)

    def seeds_for(self, placement: str) -> tuple:
        return self.seeds if placement == "stem" else self.placement_seeds

    def cell_run(self, kind: str, placement: str, seed: int) -> TrainConfig:
        """The run of one Table 8 cell at one training seed."""
        return self.run_config(seed=seed, model_overrides={"pos_embed": kind, "pos_embed_placement": placement})

    def budget(self) -> str:
        """The notebook's training budget in one line: runs, steps, images."""
        runs = sum(len(self.seeds_for(p)) for _, p in CELLS)
        return (f"{len(CELLS)} cells of Table 8: {runs} training runs x {self.steps} steps x batch {self.batch_size} "
                f"= {runs * self.steps} steps, {runs * self.steps * self.batch_size:,} images "
                f"({self.model} at {self.image_size} px, a {self.grid[0]}x{self.grid[1]} patch grid; stem seeds "
                f"{list(self.seeds)}, placement seeds {list(self.placement_seeds)})")


def get_config(scale: str = "cpu", *, seeds: Optional[Sequence[int]] = None,
               placement_seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
               out_dir: str | Path | None = None, device: str = "auto", model: Optional[str] = None,
               image_size: Optional[int] = None, batch_size: Optional[int] = None, steps: Optional[int] = None,
               warmup_steps: Optional[int] = None, lr: Optional[float] = None,
               fewshot_max_train: Optional[int] = None) -> Config:
    """The runs of notebook 02 at ``scale``: the preset, with any parameter that is not None in its place."""
    preset = preset_of(PRESETS, scale, "notebook 02 runs at {scales}; at 'paper' scale Table 8 needs ViT-B/16 on "
                                       "JFT-300M, which is not public")
    changes, knobs = apply_preset(
        preset, what="notebook 02", seeds=seeds, placement_seeds=placement_seeds, fewshot_max_train=fewshot_max_train,
        train=dict(model=model, image_size=image_size, batch_size=batch_size, steps=steps, warmup_steps=warmup_steps,
                   lr=lr))
    out = experiment_out(NAME, scale, out_dir)
    train = pretraining_run(get_scale(scale), changes, data_dir=data_dir, out=out, device=device,
                            seed=knobs["seeds"][0] if knobs["seeds"] else 0)
    return Config(scale=get_scale(scale), train=train, out=out, seeds=knobs["seeds"],
                  placement_seeds=knobs["placement_seeds"], probe=Probe.of_run(train, knobs["fewshot_max_train"]))


def settings_markdown(config: Config) -> str:
    """Where this notebook's pre-training departs from the paper (the pre-training rows of the README table)."""
    return pretrain_departures_markdown(config.scale.name, config.train)


@dataclass(frozen=True)
class RunRecord:
    """One finished run: a Table 8 cell at one training seed."""

    kind: str          # none | 1d | 2d | relative
    placement: str     # stem | every_layer | every_layer_shared
    seed: int
    run_dir: Path


class Runs(RunSet):
    """The runs of one execution of notebook 02 (``RunRecord`` each), with where its results go."""


SIMILARITY_FILE = "position_similarity.json"


def _save_similarity(run_dir: Path) -> None:
    """Fig. 7 centre's numbers for one run (cosine similarity of the first table's patch embeddings), kept
    beside the run so the figure is rebuilt from files; weights are not committed."""
    model = load_model(weights_path(run_dir))
    sim = position_similarity(model)  # (N, N), class token dropped; every_layer: the first block's table
    (run_dir / SIMILARITY_FILE).write_text(json.dumps({"grid": list(model.grid_size),
                                                        "similarity": np.round(sim, 4).tolist()}))


def run(config: Config) -> Runs:
    """Pre-train the ViT once per Table 8 cell and seed (same recipe and budget), probe each with 5-shot
    linear regression, and keep each 1-D / 2-D cell's position similarity (first seed). Runs that finished
    before are found by their config and not trained again."""
    runs = Runs(config, config.out)
    progress = RunProgress(sum(len(config.seeds_for(p)) for _, p in CELLS), "training runs")
    for seed in sorted(set(config.seeds) | set(config.placement_seeds)):
        for kind, placement in CELLS:
            if seed not in config.seeds_for(placement):
                continue
            run_dir = train_and_probe(config.cell_run(kind, placement, seed), config.probe,
                                      label=f"{cell_name(kind, placement)} seed {seed}", progress=progress)
            if kind in ("1d", "2d") and seed == config.seeds_for(placement)[0] and not (run_dir / SIMILARITY_FILE).exists():
                _save_similarity(run_dir)
            runs.records.append(RunRecord(kind, placement, seed, run_dir))
    return runs


# --- numbers ------------------------------------------------------------------------------------------

def _fewshot(records: Sequence[RunRecord]) -> dict[int, float]:
    """``{training seed: 5-shot linear top-1 (%)}``, each the mean over the probe's support draws."""
    return {r.seed: fewshot_top1(r.run_dir, SHOTS) for r in records}


def _test_top1(records: Sequence[RunRecord]) -> dict[int, float]:
    return {r.seed: 100 * load_run(r.run_dir)["test_accuracy"] for r in records}


def cell_samples(runs: Runs) -> dict[tuple[str, str], dict[int, float]]:
    """``{(kind, placement): {seed: 5-shot linear top-1 (%)}}`` of every cell that ran."""
    return {cell: _fewshot(runs.select(kind=cell[0], placement=cell[1]))
            for cell in CELLS if runs.select(kind=cell[0], placement=cell[1])}


def cell_stats(runs: Runs) -> dict[tuple[str, str], list]:
    """``{(kind, placement): [mean, std, seeds]}`` of the 5-shot linear top-1 (%) of every cell that ran."""
    return {cell: seed_stats(sample.values()) for cell, sample in cell_samples(runs).items()}


def _paper(kind: str, placement: str) -> Optional[float]:
    ref = PAPER.get(f"table8/{kind}/{placement}")
    return ref.value if ref else None


def _format(stats: Optional[list]) -> str:
    if stats is None:
        return "not run"
    mean, std, n = stats
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "") + f" ({n} seed{'s' * (n > 1)})"


def table8(runs: Runs) -> pd.DataFrame:
    """Table 8's shape: rows none / 1-D / 2-D / relative, for each column (stem, every layer, every layer
    shared) ours (5-shot linear top-1 %, mean ± std, seeds) and the paper's number beside it; "n/a" where
    Table 8 has no cell."""
    stats = cell_stats(runs)
    rows = []
    for kind in KINDS:
        row = {"position embedding": KIND_LABELS[kind]}
        for placement in PLACEMENTS:
            label = PLACEMENT_LABELS[placement]
            in_table = (kind, placement) in CELLS
            row[f"{label}: ours"] = _format(stats.get((kind, placement))) if in_table else "n/a"
            row[f"{label}: paper"] = f"{_paper(kind, placement):.3f}" if in_table else "n/a"
        rows.append(row)
    return pd.DataFrame(rows)


def table(runs: Runs) -> pd.DataFrame:
    """One row per cell: 5-shot linear and classifier test top-1 over seeds, the paper's Table 8 number, the
    claim the cell enters and our verdict, cost and provenance."""
    verdicts = {c["claim"]: VERDICT_WORDS[c["holds"]] for c in claims(runs)}
    rows = []
    for kind, placement in CELLS:
        records = runs.select(kind=kind, placement=placement)
        if not records:
            continue
        loaded = [load_run(r.run_dir) for r in records]
        few, top1 = seed_stats(_fewshot(records).values()), seed_stats(_test_top1(records).values())
        claim = (NONE_CLAIM if kind == "none" else KIND_CLAIM if placement == "stem" else PLACEMENT_CLAIM)
        rows.append({
            "position embedding": KIND_LABELS[kind], "placement": PLACEMENT_LABELS[placement], "seeds": few[2],
            f"{SHOTS}-shot linear top-1 (%)": few[0], f"{SHOTS}-shot std (points)": few[1],
            f"{SHOTS}-shot std over support draws (points)": support_std([r.run_dir for r in records]),
            "test top-1 (%)": top1[0], "test top-1 std (points)": top1[1],
            "paper 5-shot ImageNet (%)": _paper(kind, placement),
            **cost_columns(loaded),
            "paper": f"claim: {claim} — ours: {verdicts.get(claim, 'not tested')}",
            "run dirs": "; ".join(repo_relative(r.run_dir) for r in records),
        })
    return pd.DataFrame(rows)


def table_note(runs: Runs) -> str:
    """What a reader needs to read the tables right (printed under them)."""
    c = runs.config
    note = (f"{SHOTS}-shot linear top-1: a ridge probe (lambda 2^10) on the frozen pre-logits features, "
            f"{SHOTS} training images per class drawn with sampling seeds 0, 1, 2 (their mean per run), tested on "
            f"the {'whole ' if c.train.max_test is None else ''}test split; mean ± std over training seeds "
            f"({len(c.seeds)} at the stem, {len(c.placement_seeds)} at the other placements). Test top-1: the "
            f"trained classifier. Every cell: {c.model} at {c.image_size} px ({c.grid[0]}x{c.grid[1]} patches), "
            f"{c.steps} steps of batch {c.batch_size}, lr {c.lr:g}. The paper's numbers are ViT-B/16 pre-trained "
            "on JFT-300M and probed on ImageNet (14x14 patches): only the ordering is comparable. ")
    return finish_note(note, c, cifar10=("Here the probe's data set is the training set (CIFAR-10, the JPEG copy, quality ~75), so the "
                 "probe measures how linearly separable the trained representation is."))


# --- claims -------------------------------------------------------------------------------------------

def claims(runs: Runs) -> list[dict]:
    """The three claims of App. D.4, each with ours per cell and seed and a verdict from ``repro.claims``.

    - none is clearly worse: none at the stem below each of 1-D, 2-D and relative at the stem
      (``verdict_above`` per kind, paired by seed; ``verdict_all``).
    - the kind barely matters: 1-D, 2-D, relative at the stem, every pair within +-``MARGIN_POINTS``
      (``verdict_equivalent``).
    - the placement barely matters: for 1-D and for 2-D, stem vs every layer vs shared, the same rule, at the
      placement seeds (a cell of one seed decides nothing); both kinds must hold.
    Every few-shot score must average ``repro.claims.MIN_SUPPORT_DRAWS`` support draws, else "needs the next run".
    """
    config, samples, out = runs.config, cell_samples(runs), []
    metric = (f"CIFAR-10 {SHOTS}-shot linear top-1 (%) of the pre-logits representation, {config.model} trained "
              f"{config.steps} steps at {config.image_size} px")
    draws = {cell: [support_draws(r.run_dir) for r in runs.select(kind=cell[0], placement=cell[1])] for cell in samples}

    def decide(verdict, cells):
        missing = requirements_unmet(support_draws=[d for c in cells for d in draws[c]])
        return at_scale(needs_next_run(verdict, missing), config.decidable)

    def ours(cells):
        return {cell_name(*c): samples[c] for c in cells}

    kinds = [(k, "stem") for k in ("1d", "2d", "relative") if (k, "stem") in samples]
    none = ("none", "stem")
    if none in samples and kinds:
        verdict = verdict_all([verdict_above(samples[c], samples[none], names=(cell_name(*c), cell_name(*none)))
                               for c in kinds])
        out.append(claim_entry(NONE_CLAIM, "Table 8: none 61.382 vs 1-D 64.206, 2-D 64.001, relative 64.032 "
                               "(ViT-B/16, ImageNet 5-shot linear): about 3 points worse", metric,
                               ours([none, *kinds]), decide(verdict, [none, *kinds]),
                               rule="each kind minus none, paired by seed: holds when every 90% interval lies above "
                                    "zero, does not hold when one lies below"))
    if len(kinds) >= 2:
        verdict = verdict_equivalent({cell_name(*c): samples[c] for c in kinds}, margin=MARGIN_POINTS)
        out.append(claim_entry(KIND_CLAIM, "Table 8: 1-D 64.206, 2-D 64.001, relative 64.032 at the stem: within "
                               "0.21 points", metric, ours(kinds), decide(verdict, kinds),
                               rule=f"every pair's 90% interval within the margin holds, one wholly outside does not "
                                    f"hold; {MARGIN_REASON}"))
    per_kind, cells = [], []
    for kind in ("1d", "2d"):
        found = [(kind, p) for p in PLACEMENTS if (kind, p) in samples]
        if len(found) >= 2:
            per_kind.append((KIND_LABELS[kind], verdict_equivalent({cell_name(*c): samples[c] for c in found},
                                                                   margin=MARGIN_POINTS)))
            cells += found
    if per_kind:
        verdict = verdict_all([v for _, v in per_kind], labels=[k for k, _ in per_kind])
        out.append(claim_entry(PLACEMENT_CLAIM, "Table 8: 1-D 64.206 / 63.964 / 64.292 and 2-D 64.001 / 64.046 / "
                               "64.022 at stem / every layer / every layer shared: within 0.33 points",
                               metric, ours(cells), decide(verdict, cells),
                               rule=f"for 1-D and for 2-D, every pair of placements within the margin; {MARGIN_REASON}"))
    return out


# --- figure and summary -------------------------------------------------------------------------------

def similarity_mosaic(similarity: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Fig. 7 centre as one image: tile (r, c) is patch (r, c)'s similarity with every patch, tiles separated
    by one NaN row / column. similarity (N, N), N = gh * gw -> (gh * (gh + 1) - 1, gw * (gw + 1) - 1)."""
    gh, gw = grid
    sim = np.asarray(similarity, dtype=float).reshape(gh, gw, gh, gw)  # (query row, col, key row, col)
    mosaic = np.full((gh * (gh + 1) - 1, gw * (gw + 1) - 1), np.nan)
    for r in range(gh):
        for c in range(gw):
            mosaic[r * (gh + 1): r * (gh + 1) + gh, c * (gw + 1): c * (gw + 1) + gw] = sim[r, c]
    return mosaic


def plot_similarity(runs: Runs) -> Path:
    """``position_similarity.png``: Fig. 7 centre for every 1-D / 2-D cell (first seed), one panel each.
    Tile (r, c) of a panel: cosine similarity of patch (r, c)'s position embedding with every patch's
    (every-layer cells: the first layer's table). None and relative have no absolute table to show."""
    plt = pyplot()

    panels = []
    for kind, placement in CELLS:
        records = runs.select(kind=kind, placement=placement)
        path = records[0].run_dir / SIMILARITY_FILE if records else None
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            panels.append((cell_name(kind, placement), similarity_mosaic(saved["similarity"], saved["grid"])))
    if not panels:
        raise ValueError("no run with a 1-D or 2-D position table to draw")
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), squeeze=False)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("white")
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, mosaic) in zip(axes.flat, panels):
        image = ax.imshow(mosaic, vmin=-1, vmax=1, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.7, label="cosine similarity")
    c = runs.config
    fig.suptitle(f"notebook 02, scale {c.scale.name}: position embedding similarity (Fig. 7 centre), {c.model} on "
                 f"CIFAR-10 at {c.image_size} px, seed {c.seeds[0]}", fontsize=9)
    out = runs.out / "position_similarity.png"
    return save_figure(fig, out, dpi=110)


def summary(runs: Runs, found: Sequence[dict]) -> str:
    """A closing paragraph in Markdown, generated from the claims' numbers and verdicts."""
    c = runs.config
    return summary_markdown(f"scale `{c.scale.name}`, {c.model} at {c.image_size} px, {c.steps} steps, stem seeds "
                            f"{list(c.seeds)}, placement seeds {list(c.placement_seeds)}", runs.first_run(), found,
                            decidable=c.decidable)



def findings(runs: Runs) -> dict:
    """What the paper found and the measured reasons why ours may differ, for ``results/SUMMARY.md``."""
    c, stats = runs.config, cell_stats(runs)
    why = [f"Every cell is {c.model} trained {c.steps} steps of {c.batch_size} from scratch on CIFAR-10 at "
           f"{c.image_size} px ({epochs_text([r.run_dir for r in runs.records[:1]])}), a {c.grid[0]}x{c.grid[1]} patch "
           "grid, probed on CIFAR-10; the paper trains ViT-B/16 on JFT-300M (a 14x14 grid) and probes ImageNet.",
           curve_sentence(curve_status([r.run_dir for r in runs.records]), "runs")]
    kinds = [stats[(k, "stem")][0] for k in ("1d", "2d", "relative") if (k, "stem") in stats]
    if ("none", "stem") in stats and kinds:
        why.append(f"No position embedding scores {stats[('none', 'stem')][0]:.2f}% against {min(kinds):.2f}-"
                   f"{max(kinds):.2f}% for the kinds at the stem (the paper: 61.38 against 64.00-64.21).")
    return {"title": "Position embeddings (App. D.4, Table 8)",
            "paper": "Without position embeddings ViT-B/16 is clearly worse (ImageNet 5-shot 61.38 vs 64.21 for 1-D); "
                     "the kind of embedding (1-D, 2-D, relative) and where it is added barely matter (within "
                     "0.33 points).",
            "why": why}


def plot_claims(runs: Runs, found: Sequence[dict]) -> Optional[Path]:
    """``claims.png``: every claim's arms, each seed a dot, the means with their 90% intervals."""
    c = runs.config
    return draw_claims(found, runs.out / "claims.png",
                       title=f"notebook 02, scale {c.scale.name}: position embeddings, {c.model} on CIFAR-10 at {c.image_size} px, "
                             f"{SHOTS}-shot linear top-1")

__all__ = ["plot_claims", "findings", "NAME", "CELLS", "Config", "RunRecord", "Runs", "get_config", "settings_markdown", "run", "cell_stats",
           "table", "table8", "table_note", "claims", "plot_similarity", "similarity_mosaic", "summary"]

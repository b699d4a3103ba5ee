"""Notebook 03: class token vs global average pooling (App. D.3, Fig. 9).

The same ViT is pre-trained with a class token (the head reads its output, Eq. 4) and with global average
pooling of the patch tokens after the final LayerNorm (no class token; the official ``classifier="gap"``),
each over a small grid of learning rates around the scale's lr (the paper: the class token at 8e-4; GAP
tried at 8e-4 and 3e-4, working at the lower). Like Fig. 9, accuracy is followed along training: the 5-shot
linear accuracy of the frozen representation (``repro.fewshot``) and the trained classifier's test top-1,
probed at a few steps of the very same runs (``repro.experiments.train_and_probe``: ``train`` pauses at its
checkpoint, the weights are probed, the run resumes exactly) and at the end.

Departures: a small ViT trained from scratch on CIFAR-10 at 32 px, probed on CIFAR-10, instead of ViT-B on
JFT-300M probed on ImageNet; the lr grid is the scale's lr and 3x below and above it (the paper's two rates
are 2.7x apart), since a much shorter run at a much smaller batch wants other rates than the paper's.

Claims tested (``claims``): both work as well, each at its best lr; GAP needs a lower lr than the class token.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from ..results import (PAPER, claim_entry, load_run, repo_relative, results_dir, save_figure, seed_stats,
                       verdict_below)
from ..scales import Scale, get_scale
from . import (FEWSHOT_SHOTS, VERDICT_WORDS, ProbedPretraining, RunSet, cost_columns, preset_values, fewshot_top1, pretrain_departures_markdown, read_probes, train_and_probe,
               summary_markdown, train_fields, verdict_within, finish_note)

NAME = "03_cls_vs_gap"
POOLS = ("cls", "gap")
POOL_LABELS = {"cls": "class token", "gap": "GAP"}
SHOTS = FEWSHOT_SHOTS
# "Work as well": the best means of the two differ by at most this many points, or by at most the seed spread.
TOLERANCE_POINTS = 1.0

SAME_CLAIM = ("Class token and global average pooling work equally well, each at its own best learning rate "
              "(App. D.3, Fig. 9)")
LR_CLAIM = "Global average pooling needs a lower learning rate than the class token (App. D.3, Fig. 9)"

PRESETS = {
    "smoke": dict(model="ViT-XXS/8", image_size=32, batch_size=32, steps=8, warmup_steps=2, lrs=(3e-4, 1e-3),
                  seeds=(0,), probes=1, fewshot_max_train=200),
    # Sized from measured throughput on 2 cores (ViT-XXS/4 at ~1100 images/s at 32 px; benchmarks/RESULTS.md):
    # 18 runs of 600 steps x 128 images is ~21 min of training, plus the probes along the way.
    "cpu": dict(model="ViT-XXS/4", image_size=32, batch_size=128, steps=600, warmup_steps=60,
                lrs=(7e-4, 2e-3, 6e-3), seeds=(0, 1, 2), probes=3, fewshot_max_train=5000),
    "gpu": dict(model="ViT-Ti/4", image_size=32, batch_size=512, steps=3000, warmup_steps=300,
                lrs=(3e-4, 1e-3, 3e-3), seeds=(0, 1, 2), probes=3, fewshot_max_train=10000),
}


def run_name(pool: str, lr: float) -> str:
    """'GAP @ lr 0.002': how a (pool, lr) group is named in claims, tables and figures."""
    return f"{POOL_LABELS[pool]} @ lr {lr:g}"


@dataclass(frozen=True)
class Config(ProbedPretraining):
    """What notebook 03 runs at one scale: the shared pre-training budget plus this experiment's lr grid,
    seeds and probes."""

    lrs: tuple               # the learning-rate grid, the same for both pools
    seeds: tuple             # training seeds (at least 3 outside smoke)
    probes: int              # evenly spaced probes along training, besides the one at the end

    def train_scale(self, lr: float) -> Scale:
        """The scale's preset with this experiment's model, budget and one lr of the grid."""
        return self.scale_with_budget(lr)

    @property
    def probe_steps(self) -> tuple[int, ...]:
        """The intermediate probe steps: evenly spaced, on multiples of the logging interval (where ``train``
        calls back), strictly inside the run."""
        every = self.scale.log_every
        steps = {round(self.steps * i / (self.probes + 1) / every) * every for i in range(1, self.probes + 1)}
        return tuple(sorted(s for s in steps if 0 < s < self.steps))

    def budget(self) -> str:
        runs = len(POOLS) * len(self.lrs) * len(self.seeds)
        return (f"{len(POOLS)} pools x {len(self.lrs)} lrs {list(self.lrs)} x {len(self.seeds)} seeds = {runs} "
                f"training runs x {self.steps} steps x batch {self.batch_size} = {runs * self.steps} steps, "
                f"{runs * self.steps * self.batch_size:,} images ({self.model} at {self.image_size} px); probed at "
                f"steps {list(self.probe_steps) + [self.steps]}")


def get_config(scale: str = "cpu", *, seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
               **overrides) -> Config:
    """The settings of notebook 03 at ``scale``; ``overrides`` (model, image_size, batch_size, steps,
    warmup_steps, lrs, probes, fewshot_max_train) replace the preset's, None keeps it; unknown keys are errors."""
    if scale not in PRESETS:
        raise ValueError(f"notebook 03 runs at {sorted(PRESETS)}; at 'paper' scale Fig. 9 needs JFT-300M")
    preset = get_scale(scale)
    values = preset_values(PRESETS, scale, overrides, what="notebook 03", seed_fields={"seeds": seeds})
    values["lrs"] = tuple(float(lr) for lr in values["lrs"])
    return Config(scale=preset, data_dir=data_dir if data_dir is not None else preset.data_dir, **values)


def settings_markdown(config: Config) -> str:
    """Where this notebook's pre-training departs from the paper (at the middle lr of the grid)."""
    return pretrain_departures_markdown(config.train_scale(sorted(config.lrs)[len(config.lrs) // 2]))


@dataclass(frozen=True)
class RunRecord:
    pool: str        # cls | gap
    lr: float
    seed: int
    run_dir: Path


class Runs(RunSet):
    """The runs of one execution of notebook 03 (``RunRecord`` each), with where its results go."""


def run(scale: str, seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
        out_dir: str | Path = "../results", device: str = "auto", **overrides) -> Runs:
    """Pre-train the ViT with each pool at each lr of the grid and each seed, probing along training.
    Runs that finished before (with the same probes) are found by their config and not trained again."""
    from ..train import TrainConfig

    config = get_config(scale, seeds=seeds, data_dir=data_dir, **overrides)
    runs = Runs(config, results_dir(NAME, scale, out_dir))
    print(config.budget(), flush=True)
    for seed in config.seeds:
        for pool in POOLS:
            for lr in config.lrs:
                fields = train_fields(config.train_scale(lr), "pretrain", "vit", data_dir=config.data_dir,
                                      out_dir=runs.out / "runs", device=device, seed=seed, eval_every=0)
                fields["model_overrides"] = {**fields["model_overrides"], "pool": pool}
                run_dir = train_and_probe(TrainConfig(**fields), config.probe, label=f"{run_name(pool, lr)} seed {seed}",
                                          at_steps=config.probe_steps, device=device)
                runs.records.append(RunRecord(pool, lr, seed, run_dir))
    return runs


# --- numbers ------------------------------------------------------------------------------------------

def _fewshot(records: Sequence[RunRecord]) -> list[float]:
    return [fewshot_top1(r.run_dir, SHOTS) for r in records]


def group_stats(runs: Runs) -> dict[tuple[str, float], list]:
    """``{(pool, lr): [mean, std, seeds]}`` of the final 5-shot linear top-1 (%)."""
    return {(p, lr): seed_stats(_fewshot(runs.select(pool=p, lr=lr)))
            for p in POOLS for lr in runs.config.lrs if runs.select(pool=p, lr=lr)}


def best_lr(stats: dict[tuple[str, float], list], pool: str) -> float:
    """The lr of the grid with the highest mean 5-shot accuracy for ``pool``."""
    return max((lr for p, lr in stats if p == pool), key=lambda lr: stats[(pool, lr)][0])


def claims(runs: Runs) -> list[dict]:
    """The two claims of App. D.3, with ours per (pool, lr) and verdicts computed from them.

    - both work as well: the best lr of each pool (highest mean 5-shot accuracy); holds when their means
      differ by at most max(``TOLERANCE_POINTS``, the seed spread of the difference) (``verdict_within``).
    - GAP needs a lower lr: with b_cls and b_gap the best lrs, holds when b_gap < b_cls and GAP at b_gap
      beats GAP at b_cls by more than the seed spread (undecided within it); when b_gap >= b_cls it does not
      hold if GAP at b_gap beats GAP at every lr below b_cls by more than the spread, else undecided.
    """
    config, stats = runs.config, group_stats(runs)
    if not all(any(p == pool for p, _ in stats) for pool in POOLS):
        return []
    undecidable = "smoke scale: a few steps on a few hundred images test the plumbing, not the claim"
    named = {run_name(*key): s for key, s in stats.items()}
    metric = (f"CIFAR-10 {SHOTS}-shot linear top-1 (%) of the pre-logits representation after {config.steps} steps, "
              f"{config.model} at {config.image_size} px")
    ours = {run_name(*key): _fewshot(runs.select(pool=key[0], lr=key[1])) for key in stats}
    b_cls, b_gap = best_lr(stats, "cls"), best_lr(stats, "gap")
    same = verdict_within({run_name("cls", b_cls): stats[("cls", b_cls)], run_name("gap", b_gap): stats[("gap", b_gap)]},
                          tolerance=TOLERANCE_POINTS, decidable=config.decidable, why_undecidable=undecidable)
    out = [claim_entry(SAME_CLAIM, "Fig. 9: both reach about the same 5-shot ImageNet accuracy (class token at "
                       f"lr {PAPER['fig9/cls/lr'].value:g}, GAP at {PAPER['fig9/gap/lr'].value:g})", metric,
                       {k: v for k, v in ours.items() if k in (run_name("cls", b_cls), run_name("gap", b_gap))},
                       (same[0], f"best lrs: class token {b_cls:g}, GAP {b_gap:g}; {same[1]}"))]
    if not config.decidable:
        lr_verdict = (None, f"{undecidable} (best lrs: class token {b_cls:g}, GAP {b_gap:g})")
    elif b_gap < b_cls:
        holds, why = verdict_below(named, run_name("gap", b_cls), run_name("gap", b_gap))
        lr_verdict = (holds, f"GAP is best at {b_gap:g}, below the class token's {b_cls:g}; {why}")
    else:
        lower = [lr for lr in config.lrs if lr < b_cls and ("gap", lr) in stats]
        if not lower:
            lr_verdict = (None, f"both are best at the grid's lowest lr or GAP higher (class token {b_cls:g}, GAP "
                                f"{b_gap:g}); the grid has no lr below the class token's best")
        else:
            challenger = max(lower, key=lambda lr: stats[("gap", lr)][0])
            beaten, why = verdict_below(named, run_name("gap", challenger), run_name("gap", b_gap))
            lr_verdict = (False if beaten else None,
                          f"GAP is best at {b_gap:g}, not below the class token's {b_cls:g}; {why}")
    out.append(claim_entry(LR_CLAIM, f"App. D.3: class token at {PAPER['fig9/cls/lr'].value:g}; GAP worse at "
                           f"{PAPER['fig9/gap/lr_too_high'].value:g}, works at {PAPER['fig9/gap/lr'].value:g}",
                           metric, {k: v for k, v in ours.items() if k.startswith(POOL_LABELS["gap"])}, lr_verdict))
    return out


def table(runs: Runs) -> pd.DataFrame:
    """One row per (pool, lr): final 5-shot linear and classifier test top-1 over seeds, whether it is the
    pool's best lr, the paper's lr and the claims' verdicts, cost and provenance."""
    found = claims(runs)
    verdicts = "; ".join(f"claim: {c['claim']} — ours: {VERDICT_WORDS[c['holds']]}" for c in found)
    stats = group_stats(runs)
    rows = []
    for (pool, lr), few in stats.items():
        records = runs.select(pool=pool, lr=lr)
        loaded = [load_run(r.run_dir) for r in records]
        top1 = seed_stats([100 * r["test_accuracy"] for r in loaded])
        rows.append({
            "pool": POOL_LABELS[pool], "lr": f"{lr:g}", "best lr of this pool": lr == best_lr(stats, pool), "seeds": few[2],
            f"{SHOTS}-shot linear top-1 (%)": few[0], f"{SHOTS}-shot std (points)": few[1],
            "test top-1 (%)": top1[0], "test top-1 std (points)": top1[1],
            "paper lr": f"{PAPER[f'fig9/{pool}/lr'].value:g}",
            **cost_columns(loaded),
            "paper": verdicts or "—",
            "run dirs": "; ".join(repo_relative(r.run_dir) for r in records),
        })
    return pd.DataFrame(rows)


def table_note(runs: Runs) -> str:
    c = runs.config
    note = (f"{SHOTS}-shot linear top-1: a ridge probe (lambda 2^10) on the frozen pre-logits features, {SHOTS} "
            f"training images per class drawn with sampling seeds 0, 1, 2 (their mean per run); mean ± std over "
            f"{len(c.seeds)} training seed(s). Test top-1: the trained classifier at the end. Every run: {c.model} at "
            f"{c.image_size} px, {c.steps} steps of batch {c.batch_size}; probed at steps {list(c.probe_steps)} and at the end "
            f"('train min / run' leaves the probes out). The paper's lrs are for ViT-B on JFT-300M at batch 4096; ours "
            "are the scale's lr and 3x below and above it. ")
    return finish_note(note, c, cifar10="The probe's data set is the training set (CIFAR-10, the JPEG copy, quality ~75).")


def curves(runs: Runs) -> pd.DataFrame:
    """Every probe point: pool, lr, seed, step, 5-shot linear top-1 (%) and classifier test top-1 (%)."""
    rows = [{"pool": POOL_LABELS[r.pool], "lr": r.lr, "seed": r.seed, "step": p["step"],
             f"{SHOTS}-shot linear top-1 (%)": p["fewshot"][str(SHOTS)]["mean"],
             "classifier test top-1 (%)": p["classifier_test_top1"]}
            for r in runs.records for p in read_probes(r.run_dir)]
    return pd.DataFrame(rows)


def plot(runs: Runs) -> Path:
    """``accuracy_vs_steps.png`` (Fig. 9): 5-shot linear and classifier test top-1 against training step, one
    line per (pool, lr): colour = lr, solid = class token, dashed = GAP; mean over seeds, bars = one std."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curves(runs)
    metrics = [f"{SHOTS}-shot linear top-1 (%)", "classifier test top-1 (%)"]
    colours = dict(zip(runs.config.lrs, plt.get_cmap("viridis")([0.1, 0.5, 0.85, 0.3, 0.7][:len(runs.config.lrs)])))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, metrics):
        for (pool, lr), group in points.groupby(["pool", "lr"], sort=False):
            by_step = group.groupby("step")[metric].agg(["mean", "std"]).reset_index()
            ax.errorbar(by_step["step"], by_step["mean"], yerr=by_step["std"].fillna(0), marker="o", capsize=3,
                        color=colours.get(lr), linestyle="-" if pool == POOL_LABELS["cls"] else "--",
                        label=f"{pool}, lr {lr:g}")
        ax.set(xlabel="training step", ylabel=metric, title=metric.replace(" (%)", ""))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    c = runs.config
    fig.suptitle(f"notebook 03, scale {c.scale.name}: class token vs GAP (Fig. 9), {c.model}, "
                 f"{len(c.seeds)} seed(s)", fontsize=10)
    fig.tight_layout()
    out = runs.out / "accuracy_vs_steps.png"
    return save_figure(fig, out)


def summary(runs: Runs, found: Sequence[dict]) -> str:
    """A closing paragraph in Markdown, generated from the claims' numbers and verdicts."""
    c = runs.config
    return summary_markdown(f"scale `{c.scale.name}`, {c.model} at {c.image_size} px, {c.steps} steps, lrs "
                            f"{list(c.lrs)}, seeds {list(c.seeds)}", runs.first_run(), found,
                            decidable=c.decidable)


__all__ = ["NAME", "POOLS", "Config", "RunRecord", "Runs", "get_config", "settings_markdown", "run", "group_stats",
           "best_lr", "claims", "table", "table_note", "curves", "plot", "summary"]

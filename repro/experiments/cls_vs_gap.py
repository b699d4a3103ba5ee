"""Notebook 03: class token vs global average pooling (App. D.3, Fig. 9).

The same ViT is pre-trained with a class token (the head reads its output, Eq. 4) and with global average
pooling of the patch tokens after the final LayerNorm (no class token; the official ``classifier="gap"``),
each over a grid of learning rates a factor 2 apart (the paper: the class token at 8e-4; GAP tried at 8e-4 and
3e-4, working at the lower). Each pooling's best lr is chosen on the held-out split. Like Fig. 9, accuracy is
followed along training: the 5-shot linear accuracy of the frozen representation (``repro.fewshot``) and the
trained classifier's test top-1, probed at a few steps of the very same runs (``train``'s ``on_step`` hook, via
``repro.experiments.probes.train_and_probe``) and at the end.

Departures: a small ViT trained from scratch on CIFAR-10 at 32 px, probed on CIFAR-10, instead of ViT-B on
JFT-300M probed on ImageNet; the grid is centred on this scale's own best rate (a much shorter run at a much
smaller batch wants other rates than the paper's), with steps of 2 so that the paper's 2.7x can show.

Claims tested (``claims``): both work as well, each at its best lr; GAP needs a lower lr than the class token.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd

from ..claims import (VERDICT_WORDS, Verdict, at_scale, claim_entry, needs_next_run, requirements_unmet, seed_stats,
                      verdict_above, verdict_equivalent)
from ..figures import plot_claims as draw_claims, pyplot, save_figure
from ..paper import PAPER
from ..paths import repo_relative
from ..progress import RunProgress
from ..runconfig import TrainConfig
from ..rundir import load_run
from ..scales import get_scale
from ..summary import curve_sentence, curve_status, epochs_text
from .probes import (FEWSHOT_SHOTS, draws_text, fewshot_top1, Probe, read_probes, support_draws, support_std,
                     train_and_probe)
from .reporting import cost_columns, finish_note, RunSet, summary_markdown, with_csv_only
from .settings import (apply_preset, experiment_out, preset_of, pretrain_departures_markdown, pretraining_run,
                       ProbedPretraining)

NAME = "03_cls_vs_gap"
POOLS = ("cls", "gap")
POOL_LABELS = {"cls": "class token", "gap": "GAP"}
SHOTS = FEWSHOT_SHOTS
# "Work as well": the two poolings, each at its best lr, differ by less than this many points of 5-shot accuracy (the
# 90% interval of the paired difference within +-MARGIN). Why this size: the same as notebook 02's, ~4% of the ~35%
# 5-shot scores at cpu scale, the relative size of the smallest gap the paper calls a difference (Table 8's none).
MARGIN_POINTS = 1.5

SAME_CLAIM = (f"Class token and global average pooling work equally well, each at its own best learning rate: within "
              f"+-{MARGIN_POINTS:g} points (App. D.3, Fig. 9)")
LR_CLAIM = "Global average pooling needs a lower learning rate than the class token (App. D.3, Fig. 9)"

# This experiment's own choices per scale: ``train`` is what its pre-training changes from the scale's
# (repro.scales), the rest its own knobs.
PRESETS = {
    "smoke": dict(train=dict(steps=8, warmup_steps=2), lrs=(3e-4, 1e-3), seeds=(0,), probes=1, fewshot_max_train=200),
    # A grid of 5 lrs a factor 2 apart around both poolings' best (2e-3 at 600 steps before), wide enough to see the
    # paper's 8e-4 vs 3e-4 (2.7x): 2 pools x 5 lrs x 3 seeds = 30 runs of 500 steps x 128 images. Measured at 32 px
    # on 2 cores (2026-12-04, Intel Xeon): ViT-XXS/4 ~1,150 images/s in the loop: 30 x 56 s = 28 min, plus 3 probes
    # per run (2 along training, 1 at the end; 5,000 support-pool + 10,000 test images, ~4.5 s each): ~7 min. ~36 min.
    "cpu": dict(train=dict(model="ViT-XXS/4", steps=500, warmup_steps=50),
                lrs=(5e-4, 1e-3, 2e-3, 4e-3, 8e-3), seeds=(0, 1, 2), probes=2, fewshot_max_train=5000),
    "gpu": dict(train=dict(steps=3000, warmup_steps=300),
                lrs=(2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3), seeds=(0, 1, 2), probes=3, fewshot_max_train=10000),
}


def run_name(pool: str, lr: float) -> str:
    """'GAP @ lr 0.002': how a (pool, lr) group is named in claims, tables and figures."""
    return f"{POOL_LABELS[pool]} @ lr {lr:g}"


@dataclass(frozen=True)
class Config(ProbedPretraining):
    """What notebook 03 runs at one scale: the pre-training run every (pool, lr, seed) varies, the probe, the lr
    grid, seeds and probes along training."""

    lrs: tuple               # the learning-rate grid, the same for both pools
    seeds: tuple             # training seeds (at least 3 outside smoke)
    probes: int              # evenly spaced probes along training, besides the one at the end

    def pool_run(self, pool: str, lr: float, seed: int) -> TrainConfig:
        """The run of one pool at one lr of the grid and one seed."""
        return self.run_config(lr=lr, seed=seed, model_overrides={"pool": pool})

    @property
    def probe_steps(self) -> tuple[int, ...]:
        """The intermediate probe steps: evenly spaced, on multiples of the logging interval (where ``train``
        calls back), strictly inside the run."""
        every = self.train.log_every
        steps = {round(self.steps * i / (self.probes + 1) / every) * every for i in range(1, self.probes + 1)}
        return tuple(sorted(s for s in steps if 0 < s < self.steps))

    def budget(self) -> str:
        runs = len(POOLS) * len(self.lrs) * len(self.seeds)
        return (f"{len(POOLS)} pools x {len(self.lrs)} lrs {list(self.lrs)} x {len(self.seeds)} seeds = {runs} "
                f"training runs x {self.steps} steps x batch {self.batch_size} = {runs * self.steps} steps, "
                f"{runs * self.steps * self.batch_size:,} images ({self.model} at {self.image_size} px); probed at "
                f"steps {list(self.probe_steps) + [self.steps]}")


def get_config(scale: str = "cpu", *, seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
               out_dir: str | Path | None = None, device: str = "auto", model: Optional[str] = None,
               image_size: Optional[int] = None, batch_size: Optional[int] = None, steps: Optional[int] = None,
               warmup_steps: Optional[int] = None, lrs: Optional[Sequence[float]] = None, probes: Optional[int] = None,
               fewshot_max_train: Optional[int] = None) -> Config:
    """The runs of notebook 03 at ``scale``: the preset, with any parameter that is not None in its place."""
    preset = preset_of(PRESETS, scale, "notebook 03 runs at {scales}; at 'paper' scale Fig. 9 needs JFT-300M")
    changes, knobs = apply_preset(
        preset, what="notebook 03", seeds=seeds, lrs=lrs, probes=probes, fewshot_max_train=fewshot_max_train,
        train=dict(model=model, image_size=image_size, batch_size=batch_size, steps=steps, warmup_steps=warmup_steps))
    out = experiment_out(NAME, scale, out_dir)
    # eval_every=0: the probes along training take the place of held-out evaluations; each pool's lr is chosen on
    # the held-out evaluation at the end.
    train = pretraining_run(get_scale(scale), changes, data_dir=data_dir, out=out, device=device, eval_every=0,
                            seed=knobs["seeds"][0] if knobs["seeds"] else 0)
    return Config(scale=get_scale(scale), train=train, out=out, lrs=tuple(float(lr) for lr in knobs["lrs"]),
                  seeds=knobs["seeds"], probes=knobs["probes"], probe=Probe.of_run(train, knobs["fewshot_max_train"]))


def settings_markdown(config: Config) -> str:
    """Where this notebook's pre-training departs from the paper (at the middle lr of the grid)."""
    return pretrain_departures_markdown(config.scale.name,
                                        config.run_config(lr=sorted(config.lrs)[len(config.lrs) // 2]))


@dataclass(frozen=True)
class RunRecord:
    pool: str        # cls | gap
    lr: float
    seed: int
    run_dir: Path


class Runs(RunSet):
    """The runs of one execution of notebook 03 (``RunRecord`` each), with where its results go."""


def run(config: Config) -> Runs:
    """Pre-train the ViT with each pool at each lr of the grid and each seed, probing along training.
    Runs that finished before (with the same probes) are found by their config and not trained again."""
    runs = Runs(config, config.out)
    progress = RunProgress(len(POOLS) * len(config.lrs) * len(config.seeds), "training runs")
    for seed in config.seeds:
        for pool in POOLS:
            for lr in config.lrs:
                run_dir = train_and_probe(config.pool_run(pool, lr, seed), config.probe,
                                          label=f"{run_name(pool, lr)} seed {seed}", at_steps=config.probe_steps,
                                          progress=progress)
                runs.records.append(RunRecord(pool, lr, seed, run_dir))
    return runs


# --- numbers ------------------------------------------------------------------------------------------

def _fewshot(records: Sequence[RunRecord]) -> dict[int, float]:
    """``{seed: final 5-shot linear top-1 (%)}``."""
    return {r.seed: fewshot_top1(r.run_dir, SHOTS) for r in records}


def group_stats(runs: Runs) -> dict[tuple[str, float], list]:
    """``{(pool, lr): [mean, std, seeds]}`` of the final 5-shot linear top-1 (%)."""
    return {(p, lr): seed_stats(_fewshot(runs.select(pool=p, lr=lr)).values())
            for p in POOLS for lr in runs.config.lrs if runs.select(pool=p, lr=lr)}


def heldout_top1(runs: Runs, pool: str, lr: float) -> float:
    """The classifier's held-out top-1 (%) at the end, mean over seeds: what each pool's lr is chosen on."""
    records = runs.select(pool=pool, lr=lr)
    return sum(100 * load_run(r.run_dir)["val_accuracy"] for r in records) / len(records)


def best_lr(runs: Runs, pool: str, below: Optional[float] = None) -> Optional[float]:
    """The lr of the grid (below ``below`` when given) with the highest mean held-out top-1 for ``pool``: chosen on
    the held-out split, never on the test numbers the claims read; None when the grid has no such lr."""
    lrs = [lr for lr in runs.config.lrs if runs.select(pool=pool, lr=lr) and (below is None or lr < below)]
    return max(lrs, key=lambda lr: heldout_top1(runs, pool, lr)) if lrs else None


def claims(runs: Runs) -> list[dict]:
    """The two claims of App. D.3, with ours per (pool, lr) and seed, and verdicts from ``repro.claims``.

    Each pool's best lr is chosen on the held-out split (``best_lr``); the claims read the 5-shot scores.
    - both work as well: class token at its best lr vs GAP at its best, within +-``MARGIN_POINTS``, paired by
      seed (``verdict_equivalent``).
    - GAP needs a lower lr (the paper: GAP worse at the class token's 8e-4, works at 3e-4): GAP at its best lr
      below the class token's best, minus GAP at the class token's best lr, above zero (``verdict_above``);
      undecided when the grid has no lr below the class token's best.
    """
    config = runs.config
    if not all(runs.select(pool=pool) for pool in POOLS):
        return []
    metric = (f"CIFAR-10 {SHOTS}-shot linear top-1 (%) of the pre-logits representation after {config.steps} steps, "
              f"{config.model} at {config.image_size} px; each pool's lr chosen on the held-out classifier top-1")
    b_cls, b_gap = best_lr(runs, "cls"), best_lr(runs, "gap")

    def sample(pool, lr):
        return _fewshot(runs.select(pool=pool, lr=lr))

    def decide(verdict, groups):
        draws = [support_draws(r.run_dir) for pool, lr in groups for r in runs.select(pool=pool, lr=lr)]
        return at_scale(needs_next_run(verdict, requirements_unmet(support_draws=draws)), config.decidable)

    chosen = f"held-out choice: class token {b_cls:g}, GAP {b_gap:g}"
    same = verdict_equivalent({run_name("cls", b_cls): sample("cls", b_cls), run_name("gap", b_gap): sample("gap", b_gap)},
                              margin=MARGIN_POINTS)
    out = [claim_entry(SAME_CLAIM, "Fig. 9: both reach about the same 5-shot ImageNet accuracy (class token at "
                       f"lr {PAPER['fig9/cls/lr'].value:g}, GAP at {PAPER['fig9/gap/lr'].value:g})", metric,
                       {run_name("cls", b_cls): sample("cls", b_cls), run_name("gap", b_gap): sample("gap", b_gap)},
                       decide(Verdict(same.holds, f"{chosen}; {same.why}", same.difference),
                              [("cls", b_cls), ("gap", b_gap)]),
                       rule=f"the paired difference's 90% interval within +-{MARGIN_POINTS:g} points holds, wholly "
                            "outside does not hold; the margin is ~4% of this scale's scores, the relative size of "
                            "Table 8's gap to no position embedding")]
    lower = best_lr(runs, "gap", below=b_cls)
    if lower is None:
        lr_verdict = Verdict(None, f"{chosen}; the grid has no lr below the class token's best {b_cls:g} to compare "
                                   "GAP at")
        ours = {run_name("gap", b_cls): sample("gap", b_cls)}
        groups = [("gap", b_cls)]
    else:
        found = verdict_above(sample("gap", lower), sample("gap", b_cls),
                              names=(run_name("gap", lower), run_name("gap", b_cls)))
        lr_verdict = Verdict(found.holds, f"{chosen}; GAP's best lr below it (held-out): {lower:g}; {found.why}",
                             found.difference)
        ours = {run_name("gap", lower): sample("gap", lower), run_name("gap", b_cls): sample("gap", b_cls)}
        groups = [("gap", lower), ("gap", b_cls)]
    out.append(claim_entry(LR_CLAIM, f"App. D.3: class token at {PAPER['fig9/cls/lr'].value:g}; GAP worse at "
                           f"{PAPER['fig9/gap/lr_too_high'].value:g}, works at {PAPER['fig9/gap/lr'].value:g}",
                           metric, ours, decide(lr_verdict, groups),
                           rule="GAP at its best lr below the class token's best, minus GAP at the class token's "
                                "best, paired by seed: interval above zero holds, below zero does not hold"))
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
            "pool": POOL_LABELS[pool], "lr": f"{lr:g}", "held-out top-1 (%)": heldout_top1(runs, pool, lr),
            "chosen on held-out": lr == best_lr(runs, pool), "seeds": few[2],
            f"{SHOTS}-shot linear top-1 (%)": few[0], f"{SHOTS}-shot std (points)": few[1],
            f"{SHOTS}-shot std over support draws (points)": support_std([r.run_dir for r in records]),
            "test top-1 (%)": top1[0], "test top-1 std (points)": top1[1],
            "paper lr": f"{PAPER[f'fig9/{pool}/lr'].value:g}",
            **cost_columns(loaded),
            "paper": verdicts or "—",
            "run dirs": "; ".join(repo_relative(r.run_dir) for r in records),
        })
    return with_csv_only(pd.DataFrame(rows), "params (M)", "train min / run")


def table_note(runs: Runs) -> str:
    c = runs.config
    note = (f"{SHOTS}-shot linear top-1: a ridge probe (lambda 2^10) on the frozen pre-logits features, {SHOTS} "
            f"training images per class {draws_text([r.run_dir for r in runs.records])}; mean ± std over "
            f"{len(c.seeds)} training seed(s). Test top-1: the trained classifier at the end. Held-out top-1: the "
            "classifier on the held-out 2% of the training split, on which each pool's lr is chosen ('chosen on "
            f"held-out'). Every run: {c.model} at {c.image_size} px, {c.steps} steps of batch {c.batch_size}; probed at "
            f"steps {list(c.probe_steps)} and at the end ('train min / run' leaves the probes out). The paper's lrs are "
            f"for ViT-B on JFT-300M at batch 4096; ours are the grid {', '.join(f'{lr:g}' for lr in c.lrs)}. ")
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
    plt = pyplot()

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
    fig.suptitle(f"notebook 03, scale {c.scale.name}: class token vs GAP (Fig. 9), {c.model} on CIFAR-10 at "
                 f"{c.image_size} px, mean ± std over {len(c.seeds)} seed(s)", fontsize=10)
    fig.tight_layout()
    out = runs.out / "accuracy_vs_steps.png"
    return save_figure(fig, out)


def summary(runs: Runs, found: Sequence[dict]) -> str:
    """A closing paragraph in Markdown, generated from the claims' numbers and verdicts."""
    c = runs.config
    return summary_markdown(f"scale `{c.scale.name}`, {c.model} at {c.image_size} px, {c.steps} steps, lrs "
                            f"{list(c.lrs)}, seeds {list(c.seeds)}", runs.first_run(), found,
                            decidable=c.decidable)



def findings(runs: Runs) -> dict:
    """What the paper found and the measured reasons why ours may differ, for ``results/SUMMARY.md``."""
    c = runs.config
    why = [f"Every run is {c.model} trained {c.steps} steps of {c.batch_size} from scratch on CIFAR-10 at "
           f"{c.image_size} px ({epochs_text([r.run_dir for r in runs.records[:1]])}); the paper trains ViT-B on "
           "JFT-300M at batch 4096, where its lrs 8e-4 and 3e-4 apply.",
           curve_sentence(curve_status([r.run_dir for r in runs.records]), "runs")]
    if all(runs.select(pool=p) for p in POOLS):
        why.append(f"Chosen on the held-out split: class token at lr {best_lr(runs, 'cls'):g}, GAP at "
                   f"{best_lr(runs, 'gap'):g}, on the grid {', '.join(f'{lr:g}' for lr in c.lrs)} "
                   f"({max(c.lrs) / min(c.lrs):.1f}x from end to end).")
    return {"title": "Class token vs global average pooling (App. D.3, Fig. 9)",
            "paper": "A class token and global average pooling work equally well, but need different learning rates: "
                     "the class token at 8e-4, GAP worse there and working at 3e-4.",
            "why": why}


def plot_claims(runs: Runs, found: Sequence[dict]) -> Optional[Path]:
    """``claims.png``: every claim's arms, each seed a dot, the means with their 90% intervals."""
    c = runs.config
    return draw_claims(found, runs.out / "claims.png",
                       title=f"notebook 03, scale {c.scale.name}: class token vs GAP, {c.model} on CIFAR-10 at {c.image_size} px, "
                             f"{SHOTS}-shot linear top-1")

__all__ = ["plot_claims", "findings", "NAME", "POOLS", "Config", "RunRecord", "Runs", "get_config", "settings_markdown", "run", "group_stats",
           "best_lr", "claims", "table", "table_note", "curves", "plot", "summary"]

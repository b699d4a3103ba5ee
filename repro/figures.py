"""Figures drawn from run files (never notebook state) and saved as PNG: learning curves, every seed of every
claim, labels placed without overlaps. matplotlib is imported inside the drawing functions: it costs about half a
second, which a run that draws nothing should not pay (``pyplot()``)."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable, Optional, Sequence

import pandas as pd

from .claims import CONFIDENCE, VERDICT_WORDS, mean_interval
from .rundir import read_metrics


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported on first use (about half a second)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def curve_records(run_dirs: dict[str, Sequence[str | Path]]) -> pd.DataFrame:
    """Training and evaluation points of labelled runs, one row per logged point.

    ``run_dirs`` maps a label (a model name) to its runs (one per seed). Columns: ``label``, ``run``,
    ``step``, ``split`` ("train" for the running training accuracy, "val"/"test" for evaluations),
    ``top1`` (%), ``loss``.
    """
    rows = []
    for label, dirs in run_dirs.items():
        for run_dir in dirs:
            for r in read_metrics(run_dir):
                if r.get("event") == "train" or (r.get("event") == "eval" and r.get("split") in ("val", "test")):
                    rows.append({"label": label, "run": Path(run_dir).name, "step": r["step"],
                                 "split": r.get("split", "train"), "top1": 100 * r["accuracy"], "loss": r["loss"]})
    return pd.DataFrame(rows, columns=["label", "run", "step", "split", "top1", "loss"])


def plot_curves(panels: dict[str, dict[str, Sequence[str | Path]]], out_path: str | Path, *, title: str,
                chance_top1: Optional[float | dict[str, float]] = None) -> Path:
    """One panel per stage (e.g. pre-training, fine-tuning): top-1 (%) against step on linear axes.

    ``panels`` maps a panel title to ``{model name: [run dirs, one per seed]}``. Lines are the running
    training accuracy (mean over seeds, band = one std when there are several); markers are held-out
    ("val") and test evaluations. ``chance_top1`` (%, one value or one per panel title) draws the chance
    level. Saved as PNG.
    """
    plt = pyplot()
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.9), squeeze=False)
    for ax, (panel_title, run_dirs) in zip(axes[0], panels.items()):
        points = curve_records(run_dirs)
        palette = dict(zip(run_dirs, sns.color_palette(n_colors=max(len(run_dirs), 1))))
        train = points[points["split"] == "train"]
        if len(train):
            sns.lineplot(data=train, x="step", y="top1", hue="label", palette=palette, errorbar="sd", ax=ax)
        for split, marker in (("val", "o"), ("test", "X")):
            evals = points[points["split"] == split]
            if len(evals):
                sns.scatterplot(data=evals, x="step", y="top1", hue="label", palette=palette, marker=marker,
                                s=60, ax=ax, legend=False)
        chance = chance_top1.get(panel_title) if isinstance(chance_top1, dict) else chance_top1
        if chance is not None:
            ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
            ax.annotate(f"chance ({chance:g}%)", (0, chance), xytext=(2, 3), textcoords="offset points",
                        xycoords=("axes fraction", "data"), fontsize=8, color="grey")
        ax.set(title=panel_title, xlabel="training step", ylabel="top-1 accuracy (%)", ylim=(0, 100))
        handles, labels = ax.get_legend_handles_labels()
        if handles:  # lines = training batches; markers = evaluations
            ax.legend(handles, labels, title="training acc. (o held-out, x test)", fontsize=8, title_fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out_path)


def plot_claims(found: Sequence[dict], out_path: str | Path, *, title: str,
                arms_of: Optional[Callable[[dict], Optional[Sequence[str]]]] = None) -> Optional[Path]:
    """``claims.png``: one panel per claim, every seed of every arm as a dot (a seed's dots joined across arms,
    since the arms are compared seed by seed), the arm's mean with its 90% t interval, the verdict in the title and
    the paper's statement under the axis. ``arms_of(entry)`` picks the arms to draw (None: skip the claim); by
    default every arm of a claim with at most six. Returns None when no claim has numbers to draw."""
    plt = pyplot()

    def default_arms(entry: dict) -> Optional[list]:
        arms = list(entry.get("per_seed") or {})
        return arms if 0 < len(arms) <= 6 else None

    panels = [(entry, list(arms)) for entry in found if (arms := (arms_of or default_arms)(entry))]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.0 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    colours = {True: "tab:green", False: "tab:red", None: "tab:grey"}
    for ax, (entry, arms) in zip(axes.flat, panels):
        per_seed = {arm: {int(k): v for k, v in entry["per_seed"][arm].items()} for arm in arms}
        seeds = sorted({s for values in per_seed.values() for s in values})
        for seed in seeds:  # one line per seed across the arms it has
            xs = [i for i, arm in enumerate(arms) if seed in per_seed[arm]]
            ax.plot(xs, [per_seed[arms[i]][seed] for i in xs], "o-", color="tab:blue", alpha=0.35, lw=0.8, ms=4)
        for i, arm in enumerate(arms):
            interval = mean_interval(per_seed[arm])
            error = ([[interval.mean - interval.low], [interval.high - interval.mean]] if interval.decidable else None)
            ax.errorbar([i + 0.12], [interval.mean], yerr=error, fmt="D", color="black", capsize=4, ms=5)
        ax.set_xticks(range(len(arms)), [textwrap.fill(a, 18) for a in arms], fontsize=7)
        ax.set_xlim(-0.5, len(arms) - 0.5)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(alpha=0.3, axis="y")
        verdict = VERDICT_WORDS[entry["holds"]]
        ax.set_title(textwrap.fill(entry["claim"], 52) + f"\nours: {verdict}", fontsize=8,
                     color=colours[entry["holds"]])
        ax.set_ylabel(textwrap.fill(entry["metric"].split(",")[0].split(" (")[0] + " (%)"
                                    if "(%)" in entry["metric"] else entry["metric"].split(",")[0], 40), fontsize=7)
        ax.annotate(textwrap.fill("paper: " + entry["paper"], 70), (0.0, -0.28), xycoords="axes fraction",
                    fontsize=6, va="top", color="dimgrey")
    fig.suptitle(f"{title}\nblue: each seed (joined across arms); black: mean and {CONFIDENCE:.0%} interval",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_path, dpi=100)


def place_labels(ax, labels: Sequence[tuple], fontsize: float = 6) -> None:
    """Label points ``(x, y, text, colour)`` in data coordinates so that no two labels overlap: each label takes
    the first of a few offsets around its point whose box (estimated from the text's length) is still free."""
    fig = ax.figure
    fig.canvas.draw()  # fixes the axes' transforms for the data -> pixel conversion
    scale = fig.dpi / 72.0
    height = 1.3 * fontsize * scale                       # px
    offsets = [(4, 3), (4, -10), (-4, 3), (-4, -10), (4, 12), (4, -19), (-4, 12), (-4, -19), (4, 21), (4, -28)]
    taken: list[tuple[float, float, float, float]] = []
    for x, y, text, colour in sorted(labels, key=lambda item: -item[1]):
        px, py = ax.transData.transform((x, y))
        width = 0.6 * fontsize * scale * len(text)
        for dx, dy in offsets:
            left = px + dx * scale if dx > 0 else px + dx * scale - width
            box = (left, py + dy * scale, left + width, py + dy * scale + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken):
                break
        taken.append(box)
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, color=colour,
                    ha="left" if dx > 0 else "right", va="bottom")


def save_figure(fig, out_path: str | Path, dpi: int = 100) -> Path:
    """Write a matplotlib figure to ``out_path`` (PNG, folders made) and close it: figures are files, never
    notebook state. Returns the path."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    pyplot().close(fig)
    return out_path



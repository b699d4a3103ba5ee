"""Run directories -> tables (CSV + Markdown), figures (PNG) and ``claims.json``.

Tables and figures are built only from the files that runs wrote
(``config.json``, ``metrics.jsonl``, ``final.json``, ``env.json``), never from
notebook state, so they can be rebuilt at any time from ``results/``. Verdicts
and ``claims.json`` belong to ``repro.claims``. Paths written into results are relative to the repository
(``repo_relative``), so results read the same in any clone.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import pandas as pd

from .fileio import read_jsonl


@dataclass(frozen=True)
class PaperNumber:
    """One number reported in the paper, with where it comes from and under which setting."""

    value: float
    source: str
    setting: str


# Reference numbers of the paper (arXiv 2010.11929). Keys are "<experiment>/<what>".
PAPER: dict[str, PaperNumber] = {
    # Table 2: fine-tuned top-1 (%) after pre-training on JFT-300M / ImageNet-21k.
    **{f"table2/{model}/{ds}": PaperNumber(v, "Table 2", f"{model}, fine-tuned at 384-512 px")
       for model, row in {
           "ViT-H/14 (JFT)": {"imagenet1k": 88.55, "cifar10": 99.50, "cifar100": 94.55,
                              "oxford_iiit_pet": 97.56, "oxford_flowers102": 99.68},
           "ViT-L/16 (JFT)": {"imagenet1k": 87.76, "cifar10": 99.42, "cifar100": 93.90,
                              "oxford_iiit_pet": 97.32, "oxford_flowers102": 99.74},
           "ViT-L/16 (I21k)": {"imagenet1k": 85.30, "cifar10": 99.15, "cifar100": 93.25,
                               "oxford_iiit_pet": 94.67, "oxford_flowers102": 99.61},
           "BiT-L R152x4 (JFT)": {"imagenet1k": 87.54, "cifar10": 99.37, "cifar100": 93.51,
                                  "oxford_iiit_pet": 96.62, "oxford_flowers102": 99.63},
       }.items() for ds, v in row.items()},
    # Table 8 (App. D.4): ViT-B/16, 5-shot linear ImageNet accuracy by position embedding.
    "table8/none": PaperNumber(61.38, "Table 8", "ViT-B/16, ImageNet 5-shot linear"),
    "table8/1d": PaperNumber(64.21, "Table 8", "ViT-B/16, ImageNet 5-shot linear"),
    "table8/2d": PaperNumber(64.00, "Table 8", "ViT-B/16, ImageNet 5-shot linear"),
    "table8/relative": PaperNumber(64.03, "Table 8", "ViT-B/16, ImageNet 5-shot linear"),
    # Table 8 (App. D.4), every cell with the paper's three decimals: "table8/<kind>/<placement>".
    **{f"table8/{kind}/{placement}": PaperNumber(v, "Table 8", f"ViT-B/16, ImageNet 5-shot linear, {kind} added "
                                                 f"at {placement.replace('_', ' ')}")
       for (kind, placement), v in {
           ("none", "stem"): 61.382, ("1d", "stem"): 64.206, ("2d", "stem"): 64.001, ("relative", "stem"): 64.032,
           ("1d", "every_layer"): 63.964, ("2d", "every_layer"): 64.046,
           ("1d", "every_layer_shared"): 64.292, ("2d", "every_layer_shared"): 64.022,
       }.items()},
    # App. D.3, Fig. 9: the pre-training learning rates with which each classifier works.
    "fig9/cls/lr": PaperNumber(8e-4, "App. D.3, Fig. 9", "class token: works at 8e-4"),
    "fig9/gap/lr": PaperNumber(3e-4, "App. D.3, Fig. 9", "global average pooling: works at 3e-4"),
    "fig9/gap/lr_too_high": PaperNumber(8e-4, "App. D.3, Fig. 9", "global average pooling: worse at the class "
                                        "token's 8e-4"),
    # Sec. 4.4, Fig. 5: ViT reaches the accuracy of a BiT ResNet with this many times less pre-training compute
    # (JFT-300M, averaged over 5 transfer data sets).
    "fig5/compute_ratio/low": PaperNumber(2.0, "Sec. 4.4, Fig. 5", "ViT vs BiT ResNets, JFT-300M, average-5"),
    "fig5/compute_ratio/high": PaperNumber(4.0, "Sec. 4.4, Fig. 5", "ViT vs BiT ResNets, JFT-300M, average-5"),
    # Sec. 4.6: masked patch prediction.
    "mpp/vit-b16-imagenet": PaperNumber(79.9, "Sec. 4.6", "ViT-B/16 MPP on JFT, fine-tuned on ImageNet"),
    # The two references of Sec. 4.6 are given relative to it ("a significant improvement of 2% to training
    # from scratch, but still 4% behind supervised pre-training"): 79.9 - 2 and 79.9 + 4.
    "mpp/scratch": PaperNumber(77.9, "Sec. 4.6", "ViT-B/16 trained from scratch on ImageNet (79.9 - 2)"),
    "mpp/supervised": PaperNumber(83.9, "Sec. 4.6", "ViT-B/16 supervised pre-training, fine-tuned on ImageNet "
                                  "(79.9 + 4)"),
}


def paper_number(key: str) -> Optional[PaperNumber]:
    """The paper's number for ``key`` (see ``PAPER``), or None when the paper has none."""
    return PAPER.get(key)


# The repository this package lives in; paths inside it are written relative to it.
REPO_ROOT = Path(__file__).resolve().parents[1]

# An absolute POSIX path (or a Windows drive path) inside free text, e.g. a data source's description.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])(?:/|[A-Za-z]:\\)[^\s'\",;:()\[\]]+")


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it (``results/01_.../runs/x``),
    otherwise relative to the repository through ``..``; never absolute, so committed files are portable."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return Path(os.path.relpath(resolved, REPO_ROOT)).as_posix()


def portable_text(text: str) -> str:
    """``text`` with every absolute path in it replaced by its repository-relative form (inside the repo)
    or by ``.../<last two parts>`` (outside, e.g. ``/data/sets/cifar10`` -> ``.../sets/cifar10``)."""
    def shorten(match: re.Match) -> str:
        path = Path(match.group(0))
        try:
            return path.resolve().relative_to(REPO_ROOT).as_posix()
        except ValueError:
            return ".../" + "/".join(path.parts[-2:])
    return _ABSOLUTE_PATH.sub(shorten, text)


def describe_data_source(record) -> Optional[str]:
    """A run's data source (the "start" event's ``data_source``) as one portable line, e.g.
    "local parquet $REPRO_DATA_DIR/cifar10 (train 49000, val 1000, test 10000 images)"."""
    if not record:
        return None
    if isinstance(record, str):  # runs written before the source became a record
        return portable_text(record)
    images = record.get("images") or {}
    counts = ", ".join(f"{split} {n}" for split, n in images.items())
    task = []  # a task selected from the data set (repro.data.get_datasets: classes, train_part)
    if record.get("classes") is not None:
        task.append("classes " + ", ".join(map(str, record["classes"])))
    if record.get("train_part"):
        task.append(f"{record['train_part']} part of train")
    details = "; ".join(task + ([f"{counts} images"] if counts else []))
    return portable_text(str(record.get("description", record.get("kind", "?")))) + (f" ({details})" if details else "")


def results_dir(experiment: str, scale: str, root: str | Path = "results") -> Path:
    """``<root>/<experiment>/<scale>/``, created."""
    path = Path(root) / experiment / scale
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_run(run_dir: str | Path) -> dict:
    """One run as a flat dict: its config, its final metrics (``val_accuracy``, ``test_accuracy``...), env."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    final_path = run_dir / "final.json"
    final = json.loads(final_path.read_text()) if final_path.exists() else {}
    env = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").exists() else {}
    row = {**config, "run_dir": repo_relative(run_dir), "finished": bool(final)}
    for split in ("val", "test"):
        if split in final:
            row[f"{split}_accuracy"] = final[split]["accuracy"]
            row[f"{split}_loss"] = final[split]["loss"]
    row["train_seconds"] = final.get("train_seconds")
    records = read_jsonl(run_dir / "metrics.jsonl")
    start = next((r for r in records if r.get("event") == "start"), {})
    row["data_source"] = describe_data_source(start.get("data_source"))
    row["params"] = start.get("params")
    train_records = [r for r in records if r.get("event") == "train"]
    if train_records:
        # Skip the first window (start-up, compilation) when it is not the only one.
        speeds = [r["images_per_s"] for r in train_records[1:]] or [train_records[0]["images_per_s"]]
        row["images_per_s"] = sum(speeds) / len(speeds)
    row["device_name"] = env.get("device_name")
    row["git_revision"] = env.get("git_revision")
    return row


def load_runs(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """Many runs as a DataFrame, one row each (see ``load_run``)."""
    return pd.DataFrame([load_run(d) for d in run_dirs])


def summarize_seeds(df: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metric`` over seeds, per group of ``by`` columns."""
    grouped = df.groupby(by, dropna=False)[metric]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": f"{metric}_mean", "std": f"{metric}_std", "count": "seeds"})


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub Markdown table (no extra dependency); floats with ``floatfmt``, missing values as '—'."""
    def cell(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "—"
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|")
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, *, note: str = "",
                floatfmt: str = ".2f") -> tuple[Path, Path]:
    """Write ``<name>.csv`` and ``<name>.md`` (the Markdown with ``note`` under the table, floats as ``floatfmt``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    df.to_csv(csv_path, index=False)
    md_path.write_text(to_markdown(df, floatfmt) + (f"\n{note.strip()}\n" if note else ""))
    return csv_path, md_path


def curve_records(run_dirs: dict[str, Sequence[str | Path]]) -> pd.DataFrame:
    """Training and evaluation points of labelled runs, one row per logged point.

    ``run_dirs`` maps a label (a model name) to its runs (one per seed). Columns: ``label``, ``run``,
    ``step``, ``split`` ("train" for the running training accuracy, "val"/"test" for evaluations),
    ``top1`` (%), ``loss``.
    """
    rows = []
    for label, dirs in run_dirs.items():
        for run_dir in dirs:
            for r in read_jsonl(Path(run_dir) / "metrics.jsonl"):
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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
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
    import textwrap

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .claims import CONFIDENCE, VERDICT_WORDS, mean_interval

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
    import matplotlib.pyplot as plt

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=dpi)
    plt.close(fig)
    return out_path


# --- cost: parameters and training FLOPs -----------------------------------------------------------------

def count_params(model_name: str, img_size: int, num_classes: int, overrides: Optional[dict] = None) -> int:
    """Parameters of a named variant at ``img_size`` (the position embeddings grow with the resolution)."""
    from .models import create_model

    model = create_model(model_name, num_classes=num_classes, img_size=img_size, **(overrides or {}))
    return sum(p.numel() for p in model.parameters())


def training_flops(model_name: str, img_size: int, num_classes: int, overrides: Optional[dict] = None, *,
                   batch: int = 1, steps: int = 1, probe_batch: int = 2) -> float:
    """FLOPs of ``steps`` training steps of ``batch`` images: one forward + backward counted by
    ``torch.utils.flop_counter.FlopCounterMode`` on CPU for ``probe_batch`` random images, scaled linearly.

    The counter counts matrix products and convolutions (2 FLOPs per multiply-add), forward and backward;
    norms, activations and the optimizer are left out (a few % for these models). Forward + backward is
    ~3x the forward (2.9-3.0x measured for the small ViTs and ResNets here). Attention is counted through
    PyTorch's math backend: the counter has no formula for the CPU's fused attention kernel and would count
    its Q K^T and A V products as 0 (12 N^2 D FLOPs per layer and image, fwd + bwd: ~11% of ViT-XS/4).
    """
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from .models import create_model

    model = create_model(model_name, num_classes=num_classes, img_size=img_size, **(overrides or {}))
    images = torch.randn(probe_batch, 3, img_size, img_size)  # (B, 3, H, W)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model(images).float().logsumexp(-1).sum().backward()
    return counter.get_total_flops() / probe_batch * batch * steps

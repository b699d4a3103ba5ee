"""Run directories -> tables (CSV + Markdown) and figures (PNG), with the paper's numbers beside ours.

Tables and figures are built only from the files that runs wrote
(``config.json``, ``metrics.jsonl``, ``final.json``, ``env.json``), never from
notebook state, so they can be rebuilt at any time from ``results/``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

import pandas as pd


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
    # Sec. 4.6: masked patch prediction.
    "mpp/vit-b16-imagenet": PaperNumber(79.9, "Sec. 4.6", "ViT-B/16 MPP on JFT, fine-tuned on ImageNet"),
}


def paper_number(key: str) -> Optional[PaperNumber]:
    """The paper's number for ``key`` (see ``PAPER``), or None when the paper has none."""
    return PAPER.get(key)


def results_dir(experiment: str, scale: str, root: str | Path = "results") -> Path:
    """``<root>/<experiment>/<scale>/``, created."""
    path = Path(root) / experiment / scale
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file (empty when it does not exist); unreadable lines are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a hard kill mid-write (or a blank one)
    return records


def load_run(run_dir: str | Path) -> dict:
    """One run as a flat dict: its config, its final metrics (``val_accuracy``, ``test_accuracy``...), env."""
    run_dir = Path(run_dir)
    config = json.loads((run_dir / "config.json").read_text())
    final_path = run_dir / "final.json"
    final = json.loads(final_path.read_text()) if final_path.exists() else {}
    env = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").exists() else {}
    row = {"run_dir": str(run_dir), "finished": bool(final), **config}
    for split in ("val", "test"):
        if split in final:
            row[f"{split}_accuracy"] = final[split]["accuracy"]
            row[f"{split}_loss"] = final[split]["loss"]
    row["train_seconds"] = final.get("train_seconds")
    train_records = [r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("event") == "train"]
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


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, *, note: str = "") -> tuple[Path, Path]:
    """Write ``<name>.csv`` and ``<name>.md`` (the Markdown with ``note`` under the table)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    df.to_csv(csv_path, index=False)
    md_path.write_text(to_markdown(df) + (f"\n{note.strip()}\n" if note else ""))
    return csv_path, md_path


def plot_training_curves(run_dirs: dict[str, str | Path], out_path: str | Path, title: str = "") -> Path:
    """Training loss and held-out accuracy against step, one line per labelled run; saved as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for label, run_dir in run_dirs.items():
        records = read_jsonl(Path(run_dir) / "metrics.jsonl")
        train = [r for r in records if r.get("event") == "train"]
        evals = [r for r in records if r.get("event") == "eval" and r.get("split") in ("val", "test")]
        color = None
        if train:
            (line,) = ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train], label=label)
            color = line.get_color()  # one colour per run in both panels
        for split, style in (("val", "-"), ("test", ":")):
            points = [r for r in evals if r["split"] == split]
            if points:
                ax_acc.plot([r["step"] for r in points], [100 * r["accuracy"] for r in points], style,
                            marker="o" if split == "val" else "x", color=color, label=f"{label} ({split})")
    ax_loss.set(xlabel="step", ylabel="training loss", yscale="log")
    ax_acc.set(xlabel="step", ylabel="top-1 accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path

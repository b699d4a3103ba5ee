"""Held-out learning-rate choices of the experiments: ``run_sweep`` runs ``repro.train.finetune_sweep`` as one unit
of a notebook's progress, and ``SweepResult`` keeps what the claims and the lr tables read of it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..progress import RunProgress
from ..rundir import read_final
from .. import train as engine


@dataclass(frozen=True)
class SweepResult:
    """What one held-out lr choice (``repro.train.finetune_sweep``) leaves for the claims and the lr table."""

    grid: tuple                          # ((lr, run_dir), ...) every lr tried, ascending
    chosen: float
    heldout_images: Optional[int]        # held-out images the choice was made on
    at_edge: bool                        # the choice lies at an edge of the final grid
    extended_to: Optional[float] = None  # the lr added one grid step past an edge
    extension_missing: Optional[float] = None  # redraw: the extension the rule asks for was never trained

    @classmethod
    def of(cls, sweep: dict) -> "SweepResult":
        return cls(tuple((lr, Path(d)) for lr, d in sweep["runs"].items()), sweep["best_lr"],
                   sweep.get("heldout_images"), bool(sweep.get("at_edge")), sweep.get("extended_to"),
                   sweep.get("extension_missing"))

    @property
    def heldout_top1(self) -> float:
        """The chosen lr's held-out top-1 (%)."""
        return 100 * read_final(dict(self.grid)[self.chosen])["val"]["accuracy"]

    def rows(self, **what) -> list[dict]:
        """One lr-table row per lr tried (``what``: the columns naming the fine-tuning): held-out and test
        top-1 (%), whether it was chosen, and a note on the grid's extension."""
        rows = []
        for lr, run_dir in self.grid:
            final = read_final(run_dir)
            note = "one grid step past the edge" if lr == self.extended_to else ""
            if lr == self.chosen and self.at_edge:
                note = (note + "; " if note else "") + "chosen at the edge of the grid"
            rows.append({**what, "lr": f"{lr:g}", "held-out images": final["val"].get("count"),
                         "held-out top-1 (%)": 100 * final["val"]["accuracy"],
                         "test top-1 (%)": 100 * final["test"]["accuracy"] if "test" in final else None,
                         "chosen": lr == self.chosen, "note": note})
        if self.extension_missing is not None:
            rows.append({**what, "lr": f"{self.extension_missing:g}", "held-out images": None,
                         "held-out top-1 (%)": None, "test top-1 (%)": None, "chosen": False,
                         "note": "one grid step past the edge: not run yet (needs the next run)"})
        return rows


def run_sweep(cfg, *, lrs: Sequence[float], refit: bool, label: str, progress: Optional[RunProgress] = None) -> dict:
    """``repro.train.finetune_sweep`` of ``cfg`` over ``lrs`` (extended past an edge), counted as one unit of
    ``progress``; returns the sweep's dict."""
    kwargs = progress.train_kwargs(label) if progress else {"label": label}
    sweep = engine.finetune_sweep(cfg, lrs=lrs, refit=refit, **kwargs)
    if progress:
        progress.finished(label, f"lr {sweep['best_lr']:g} chosen on {sweep['heldout_images']} held-out images")
    return sweep

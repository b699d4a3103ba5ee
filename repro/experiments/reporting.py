"""What every notebook's report shares: its set of runs, the cost and provenance columns of its tables, the
common ending of a table note and the closing summary paragraph."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..claims import VERDICT_WORDS
from ..rundir import load_run

SMOKE_CAVEAT = "Smoke scale: a few steps on a few hundred images prove the plumbing, not the claims."


@dataclass
class RunSet:
    """The runs of one execution of a notebook: its settings, where its results go (``<out_dir>/<notebook>/
    <scale>``, created) and one record per run (a dataclass naming what the run stands for, with its ``run_dir``)."""

    config: Any
    out: Path
    records: list = field(default_factory=list)

    def __post_init__(self):
        Path(self.out).mkdir(parents=True, exist_ok=True)

    def select(self, **match) -> list:
        """The records whose fields equal ``match``, e.g. ``select(stage="pre-train", seed=0)``."""
        return [r for r in self.records if all(getattr(r, k) == v for k, v in match.items())]

    def first_run(self) -> dict:
        """The first run's ``repro.rundir.load_run`` row (its hardware and data source name the summary's
        setting), or {} before any run."""
        return load_run(self.records[0].run_dir) if self.records else {}


def cost_columns(loaded: Sequence[dict]) -> dict:
    """A table row's cost and provenance columns from its runs' ``repro.rundir.load_run`` rows: parameters,
    training speed and minutes (means over the runs), the hardware and the data source of the first."""
    return {
        "params (M)": (loaded[0].get("params") or 0) / 1e6 or None,
        "train images/s": pd.Series([r.get("images_per_s") for r in loaded], dtype=float).mean(),
        "train min / run": pd.Series([r.get("train_seconds") for r in loaded], dtype=float).mean() / 60,
        "hardware": loaded[0].get("device_name"), "data source": loaded[0].get("data_source"),
    }


def with_csv_only(df: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """``df`` with ``columns`` kept out of its Markdown (``repro.tables``): detail that a reader of the notebook
    can do without, so that the table fits a laptop screen; the CSV keeps them."""
    df.attrs["csv_only"] = tuple(c for c in columns if c in df.columns)
    return df


def finish_note(note: str, config, *, cifar10: str) -> str:
    """A table note's common ending: ``cifar10`` (what the reader should know of the data, e.g. that it is the
    JPEG copy) when the scale trains on CIFAR-10, and the smoke-scale caveat when the claims are undecidable."""
    if config.scale.dataset == "cifar10":
        note += cifar10 + " "
    if not config.decidable:
        note += SMOKE_CAVEAT
    return note.strip()


def summary_markdown(settings: str, first_run: dict, found: Sequence[dict], *, decidable: bool,
                     extra_lines: Sequence[str] = ()) -> str:
    """A notebook's closing paragraph in Markdown, generated from its claims' numbers and verdicts.

    ``settings`` names the scale and what was run (e.g. "scale `cpu`, 3 seed(s)"); ``first_run`` is one run's
    ``repro.rundir.load_run`` row, for the hardware and the data source.
    """
    lines = [f"**Summary** ({settings}, {first_run.get('device_name') or '—'}, "
             f"data: {first_run.get('data_source') or '—'}):", ""]
    lines += [f"- {c['claim']}: **{VERDICT_WORDS[c['holds']]}**: {c['why']}." for c in found]
    lines += list(extra_lines)
    if not decidable:
        lines += ["", "At smoke scale these runs prove the plumbing, not the claims: run `cpu` or `gpu` for verdicts."]
    return "\n".join(lines) + "\n"

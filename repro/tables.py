"""Tables as files: Markdown (GitHub) and CSV, and seed summaries of a DataFrame.

The CSV holds every column; the Markdown, where people read, leaves out the columns that only a program needs
row by row: the run folders, and the provenance that is the same for every row (hardware, data source), which it
says once under the table. A table names further columns to keep out of its Markdown in
``df.attrs["csv_only"]`` (pandas keeps ``attrs`` through ``drop`` and ``copy``), so that it fits a laptop screen.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

# Columns of every table that its Markdown leaves out: said once under the table (provenance) or read from the CSV.
CSV_ONLY = ("run dirs", "run dir", "hardware", "data source")
PROVENANCE = {"hardware": "Hardware", "data source": "Data"}


def summarize_seeds(df: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Mean, standard deviation and count of ``metric`` over seeds, per group of ``by`` columns."""
    grouped = df.groupby(by, dropna=False)[metric]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": f"{metric}_mean", "std": f"{metric}_std", "count": "seeds"})


def csv_only_columns(df: pd.DataFrame) -> list[str]:
    """The columns of ``df`` that its Markdown leaves out: ``CSV_ONLY`` and the table's own ``attrs["csv_only"]``."""
    wanted = (*CSV_ONLY, *df.attrs.get("csv_only", ()))
    return [c for c in df.columns if c in wanted]


def provenance_text(df: pd.DataFrame) -> str:
    """One line for under a table: the hardware and the data source of its rows (each distinct value once), and
    which columns only its CSV holds; "" when the table has none of them."""
    parts = []
    for column, name in PROVENANCE.items():
        if column in df.columns:
            values = [str(v) for v in dict.fromkeys(df[column].dropna()) if str(v)]
            if values:
                parts.append(f"{name}: {'; '.join(values)}.")
    hidden = [c for c in csv_only_columns(df) if c not in PROVENANCE]
    if hidden:
        parts.append(f"In the CSV also: {', '.join(hidden)}.")
    return " ".join(parts)


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub Markdown table (no extra dependency); floats with ``floatfmt``, missing values as '—'. The
    columns of ``csv_only_columns`` are left out, and their provenance said in a line under the table."""
    under = provenance_text(df)
    df = df.drop(columns=csv_only_columns(df))

    def cell(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "—"
        if isinstance(v, float):
            return format(v, floatfmt)
        return str(v).replace("|", "\\|")
    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n" + (f"\n{under}\n" if under else "")


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, *, note: str = "",
                floatfmt: str = ".2f") -> tuple[Path, Path]:
    """Write ``<name>.csv`` (every column) and ``<name>.md`` (``to_markdown``, then ``note``; floats as
    ``floatfmt``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    df.to_csv(csv_path, index=False)
    md_path.write_text(to_markdown(df, floatfmt) + (f"\n{note.strip()}\n" if note else ""))
    return csv_path, md_path



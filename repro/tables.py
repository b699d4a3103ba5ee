"""Tables as files: Markdown (GitHub) and CSV, and seed summaries of a DataFrame."""
from __future__ import annotations

from pathlib import Path

import pandas as pd


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



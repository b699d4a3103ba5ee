"""Tables as files: Markdown (GitHub) and CSV, and seed summaries of a DataFrame.

The CSV holds every column; the Markdown, where people read, leaves out the columns that only a program needs
row by row: the run folders, and the provenance that is the same for every row (hardware, data source), which it
says once under the table. A table names further columns to keep out of its Markdown in
``df.attrs["csv_only"]`` (pandas keeps ``attrs`` through ``drop`` and ``copy``), so that it fits a laptop screen.
A long text that repeats down a column (the claim a row tests) is written once under the table, the cells
pointing to it as ``[1]``, ``[2]``.

The Markdown renders the same on GitHub and in JupyterLab: every character Markdown or its LaTeX extension reads
(``$``, ``*``, ``_``, ``|``, backticks...) is escaped in the cells, and ``$`` in the lines under the table, so
``$REPRO_DATA_DIR`` stays text instead of opening a formula.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

# Columns of every table that its Markdown leaves out: said once under the table (provenance) or read from the CSV.
CSV_ONLY = ("run dirs", "run dir", "hardware", "data source")
PROVENANCE = {"hardware": "Hardware", "data source": "Data"}

# Characters that Markdown (GitHub's and JupyterLab's) or its math extension reads in a table cell (brackets make a
# link only with a target after them, which no cell has: "[+9.68, +10.65]" stays as it is).
_CELL_ACTIVE = re.compile(r"([\\`*_$<>|~])")
# A column holding a text longer than this, whose texts repeat down the column (each, on average, at least twice),
# is listed under the table (``to_markdown``).
LONG_CELL = 80


def escape_cell(text: str) -> str:
    """``text`` as a Markdown table cell that shows it literally: Markdown- and LaTeX-active characters escaped."""
    return _CELL_ACTIVE.sub(r"\\\1", text)


def escape_math(text: str) -> str:
    """``text`` (prose under a table, Markdown meant as Markdown) with every unescaped ``$`` escaped, so that no
    pair of them opens a formula."""
    return re.sub(r"(?<!\\)\$", r"\\$", text)


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


def _footnoted(df: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """``df`` with each column that holds a long text (over ``LONG_CELL`` characters) and whose texts repeat down
    the column (at most half of them distinct) replaced by references ``[n]``, and the texts, one per reference,
    for under the table; such a column with one text in every row is left out and its text said once. The notes
    are (what points to it, text) pairs."""
    notes: list[tuple[str, str]] = []
    df = df.copy()
    for column in df.columns:
        texts = [v for v in df[column] if isinstance(v, str) and v]
        if not any(len(t) > LONG_CELL for t in texts) or 2 * len(set(texts)) > len(texts):
            continue  # short texts, or mostly different ones (a claims table's claims): they stay in their cells
        if len(set(texts)) == 1 and len(texts) == len(df):  # the same text in every row: said once, no column
            notes.append((f"{column} (every row):", texts[0]))
            df = df.drop(columns=[column])
            continue
        numbers = {}
        for text in dict.fromkeys(texts):
            numbers[text] = f"[{sum(name.startswith('[') for name, _ in notes) + 1}]"
            notes.append((numbers[text], text))
        df[column] = [numbers[v] if isinstance(v, str) and v in numbers else v for v in df[column]]
    return df, notes


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub Markdown table (no extra dependency); floats with ``floatfmt``, missing values as '—', every cell
    escaped (``escape_cell``). The columns of ``csv_only_columns`` are left out, and their provenance said in a
    line under the table; a long text repeated down a column is listed once under the table (``_footnoted``)."""
    under = escape_math(provenance_text(df))
    df, notes = _footnoted(df.drop(columns=csv_only_columns(df)))

    def cell(v):
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return "—"
        if isinstance(v, float):
            return format(v, floatfmt)
        if isinstance(v, str) and re.fullmatch(r"\[\d+\]", v):
            return v  # a reference to a text under the table
        return escape_cell(str(v))
    header = "| " + " | ".join(escape_cell(str(c)) for c in df.columns) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    listed = [f"- {escape_cell(name) if not name.startswith('[') else name} {escape_cell(text)}"
              for name, text in notes]
    return ("\n".join([header, rule, *rows]) + "\n" + ("\n" + "\n".join(listed) + "\n" if listed else "")
            + (f"\n{under}\n" if under else ""))


def table_markdown(df: pd.DataFrame, note: str = "", floatfmt: str = ".2f") -> str:
    """What ``write_table`` writes to ``<name>.md``: ``to_markdown``, then ``note`` (its ``$`` escaped)."""
    return to_markdown(df, floatfmt) + (f"\n{escape_math(note.strip())}\n" if note else "")


def write_table(df: pd.DataFrame, out_dir: str | Path, name: str, *, note: str = "",
                floatfmt: str = ".2f") -> tuple[Path, Path]:
    """Write ``<name>.csv`` (every column) and ``<name>.md`` (``table_markdown``: ``to_markdown``, then ``note``;
    floats as ``floatfmt``); a notebook shows the table as ``Markdown(md_path.read_text())``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / f"{name}.csv", out_dir / f"{name}.md"
    df.to_csv(csv_path, index=False)
    md_path.write_text(table_markdown(df, note, floatfmt))
    return csv_path, md_path



"""``results/SUMMARY.md``: every claim of every notebook on one page, and why ours differs from the paper.

Each notebook writes ``claims.json`` (its verdicts, ``repro.claims``) and ``findings.json`` (what the paper
found, and the measured reasons why our runs may differ: ``write_findings``) into
``results/<notebook>/<scale>/``. ``write_summary`` builds ``results/SUMMARY.md`` from those files only, so
``python -m repro summary`` rebuilds it at any time (``make reproduce`` does after the notebooks).

The measured reasons come from the runs' own files: ``curve_status`` reads the learning curves (does the
training accuracy still rise in the last quarter of a run? is the best held-out evaluation the last one?).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import pandas as pd

from .claims import CONFIDENCE, NEEDS_NEXT_RUN, SMOKE_REASON, VERDICT_WORDS, difference_text, ours_text, read_claims
from .paths import REPO_ROOT
from .rundir import read_config, read_metrics
from .tables import to_markdown

FINDINGS_FILE = "findings.json"
SUMMARY_FILE = "SUMMARY.md"
SCALE_ORDER = ("paper", "gpu", "cpu", "smoke")


def curve_status(run_dirs: Iterable[Union[str, Path]]) -> dict:
    """How far the runs got, from their ``metrics.jsonl``: ``runs``; ``still_rising``, the runs whose running
    training top-1 gained more than 1 point over the last quarter of their steps, and ``last_quarter_gain``, the
    mean gain (points); ``best_last`` of ``with_heldout``, the runs evaluated on the held-out split along
    training whose best evaluation is their last one (no sign of over-fitting yet)."""
    gains, best_last, with_heldout = [], 0, 0
    for run_dir in run_dirs:
        records = read_metrics(run_dir)
        train = [r for r in records if r.get("event") == "train"]
        if len(train) >= 2:
            last = train[-1]
            quarter = min(train, key=lambda r: abs(r["step"] - 0.75 * last["step"]))
            if quarter is not last:
                gains.append(100 * (last["accuracy"] - quarter["accuracy"]))
        evals = [r for r in records if r.get("event") == "eval" and r.get("split") == "val"]
        if len(evals) >= 2:
            with_heldout += 1
            best = max(evals, key=lambda r: (r["accuracy"], -r["step"]))
            best_last += best["step"] == evals[-1]["step"]
    return {"runs": len(gains), "still_rising": sum(g > 1.0 for g in gains),
            "last_quarter_gain": sum(gains) / len(gains) if gains else None,
            "best_last": best_last, "with_heldout": with_heldout}


def epochs_of(run_dir: Union[str, Path]) -> Optional[float]:
    """Passes over its training images that a run made: steps x batch / the start event's ``train_examples``."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    start = next((r for r in read_metrics(run_dir) if r.get("event") == "start"), {})
    examples = start.get("train_examples")
    return config["steps"] * config["batch_size"] / examples if examples else None


def epochs_text(run_dirs: Iterable[Union[str, Path]]) -> str:
    """'0.8-25.6 epochs' (or '1.3 epochs') over these runs."""
    found = [e for e in (epochs_of(d) for d in run_dirs) if e is not None]
    if not found:
        return "an unknown number of epochs"
    lo, hi = min(found), max(found)
    return f"{lo:.1f} epochs" if f"{lo:.1f}" == f"{hi:.1f}" else f"{lo:.1f}-{hi:.1f} epochs"


def curve_sentence(status: dict, what: str) -> Optional[str]:
    """``curve_status`` in words, e.g. "In 24 of 24 pre-training runs the training top-1 still rose by more than
    1 point over the last quarter of the run (2.8 points on average): the runs stop while still learning"."""
    if not status["runs"]:
        return None
    text = (f"In {status['still_rising']} of {status['runs']} {what} the training top-1 still rose by more than "
            f"1 point over the last quarter of the run ({status['last_quarter_gain']:.1f} points on average)")
    if status["still_rising"] > status["runs"] / 2:
        text += ": the runs stop while still learning (compute-bound), short of the regime the paper trains in"
    if status["with_heldout"]:
        text += (f"; in {status['best_last']} of {status['with_heldout']} runs evaluated along training the best "
                 "held-out score is the last one (no over-fitting yet)")
    return text + "."


def write_findings(out_dir: Union[str, Path], *, notebook: str, title: str, scale: str, paper: str,
                   why: Sequence[str]) -> Path:
    """``<out_dir>/findings.json``: the notebook's title, what the paper found (``paper``) and the measured
    reasons why ours may differ (``why``, sentences citing measured quantities)."""
    path = Path(out_dir) / FINDINGS_FILE
    path.write_text(json.dumps({"notebook": notebook, "title": title, "scale": scale, "paper": paper,
                                "why": [w for w in why if w]}, indent=2) + "\n")
    return path


def _short_reason(why: str) -> str:
    """The verdict's reason cut to its core for the summary table (the notebook and claims.json keep all): what the
    next run must provide, that the scale cannot decide, or the clause that states the decision."""
    if why.startswith(NEEDS_NEXT_RUN):
        return why.split(" (as measured:")[0]
    if why.startswith(SMOKE_REASON):
        return SMOKE_REASON
    clauses = why.split("; ")
    deciding = [c for c in clauses if any(k in c for k in ("interval", "one seed", "floor", "share no", "too few"))]
    return (deciding or clauses)[0]


def _folders(results_root: Path) -> list[tuple[str, str, Path]]:
    """(notebook, scale, folder) of every results folder with a claims.json, notebooks in order, and per notebook
    its scales from the largest; smoke only where a notebook has no other scale (it proves plumbing, not claims)."""
    found = []
    for notebook_dir in sorted(p for p in results_root.iterdir() if p.is_dir() and p.name[:2].isdigit()):
        scales = [s for s in SCALE_ORDER if (notebook_dir / s / "claims.json").exists()]
        if len(scales) > 1 and "smoke" in scales:
            scales.remove("smoke")
        found += [(notebook_dir.name, s, notebook_dir / s) for s in scales]
    return found


def ours_sentence(claims: Sequence[dict]) -> str:
    """The verdicts of one notebook's claims in one sentence."""
    groups: dict[str, list[str]] = {}
    for c in claims:
        word = VERDICT_WORDS[c["holds"]]
        if c["holds"] is None and c["why"].startswith(NEEDS_NEXT_RUN):
            word = f"undecided ({NEEDS_NEXT_RUN})"
        groups.setdefault(word, []).append(re.sub(r" \((?:Sec|App|Table|Fig)\.?[^)]*\)", "", c["claim"]))
    return " ".join(f"{word.capitalize()}: {'; '.join(names)}." for word, names in groups.items())


def build_summary(results_root: Union[str, Path] = REPO_ROOT / "results") -> str:
    """The Markdown of ``SUMMARY.md`` from every ``claims.json`` and ``findings.json`` under ``results_root``."""
    results_root = Path(results_root)
    folders = _folders(results_root)
    rows, paragraphs = [], []
    for notebook, scale, folder in folders:
        claims = read_claims(folder)
        for c in claims:
            rows.append({"notebook": notebook[:2], "scale": scale, "claim": c["claim"], "paper": c["paper"],
                         "ours (mean ± std, seeds)": ours_text(c["ours"]),
                         f"difference ({CONFIDENCE:.0%} interval)": difference_text(c.get("difference")),
                         "verdict": VERDICT_WORDS[c["holds"]], "reason": _short_reason(c["why"])})
        findings_path = folder / FINDINGS_FILE
        findings = json.loads(findings_path.read_text()) if findings_path.exists() else {}
        title = findings.get("title", notebook)
        lines = [f"### {notebook[:2]} — {title} (`{scale}`)", ""]
        if findings.get("paper"):
            lines.append(f"**The paper.** {findings['paper']}")
            lines.append("")
        lines.append(f"**Ours.** {ours_sentence(claims)} Details: "
                     f"[`{notebook}/{scale}/`]({notebook}/{scale}/), claims and intervals in `claims.json`.")
        if findings.get("why"):
            lines += ["", "**Why ours differs.**", ""] + [f"- {w}" for w in findings["why"]]
        paragraphs.append("\n".join(lines))
    counts = {word: sum(r["verdict"] == word for r in rows) for word in VERDICT_WORDS.values()}
    needs = sum(r["reason"].startswith(NEEDS_NEXT_RUN) for r in rows)
    head = [
        "# Every claim of the paper, as tested here",
        "",
        "Generated by `python -m repro summary` (and `make reproduce`) from `results/<notebook>/<scale>/claims.json`"
        " and `findings.json`; do not edit by hand. A verdict is computed by `repro/claims.py`: it holds when the"
        f" {CONFIDENCE:.0%} confidence interval over training seeds (Student t, paired per seed where the arms share"
        " seeds) lies on the claimed side, does not hold when it lies on the other, and is undecided otherwise, with"
        " one seed, or where the runs lack what the rules ask for (\"needs the next run\"). Smoke-scale results prove"
        " the plumbing only and are listed only for notebooks that have no other scale.",
        "",
        f"{len(rows)} claims: {counts['holds']} hold, {counts['does not hold']} do not hold, {counts['undecided']} "
        f"undecided ({needs} of them need the next run).",
        "",
        "## Every claim",
        "",
    ]
    table = to_markdown(pd.DataFrame(rows)) if rows else "No claims.json found.\n"
    return "\n".join(head) + table + "\n## Per notebook\n\n" + "\n\n".join(paragraphs) + "\n"


def write_summary(results_root: Union[str, Path] = REPO_ROOT / "results") -> Path:
    """Write ``<results_root>/SUMMARY.md`` (``build_summary``) and return its path."""
    path = Path(results_root) / SUMMARY_FILE
    path.write_text(build_summary(results_root))
    return path

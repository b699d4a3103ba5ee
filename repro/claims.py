"""Verdicts: the one place that decides whether a claim of the paper holds at a scale.

Every notebook tests claims of the paper and writes them to ``claims.json``; the
numbers come from its runs, the decision comes from here. A verdict has three
outcomes, ``True`` (holds), ``False`` (does not hold) and ``None`` (undecided),
and always a reason (``why``) in words with the numbers behind it.

The statistics (90% confidence, Student t with n - 1 degrees of freedom):

- a **sample** is ``{seed: value}``: one number per training seed of one arm;
- two arms that share their seeds are compared by the **paired** per-seed
  differences (the arms start from the same initialisation and see the same
  data order where the arms allow); arms with other seeds by Welch's interval;
- "A above B" (``verdict_above``): holds when the interval of A - B lies above
  zero, does not hold when it lies below zero, undecided when it straddles it;
- "barely matters" (``verdict_equivalent``): a margin stated in the claim;
  holds when every pair's interval lies within +-margin, does not hold when one
  lies wholly outside it, undecided otherwise;
- trends (``verdict_trend``; slopes per decade, distance against depth): the
  interval of the per-seed statistic, and an effect-size floor stated in the
  claim: a trend smaller than the floor is undecided, whatever its interval;
- a number that should lie in a band (``verdict_in_band``, e.g. a fitted
  exponent of 2 +- 0.3): holds when its interval lies inside, does not hold
  when it lies wholly outside;
- a sample with fewer than 2 seeds never decides anything ("one seed").

What a run must have for its numbers to count (``requirements_unmet``): few-shot
scores averaged over at least ``MIN_SUPPORT_DRAWS`` support draws, learning
rates chosen on at least ``MIN_HELDOUT_IMAGES`` held-out images where the data
allows, and a chosen lr that is not at an edge of its grid (or the grid was
extended past it). A verdict whose runs miss one says "needs the next run" and
is undecided, with the numbers as measured beside it.

``claims.json`` is read and written here too (``claim_entry``, ``write_claims``,
``read_claims``, ``claims_markdown``). The format: a list of entries
``{"claim", "paper", "metric", "ours": {name: [mean, std, seeds]}, "per_seed":
{name: {seed: value}}, "difference": {"mean", "interval90", "seeds", "paired"}
or null, "rule", "holds", "verdict", "why"}``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Optional, Sequence, Union

import pandas as pd

from .tables import to_markdown

CONFIDENCE = 0.90
VERDICT_WORDS = {True: "holds", False: "does not hold", None: "undecided"}
# Every few-shot score is the mean over at least this many support draws (big_vision draws one per seed).
MIN_SUPPORT_DRAWS = 5
# Learning rates are chosen on at least this many held-out images where the data allows it.
MIN_HELDOUT_IMAGES = 1000
NEEDS_NEXT_RUN = "needs the next run"

Sample = Mapping[int, float]   # {training seed: value}


# --- Student t, without scipy (the device image has none) --------------------------------------------

def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (modified Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below the mean; use the symmetry
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 400):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * fraction


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on ``t_cdf``)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
    return 0.5 * (lo + hi)


# --- samples and intervals ------------------------------------------------------------------------------

def seed_stats(values: Iterable[float]) -> list:
    """``[mean, std, seeds]`` of per-seed numbers; the std (sample, ddof 1) is None with one seed."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("no numbers to summarise")
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return [mean, std, len(values)]


def as_sample(values: Union[Sample, Sequence[float]]) -> dict[int, float]:
    """``{seed: value}`` as given, or a list read as seeds 0, 1, 2, ... (for hand-made numbers)."""
    if isinstance(values, Mapping):
        return {int(k): float(v) for k, v in values.items()}
    return {i: float(v) for i, v in enumerate(values)}


@dataclass(frozen=True)
class Interval:
    """A mean with its two-sided ``CONFIDENCE`` interval over ``n`` seeds (``low``/``high`` NaN below 2)."""

    mean: float
    low: float
    high: float
    n: int
    paired: Optional[bool] = None   # for a difference: paired per seed (True) or Welch (False)
    counted: str = "seed"           # what ``n`` counts: seeds, or the points of a fit

    @property
    def decidable(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low) and math.isfinite(self.high)

    def text(self, unit: str = "points", signed: bool = True) -> str:
        """'+3.20 points (90% interval +2.00 to +4.40, 3 paired seeds)'."""
        fmt = "+.2f" if signed else ".2f"
        seeds = f"{self.n} {'paired ' if self.paired else ''}{self.counted}{'s' * (self.n != 1)}"
        unit = f" {unit}" if unit else ""
        if not self.decidable:
            return f"{self.mean:{fmt}}{unit} ({seeds}: no interval)"
        return (f"{self.mean:{fmt}}{unit} ({CONFIDENCE:.0%} interval {self.low:{fmt}} to {self.high:{fmt}}, "
                f"{seeds})")

    def record(self) -> dict:
        """The ``difference`` entry of claims.json."""
        bounds = [self.low, self.high] if self.decidable else None
        return {"mean": self.mean, f"interval{round(100 * CONFIDENCE)}": bounds, "seeds": self.n,
                "paired": self.paired}


def mean_interval(sample: Union[Sample, Sequence[float]], confidence: float = CONFIDENCE) -> Interval:
    """The mean of a sample and its t interval (n - 1 degrees of freedom)."""
    values = list(as_sample(sample).values())
    if not values:
        raise ValueError("an interval needs at least one value")
    mean, std, n = seed_stats(values)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = t_quantile(0.5 + confidence / 2, n - 1) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def regression_interval(estimate: float, standard_error: float, points: int,
                        confidence: float = CONFIDENCE) -> Interval:
    """The t interval of a least-squares slope (``points`` - 2 degrees of freedom), e.g. a fitted exponent;
    ``n`` is the number of points (below 3 there is no interval)."""
    if points < 3 or not math.isfinite(standard_error):
        return Interval(estimate, math.nan, math.nan, points, counted="point")
    half = t_quantile(0.5 + confidence / 2, points - 2) * standard_error
    return Interval(estimate, estimate - half, estimate + half, points, counted="point")


def difference_interval(a: Union[Sample, Sequence[float]], b: Union[Sample, Sequence[float]],
                        confidence: float = CONFIDENCE) -> Interval:
    """The interval of mean(a) - mean(b): paired per seed when both have the same seeds, else Welch's."""
    a, b = as_sample(a), as_sample(b)
    if set(a) == set(b):
        found = mean_interval({s: a[s] - b[s] for s in a}, confidence)
        return Interval(found.mean, found.low, found.high, found.n, paired=True)
    (ma, sa, na), (mb, sb, nb) = seed_stats(a.values()), seed_stats(b.values())
    mean = ma - mb
    if na < 2 or nb < 2:
        return Interval(mean, math.nan, math.nan, min(na, nb), paired=False)
    va, vb = sa * sa / na, sb * sb / nb
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Interval(mean, mean, mean, min(na, nb), paired=False)
    df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))  # Welch-Satterthwaite
    half = t_quantile(0.5 + confidence / 2, df) * se
    return Interval(mean, mean - half, mean + half, min(na, nb), paired=False)


# --- verdicts ---------------------------------------------------------------------------------------------

class Verdict(NamedTuple):
    """A decision: ``holds`` (True / False / None = undecided), the reason, and the interval it rests on."""

    holds: Optional[bool]
    why: str
    difference: Optional[Interval] = None


def _one_seed(interval: Interval, what: str, unit: str) -> Optional[Verdict]:
    if interval.decidable:
        return None
    reason = "one seed, which never decides a verdict" if interval.counted == "seed" else \
        f"too few {interval.counted}s for an interval"
    return Verdict(None, f"{what} {interval.text(unit)}: {reason}", interval)


def decide_positive(interval: Interval, *, what: str, unit: str = "points", floor: float = 0.0) -> Verdict:
    """Is the quantity positive? Holds when its interval lies above zero and its mean reaches ``floor``; does not
    hold when the interval lies below zero (and the mean is at most -``floor``); undecided otherwise."""
    found = _one_seed(interval, what, unit)
    if found:
        return found
    text = f"{what} {interval.text(unit)}"
    if interval.low > 0:
        if interval.mean >= floor:
            return Verdict(True, f"{text}: the interval lies above zero", interval)
        return Verdict(None, f"{text}: above zero, but smaller than the claim's floor of {floor:g} {unit}", interval)
    if interval.high < 0:
        if interval.mean <= -floor:
            return Verdict(False, f"{text}: the interval lies below zero", interval)
        return Verdict(None, f"{text}: below zero, but smaller than the claim's floor of {floor:g} {unit}", interval)
    return Verdict(None, f"{text}: the interval straddles zero", interval)


def verdict_above(higher: Union[Sample, Sequence[float]], lower: Union[Sample, Sequence[float]], *,
                  names: tuple[str, str], unit: str = "points", floor: float = 0.0) -> Verdict:
    """"``names[0]`` lies above ``names[1]``": the interval of higher - lower above zero (and its mean at least
    ``floor``) holds, below zero does not hold, otherwise undecided (``decide_positive``)."""
    interval = difference_interval(higher, lower)
    return decide_positive(interval, what=f"{names[0]} - {names[1]} =", unit=unit, floor=floor)


def verdict_trend(sample: Union[Sample, Sequence[float]], *, what: str, floor: float, unit: str) -> Verdict:
    """A trend claimed positive (a slope per seed): its interval above zero and its mean at least ``floor``
    holds; below zero does not hold; a trend smaller than ``floor`` is undecided, whatever its interval."""
    return decide_positive(mean_interval(sample), what=f"{what} =", unit=unit, floor=floor)


def verdict_equivalent(samples: Mapping[str, Union[Sample, Sequence[float]]], *, margin: float,
                       unit: str = "points") -> Verdict:
    """"These barely differ": every pair's difference interval within +-``margin`` holds; any pair's interval
    wholly outside it does not hold; otherwise undecided (the margin is stated in the claim)."""
    if len(samples) < 2:
        raise ValueError("an equivalence needs at least two samples")
    pairs = []
    for (name_a, a), (name_b, b) in combinations(samples.items(), 2):
        interval = difference_interval(a, b)
        pairs.append((f"{name_a} - {name_b}", interval))
    texts = "; ".join(f"{name} = {iv.text(unit)}" for name, iv in pairs)
    widest = max(pairs, key=lambda p: abs(p[1].mean))[1]
    if not all(iv.decidable for _, iv in pairs):
        return Verdict(None, f"{texts}: one seed, which never decides a verdict", widest)
    outside = [name for name, iv in pairs if iv.low > margin or iv.high < -margin]
    if outside:
        return Verdict(False, f"{texts}: {', '.join(outside)} lies wholly outside +-{margin:g} {unit}", widest)
    if all(-margin <= iv.low and iv.high <= margin for _, iv in pairs):
        return Verdict(True, f"{texts}: every interval lies within +-{margin:g} {unit}", widest)
    return Verdict(None, f"{texts}: an interval reaches beyond +-{margin:g} {unit}", widest)


def verdict_in_band(interval: Interval, low: float, high: float, *, what: str, unit: str = "") -> Verdict:
    """A quantity that should lie in [``low``, ``high``]: its interval inside holds, wholly outside does not hold,
    otherwise undecided."""
    found = _one_seed(interval, what, unit)
    if found:
        return found
    text = f"{what} {interval.text(unit, signed=False)}"
    if low <= interval.low and interval.high <= high:
        return Verdict(True, f"{text}: the interval lies within [{low:g}, {high:g}]", interval)
    if interval.high < low or interval.low > high:
        return Verdict(False, f"{text}: the interval lies outside [{low:g}, {high:g}]", interval)
    return Verdict(None, f"{text}: the interval reaches beyond [{low:g}, {high:g}]", interval)


def verdict_all(parts: Sequence[Verdict], *, labels: Optional[Sequence[str]] = None) -> Verdict:
    """Several conditions that must all hold: all hold -> holds; any does not hold -> does not hold; else
    undecided. The reasons are joined (with ``labels`` before them when given); the first interval is kept."""
    if not parts:
        raise ValueError("no conditions to combine")
    holds = False if any(p.holds is False for p in parts) else (True if all(p.holds for p in parts) else None)
    labels = labels or [""] * len(parts)
    why = "; ".join(f"{label}: {p.why}" if label else p.why for label, p in zip(labels, parts))
    return Verdict(holds, why, parts[0].difference)


def undecidable(verdict: Verdict, reason: str) -> Verdict:
    """The verdict made undecided for ``reason`` (e.g. the smoke scale), its numbers kept in the why."""
    return Verdict(None, f"{reason} ({verdict.why})", verdict.difference)


SMOKE_REASON = "smoke scale: a few steps on a few hundred images test the plumbing, not the claim"


def at_scale(verdict: Verdict, decidable: bool, reason: str = SMOKE_REASON) -> Verdict:
    """``verdict`` where the scale can decide the claim, else undecided for ``reason`` with the numbers."""
    return verdict if decidable else undecidable(verdict, reason)


def requirements_unmet(*, support_draws: Iterable[int] = (), heldout_images: Iterable[Optional[int]] = (),
                       heldout_available: Optional[int] = None, unextended_edges: Iterable[str] = ()) -> list[str]:
    """What the runs behind a verdict lack for their numbers to count, in words (empty: nothing).

    ``support_draws``: the support draws of each few-shot score (each must reach ``MIN_SUPPORT_DRAWS``);
    ``heldout_images``: the held-out images each lr choice was made on (each must reach
    ``MIN_HELDOUT_IMAGES``, or all of ``heldout_available`` when the data has fewer); ``unextended_edges``: the
    sweeps whose chosen lr lies at an edge of their grid that was not extended (named).
    """
    missing = []
    draws = [int(d) for d in support_draws]
    if draws and min(draws) < MIN_SUPPORT_DRAWS:
        missing.append(f"few-shot scores over {min(draws)} support draws; the rule asks for {MIN_SUPPORT_DRAWS}")
    held = [h for h in heldout_images if h is not None]
    needed = MIN_HELDOUT_IMAGES if heldout_available is None else min(MIN_HELDOUT_IMAGES, heldout_available)
    if held and min(held) < needed:
        missing.append(f"learning rates chosen on {min(held):,} held-out images; the rule asks for {needed:,}")
    edges = list(unextended_edges)
    if edges:
        missing.append(f"the chosen lr lies at an edge of its grid, not extended, in {len(edges)} lr choice"
                       f"{'s' * (len(edges) > 1)} (e.g. {edges[0]})")
    return missing


def needs_next_run(verdict: Verdict, missing: Sequence[str]) -> Verdict:
    """``verdict`` unchanged when nothing is ``missing``; else undecided, saying what the next run must provide."""
    if not missing:
        return verdict
    return Verdict(None, f"{NEEDS_NEXT_RUN}: {'; '.join(missing)} (as measured: {verdict.why})", verdict.difference)


# --- claims.json --------------------------------------------------------------------------------------

CLAIM_KEYS = ("claim", "paper", "metric", "ours", "holds", "why")


def claim_entry(claim: str, paper: str, metric: str, ours: Mapping[str, Union[Sample, Sequence[float]]],
                verdict: Union[Verdict, tuple], *, rule: str = "") -> dict:
    """One ``claims.json`` entry: the claim, the paper's statement and number, the metric, ours per arm as
    ``[mean, std, seeds]`` and per seed, the interval the verdict rests on, the rule in one sentence, and the
    computed verdict."""
    verdict = Verdict(*verdict)
    if verdict.holds not in (True, False, None):
        raise ValueError(f"holds must be True, False or None, got {verdict.holds!r}")
    samples = {name: as_sample(values) for name, values in ours.items()}
    return {"claim": claim, "paper": paper, "metric": metric,
            "ours": {name: seed_stats(s.values()) for name, s in samples.items() if s},
            "per_seed": {name: {str(k): v for k, v in s.items()} for name, s in samples.items() if s},
            "difference": verdict.difference.record() if verdict.difference is not None else None,
            "rule": rule, "holds": verdict.holds, "verdict": VERDICT_WORDS[verdict.holds], "why": verdict.why}


def write_claims(claims: Sequence[dict], out_dir: Union[str, Path]) -> Path:
    """Write ``<out_dir>/claims.json`` (a list, one entry per claim). Malformed entries are errors."""
    for entry in claims:
        missing = [k for k in CLAIM_KEYS if k not in entry]
        if missing:
            raise ValueError(f"claim {entry.get('claim')!r} lacks {missing}")
        if entry["holds"] not in (True, False, None):
            raise ValueError(f"claim {entry['claim']!r}: holds must be true, false or null")
        for name, stats in entry["ours"].items():
            if not (isinstance(stats, (list, tuple)) and len(stats) == 3):
                raise ValueError(f"claim {entry['claim']!r}: ours[{name!r}] must be [mean, std, seeds]")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "claims.json"
    path.write_text(json.dumps(list(claims), indent=2) + "\n")
    return path


def read_claims(out_dir: Union[str, Path]) -> list[dict]:
    """The entries of ``<out_dir>/claims.json``."""
    return json.loads((Path(out_dir) / "claims.json").read_text())


def ours_text(stats: Mapping[str, Sequence]) -> str:
    """``{name: [mean, std, seeds]}`` as 'a 42.10 ± 0.30 (3 seeds); b ...'."""
    return "; ".join(f"{name} {m:.2f}" + (f" ± {s:.2f}" if s is not None else "") + f" ({n} seed{'s' * (n > 1)})"
                     for name, (m, s, n) in stats.items())


def difference_text(record: Optional[Mapping]) -> str:
    """A claims.json ``difference`` as '+3.20 [+2.00, +4.40], 3 paired seeds' ('—' when there is none)."""
    if not record:
        return "—"
    bounds = record.get(f"interval{round(100 * CONFIDENCE)}")
    seeds = f"{record['seeds']} {'paired ' if record.get('paired') else ''}seed{'s' * (record['seeds'] != 1)}"
    if bounds is None:
        return f"{record['mean']:+.2f}, {seeds}"
    return f"{record['mean']:+.2f} [{bounds[0]:+.2f}, {bounds[1]:+.2f}], {seeds}"


def claims_markdown(claims: Sequence[dict]) -> str:
    """The claims as a Markdown table: claim, the paper, ours (mean ± std, seeds), the difference with its 90%
    interval, the verdict and why."""
    rows = [{"claim": c["claim"], "paper": c["paper"], "ours": ours_text(c["ours"]),
             f"difference ({CONFIDENCE:.0%} interval)": difference_text(c.get("difference")),
             "verdict": VERDICT_WORDS[c["holds"]], "why": c["why"]} for c in claims]
    return to_markdown(pd.DataFrame(rows, columns=["claim", "paper", "ours", f"difference ({CONFIDENCE:.0%} interval)",
                                                   "verdict", "why"]))


__all__ = ["CONFIDENCE", "VERDICT_WORDS", "MIN_SUPPORT_DRAWS", "MIN_HELDOUT_IMAGES", "NEEDS_NEXT_RUN", "Sample",
           "t_cdf", "t_quantile", "seed_stats", "as_sample", "Interval", "mean_interval", "regression_interval",
           "difference_interval",
           "Verdict", "decide_positive", "verdict_above", "verdict_trend", "verdict_equivalent", "verdict_in_band",
           "verdict_all", "undecidable", "at_scale", "SMOKE_REASON", "requirements_unmet", "needs_next_run",
           "claim_entry", "write_claims", "read_claims", "ours_text", "difference_text", "claims_markdown"]

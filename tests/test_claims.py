"""repro.claims: the verdict rules on hand-made numbers, including cases where the old rules decided and the new
ones must say undecided."""
import json
import math

import pytest

from repro import claims as c


def old_rule_decides(a, b) -> bool:
    """The rule this project used before: a gap beyond sqrt(std_a^2 + std_b^2) (the spread of the difference of two
    single runs) decided, whatever the number of seeds."""
    (ma, sa, _), (mb, sb, _) = c.seed_stats(a), c.seed_stats(b)
    return abs(ma - mb) > math.hypot(sa, sb)


# --- Student t -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("df, expected", [(1, 6.3138), (2, 2.9200), (4, 2.1318), (9, 1.8331), (30, 1.6973)])
def test_t_quantile_matches_the_table(df, expected):
    assert c.t_quantile(0.95, df) == pytest.approx(expected, abs=1e-4)
    assert c.t_quantile(0.05, df) == pytest.approx(-expected, abs=1e-4)


def test_t_distribution_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 5.5, 17, 120):
        for t in (-3.0, -0.4, 0.0, 1.1, 2.5):
            assert c.t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), abs=1e-10)
        assert c.t_quantile(0.975, df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-9)


# --- intervals ----------------------------------------------------------------------------------------------

def test_mean_and_paired_intervals():
    interval = c.mean_interval([1.0, 2.0, 3.0])  # mean 2, std 1, t(0.95, 2) = 2.92: 2 +- 1.686
    assert (interval.mean, interval.n) == (2.0, 3)
    assert interval.low == pytest.approx(2 - 2.91999 / math.sqrt(3), abs=1e-4)
    assert not c.mean_interval([5.0]).decidable
    # Paired: the arms move together seed by seed, so the difference is tight although each arm scatters widely.
    paired = c.difference_interval({0: 50.0, 1: 55.0, 2: 60.0}, {0: 49.0, 1: 54.2, 2: 59.1})
    assert paired.paired and paired.mean == pytest.approx(0.9) and paired.low > 0
    # Other seeds on each side: Welch's interval, much wider here.
    welch = c.difference_interval({0: 50.0, 1: 55.0, 2: 60.0}, {3: 49.0, 4: 54.2, 5: 59.1})
    assert welch.paired is False and welch.low < 0 < welch.high


# --- the rules -----------------------------------------------------------------------------------------------

def test_two_arm_rule_holds_fails_and_stays_undecided():
    assert c.verdict_above([60.0, 61.0, 62.0], [50.0, 51.5, 52.0], names=("a", "b")).holds is True
    assert c.verdict_above([50.0, 51.5, 52.0], [60.0, 61.0, 62.0], names=("a", "b")).holds is False
    verdict = c.verdict_above([60.0, 61.0, 62.0], [60.5, 59.9, 62.2], names=("a", "b"))
    assert verdict.holds is None and "straddles zero" in verdict.why and "90% interval" in verdict.why


def test_a_gap_of_one_to_two_spreads_at_three_seeds_is_no_longer_decided():
    """Two arms whose gap (1.33) is twice the old 'spread' (0.66): the old rule called it, the paired interval
    (paired differences 1.6, 0.3, 2.1) does not."""
    a, b = [42.0, 42.6, 41.8], [43.6, 42.9, 43.9]
    assert old_rule_decides(a, b)
    verdict = c.verdict_above(b, a, names=("b", "a"))
    assert verdict.holds is None and verdict.difference.low < 0 < verdict.difference.high


def test_one_seed_never_decides():
    verdict = c.verdict_above([70.0], [50.0], names=("a", "b"))
    assert verdict.holds is None and "one seed" in verdict.why
    assert c.verdict_equivalent({"a": [50.0], "b": [50.1]}, margin=1.0).holds is None
    assert c.verdict_trend([5.0], what="slope", floor=1.0, unit="points").holds is None


def test_equivalence_needs_the_interval_inside_the_margin_and_noise_makes_it_harder():
    tight = c.verdict_equivalent({"a": [60.0, 60.4, 59.8], "b": [60.3, 60.6, 60.0]}, margin=1.0)
    assert tight.holds is True and "within +-1 points" in tight.why
    # The same means with noisy seeds: the old rule (gap within max(tolerance, spread)) passed more easily the
    # noisier the runs; the interval now reaches past the margin: undecided.
    noisy = {"a": [58.0, 62.0, 60.2], "b": [62.5, 58.1, 60.8]}
    assert c.verdict_equivalent(noisy, margin=1.0).holds is None
    far = c.verdict_equivalent({"a": [60.0, 60.4, 59.8], "b": [65.0, 65.5, 64.6], "c": [60.2, 60.1, 60.0]},
                               margin=1.0)
    assert far.holds is False and "a - b" in far.why


def test_trend_rule_has_an_effect_size_floor():
    assert c.verdict_trend([3.0, 3.4, 2.8], what="slope", floor=1.0, unit="points").holds is True
    # Significantly above zero but below the floor: undecided, whatever the interval.
    small = c.verdict_trend([0.30, 0.32, 0.31], what="slope", floor=1.0, unit="points")
    assert small.holds is None and "floor of 1 points" in small.why and small.difference.low > 0
    assert c.verdict_trend([-3.0, -3.4, -2.8], what="slope", floor=1.0, unit="points").holds is False
    assert c.verdict_trend([-0.3, -0.32, -0.31], what="slope", floor=1.0, unit="points").holds is None


def test_band_rule_and_regression_interval():
    assert c.verdict_in_band(c.regression_interval(1.95, 0.02, 6), 1.7, 2.3, what="k").holds is True
    assert c.verdict_in_band(c.regression_interval(1.0, 0.02, 6), 1.7, 2.3, what="k").holds is False
    assert c.verdict_in_band(c.regression_interval(2.2, 0.1, 6), 1.7, 2.3, what="k").holds is None
    few = c.verdict_in_band(c.regression_interval(2.0, 0.0, 2), 1.7, 2.3, what="k")
    assert few.holds is None and "too few points" in few.why


def test_all_rule_combines_and_scale_and_requirements_make_verdicts_undecided():
    yes, no, maybe = c.Verdict(True, "y"), c.Verdict(False, "n"), c.Verdict(None, "m")
    assert c.verdict_all([yes, yes]).holds is True and c.verdict_all([yes, maybe]).holds is None
    assert c.verdict_all([maybe, no]).holds is False
    assert c.verdict_all([yes, no], labels=["first", "second"]).why == "first: y; second: n"
    assert c.at_scale(yes, decidable=False).holds is None and "plumbing" in c.at_scale(yes, False).why
    missing = c.requirements_unmet(support_draws=[5, 3], heldout_images=[1000, 100], unextended_edges=["seed 1"])
    assert len(missing) == 3 and "3 support draws" in missing[0] and "100 held-out" in missing[1]
    assert c.requirements_unmet(support_draws=[5, 5], heldout_images=[1000]) == []
    assert c.requirements_unmet(heldout_images=[200], heldout_available=200) == []  # all the data has
    waiting = c.needs_next_run(yes, missing)
    assert waiting.holds is None and waiting.why.startswith("needs the next run") and "(as measured: y)" in waiting.why


# --- claims.json ------------------------------------------------------------------------------------------------

def test_claim_entries_round_trip_and_malformed_ones_are_refused(tmp_path):
    ours = {"ViT": {0: 50.0, 1: 51.0, 2: 52.0}, "BiT": {0: 60.0, 1: 61.5, 2: 62.0}}
    verdict = c.verdict_above(ours["BiT"], ours["ViT"], names=("BiT", "ViT"))
    entry = c.claim_entry("ViT below BiT", "Fig. 3", "top-1 %", ours, verdict, rule="paired interval above zero")
    assert entry["ours"]["ViT"] == [51.0, 1.0, 3] and entry["holds"] is True and entry["verdict"] == "holds"
    assert entry["per_seed"]["BiT"] == {"0": 60.0, "1": 61.5, "2": 62.0}
    assert entry["difference"]["seeds"] == 3 and entry["difference"]["paired"] is True
    low, high = entry["difference"]["interval90"]
    assert low < entry["difference"]["mean"] < high
    path = c.write_claims([entry], tmp_path)
    assert c.read_claims(tmp_path) == [json.loads(json.dumps(entry))]
    assert json.loads(path.read_text())[0]["holds"] is True  # JSON true, not a string
    with pytest.raises(ValueError, match="holds"):
        c.write_claims([{**entry, "holds": "yes"}], tmp_path)
    with pytest.raises(ValueError, match="lacks"):
        c.write_claims([{k: v for k, v in entry.items() if k != "why"}], tmp_path)
    with pytest.raises(ValueError, match="mean, std, seeds"):
        c.write_claims([{**entry, "ours": {"ViT": 51.0}}], tmp_path)
    with pytest.raises(ValueError, match="holds"):
        c.claim_entry("c", "p", "m", ours, ("maybe", "why"))
    table = c.claims_markdown([entry])
    assert "difference (90% interval)" in table and f"[{low:+.2f}, {high:+.2f}], 3 paired seeds" in table

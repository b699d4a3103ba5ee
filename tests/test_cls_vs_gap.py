"""Notebook 03 (class token vs GAP, Fig. 9): verdicts, tables and configs from hand-made run directories."""
import pytest

from repro.experiments import cls_vs_gap as gap_exp

from fakes import fake_probed_run as fake_run


# --- notebook 03: class token vs GAP -------------------------------------------------------------------

def make_gap_runs(tmp_path, values: dict, scale="cpu") -> gap_exp.Runs:
    """Runs of notebook 03: ``values`` maps (pool, lr) to its final 5-shot top-1 (%) per seed."""
    lrs = sorted({lr for _, lr in values})
    seeds = max(len(v) for v in values.values())
    runs = gap_exp.Runs(gap_exp.get_config(scale, seeds=list(range(seeds)), lrs=lrs), tmp_path)
    for (pool, lr), per_seed in values.items():
        for seed, v in enumerate(per_seed):
            run_dir = fake_run(tmp_path / f"{pool}-{lr}-{seed}", fewshot=v, test=v + 3)  # held-out ranks like 5-shot
            runs.records.append(gap_exp.RunRecord(pool, lr, seed, run_dir))
    return runs


def fig9_values(cls=(40.0, 50.0, 45.0), gap=(50.0, 44.0, 38.0)):
    """Per lr (1e-3, 3e-3, 9e-3): a class token best at 3e-3 and GAP best at 1e-3, by default. The three seeds
    scatter by +-0.3 points, in the opposite order at neighbouring lrs, so paired differences have a spread."""
    lrs = (1e-3, 3e-3, 9e-3)
    out = {}
    for pool, means in (("cls", cls), ("gap", gap)):
        for i, (lr, m) in enumerate(zip(lrs, means)):
            out[(pool, lr)] = (m - 0.3, m, m + 0.3) if i % 2 == 0 else (m + 0.3, m, m - 0.3)
    return out


@pytest.mark.parametrize("cls, gap, expected", [
    ((40.0, 50.0, 45.0), (50.0, 44.0, 38.0), (True, True)),    # the paper's picture
    ((40.0, 50.0, 45.0), (44.0, 50.3, 38.0), (True, False)),   # GAP best at the class token's lr
    ((40.0, 50.0, 45.0), (50.0, 49.8, 38.0), (True, None)),    # GAP's best lower, but the interval straddles 0
    ((40.0, 50.0, 45.0), (46.0, 44.0, 38.0), (False, True)),   # GAP 4 points worse at its best
])
def test_cls_vs_gap_verdicts_follow_the_numbers(tmp_path, cls, gap, expected):
    runs = make_gap_runs(tmp_path, fig9_values(cls, gap))
    same, lr = gap_exp.claims(runs)
    assert (same["holds"], lr["holds"]) == expected
    assert "held-out choice: class token 0.003" in same["why"]
    assert set(same["ours"]) == {"class token @ lr 0.003", f"GAP @ lr {gap_exp.best_lr(runs, 'gap'):g}"}


def test_cls_vs_gap_table_curves_and_probe_steps(tmp_path):
    runs = make_gap_runs(tmp_path, fig9_values())
    table = gap_exp.table(runs)
    assert len(table) == 6 and table["chosen on held-out"].sum() == 2
    best = table[table["chosen on held-out"]].set_index("pool")["lr"]
    assert best["class token"] == "0.003" and best["GAP"] == "0.001"
    assert {"test top-1 (%)", "params (M)", "train images/s", "paper"} <= set(table.columns)
    curves = gap_exp.curves(runs)
    assert len(curves) == 6 * 3 * 2 and sorted(curves["step"].unique()) == [5, 10]
    assert gap_exp.get_config("cpu").probe_steps == (150, 350)
    smoke = gap_exp.get_config("smoke")
    assert all(s % smoke.train.log_every == 0 and 0 < s < smoke.steps for s in smoke.probe_steps)


def test_config_builds_each_pools_run():
    cpu = gap_exp.get_config("cpu")
    run = cpu.pool_run("gap", 4e-3, seed=2)
    assert (run.model, run.steps, run.lr, run.seed, run.eval_every) == ("ViT-XXS/4", 500, 4e-3, 2, 0)
    assert run.model_overrides == {"representation_size": 64, "pool": "gap"}
    with pytest.raises(ValueError, match="JFT"):
        gap_exp.get_config("paper")
    with pytest.raises(ValueError, match="lrs=\\[\\] must be a non-empty list"):
        gap_exp.get_config("cpu", lrs=[])

"""Notebook 02 (position embeddings, Table 8): verdicts, tables and configs from hand-made run directories."""
import numpy as np
import pytest

from repro.experiments import position_embeddings as pos_exp
from repro.paper import PAPER

from fakes import fake_probed_run as fake_run


# --- notebook 02: Table 8 ------------------------------------------------------------------------------

def make_pos_runs(tmp_path, values: dict, scale="cpu", draws: int = 5) -> pos_exp.Runs:
    """Runs of notebook 02: ``values`` maps (kind, placement) to its 5-shot top-1 (%) per seed."""
    stem_seeds = max(len(v) for (k, p), v in values.items() if p == "stem")
    other = [len(v) for (k, p), v in values.items() if p != "stem"]
    config = pos_exp.get_config(scale, seeds=list(range(stem_seeds)), placement_seeds=list(range(max(other or [1]))))
    runs = pos_exp.Runs(config, tmp_path)
    for (kind, placement), per_seed in values.items():
        for seed, v in enumerate(per_seed):
            run_dir = fake_run(tmp_path / f"{kind}-{placement}-{seed}", fewshot=v, test=v + 5, draws=draws)
            runs.records.append(pos_exp.RunRecord(kind, placement, seed, run_dir))
    return runs


def table8_values(none=(50.0, 50.5, 49.5), d1=(60.0, 60.5, 59.5), d2=(60.2, 60.0, 60.4), rel=(59.8, 60.3, 60.1),
                  placements=None):
    values = {("none", "stem"): none, ("1d", "stem"): d1, ("2d", "stem"): d2, ("relative", "stem"): rel}
    values.update(placements if placements is not None else {
        ("1d", "every_layer"): (60.1,), ("2d", "every_layer"): (60.3,),
        ("1d", "every_layer_shared"): (59.9,), ("2d", "every_layer_shared"): (60.0,)})
    return values


def test_table8_has_the_papers_shape_and_numbers(tmp_path):
    t8 = pos_exp.table8(make_pos_runs(tmp_path, table8_values()))
    assert list(t8["position embedding"]) == ["none", "1-D", "2-D", "relative"]
    assert list(t8.columns) == ["position embedding", "stem: ours", "stem: paper", "every layer: ours",
                                "every layer: paper", "every layer, shared: ours", "every layer, shared: paper"]
    # n/a exactly where Table 8 has no cell: none and relative off the stem.
    for row in ("none", "relative"):
        cells = t8.set_index("position embedding").loc[row]
        assert cells["every layer: ours"] == cells["every layer, shared: paper"] == "n/a"
    papers = t8.set_index("position embedding")
    assert papers.loc["1-D", "every layer, shared: paper"] == "64.292"
    assert papers.loc["none", "stem: paper"] == "61.382" and papers.loc["2-D", "every layer: paper"] == "64.046"
    assert papers.loc["1-D", "stem: ours"] == "60.00 ± 0.50 (3 seeds)"
    assert papers.loc["2-D", "every layer: ours"] == "60.30 (1 seed)"
    assert PAPER["table8/relative/stem"].value == 64.032


PLACEMENTS_3_SEEDS = {("1d", "every_layer"): (60.1, 60.4, 59.7), ("2d", "every_layer"): (60.3, 59.9, 60.2),
                      ("1d", "every_layer_shared"): (59.9, 60.6, 59.8), ("2d", "every_layer_shared"): (60.0, 60.1, 60.5)}


def test_position_claims_hold_on_table8_like_numbers(tmp_path):
    runs = make_pos_runs(tmp_path, table8_values(placements=PLACEMENTS_3_SEEDS))
    none, kind, placement = pos_exp.claims(runs)
    assert none["claim"] == pos_exp.NONE_CLAIM and none["holds"] is True and "2-D @ stem - none @ stem" in none["why"]
    assert kind["holds"] is True and set(kind["ours"]) == {"1-D @ stem", "2-D @ stem", "relative @ stem"}
    assert placement["holds"] is True and placement["ours"]["1-D @ every layer"][2] == 3
    assert "1.5" in kind["claim"] and "margin" in kind["rule"]
    table = pos_exp.table(runs)
    assert len(table) == 8 and table["paper"].str.contains("claim: ").all()
    assert table.loc[0, "test top-1 (%)"] == pytest.approx(55.0)


def test_one_seed_placements_and_too_few_support_draws_leave_claims_undecided(tmp_path):
    """The old rule borrowed a std for one-seed cells and decided; one seed now never decides, and probes over
    3 support draws (the old probe) ask for the next run."""
    (_, _, placement) = pos_exp.claims(make_pos_runs(tmp_path / "a", table8_values()))
    assert placement["holds"] is None and "one seed" in placement["why"]
    none, kind, _ = pos_exp.claims(make_pos_runs(tmp_path / "b", table8_values(), draws=3))
    assert none["holds"] is None and none["why"].startswith("needs the next run: few-shot scores over 3 support draws")
    assert "as measured" in kind["why"]


@pytest.mark.parametrize("values, expected", [
    (table8_values(none=(59.0, 61.0, 60.0), placements=PLACEMENTS_3_SEEDS), (None, True, True)),  # none level
    (table8_values(rel=(55.0, 55.2, 54.8), placements=PLACEMENTS_3_SEEDS), (True, False, True)),  # relative 5 down
    (table8_values(placements={**PLACEMENTS_3_SEEDS, ("1d", "every_layer"): (57.0, 57.5, 56.5)}),
     (True, True, False)),                                                        # 1-D every layer 3 points down
])
def test_position_claim_verdicts_follow_the_numbers(tmp_path, values, expected):
    assert tuple(c["holds"] for c in pos_exp.claims(make_pos_runs(tmp_path, values))) == expected


def test_smoke_scale_leaves_position_claims_undecided(tmp_path):
    found = pos_exp.claims(make_pos_runs(tmp_path, table8_values(), scale="smoke"))
    assert [c["holds"] for c in found] == [None, None, None] and all("plumbing" in c["why"] for c in found)


def test_similarity_mosaic_places_each_patch_tile():
    grid = (2, 3)
    sim = np.arange(36, dtype=float).reshape(6, 6)   # row i: patch i's similarity with every patch
    mosaic = pos_exp.similarity_mosaic(sim, grid)
    assert mosaic.shape == (2 * 3 - 1, 3 * 4 - 1)
    np.testing.assert_array_equal(mosaic[3:5, 4:7], sim[4].reshape(2, 3))  # patch (1, 1) = raster index 4
    assert np.isnan(mosaic[2]).all() and np.isnan(mosaic[:, 3]).all()     # separators


def test_configs_check_their_settings():
    cpu = pos_exp.get_config("cpu")
    assert (cpu.model, cpu.image_size, cpu.batch_size, cpu.steps, cpu.lr) == ("ViT-XXS/4", 32, 128, 900, 2e-3)
    assert cpu.grid == (8, 8) and len(cpu.seeds) >= 3
    gpu = pos_exp.get_config("gpu")
    assert gpu.grid == (8, 8) and len(gpu.seeds) == len(gpu.placement_seeds) == 3
    assert pos_exp.get_config("cpu", steps=200, lr=None).steps == 200
    with pytest.raises(TypeError, match="unexpected keyword argument 'stpes'"):
        pos_exp.get_config("cpu", stpes=200)
    with pytest.raises(ValueError, match="JFT"):
        pos_exp.get_config("paper")
    # Each cell's run carries this experiment's model and budget, the tanh pre-logits layer of its width and the
    # cell's position embedding; the probe reads the run's own data.
    run = cpu.cell_run("2d", "every_layer", seed=1)
    assert (run.model, run.steps, run.lr, run.seed, run.out_dir) == ("ViT-XXS/4", 900, 2e-3, 1, str(cpu.out / "runs"))
    assert run.model_overrides == {"representation_size": 64, "pos_embed": "2d", "pos_embed_placement": "every_layer"}
    assert (cpu.probe.dataset, cpu.probe.max_train, cpu.probe.max_test) == ("cifar10", 5000, None)

"""Layer 3: every notebook runs through papermill at smoke scale and writes its results files."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from repro.lab import KERNELSPEC, STRIP_OPTIONS
from repro.reproduce import check_parameters, list_notebooks, run_notebooks, scale_refusal
from repro.paths import REPO_ROOT

NOTEBOOKS = list_notebooks()

# What each notebook must leave in results/<notebook>/smoke/ besides its executed copy.
COMMON_FILES = ["table.csv", "table.md", "claims.json", "findings.json"]
EXPECTED_FILES = {
    "01_pretrain_and_transfer": ["curves.png", "transfer.png", "claims.png", "lr_table.csv", "lr_table.md"],
    "02_position_embeddings": ["table8.csv", "table8.md", "position_similarity.png", "claims.png"],
    "03_cls_vs_gap": ["curves.csv", "accuracy_vs_steps.png", "claims.png"],
    "04_data_scaling": ["slopes.csv", "slopes.md", "data_scaling.png", "claims.png"],
    "05_compute_scaling": ["fronts.csv", "accuracy_vs_compute.png", "lr_table.csv"],
    "06_masked_patch_prediction": ["ablation.csv", "ablation.md", "mpp_predictions.png", "claims.png", "lr_table.csv"],
    "07_inspect": ["attention_cost.csv", "attention_cost.md", "fig7_left_filters.png", "fig7_centre_position_similarity.png",
                   "fig7_right_attention_distance.png", "fig6_rollout.png", "attention_cost.png", "claims.png"],
}
CLAIM_KEYS = {"claim", "paper", "metric", "ours", "per_seed", "difference", "rule", "holds", "verdict", "why"}
MAX_PROGRESS_LINES = 20   # printed lines per executed notebook (progress, budgets): no per-window flood
# Notebooks whose claims.json is checked (every notebook will write one).
WRITES_CLAIMS = {"01_pretrain_and_transfer", "02_position_embeddings", "03_cls_vs_gap", "04_data_scaling",
                 "05_compute_scaling", "06_masked_patch_prediction", "07_inspect"}


def absolute_occurrences(text: str, path) -> list[str]:
    """Where ``path`` appears as an absolute path in ``text``; inside a relative one ("../../tmp/x") it does not count."""
    return re.findall(r"(?<![.\w])" + re.escape(str(path)) + r".{0,40}", text)


def test_notebooks_are_committed_without_outputs():
    """Committed as the git filter (nbstripout, .gitattributes) leaves them, naming the project's kernel: opening,
    running and saving one in JupyterLab changes nothing git sees."""
    for nb in NOTEBOOKS:
        text = nb.read_text()
        cells = json.loads(text)["cells"]
        assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), nb.name
        assert not any(c.get("execution_count") for c in cells if c["cell_type"] == "code"), nb.name
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), f"{nb.name}: no parameters cell"
        assert json.loads(text)["metadata"] == {"kernelspec": KERNELSPEC}, nb.name
        stripped = subprocess.run([sys.executable, "-m", "nbstripout", *STRIP_OPTIONS.split(), "-t", str(nb)],
                                  capture_output=True, text=True, check=True).stdout
        assert stripped == text, f"{nb.name} is not as the git filter writes it: run nbstripout {STRIP_OPTIONS} on it"


def test_notebooks_write_where_their_out_dir_says_whatever_the_working_directory():
    """The default out_dir (None) is the interactive folder lab/results, never the committed results/."""
    import papermill as pm

    for nb in NOTEBOOKS:
        assert pm.inspect_notebook(str(nb))["out_dir"]["default"] == "None", nb.name


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_smoke_scale(notebook, tmp_path):
    (executed,) = run_notebooks("smoke", out_dir=tmp_path, notebooks=[notebook.stem])
    out = tmp_path / notebook.stem / "smoke"
    assert executed == out / notebook.name and executed.exists()
    for name in COMMON_FILES + EXPECTED_FILES[notebook.stem]:
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "table.csv")
    assert len(table) > 0 and {"test top-1 (%)", "params (M)", "train images/s", "paper"} <= set(table.columns)
    md = (out / "table.md").read_text()
    assert md.startswith("| ") and "claim: " in md  # not comparable at smoke scale: the claim and our verdict
    if notebook.stem in WRITES_CLAIMS:
        claims = json.loads((out / "claims.json").read_text())
        assert isinstance(claims, list) and claims
        for entry in claims:
            assert set(entry) == CLAIM_KEYS
            assert entry["holds"] is None and entry["why"] and entry["rule"]  # smoke decides nothing
            for mean, std, seeds in entry["ours"].values():
                assert isinstance(mean, float) and seeds >= 1 and (std is None or std >= 0)
    # Portable: no absolute path of this machine in the executed copy (metadata included) or the tables.
    executed_text = executed.read_text()
    for path in (REPO_ROOT, tmp_path):
        assert not absolute_occurrences(executed_text, path), absolute_occurrences(executed_text, path)
    meta = json.loads(executed_text)["metadata"]["papermill"]
    assert meta["input_path"] == f"notebooks/{notebook.name}" and not meta["parameters"]["out_dir"].startswith("/")
    for name in ("table.csv", "table.md", "claims.json"):
        assert not absolute_occurrences((out / name).read_text(), tmp_path), name
    assert "application/vnd.jupyter.widget" not in executed_text  # progress as lines, no widget state
    assert json.loads(executed_text)["metadata"]["kernelspec"] == KERNELSPEC  # run by the project's kernel
    streams = [o for cell in json.loads(executed_text)["cells"] for o in cell.get("outputs", [])
               if o.get("output_type") == "stream"]
    printed = "".join("".join(o["text"]) for o in streams)
    assert printed.count("\n") <= MAX_PROGRESS_LINES, printed
    assert "interrupted at step" not in printed and "decode " not in printed and not any(
        o["name"] == "stderr" for o in streams)
    assert (tmp_path / "SUMMARY.md").exists()


def test_unknown_or_mistyped_notebook_parameters_are_errors():
    nb = NOTEBOOKS[0]
    with pytest.raises(TypeError, match="no parameter"):
        check_parameters(nb, {"scael": "cpu"})
    with pytest.raises(TypeError, match="should be str"):
        check_parameters(nb, {"scale": 3})


def test_scales_a_notebook_does_not_run_at_are_found_before_anything_runs(tmp_path, capsys, monkeypatch):
    by_number = {nb.stem[:2]: nb for nb in NOTEBOOKS}
    assert scale_refusal(by_number["01"], "paper") is None
    assert "JFT-300M" in scale_refusal(by_number["02"], "paper")
    assert all(scale_refusal(nb, "cpu") is None for nb in NOTEBOOKS)
    with pytest.raises(ValueError, match="02_position_embeddings: notebook 02 runs at"):
        run_notebooks("paper", out_dir=tmp_path, notebooks=["02"])
    # All notebooks at paper scale: the others are skipped with their reason and only 01 is started.
    import papermill
    started = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda src, *a, **k: started.append(Path(src).stem))
    # The checkpoint is checked before anything runs (issue 20): it must be a checkpoint file.
    from repro.checkpoints import save_checkpoint
    from repro.models import create_model
    ckpt = save_checkpoint(create_model("ViT-XXS/8", num_classes=10, img_size=32), tmp_path / "ckpt")
    run_notebooks("paper", out_dir=tmp_path, extra_parameters={"pretrained_checkpoint": str(ckpt)})
    assert started == ["01_pretrain_and_transfer"]
    assert capsys.readouterr().out.count("skipping") == len(NOTEBOOKS) - 1

"""Layer 3: every notebook runs through papermill at smoke scale and writes its results files."""
import json

import pandas as pd
import pytest

from repro.reproduce import check_parameters, list_notebooks, run_notebooks

NOTEBOOKS = list_notebooks()

# What each notebook must leave in results/<notebook>/smoke/ besides its executed copy.
EXPECTED_FILES = {
    "01_pretrain_and_transfer": ["table.csv", "table.md", "curves.png"],
}


def test_notebooks_are_committed_without_outputs():
    for nb in NOTEBOOKS:
        cells = json.loads(nb.read_text())["cells"]
        assert not any(c.get("outputs") for c in cells if c["cell_type"] == "code"), nb.name
        assert any("parameters" in c.get("metadata", {}).get("tags", []) for c in cells), f"{nb.name}: no parameters cell"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_at_smoke_scale(notebook, tmp_path):
    (executed,) = run_notebooks("smoke", out_dir=tmp_path, notebooks=[notebook.stem])
    out = tmp_path / notebook.stem / "smoke"
    assert executed == out / notebook.name and executed.exists()
    for name in EXPECTED_FILES.get(notebook.stem, ["table.csv", "table.md"]):
        assert (out / name).stat().st_size > 0, name
    table = pd.read_csv(out / "table.csv")
    assert len(table) > 0 and "paper_top1" in table.columns
    md = (out / "table.md").read_text()
    assert md.startswith("| ") and "(Table" in md  # the paper's number comes with its source


def test_unknown_or_mistyped_notebook_parameters_are_errors():
    nb = NOTEBOOKS[0]
    with pytest.raises(TypeError, match="no parameter"):
        check_parameters(nb, {"scael": "cpu"})
    with pytest.raises(TypeError, match="should be str"):
        check_parameters(nb, {"scale": 3})

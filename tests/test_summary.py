"""results/SUMMARY.md, the learning-curve diagnostics, the README's Scales table and the notebooks' progress lines."""
import json
from pathlib import Path

import pytest

from repro import claims as c
from repro.experiments.catalog import NOTEBOOKS, scales_markdown
from repro.progress import PROGRESS_ENV, RunProgress
from repro.summary import build_summary, curve_sentence, curve_status, write_findings

REPO = Path(__file__).resolve().parents[1]


def write_metrics(run_dir: Path, train_acc, val_acc=()) -> Path:
    run_dir.mkdir(parents=True)
    rows = [{"event": "start", "step": 0, "train_examples": 1000}]
    rows += [{"event": "train", "step": 10 * (i + 1), "accuracy": a} for i, a in enumerate(train_acc)]
    rows += [{"event": "eval", "split": "val", "step": 10 * (i + 1), "accuracy": a} for i, a in enumerate(val_acc)]
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return run_dir


def test_curve_status_tells_a_run_still_learning_from_one_that_has_settled(tmp_path):
    rising = write_metrics(tmp_path / "rising", [0.2, 0.3, 0.4, 0.5], val_acc=[0.2, 0.3, 0.4, 0.45])
    flat = write_metrics(tmp_path / "flat", [0.2, 0.5, 0.6, 0.6], val_acc=[0.3, 0.5, 0.55, 0.5])
    status = curve_status([rising, flat])
    assert status == {"runs": 2, "still_rising": 1, "last_quarter_gain": pytest.approx(5.0), "best_last": 1,
                      "with_heldout": 2}
    text = curve_sentence(curve_status([rising]), "runs")
    assert "1 of 1 runs" in text and "compute-bound" in text and "best held-out score is the last" in text


def test_summary_lists_every_claim_with_its_interval_and_each_notebooks_reasons(tmp_path):
    ours = {"a": {0: 60.0, 1: 61.0, 2: 62.0}, "b": {0: 50.0, 1: 50.5, 2: 51.5}}
    entry = c.claim_entry("A above B (Fig. 1)", "Fig. 1: A above B", "top-1 (%)", ours,
                          c.verdict_above(ours["a"], ours["b"], names=("a", "b")))
    waiting = c.claim_entry("C above D (Fig. 2)", "Fig. 2", "top-1 (%)", ours, c.needs_next_run(
        c.verdict_above(ours["a"], ours["b"], names=("a", "b")), ["few-shot scores over 3 support draws"]))
    for scale in ("cpu", "smoke"):
        out = tmp_path / "01_first" / scale
        c.write_claims([entry, waiting], out)
        write_findings(out, notebook="01_first", title="First", scale=scale, paper="The paper found A.",
                       why=["Runs were short.", None])
    text = build_summary(tmp_path)
    assert "2 claims: 1 hold, 0 do not hold, 1 undecided (1 of them need the next run)" in text
    assert "| 01 | cpu | A above B (Fig. 1) |" in text and "| 01 | smoke |" not in text  # smoke only when alone
    assert "+10.33 [" in text and "3 paired seeds" in text
    assert "needs the next run: few-shot scores over 3 support draws |" in text
    assert "**The paper.** The paper found A." in text and "- Runs were short." in text
    assert "Undecided (needs the next run): C above D." in text


def test_readme_scales_table_is_generated_from_the_experiment_configs():
    readme = (REPO / "README.md").read_text()
    assert scales_markdown() in readme, "regenerate the README's Scales table: repro.experiments.catalog.scales_markdown()"
    assert set(NOTEBOOKS) == {p.stem for p in (REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")}


def test_committed_notebooks_hold_no_outputs_and_point_nowhere_outside():
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        for cell in notebook["cells"]:
            assert not cell.get("outputs"), f"{path.name} is committed with outputs"
            assert "PAPER.md" not in "".join(cell["source"]) and "DESIGN.md" not in "".join(cell["source"])


def test_progress_prints_about_a_dozen_lines_however_many_runs(monkeypatch, capsys):
    monkeypatch.setenv(PROGRESS_ENV, "lines")
    progress = RunProgress(48, "runs")
    assert progress.train_kwargs("ViT seed 0") == {"progress": False, "label": "ViT seed 0"}
    for i in range(48):
        progress.finished(f"run {i}")
    lines = capsys.readouterr().out.splitlines()
    assert 5 <= len(lines) <= 12 and lines[0].startswith("[1/48 runs") and lines[-1].startswith("[48/48 runs")
    monkeypatch.delenv(PROGRESS_ENV)
    assert RunProgress(3).train_kwargs("x")["progress"] is True

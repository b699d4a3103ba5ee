"""Tables come from run files only; the Markdown writer and seed summaries are exact."""
import json

import pandas as pd
import pytest

from repro.results import PAPER, load_run, read_jsonl, summarize_seeds, to_markdown, write_table


def test_summarize_seeds_gives_mean_spread_and_count():
    df = pd.DataFrame({"model": ["a", "a", "a", "b"], "acc": [1.0, 2.0, 3.0, 5.0]})
    out = summarize_seeds(df, ["model"], "acc").set_index("model")
    assert out.loc["a", "acc_mean"] == 2.0 and out.loc["a", "acc_std"] == pytest.approx(1.0)
    assert out.loc["a", "seeds"] == 3 and out.loc["b", "seeds"] == 1 and pd.isna(out.loc["b", "acc_std"])


def test_markdown_and_csv(tmp_path):
    df = pd.DataFrame({"model": ["ViT|B"], "ours": [58.634], "paper": [None]})
    assert to_markdown(df) == "| model | ours | paper |\n|---|---|---|\n| ViT\\|B | 58.63 | — |\n"
    csv, md = write_table(df, tmp_path, "t", note="a note")
    assert pd.read_csv(csv)["ours"].iloc[0] == 58.634 and md.read_text().endswith("a note\n")


def test_load_run_reads_only_files(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": "ViT-XS/4", "lr": 0.001}))
    (tmp_path / "final.json").write_text(json.dumps({"test": {"accuracy": 0.5, "loss": 1.0}, "train_seconds": 3}))
    (tmp_path / "metrics.jsonl").write_text(
        '{"event": "train", "step": 1, "images_per_s": 999}\n{"event": "train", "step": 2, "images_per_s": 100}\n'
        '{"event": "train", "step": 3, "images_per_s": 200}\n{"event": "tra')  # torn last line
    row = load_run(tmp_path)
    assert row["test_accuracy"] == 0.5 and row["finished"] and row["images_per_s"] == 150  # first window skipped
    assert len(read_jsonl(tmp_path / "metrics.jsonl")) == 3


def test_paper_numbers_have_sources():
    assert PAPER["table2/ViT-L/16 (I21k)/cifar10"].value == 99.15
    assert PAPER["table8/none"].value == 61.38 and PAPER["table8/1d"].source == "Table 8"

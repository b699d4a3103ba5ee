"""Tables come from run files only; the Markdown writer and seed summaries are exact."""
import json

import pandas as pd
import pytest

from repro.fileio import read_jsonl
from repro.flops import training_flops
from repro.paper import PAPER
from repro.paths import portable_text, repo_relative, REPO_ROOT
from repro.rundir import load_run
from repro.tables import summarize_seeds, to_markdown, write_table


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


def test_training_flops_counts_forward_and_backward_and_scales_with_batch_and_steps():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from repro.models import create_model

    model = create_model("ViT-XXS/8", num_classes=10, img_size=32)
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    per_image = training_flops("ViT-XXS/8", 32, 10)
    # Backward costs about twice the forward (measured 2.9-3.0x in total for these models).
    assert per_image == pytest.approx(3 * forward.get_total_flops() / 2, rel=0.1)
    assert training_flops("ViT-XXS/8", 32, 10, batch=32, steps=12) == pytest.approx(32 * 12 * per_image)
    assert training_flops("ViT-XXS/8", 48, 10) > 2 * per_image  # 36 patches instead of 16


def test_paths_written_into_results_are_never_absolute(tmp_path):
    assert repo_relative(REPO_ROOT / "results" / "x") == "results/x"
    assert not repo_relative(tmp_path).startswith("/")
    assert portable_text("local parquet /data/sets/cifar10 (45000)") == "local parquet .../sets/cifar10 (45000)"
    assert portable_text(f"embedded {REPO_ROOT}/repro/_data/cifar10_mini") == "embedded repro/_data/cifar10_mini"


def test_data_source_record_reads_as_one_portable_line():
    from repro.rundir import describe_data_source
    record = {"kind": "parquet", "root": "$REPRO_DATA_DIR", "path": "cifar10",
              "description": "local parquet $REPRO_DATA_DIR/cifar10", "images": {"train": 49000, "val": 1000}}
    assert describe_data_source(record) == "local parquet $REPRO_DATA_DIR/cifar10 (train 49000, val 1000 images)"
    assert describe_data_source(None) is None
    assert "/home/" not in describe_data_source("local parquet /home/someone/data/cifar10")


def test_markdown_leaves_run_folders_and_provenance_to_the_csv(tmp_path):
    """A table's Markdown fits a screen: run folders and the table's detail columns stay in the CSV, and the
    hardware and data source, the same for every row, are said once under the table."""
    df = pd.DataFrame({"model": ["a", "b"], "top-1": [50.0, 60.0], "hardware": ["CPU x", "CPU x"],
                       "data source": ["local parquet", "local parquet"], "run dirs": ["r/1", "r/2"],
                       "params (M)": [1.0, 2.0]})
    df.attrs["csv_only"] = ("params (M)",)
    md = to_markdown(df.drop(columns=[]))  # attrs survive pandas operations
    assert md.splitlines()[0] == "| model | top-1 |"
    assert "Hardware: CPU x. Data: local parquet. In the CSV also: run dirs, params (M)." in md
    csv, md_path = write_table(df, tmp_path, "t", note="the note")
    assert list(pd.read_csv(csv).columns) == list(df.columns)
    assert md_path.read_text().endswith("params (M).\n\nthe note\n")

"""The benchmark scripts run in their tiny modes and print their figures; evaluation time is kept out of the
training seconds; the GPU peak table answers by device name. (Never a timed test: no speed is asserted.)"""
import json
import sys
import time
from pathlib import Path

import pytest
import torch

import repro.train as engine
from repro.fileio import read_jsonl
from repro.runconfig import TrainConfig

from fakes import tiny_config

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from _common import run_engine, seconds_to, CurvePoint  # noqa: E402
import gpu  # noqa: E402
import time_to_accuracy  # noqa: E402
from gpu import peak_tflops  # noqa: E402


@pytest.fixture
def one_thread():
    """The tiny runs need no more, and stay quick on a machine busy with other work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_script(module, out: Path, capsys) -> tuple[str, dict]:
    """``python benchmarks/<script>.py --tiny --out <out>``, in this process: its stdout and summary.json."""
    module.main(["--tiny", "--out", str(out)])
    (path,) = out.glob("*/summary.json")
    return capsys.readouterr().out, json.loads(path.read_text())


def test_time_to_accuracy_tiny(tmp_path, capsys, one_thread):
    stdout, summary = run_script(time_to_accuracy, tmp_path, capsys)
    for text in ("command:", "torch CPU capability", "timm 1.", "| step | ours s | ours top-1 % | plain s |",
                 "ratio plain/ours", "evaluation excluded"):
        assert text in stdout, text
    assert [p["step"] for p in summary["ours"]] == [p["step"] for p in summary["plain"]] == [5, 10, 15, 20]
    for side in ("ours", "plain"):
        seconds = [p["seconds"] for p in summary[side]]
        assert all(0 < a < b for a, b in zip(seconds, seconds[1:])), seconds
        assert all(0 <= p["accuracy"] <= 1 for p in summary[side])
    assert [t["target"] for t in summary["targets"]] == [10, 20]


def test_time_to_accuracy_patch_drop_is_ours_only_and_plain_has_its_own_steps(tmp_path, capsys, one_thread):
    time_to_accuracy.main(["--tiny", "--out", str(tmp_path), "--patch-drop", "0.5", "--plain-steps", "10"])
    (path,) = tmp_path.glob("*/summary.json")
    summary, stdout = json.loads(path.read_text()), capsys.readouterr().out
    assert summary["config"]["model_overrides"]["patch_drop"] == 0.5
    assert [p["step"] for p in summary["ours"]] == [5, 10, 15, 20]
    assert [p["step"] for p in summary["plain"]] == [5, 10]
    assert "10 steps" in stdout and "no patch dropping" in stdout


def test_gpu_tiny(tmp_path, capsys, one_thread):
    stdout, summary = run_script(gpu, tmp_path, capsys)
    for text in ("TINY MODE", "PLACEHOLDER", "GFLOPs/image", "MFU", "ratio ours/timm", "| 94 |"):
        assert text in stdout, text
    ours, theirs = (summary["throughput"][k] for k in ("ours ViT-XXS/8", "timm VisionTransformer (same shape)"))
    assert ours["images_per_s"] > 0 and 0 < ours["mfu"] < 1
    # The same architecture: the same FLOPs, counted by FlopCounterMode.
    assert ours["gflops_per_image"] == pytest.approx(theirs["gflops_per_image"], rel=1e-6)
    assert [p["step"] for p in summary["cifar10"]["curve"]] == [5, 10, 15, 20]


def tiny(tmp_path, **kw) -> TrainConfig:
    base = dict(max_train=256, max_test=128, batch_size=32, steps=8, warmup_steps=2, eval_every=2, log_every=2,
                checkpoint_every=200, heldout=False, run_name="r")
    return tiny_config(tmp_path, **{**base, **kw})


def test_evaluation_time_is_left_out(tmp_path, monkeypatch, one_thread):
    real_evaluate = engine.evaluate

    def slow_evaluate(*args):
        time.sleep(0.3)
        return real_evaluate(*args)

    monkeypatch.setattr(engine, "evaluate", slow_evaluate)
    run_dir, curve, stopped = run_engine(tiny(tmp_path))
    assert stopped == "all steps done" and [p.step for p in curve] == [2, 4, 6, 8]
    wall = [r["seconds"] for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("event") == "train"]
    # Evaluations at steps 2, 4 and 6 (0.3 s of sleep each) lie before the last train record; the final one after.
    assert 0.9 <= wall[-1] - curve[-1].seconds < 1.15
    assert 0.3 <= wall[1] - curve[1].seconds < 0.45


def test_stops_at_accuracy_or_budget(tmp_path, one_thread):
    _, curve, stopped = run_engine(tiny(tmp_path, run_name="acc"), stop_at=0.0)
    assert "reached" in stopped and [p.step for p in curve] == [2]  # seen at the log step after the evaluation
    _, curve, stopped = run_engine(tiny(tmp_path, run_name="budget"), budget_s=0.0)
    assert "budget" in stopped and curve == []
    assert seconds_to([CurvePoint(1, 2.0, 0.4), CurvePoint(2, 3.0, 0.6)], 0.5) == 3.0
    assert seconds_to([CurvePoint(1, 2.0, 0.4)], 0.5) is None


def test_peak_table_by_device_name():
    assert peak_tflops("NVIDIA H200")[0] == 989
    assert peak_tflops("NVIDIA H100 PCIe")[0] == 756
    assert peak_tflops("NVIDIA H100 80GB HBM3")[0] == 989
    assert peak_tflops("NVIDIA L40S")[0] == 362 and peak_tflops("NVIDIA L4")[0] == 121
    assert peak_tflops("NVIDIA A100-SXM4-80GB")[0] == 312
    assert peak_tflops("Some GPU")[0] is None and peak_tflops("Some GPU", 500.0)[0] == 500
    value, text = peak_tflops(None)
    assert value > 0 and "PLACEHOLDER" in text


def test_plain_augmentation_is_a_window_of_the_reflection_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 8, 8)
    out = time_to_accuracy.pad_crop_flip(x, 2, True, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(6):
        windows = [padded[i, :, t:t + 8, s:s + 8] for t in range(5) for s in range(5)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(-1)) for w in windows)
    assert torch.equal(time_to_accuracy.pad_crop_flip(x, 0, False, g), x)

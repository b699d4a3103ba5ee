"""The training engine on CPU: resume is exact, NaN stops cleanly, DDP matches one process, CLI checks input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repro.cli import main as cli_main, parse_overrides
from repro.fileio import read_jsonl
from repro.rundir import load_run
from repro.runconfig import finetune_config, TrainConfig
from repro.rundir import read_final
from repro.train import finetune_sweep, lr_at, NonFiniteLoss, train

from fakes import tiny_config

REPO = Path(__file__).resolve().parents[1]


def tiny(tmp_path, **kw) -> TrainConfig:
    # dropout on: resume must restore its randomness too
    base = dict(max_train=256, max_test=128, batch_size=32, steps=12, warmup_steps=3, log_every=3, checkpoint_every=4,
                model_overrides={"dropout": 0.1})
    return tiny_config(tmp_path / "runs", **{**base, **kw})


def train_losses(run_dir):
    return [r["loss"] for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if r.get("event") == "train"]


def test_run_directory_contents(tmp_path):
    run_dir = train(tiny(tmp_path), progress=False)
    for name in ("config.json", "metrics.jsonl", "env.json", "final.json", "model.safetensors", "model.json"):
        assert (run_dir / name).exists(), name
    assert not (run_dir / "checkpoint.pt").exists()
    final = read_final(run_dir)
    assert set(final) >= {"val", "test"} and 0 <= final["test"]["accuracy"] <= 1
    env = json.loads((run_dir / "env.json").read_text())
    assert {"git_revision", "torch", "timm", "device", "seed"} <= set(env)
    records = read_jsonl(run_dir / "metrics.jsonl")
    train_records = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train_records] == [3, 6, 9, 12]
    assert all({"loss", "lr", "accuracy", "images_per_s", "seconds"} <= set(r) for r in train_records)


def test_interrupted_run_resumes_to_identical_metrics(tmp_path):
    reference = train(tiny(tmp_path, run_name="uninterrupted"), progress=False)

    def interrupt(step, record):
        if step == 6:
            raise KeyboardInterrupt  # what Ctrl-C does mid-run

    cfg = tiny(tmp_path, run_name="interrupted")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callback=interrupt, progress=False)
    ckpt = torch.load(cfg.run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 6
    resumed = train(cfg, progress=False)  # the same command again
    assert train_losses(resumed) == pytest.approx(train_losses(reference), abs=1e-6)
    assert read_final(resumed)["test"] == pytest.approx(read_final(reference)["test"], abs=1e-6)
    assert any(r.get("event") == "resume" for r in read_jsonl(resumed / "metrics.jsonl"))


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_killed_process_resumes(tmp_path):
    """SIGKILL (no chance to save) after a periodic checkpoint: the rerun continues from it."""
    cfg = tiny(tmp_path, steps=40, checkpoint_every=4, run_name="killed")
    reference = train(tiny(tmp_path, steps=40, checkpoint_every=4, run_name="whole"), progress=False)
    script = (
        "import sys, os, signal; from repro.train import TrainConfig, train\n"
        f"cfg = TrainConfig(**{cfg.to_dict()!r})\n"
        "def kill(step, record):\n"
        "    if step >= 9: os.kill(os.getpid(), signal.SIGKILL)\n"
        "train(cfg, callback=kill, progress=False)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert torch.load(cfg.run_dir / "checkpoint.pt", weights_only=True)["step"] == 8
    resumed = train(cfg, progress=False)
    assert train_losses(resumed) == pytest.approx(train_losses(reference), abs=1e-6)


def test_finished_run_is_not_redone(tmp_path):
    cfg = tiny(tmp_path)
    run_dir = train(cfg, progress=False)
    stamp = (run_dir / "final.json").stat().st_mtime_ns
    assert train(cfg, progress=False) == run_dir
    assert (run_dir / "final.json").stat().st_mtime_ns == stamp


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    cfg = tiny(tmp_path, steps=30, lr=1e6, warmup_steps=0, log_every=1, checkpoint_every=100, optimizer="sgd",
               weight_decay=0.0, model_overrides={})
    with pytest.raises(NonFiniteLoss, match="became"):
        train(cfg, progress=False)


def test_blown_up_weights_never_overwrite_the_last_good_checkpoint(tmp_path, monkeypatch):
    """Weights turn inf after step 5 while the logged loss has not been checked yet: the checkpoint of
    step 4 must stay, and the run must stop at the next checkpoint instead of saving the broken weights."""
    import repro.train as train_module

    real_make_optimizer = train_module.make_optimizer

    def sabotaged(model, cfg, device):
        optimizer = real_make_optimizer(model, cfg, device)
        real_step, calls = optimizer.step, []

        def step(*args, **kwargs):
            out = real_step(*args, **kwargs)
            calls.append(1)
            if len(calls) == 5:
                with torch.no_grad():
                    next(model.parameters()).fill_(float("inf"))
            return out
        optimizer.step = step
        return optimizer

    monkeypatch.setattr(train_module, "make_optimizer", sabotaged)
    cfg = tiny(tmp_path, steps=20, log_every=100, checkpoint_every=2)
    with pytest.raises(NonFiniteLoss, match="weights .* became NaN/inf by step 6"):
        train(cfg, progress=False)
    state = torch.load(cfg.run_dir / "checkpoint.pt", weights_only=True)
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_torn_metrics_line_does_not_break_resume(tmp_path):
    cfg = tiny(tmp_path, run_name="torn")

    def interrupt(step, record):
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, callback=interrupt, progress=False)
    with (cfg.run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"event": "train", "step": 7, "lo')  # what a SIGKILL mid-write leaves
    run_dir = train(cfg, progress=False)
    assert [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("event") == "train"] == [3, 6, 9, 12]


def test_run_without_its_weights_is_redone_elsewhere(tmp_path):
    """A fresh clone has the committed run files (config, metrics, final) but not the weights: train again."""
    cfg = tiny(tmp_path, run_name="cloned")
    run_dir = train(cfg, progress=False)
    first = read_final(run_dir)
    (run_dir / "model.safetensors").unlink()
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "out_dir": "/elsewhere", "log_every": 99}))
    assert train(cfg, progress=False) == run_dir
    assert (run_dir / "model.safetensors").exists()
    assert read_final(run_dir)["test"] == first["test"]
    assert [r["event"] for r in read_jsonl(run_dir / "metrics.jsonl")].count("start") == 1


def test_reused_run_name_with_another_config_is_refused(tmp_path):
    train(tiny(tmp_path, run_name="mine"), progress=False)
    with pytest.raises(ValueError, match="another config.*lr"):
        train(tiny(tmp_path, run_name="mine", lr=0.5), progress=False)


def test_learning_rate_schedules():
    cfg = TrainConfig(lr=1.0, steps=110, warmup_steps=10, schedule="linear")
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.5) and lr_at(110, cfg) == pytest.approx(0.0)
    cos = finetune_config(lr=1.0, steps=100)
    assert cos.optimizer == "sgd" and cos.grad_clip == 1.0 and cos.weight_decay == 0.0
    assert lr_at(50, cos) == pytest.approx(0.5) and lr_at(100, cos) == pytest.approx(0.0, abs=1e-12)


def test_finetune_at_higher_resolution_picks_lr_on_heldout(tmp_path):
    pre = train(tiny(tmp_path), progress=False)
    cfg = finetune_config(out_dir=str(tmp_path / "runs"), model="ViT-XXS/8", dataset="cifar10", data_dir="embedded",
                          max_train=256, max_test=128, batch_size=32, steps=4, log_every=2, image_size=48,
                          init_from=str(pre / "model.safetensors"))
    sweep = finetune_sweep(cfg, lrs=(0.01, 0.03), refit=False, progress=False)
    assert {0.01, 0.03} < set(sweep["val_accuracy"])  # and one lr past the edge chosen first
    assert sweep["val_accuracy"][sweep["best_lr"]] == max(sweep["val_accuracy"].values())
    best_cfg = json.loads((sweep["best_run"] / "config.json").read_text())
    assert best_cfg["lr"] == sweep["best_lr"] and best_cfg["heldout"] and best_cfg["optimizer"] == "sgd"
    start = read_jsonl(sweep["best_run"] / "metrics.jsonl")[0]
    assert start["event"] == "start" and start["init"]["resampled"] is not None  # 4x4 -> 6x6 position grid
    assert json.loads((sweep["best_run"] / "model.json").read_text())["config"]["img_size"] == [48, 48]
    refit = finetune_sweep(cfg, lrs=(0.01, 0.03), progress=False)  # the paper's default: train again on 100%
    refit_cfg = json.loads((refit["best_run"] / "config.json").read_text())
    assert refit_cfg["heldout"] is False and refit_cfg["lr"] == refit["best_lr"]
    assert "val" not in read_final(refit["best_run"]) and "test" in read_final(refit["best_run"])


def test_finetuned_bit_starts_from_a_zero_head(tmp_path):
    pre = train(tiny(tmp_path, model="R14x1", steps=2, model_overrides={}), progress=False)
    from repro.train import build_model_for
    model, info = build_model_for(finetune_config(model="R14x1", init_from=str(pre / "model.safetensors")), 10,
                                  torch.device("cpu"))
    head = model.get_classifier()
    assert all(p.abs().sum() == 0 for p in head.parameters())


def test_bad_config_values():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lamb")
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")


def test_cli_overrides_are_typed_and_checked():
    assert parse_overrides(TrainConfig, ["lr=0.01", "steps=5", "flip=false", "max_train=none",
                                         'model_overrides={"pos_embed": "2d"}']) == {
        "lr": 0.01, "steps": 5, "flip": False, "max_train": None, "model_overrides": {"pos_embed": "2d"}}
    with pytest.raises(ValueError, match="unknown key 'lrate'"):
        parse_overrides(TrainConfig, ["lrate=0.1"])
    with pytest.raises(ValueError, match="steps must be int"):
        parse_overrides(TrainConfig, ["steps=ten"])


def test_cli_pretrain_and_evaluate(tmp_path, capsys):
    out = str(tmp_path / "runs")
    assert cli_main(["pretrain", "--scale", "smoke", f"out_dir={out}", "steps=4", "log_every=2"]) == 0
    printed = json.loads(capsys.readouterr().out)
    run_dir = Path(printed["run_dir"])
    assert cli_main(["evaluate", str(run_dir / "model"), "--dataset", "cifar10", "--data-dir", "embedded",
                     "--max-examples", "64"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == 64 and 0 <= result["accuracy"] <= 1
    assert cli_main(["pretrain", "--scale", "smoke", "bogus=1"]) == 2
    assert "unknown key 'bogus'" in capsys.readouterr().err


def test_cli_help_runs(capsys):
    proc = subprocess.run([sys.executable, "-m", "repro", "--help"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "pretrain" in proc.stdout and "reproduce" in proc.stdout
    for command in ("pretrain", "finetune", "evaluate", "reproduce"):
        with pytest.raises(SystemExit) as exit_info:
            cli_main([command, "--help"])
        assert exit_info.value.code == 0 and "usage" in capsys.readouterr().out


DDP_SCRIPT = """
import json, os, sys
import torch
from repro.runconfig import TrainConfig
from repro.train import train
cfg = TrainConfig(**json.loads(sys.argv[1]))
train(cfg, progress=False)
"""


def test_torchrun_two_processes_match_one(tmp_path):
    """2 CPU ranks (gloo) at global batch 32 follow the loss curve of 1 process at batch 32."""
    cfg = tiny(tmp_path, steps=6, log_every=1, model_overrides={}, run_name="single")
    single = train(cfg, progress=False)
    ddp_cfg = dict(cfg.to_dict(), run_name="ddp", device="cpu")
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
         json.dumps(ddp_cfg)], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp_losses = train_losses(Path(cfg.out_dir) / "ddp")
    assert len(ddp_losses) == 6
    assert ddp_losses == pytest.approx(train_losses(single), rel=1e-4, abs=1e-5)


def test_run_names_do_not_depend_on_where_files_live(tmp_path):
    """The same fine-tuning in two folders: the checkpoint copied elsewhere and another out_dir give the same
    run name; a checkpoint with other bytes gives another one (issue: portable run directories)."""
    import shutil

    pre = train(tiny(tmp_path, steps=2), progress=False)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(pre, elsewhere)
    a = finetune_config(model="ViT-XXS/8", init_from=str(pre / "model.safetensors"), out_dir=str(tmp_path / "a"))
    b = finetune_config(model="ViT-XXS/8", init_from=str(elsewhere / "model.safetensors"), out_dir="b")
    assert a.run_dir.name == b.run_dir.name and a.identity_fields()["init_from"].startswith("sha256:")
    c = TrainConfig(data_dir="/some/where/cifar10")
    assert c.identity() == TrainConfig(data_dir=None).identity() != TrainConfig(data_dir="embedded").identity()
    other = train(tiny(tmp_path, steps=2, seed=1), progress=False)
    d = finetune_config(model="ViT-XXS/8", init_from=str(other / "model.safetensors"))
    assert d.run_dir.name != a.run_dir.name


def test_a_task_of_some_classes_trains_a_head_of_that_width(tmp_path):
    """classes= picks a source or target task (transfer below paper scale); its run records the selection."""
    from repro.checkpoints import load_model

    run_dir = train(tiny(tmp_path, steps=3, classes=(5, 6, 7), train_part="target", target_size=60,
                         max_train=None), progress=False)
    assert load_model(run_dir / "model.safetensors").head.out_features == 3
    described = load_run(run_dir)["data_source"]
    assert "classes 5, 6, 7; target part of train; train 59, val 1, test " in described, described
    with pytest.raises(ValueError, match="distinct class indices"):
        train(tiny(tmp_path, classes=(9, 10)), progress=False)
    with pytest.raises(ValueError, match="train_part"):
        tiny(tmp_path, train_part="held")


def test_fields_added_later_keep_earlier_run_names():
    """A config at the defaults of classes / train_part / target_size / data_format hashes as before they existed
    (the committed results' run directories keep their names); setting one changes the name."""
    cfg = TrainConfig()
    assert not {"classes", "train_part", "target_size", "data_format"} & set(cfg.identity_fields())
    assert TrainConfig(classes=(0, 1)).identity() != cfg.identity() != TrainConfig(train_part="source").identity()


# --- hooks, redraw mode, recorded digests and held-out lr choices ------------------------------------------------

def test_on_step_hook_sees_the_model_mid_run_and_changes_nothing(tmp_path):
    """Probing along training is an engine hook: the model of this very run, in eval mode, at the asked steps;
    the run's metrics are those of a run without the hook (no interruption, no resume)."""
    reference = train(tiny(tmp_path, run_name="plain"), progress=False)
    seen = []

    def probe(step, model):
        seen.append((step, model.training))
        model(torch.zeros(2, 3, 32, 32))  # a forward pass, as a probe makes

    hooked = train(tiny(tmp_path, run_name="hooked"), progress=False, at_steps=(3, 6, 12, 99), on_step=probe)
    assert seen == [(3, False), (6, False)]  # not at the last step (the final probe reads the saved model)
    assert train_losses(hooked) == pytest.approx(train_losses(reference), abs=1e-6)
    assert read_final(hooked)["test"] == pytest.approx(read_final(reference)["test"], abs=1e-6)
    assert not any(r.get("event") == "resume" for r in read_jsonl(hooked / "metrics.jsonl"))


def test_redraw_mode_returns_finished_runs_without_weights_and_trains_nothing(tmp_path, monkeypatch):
    from repro.rundir import REDRAW_ENV, RunNotFinished

    cfg = tiny(tmp_path)
    run_dir = train(cfg, progress=False)
    (run_dir / "model.safetensors").unlink()  # weights are not committed
    monkeypatch.setenv(REDRAW_ENV, "1")
    assert train(cfg, progress=False) == run_dir and (run_dir / "final.json").exists()
    with pytest.raises(RunNotFinished, match="redraw"):
        train(tiny(tmp_path, lr=0.5), progress=False)
    assert not tiny(tmp_path, lr=0.5).run_dir.exists()


def test_a_finetuning_keeps_its_name_when_the_weights_it_started_from_are_gone(tmp_path):
    """The weights' digest is recorded in model.json: a fine-tuning run of a committed pre-training (whose
    weights are not committed) has the same name in any clone."""
    parent = train(tiny(tmp_path), progress=False)
    meta = json.loads((parent / "model.json").read_text())
    child = finetune_config(**{**tiny(tmp_path).to_dict(), "init_from": str(parent / "model.safetensors"),
                               "optimizer": "sgd", "schedule": "cosine"})
    name = child.run_dir.name
    assert child.identity_fields()["init_from"] == f"sha256:{meta['weights_sha256']}"
    (parent / "model.safetensors").unlink()
    assert child.run_dir.name == name


def test_sweep_extends_the_grid_past_an_edge_and_records_the_held_out_size(tmp_path):
    cfg = finetune_config(**{**tiny(tmp_path).to_dict(), "steps": 6, "log_every": 3, "heldout_size": 40})
    sweep = finetune_sweep(cfg, lrs=(0.03, 0.01), refit=False, progress=False)
    assert sweep["heldout_images"] == 40 and read_final(sweep["best_run"])["val"]["count"] == 40
    first = 0.01 if sweep["val_accuracy"][0.01] >= sweep["val_accuracy"][0.03] else 0.03
    # Two lrs: either choice lies at an edge, so one more lr one grid step (3x) past it was trained.
    assert sweep["extended_to"] == pytest.approx(first / 3 if first == 0.01 else first * 3, rel=1e-2)
    assert len(sweep["grid"]) == 3 and sweep["grid"] == sorted(sweep["grid"])
    no_extension = finetune_sweep(cfg, lrs=(0.03, 0.01), refit=False, extend=False, progress=False)
    assert no_extension["extended_to"] is None and len(no_extension["grid"]) == 2


def test_heldout_size_is_a_later_field_that_keeps_committed_run_names():
    assert "heldout_size" not in TrainConfig().identity_fields()
    assert TrainConfig(heldout_size=1000).identity() != TrainConfig().identity()
    with pytest.raises(ValueError, match="heldout_size"):
        TrainConfig(heldout_size=0)


def test_keep_best_reports_and_keeps_the_best_held_out_evaluation(tmp_path):
    """Early stopping: with keep_best the saved weights and the reported scores are those of the best held-out
    evaluation along training, the last evaluation competing too; a resumed run keeps the same best."""
    from repro.checkpoints import load_model

    cfg = tiny(tmp_path, eval_every=3, keep_best=True, lr=0.05)  # a high lr, so held-out top-1 moves around
    run_dir = train(cfg, progress=False)
    records = read_jsonl(run_dir / "metrics.jsonl")
    val = {r["step"]: r["accuracy"] for r in records if r.get("event") == "eval" and r["split"] == "val"}
    final = read_final(run_dir)
    best_step = max(val, key=lambda s: (val[s], -s))
    assert final["best_step"] == best_step and final["val"]["accuracy"] == pytest.approx(val[best_step])
    assert final["last_val"]["accuracy"] == pytest.approx(val[cfg.steps])
    assert any(r.get("event") == "best" and r["split"] == "test" and r["step"] == best_step for r in records)
    assert load_model(run_dir / "model.safetensors") is not None
    interrupted = tiny(tmp_path, eval_every=3, keep_best=True, lr=0.05, run_name="resumed")

    def stop(step, record):
        if step == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(interrupted, callback=stop, progress=False)
    resumed = train(interrupted, progress=False)
    assert read_final(resumed)["best_step"] == final["best_step"]
    assert read_final(resumed)["test"] == pytest.approx(final["test"], abs=1e-6)
    with pytest.raises(ValueError, match="keep_best"):
        tiny(tmp_path, keep_best=True)  # no evaluation along training to keep the best of

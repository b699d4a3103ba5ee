"""Bad input, as a hostile user would give it: each case ends in one clear error naming the problem and the fix,
before any work is done, and nothing is lost (issue 9's reliability list, one test or parametrised case each)."""
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import repro.data as data
import repro.data.decode as data_decode
import repro.data.sources as data_sources
import repro.data.splits as data_splits
import repro.fileio as fileio
from repro.checkpoints import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from repro.cli import main as cli_main
from repro.data import DataError, load_split
from repro.fileio import NoSpaceError, atomic_write, atomic_write_text
from repro.models import create_model
from repro.runconfig import TrainConfig
from repro.rundir import atomic_torch_save, DataMismatch, ResumeError, RunDirBusy, RunDirLock
from repro.train import train

from fakes import tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    """No hub, no REPRO_DATA_DIR, a cache of this test's own."""
    monkeypatch.delenv("REPRO_DATA_DIR", raising=False)
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data_sources, "_hub_source", lambda info: (None, "hub disabled in tests"))


def tiny(tmp_path, **kw) -> TrainConfig:
    return tiny_config(tmp_path / "runs", **kw)


def png(k: int, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), k, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def write_parquet(path: Path, blobs, labels, label_type=pa.int64()):
    img_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"img": pa.array([{"bytes": b, "path": None} for b in blobs], type=img_type),
                             "label": pa.array(labels, type=label_type)}), path)


def parquet_dir(root: Path, n=6, train_blobs=None, train_labels=None, label_type=pa.int64()) -> Path:
    write_parquet(root / "train.parquet", train_blobs or [png(k) for k in range(n)],
                  train_labels if train_labels is not None else [k % 10 for k in range(n)], label_type)
    write_parquet(root / "test.parquet", [png(k) for k in range(n)], [k % 10 for k in range(n)])
    return root


def cli(capsys, *argv) -> tuple[int, str]:
    code = cli_main(list(argv))
    err = capsys.readouterr().err
    return code, err


# ----------------------------------------------------------------------------- silently wrong before


def test_second_process_on_a_run_directory_is_refused_with_its_pid(tmp_path):
    cfg = tiny(tmp_path)
    with RunDirLock(cfg.run_dir):
        with pytest.raises(RunDirBusy, match=f"pid {os.getpid()}"):
            train(cfg, progress=False)
    assert not (cfg.run_dir / "metrics.jsonl").exists()  # refused before anything was written


def test_run_directory_lock_is_released_when_its_holder_is_killed(tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from repro.train import RunDirLock; "
         "RunDirLock(sys.argv[1]).__enter__(); print('locked', flush=True); time.sleep(60)", str(run_dir)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusy, match=f"pid {holder.pid}"):
            RunDirLock.check_free(run_dir)
        holder.send_signal(signal.SIGKILL)  # a crash: the kernel drops the flock
        holder.wait(10)
    finally:
        holder.kill()
    with RunDirLock(run_dir) as lock:  # free again, and ours now
        assert lock.path.read_text().split()[0] == str(os.getpid())
    assert not (run_dir / ".lock").exists()  # removed on release


@pytest.mark.parametrize("field, value, words", [
    ("amp", "fp16", "GradScaler"), ("amp", "float16", "choose"),
    ("max_train", -5, "positive"), ("max_train", 0, "positive"), ("max_test", -1, "positive"),
    ("log_every", 0, "positive"), ("checkpoint_every", 0, "positive"),
    ("label_smoothing", 1.5, r"\[0, 1\]"), ("label_smoothing", -0.1, r"\[0, 1\]"),
    ("device", "tpu", "cpu, cuda"), ("model_overrides", {"num_classes": -1}, "dataset"),
])
def test_bad_config_values_are_refused_at_once(tmp_path, field, value, words):
    with pytest.raises(ValueError, match=words):
        tiny(tmp_path, **{field: value})


def test_max_train_is_checked_by_the_data_pipeline_too():
    with pytest.raises(ValueError, match="max_train=-5"):
        data.get_datasets("cifar10", data_dir="embedded", max_train=-5)


@pytest.mark.parametrize("name, kwargs, words", [
    ("ViT-XXS/8", {"num_classes": -1}, "num_classes=-1"),
    ("R14x1", {"num_classes": -1}, "num_classes=-1"),
    ("ViT-XXS/8", {"patch_size": 0}, "patch_size=0"),
    ("ViT-XXS/8", {"embed_dim": 0}, "embed_dim=0"),
    ("R14x1", {"width_factor": 0}, "width_factor=0"),
    ("ViT-XXS/8", {"dropout": 1.0}, "dropout"),
])
def test_impossible_model_sizes(name, kwargs, words):
    num_classes = kwargs.pop("num_classes", 10)
    with pytest.raises(ValueError, match=words):
        create_model(name, num_classes=num_classes, img_size=32, **kwargs)


def test_dataset_registered_with_no_classes_is_refused_before_work(tmp_path, monkeypatch):
    monkeypatch.setitem(data.DATASETS, "cifar10", data.DatasetInfo("cifar10", "x/y", 0, embedded="cifar10_mini"))
    with pytest.raises(ValueError, match="at least 1 class"):
        train(tiny(tmp_path), progress=False)
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- data files


def test_truncated_parquet_names_the_file_and_the_download(tmp_path):
    root = parquet_dir(tmp_path / "d")
    f = root / "train.parquet"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(DataError, match="train.parquet: not a readable parquet file.*huggingface-cli download"):
        load_split("cifar10", "train", data_dir=root)


def test_garbage_parquet(tmp_path):
    root = parquet_dir(tmp_path / "d")
    (root / "test.parquet").write_bytes(b"this is not parquet" * 100)
    with pytest.raises(DataError, match="test.parquet: not a readable parquet file"):
        load_split("cifar10", "test", data_dir=root)


def test_row_that_is_not_an_image_names_file_and_row(tmp_path):
    root = parquet_dir(tmp_path / "d", train_blobs=[png(0), png(1), b"not an image", png(3)], train_labels=[0, 1, 2, 3])
    with pytest.raises(DataError, match=r"train.parquet row 2: not a readable image"):
        load_split("cifar10", "train", data_dir=root)
    assert list((tmp_path / "cache").rglob("*.npy")) == []  # nothing half-written is left to be read later


def test_image_file_that_is_not_an_image_names_the_file(tmp_path):
    for split in ("train", "test"):
        (tmp_path / "f" / split / "cat").mkdir(parents=True)
        (tmp_path / "f" / split / "cat" / "a.png").write_bytes(png(1))
    (tmp_path / "f" / "train" / "cat" / "b.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"b.png: not a readable image"):
        load_split("cifar10", "train", data_dir=tmp_path / "f")


def test_string_labels(tmp_path):
    root = parquet_dir(tmp_path / "d", train_labels=["cat", "dog"] * 3, label_type=pa.string())
    with pytest.raises(DataError, match=r"labels in column 'label' .* string .*'cat'.*class indices"):
        load_split("cifar10", "train", data_dir=root)


@pytest.mark.parametrize("bad", [10, -1])
def test_label_outside_the_class_range_is_caught_at_load(tmp_path, bad):
    root = parquet_dir(tmp_path / "d", train_labels=[0, 1, 2, bad, 4, 5])
    with pytest.raises(DataError, match=rf"train.parquet row 3: label {bad} is outside \[0, 10\)"):
        load_split("cifar10", "train", data_dir=root)


def test_mixed_size_image_folder_names_the_key_that_works(tmp_path):
    for split, sizes in (("train", (8, 6)), ("test", (8,))):
        (tmp_path / "f" / split / "cat").mkdir(parents=True)
        for i, s in enumerate(sizes):
            (tmp_path / "f" / split / "cat" / f"{i}.png").write_bytes(png(i, s))
    with pytest.raises(DataError, match=r"1.png is 6x6 pixels .* data_image_size="):
        load_split("cifar10", "train", data_dir=tmp_path / "f")


# ----------------------------------------------------------------------------- the decode cache


def _cache_files(tmp_path):
    return sorted((tmp_path / "cache" / "decoded").glob("*.images.npy"))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_cache_is_detected_and_rebuilt(tmp_path, damage):
    root = parquet_dir(tmp_path / "d")
    first = load_split("cifar10", "train", data_dir=root)
    expected = first.images.clone()
    del first
    (img,) = _cache_files(tmp_path)
    raw = bytearray(img.read_bytes())
    if damage == "truncate":
        img.write_bytes(raw[: len(raw) - 50])
    else:  # same size, other bytes: only the checksum sees it
        raw[-1] ^= 0xFF
        img.write_bytes(raw)
    with pytest.warns(UserWarning, match="damaged"):
        again = load_split("cifar10", "train", data_dir=root)
    assert torch.equal(again.images, expected)
    meta = json.loads(next((tmp_path / "cache" / "decoded").glob("*.json")).read_text())
    assert meta["files"]["images"]["bytes"] == img.stat().st_size and len(meta["files"]["images"]["sha1"]) == 40


def test_disk_full_while_writing_the_cache(tmp_path, monkeypatch):
    root = parquet_dir(tmp_path / "d")
    monkeypatch.setattr(data_decode, "_open_for_write", lambda path: open("/dev/full", "wb", buffering=0))
    with pytest.raises(NoSpaceError, match="no space left on device while writing the decode cache"):
        load_split("cifar10", "train", data_dir=root)
    assert list((tmp_path / "cache" / "decoded").iterdir()) == []  # no hidden sparse file, no partial entry


def test_disk_full_while_writing_a_checkpoint(tmp_path, monkeypatch):
    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(NoSpaceError, match="no space left on device while writing .*checkpoint.pt"):
        atomic_torch_save({"step": 1}, tmp_path / "checkpoint.pt")
    assert list(tmp_path.iterdir()) == []  # the temp file is gone too


# ----------------------------------------------------------------------------- checkpoints


def test_truncated_safetensors(tmp_path):
    weights = save_checkpoint(create_model("ViT-XXS/8", num_classes=10, img_size=32), tmp_path / "m")
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated safetensors"):
        read_checkpoint(weights)


def test_checkpoint_of_another_architecture_says_so(tmp_path):
    save_checkpoint(create_model("ViT-XXS/8", num_classes=10, img_size=32), tmp_path / "m")
    with pytest.raises(CheckpointError, match="another architecture") as e:
        load_checkpoint(create_model("ViT-XS/4", num_classes=10, img_size=32), tmp_path / "m")
    assert "num_classes_mismatch" not in str(e.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_unreadable_checkpoint_pt_is_named_with_the_fix(tmp_path, damage):
    cfg = tiny(tmp_path)
    cfg.run_dir.mkdir(parents=True)
    ckpt = cfg.run_dir / "checkpoint.pt"
    if damage == "garbage":
        ckpt.write_bytes(os.urandom(500))
    else:
        torch.save({"model": create_model("ViT-XXS/8", num_classes=10, img_size=32).state_dict(), "step": 1}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:2000])
    with pytest.raises(ResumeError, match=r"checkpoint.pt is truncated or corrupt.*delete it to restart"):
        train(cfg, progress=False)


def test_init_from_missing_or_truncated_is_reported_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        train(tiny(tmp_path, init_from=str(tmp_path / "nope.safetensors")), progress=False)
    weights = save_checkpoint(create_model("ViT-XXS/8", num_classes=10, img_size=32), tmp_path / "m")
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(CheckpointError, match="truncated"):
        train(tiny(tmp_path, init_from=str(weights)), progress=False)
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- model inputs


@pytest.mark.parametrize("dtype, words", [(torch.uint8, "repro.data.normalize"), (torch.float64, "float64")])
def test_vit_rejects_integer_and_double_images(dtype, words):
    model = create_model("ViT-XXS/8", num_classes=10, img_size=32)
    with pytest.raises(ValueError, match=words):
        model(torch.zeros(2, 3, 32, 32, dtype=dtype))


def test_bit_rejects_a_3d_tensor_and_uint8():
    model = create_model("R14x1", num_classes=10, img_size=32)
    with pytest.raises(ValueError, match=r"\(batch, 3, H, W\), got \(3, 32, 32\).*x\[None\]"):
        model(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="normalize"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="no CUDA GPU"):
        train(tiny(tmp_path, device="cuda"), progress=False)
    code, err = cli(capsys, "pretrain", "--scale", "smoke", "device=cuda", f"out_dir={tmp_path / 'runs'}")
    assert code == 2 and err.startswith("error: device='cuda' but torch sees no CUDA GPU") and err.count("\n") == 1


def test_cli_device_tpu(capsys, tmp_path):
    code, err = cli(capsys, "pretrain", "--scale", "smoke", "device=tpu", f"out_dir={tmp_path}")
    assert code == 2 and "device='tpu'" in err and "Traceback" not in err
    code, err = cli(capsys, "evaluate", str(tmp_path / "m"), "--device", "tpu")
    assert code == 2 and "device='tpu'" in err


# ----------------------------------------------------------------------------- validated before any work


@pytest.mark.parametrize("kw, words", [
    ({"model": "ViT-Q/16"}, "unknown ViT size"),
    ({"model": "ViT-XXS/5"}, "not divisible by the patch size 5"),  # 32 px
    ({"model_overrides": {"pos_embd": "2d"}}, "unknown override"),
    ({"data_dir": "/nonexistent/folder"}, "does not exist"),
])
def test_bad_model_or_data_is_reported_before_decoding_and_leaves_no_run_dir(tmp_path, monkeypatch, kw, words):
    def no_decoding(*a, **k):
        raise AssertionError("decoded before the config was checked")

    monkeypatch.setattr(data_splits, "load_split", no_decoding)
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=words):
        train(tiny(tmp_path, **kw), progress=False)
    assert not (tmp_path / "runs").exists()


def test_read_only_run_directory_is_reported_before_work(tmp_path, monkeypatch):
    cfg = tiny(tmp_path)
    cfg.run_dir.mkdir(parents=True)
    if os.geteuid() == 0:  # root writes anywhere: make the probe fail as it would for a user
        monkeypatch.setattr(fileio, "_probe_write", lambda folder: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    else:
        cfg.run_dir.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match="run directory .* is not writable"):
            train(cfg, progress=False)
    finally:
        cfg.run_dir.chmod(0o700)


def test_atomic_files_respect_the_umask_and_stale_temp_files_are_removed(tmp_path):
    cfg = tiny(tmp_path)
    cfg.run_dir.mkdir(parents=True)
    stale = cfg.run_dir / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"left by a kill")
    old = os.umask(0o022)
    try:
        run_dir = train(cfg, progress=False)
        probe = atomic_write_text(tmp_path / "x.json", "{}")
    finally:
        os.umask(old)
    assert not stale.exists()
    for p in (run_dir / "config.json", run_dir / "final.json", run_dir / "model.safetensors", probe):
        assert p.stat().st_mode & 0o777 == 0o644, p
    start = next(r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
                 if r["event"] == "start")
    assert start["data_source"]["root"] == "embedded" and start["data_source"]["images"]["train"] == 64
    assert str(REPO) not in json.dumps(start["data_source"])  # portable: no absolute path


def test_atomic_write_failure_leaves_the_old_file(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "old")

    def fail(tmp):
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(NoSpaceError):
        atomic_write(tmp_path / "a.txt", fail)
    assert (tmp_path / "a.txt").read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


# ----------------------------------------------------------------------------- the command line


def test_cli_offline_without_data_fails_fast_naming_the_fix(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "REPRO_DATA_DIR"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(REPO),
               REPRO_CACHE_DIR=str(tmp_path / "cache"), HF_HOME=str(tmp_path / "hf"))
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "repro", "pretrain", "--scale", "cpu"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: dataset 'cifar10' not found")
    assert "huggingface-cli download --repo-type dataset uoft-cs/cifar10" in proc.stderr
    assert "REPRO_DATA_DIR" in proc.stderr
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"] or not (tmp_path / "runs").exists()
    assert time.perf_counter() - t < 60


def test_cli_finetune_without_init_from(capsys):
    code, err = cli(capsys, "finetune", "--scale", "smoke")
    assert code == 2 and "--init-from" in err


@pytest.mark.parametrize("argv, words", [
    (["-p", "nosuch", "1"], "has no parameter(s) ['nosuch']"),
    (["-p", "nosuch=1"], "has no parameter(s) ['nosuch']"),
    (["-p", "seeds=3"], "seeds=3 should be list or tuple"),
    (["-p", "seeds=abc"], "seeds='abc' should be list or tuple"),
    (["-p", "seeds", "3"], "seeds=3 should be list or tuple"),
    (["-p", "data_dir=5"], "data_dir=5 should be str"),
    (["-p", "a", "b", "c"], "-p key=value"),
])
def test_cli_notebook_parameters_are_checked_before_anything_runs(tmp_path, capsys, argv, words):
    code, err = cli(capsys, "reproduce", "--out", str(tmp_path / "results"), *argv)
    assert code == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


def test_notebook_parameter_kinds():
    from repro.reproduce import _declared_kind
    assert _declared_kind({"default": "None", "inferred_type_name": "Optional[list]", "help": ""})[0] == (list, tuple)
    assert _declared_kind({"default": "None", "inferred_type_name": "int | None", "help": ""})[0] == (int,)
    assert _declared_kind({"default": "None", "inferred_type_name": "None", "help": "e.g. 0.5"})[0] == (int, float)
    assert _declared_kind({"default": "None", "inferred_type_name": "None", "help": "a path"})[0] == (str,)
    assert _declared_kind({"default": "3", "inferred_type_name": "None", "help": ""})[0] == (int,)


def test_cli_read_only_results_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "results"
    out.mkdir()
    if os.geteuid() == 0:
        monkeypatch.setattr(fileio, "_probe_write", lambda folder: (_ for _ in ()).throw(PermissionError(13, "Permission denied")))
    else:
        out.chmod(0o500)
    try:
        code, err = cli(capsys, "reproduce", "--out", str(out))
    finally:
        out.chmod(0o700)
    assert code == 2 and "results folder (out_dir)" in err and "not writable" in err


# ----------------------------------------------------------------------------- issue 20: another data set's results


def _start_event(run_dir: Path) -> dict:
    return next(r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
                if r["event"] == "start")


def _two_data_folders(tmp_path) -> tuple[Path, Path]:
    """Two local copies of "cifar10" with other images and other counts (the issue's data_dir=A, data_dir=B)."""
    a = parquet_dir(tmp_path / "A", n=40)
    b = parquet_dir(tmp_path / "B", n=48, train_blobs=[png(k + 50) for k in range(48)],
                    train_labels=[k % 10 for k in range(48)])
    return a, b


def test_a_finished_run_is_not_handed_back_for_another_data_folder(tmp_path):
    a, b = _two_data_folders(tmp_path)
    run_dir = train(tiny(tmp_path, data_dir=str(a), max_train=None), progress=False)
    assert tiny(tmp_path, data_dir=str(b), max_train=None).run_dir == run_dir  # the name ignores the folder
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    with pytest.raises(DataMismatch, match=r"other data: local parquet data_dir \.\.\./.*/A \(train 39 images.*"
                                           r"reads local parquet data_dir \.\.\./.*/B \(train 47 images.*"
                                           r"another out_dir, or delete"):
        train(tiny(tmp_path, data_dir=str(b), max_train=None), progress=False)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before  # nothing of the run was touched
    import shutil
    shutil.copytree(a, tmp_path / "A2")  # the same data in another folder is the same run
    assert train(tiny(tmp_path, data_dir=str(tmp_path / "A2"), max_train=None), progress=False) == run_dir
    fingerprint = _start_event(run_dir)["data_source"]["fingerprint"]
    assert set(fingerprint) == {"train", "val", "test"} and fingerprint["train"]["images"] == 39


def test_a_checkpoint_is_not_resumed_on_another_data_folder(tmp_path):
    a, b = _two_data_folders(tmp_path)

    def stop(step, record):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path, data_dir=str(a), max_train=None), callback=stop, progress=False)
    run_dir = tiny(tmp_path, data_dir=str(a), max_train=None).run_dir
    metrics = (run_dir / "metrics.jsonl").read_text()
    with pytest.raises(DataMismatch, match="/A .*/B "):
        train(tiny(tmp_path, data_dir=str(b), max_train=None), progress=False)
    assert (run_dir / "checkpoint.pt").exists() and (run_dir / "metrics.jsonl").read_text() == metrics


def test_a_run_recorded_before_fingerprints_is_still_reused(tmp_path):
    """Committed runs have no fingerprint: they are reused as before (not checked), under their old names."""
    a, b = _two_data_folders(tmp_path)
    run_dir = train(tiny(tmp_path, data_dir=str(a), max_train=None), progress=False)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        r.get("data_source", {}).pop("fingerprint", None)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert train(tiny(tmp_path, data_dir=str(b), max_train=None), progress=False) == run_dir


def test_the_checksum_is_of_the_decoded_arrays_and_read_back_from_the_cache(tmp_path):
    root = parquet_dir(tmp_path / "d")
    first = load_split("cifar10", "train", data_dir=root)  # decoded, cache written
    again = load_split("cifar10", "train", data_dir=root)  # read from the cache
    assert first.checksum == again.checksum == data.content_checksum(again.images.numpy(), again.labels.numpy())
    other = load_split("cifar10", "train", data_dir=parquet_dir(tmp_path / "e", train_blobs=[png(k + 1) for k in range(6)]))
    assert other.checksum != first.checksum


# ----------------------------------------------------------------------------- issue 20: checked before anything is written


@pytest.mark.parametrize("overrides, words", [
    (["batch_size=5000"], "512 images, which make no full batch of batch_size=5000"),
    (["train_part=target", "target_size=10"], "10 images, which make no full batch of batch_size=32"),
    (["train_part=source", "target_size=3999"], "1 image, which make no full batch of batch_size=32"),
])
def test_a_training_set_without_a_full_batch_writes_nothing(tmp_path, capsys, overrides, words):
    code, err = cli(capsys, "pretrain", "--scale", "smoke", *overrides, f"out_dir={tmp_path / 'runs'}")
    assert code == 2 and words in err and "lower batch_size" in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def no_notebook_runs(monkeypatch):
    """papermill must not be reached: the checks come first."""
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a notebook ran"))


def test_reproduce_at_paper_scale_needs_a_checkpoint_before_anything_runs(tmp_path, capsys, no_notebook_runs):
    code, err = cli(capsys, "reproduce", "--scale", "paper", "--out", str(tmp_path / "results"))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: notebook 01 at scale 'paper' fine-tunes a pre-trained checkpoint: pass -p "
                          "pretrained_checkpoint=")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("argv, words", [
    (["--notebooks", "02", "03", "-p", "lr=0.002"], "03_cls_vs_gap.ipynb has no parameter(s) ['lr']"),
    (["--notebooks", "03", "-p", "lrs=[]"], "notebook 03: lrs=[] must be a non-empty list of positive numbers"),
    (["--notebooks", "04", "-p", "sizes=[100,-5]"], "04_data_scaling.ipynb: sizes=[100, -5]: give at least two"),
    (["--notebooks", "06", "-p", "target_size=100000"],
     "notebook 06: target_size=100000 must be smaller than the 4000 training images of cifar10"),
    (["--notebooks", "07", "-p", "run_dir={tmp}/nope"], "notebook 07: run_dir='{tmp}/nope' is not a folder"),
    (["--notebooks", "07", "-p", "run_dir={tmp}"], "run_dir='{tmp}' holds no finished run (no config.json or"),
    (["--notebooks", "07", "-p", "inspect_images=0"], "notebook 07: inspect_images=0 must be a positive integer"),
    (["--notebooks", "07", "-p", "run_dir={tmp}/run"], "run/model.safetensors: unknown checkpoint format"),
    (["--notebooks", "07", "-p", "pretrained_checkpoint={tmp}/nope.npz"], "no checkpoint at {tmp}/nope.npz"),
])
def test_notebook_values_are_checked_by_their_get_config_before_any_runs(tmp_path, capsys, no_notebook_runs, argv,
                                                                        words):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    (tmp_path / "run").mkdir()  # a run folder whose weights file is no checkpoint
    (tmp_path / "run" / "config.json").write_text("{}")
    (tmp_path / "run" / "model.safetensors").write_bytes(b"garbage")
    code, err = cli(capsys, "reproduce", "--out", str(tmp_path / "results"), *argv)
    assert code == 2 and words.replace("{tmp}", str(tmp_path)) in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


def test_a_second_reproduce_on_the_same_results_folder_is_refused_naming_the_first(tmp_path, capsys,
                                                                                   no_notebook_runs):
    from repro.reproduce import ResultsFolderLock

    out = tmp_path / "results"
    with ResultsFolderLock(out):
        code, err = cli(capsys, "reproduce", "--notebooks", "02", "--out", str(out))
    assert code == 2 and err.count("\n") == 1
    assert f"results folder {out} is in use by another `repro reproduce` (pid {os.getpid()}" in err
    assert list(out.iterdir()) == []  # no executed copy, and the lock file went with its holder


# ----------------------------------------------------------------------------- issue 20: one line, no traceback


def error_line(err: str) -> str:
    """The one error line of a command that also drew progress bars on stderr (decoding, training): the last
    line, the only one that starts with "error:", and no traceback."""
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert "Traceback" not in err and [line for line in lines if line.startswith("error:")] == lines[-1:], err
    return lines[-1]


def test_a_loss_that_becomes_nan_is_one_line(tmp_path, capsys, monkeypatch):
    import repro.train as train_module

    def nan_loss(model, images, labels, cfg):
        return model(images).sum() * float("nan"), torch.zeros((), dtype=torch.long)

    monkeypatch.setitem(train_module.OBJECTIVES, "classification", nan_loss)
    code, err = cli(capsys, "pretrain", "--scale", "smoke", "steps=2", f"out_dir={tmp_path / 'runs'}")
    line = error_line(err)
    assert code == 2 and line.startswith("error: loss became nan by step 2 of ") and "lower the learning rate" in line


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    with pytest.raises(ValueError, match="device='tpu'"):
        cli_main(["--debug", "pretrain", "--scale", "smoke", "device=tpu"])
    monkeypatch.setenv("REPRO_DEBUG", "1")
    with pytest.raises(ValueError, match="device='tpu'"):
        cli_main(["pretrain", "--scale", "smoke", "device=tpu"])


def test_evaluate_a_model_of_another_class_count(tmp_path, capsys):
    save_checkpoint(create_model("ViT-XXS/8", num_classes=3, img_size=32), tmp_path / "m",
                    extra={"train_config": {"dataset": "cifar10", "classes": [5, 6, 7]}})
    code, err = cli(capsys, "evaluate", str(tmp_path / "m"), "--data-dir", "embedded")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "its head has 3 classes but cifar10 has 10 (it was trained on classes [5, 6, 7] of cifar10)" in err


class _FillingFile:
    """A file that takes ``room`` bytes, then fails as a full disk does (ENOSPC)."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def write(self, data) -> int:
        n = memoryview(data).nbytes
        if n > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= n
        return self.f.write(data)

    def flush(self):
        self.f.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_disk_full_while_torch_writes_checkpoint_pt(tmp_path, capsys, monkeypatch):
    """torch's own writer turns ENOSPC into `RuntimeError: [enforce fail at inline_container.cc]`; the error names
    the file and the fix instead."""
    import builtins

    import repro.rundir as rundir_module

    def small_disk(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        return _FillingFile(f, 1000) if "w" in mode else f

    monkeypatch.setattr(rundir_module, "open", small_disk, raising=False)
    with pytest.raises(NoSpaceError, match="while writing the checkpoint .*checkpoint.pt"):
        atomic_torch_save({"model": create_model("ViT-XXS/8", num_classes=10, img_size=32).state_dict()},
                          tmp_path / "checkpoint.pt")
    assert list(tmp_path.iterdir()) == []
    code, err = cli(capsys, "pretrain", "--scale", "smoke", "steps=2", "checkpoint_every=1",
                    f"out_dir={tmp_path / 'runs'}")
    assert code == 2 and "checkpoint.pt; free some space" in error_line(err)


def test_disk_full_while_safetensors_writes_the_weights(tmp_path, monkeypatch):
    import repro.checkpoints as checkpoints
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoints, "_save_safetensors", full)
    with pytest.raises(NoSpaceError, match="model.safetensors"):
        save_checkpoint(create_model("ViT-XXS/8", num_classes=10, img_size=32), tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_disk_full_while_reproduce_writes_a_notebook(tmp_path, capsys, monkeypatch):
    import papermill

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(papermill, "execute_notebook", full)
    code, err = cli(capsys, "reproduce", "--notebooks", "02", "--out", str(tmp_path / "results"))
    assert code == 2 and err.count("\n") == 1
    assert f"while writing the executed notebook {tmp_path}/results/02_position_embeddings/smoke/" \
           "02_position_embeddings.ipynb; free some space" in err


def test_a_notebook_that_fails_inside_papermill_is_one_line(tmp_path, capsys, monkeypatch):
    import papermill

    def fail(input_path, output_path, **kwargs):
        Path(output_path).write_text(json.dumps({"cells": [], "metadata": {"papermill": {}}, "nbformat": 4,
                                                 "nbformat_minor": 5}))
        raise papermill.PapermillExecutionError(3, 4, "exp.run(...)", "DataError",
                                                "decoding failed\nrow 7: not a readable image", ["Traceback ..."])

    monkeypatch.setattr(papermill, "execute_notebook", fail)
    code, err = cli(capsys, "reproduce", "--notebooks", "02", "--out", str(tmp_path / "results"))
    copy = tmp_path / "results" / "02_position_embeddings" / "smoke" / "02_position_embeddings.ipynb"
    assert code == 2 and err.count("\n") == 1 and copy.exists()
    assert err == (f"error: notebook 02_position_embeddings.ipynb failed in cell [4]: DataError: row 7: not a "
                   f"readable image; the failed copy, with its traceback, is {copy}\n")


def test_a_random_npz_is_not_a_vit_checkpoint(tmp_path, capsys):
    np.savez(tmp_path / "weights.npz", a=np.zeros(3), b=np.ones((2, 2)))
    words = f"{tmp_path / 'weights.npz'}: an .npz file, but not a ViT checkpoint: its arrays (a, b)"
    code, err = cli(capsys, "finetune", "--scale", "smoke", "--init-from", str(tmp_path / "weights.npz"),
                    f"out_dir={tmp_path / 'runs'}")
    assert code == 2 and words in err and err.count("\n") == 1
    assert not (tmp_path / "runs").exists()
    code, err = cli(capsys, "evaluate", str(tmp_path / "weights.npz"), "--data-dir", "embedded")
    assert code == 2 and words in err and err.count("\n") == 1


@pytest.mark.parametrize("value", ["1.5", '"64"'])
def test_model_overrides_of_the_wrong_type_name_the_key(tmp_path, capsys, value):
    code, err = cli(capsys, "pretrain", "--scale", "smoke", f'model_overrides={{"representation_size": {value}}}',
                    f"out_dir={tmp_path / 'runs'}")
    assert code == 2 and err.count("\n") == 1
    assert "representation_size must be an integer or None (ViTConfig)" in err
    assert not (tmp_path / "runs").exists()


def test_overrides_may_follow_an_option(tmp_path, capsys):
    from repro.cli import build_parser, parse_args

    args = parse_args(build_parser(), ["pretrain", "steps=2", "--model", "ViT-XXS/8", "lr=0.1", "--scale", "smoke",
                                       "seed=3"])
    assert args.model == "ViT-XXS/8" and args.overrides == ["steps=2", "lr=0.1", "seed=3"]
    code, err = cli(capsys, "pretrain", "--scale", "smoke", "--model", "ViT-Q/16", f"out_dir={tmp_path / 'runs'}")
    assert code == 2 and "unknown ViT size 'Q'" in err  # the override was taken, the model is what is wrong
    with pytest.raises(SystemExit):
        cli_main(["pretrain", "--model", "ViT-XXS/8", "--nosuch", "lr=0.1"])
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- issue 20: options that do nothing


@pytest.mark.parametrize("kw, words", [
    ({"mpp_target": "pixels"}, r"mpp_target='pixels': only masked patch prediction reads it; add objective='mpp'"),
    ({"mpp_corrupt_rate": 0.15}, r"mpp_corrupt_rate=0.15: only masked patch prediction"),
    ({"objective": "mpp", "label_smoothing": 0.1}, r"label_smoothing=0.1: masked patch prediction does not smooth"),
    ({"classes": [True, 2]}, r"classes=\[True, 2\]: class ids are integers"),
])
def test_options_that_would_do_nothing_are_refused(tmp_path, kw, words):
    with pytest.raises(ValueError, match=words):
        tiny(tmp_path, **kw)
    assert not (tmp_path / "runs").exists()

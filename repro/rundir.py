"""The run directory: its files, its lock, its metrics log, its resume state, and reading a finished run.

The one place that knows the file names (``config.json``, ``metrics.jsonl``, ``env.json``, ``checkpoint.pt``,
``final.json``, ``model.safetensors`` + ``model.json``) and how they are written: ``repro.train`` writes a run
through it and every reader (tables, experiments, benchmarks, tests) reads through it. Also redraw mode
(``redraw_only``: tables rebuilt from finished runs' files, nothing trained) and the data fingerprint that keeps
a run from being handed back for other data.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
from pathlib import Path
from typing import Any, Iterable, Optional, Union

import pandas as pd
import torch

from .fileio import atomic_write, atomic_write_text, read_jsonl
from .paths import portable_text, repo_relative

PathLike = Union[str, os.PathLike]

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
ENV_FILE = "env.json"
CHECKPOINT_FILE = "checkpoint.pt"
FINAL_FILE = "final.json"
WEIGHTS_BASE = "model"                      # model.safetensors (weights) + model.json (config, digest)
WEIGHTS_FILE = f"{WEIGHTS_BASE}.safetensors"
MPP_HEAD_FILE = "mpp_head.safetensors"      # masked patch prediction keeps its head apart from the ViT


def weights_path(run_dir: PathLike) -> Path:
    """The run's weights file (``model.safetensors``), there or not."""
    return Path(run_dir) / WEIGHTS_FILE


def is_finished(run_dir: PathLike) -> bool:
    """The run wrote its final metrics (``final.json``)."""
    return (Path(run_dir) / FINAL_FILE).exists()


def has_weights(run_dir: PathLike) -> bool:
    """The run's weights are here (they are not committed: a clone has the metrics but not the weights)."""
    return weights_path(run_dir).exists()


def read_final(run_dir: PathLike) -> dict:
    """The final metrics of a finished run (``final.json``)."""
    return json.loads((Path(run_dir) / FINAL_FILE).read_text())


def read_config(run_dir: PathLike) -> dict:
    """The config a run was trained with (``config.json``)."""
    return json.loads((Path(run_dir) / CONFIG_FILE).read_text())


def read_metrics(run_dir: PathLike) -> list[dict]:
    """Every event of a run's ``metrics.jsonl`` (a torn last line is skipped)."""
    return read_jsonl(Path(run_dir) / METRICS_FILE)


# The fields of a run's config that hold paths: written repository-relative (``repro.paths.portable_text``).
PATH_FIELDS = ("out_dir", "init_from", "data_dir")


def write_config(run_dir: PathLike, config: dict, identity: dict) -> None:
    """``config.json``: the config as given, its paths written relative to the repository (no folder of this
    machine), plus what identifies it (init_from as a content hash, no path: the run's name does not depend on
    where anything lies)."""
    config = {**config, **{key: portable_text(str(config[key])) for key in PATH_FIELDS if config.get(key)}}
    atomic_write_text(Path(run_dir) / CONFIG_FILE, json.dumps({**config, "identity": identity}, indent=2, default=str))


def write_env(run_dir: PathLike, env: dict) -> None:
    atomic_write_text(Path(run_dir) / ENV_FILE, json.dumps(env, indent=2))


def write_final(run_dir: PathLike, results: dict) -> None:
    atomic_write_text(Path(run_dir) / FINAL_FILE, json.dumps(results, indent=2))


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save through a temp file and a rename: a crash never leaves half a checkpoint.

    torch's C++ writer reports a failed write (a full disk) only as ``RuntimeError: [enforce fail at
    inline_container.cc] ... unexpected pos``, so it writes through a Python file object here that keeps the
    OSError behind it; that is raised instead, and ``atomic_write`` turns ENOSPC into a NoSpaceError naming
    the file.
    """
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            sink = _KeepWriteError(f)
            try:
                torch.save(obj, sink)
            except RuntimeError:
                if sink.error is not None:
                    raise sink.error from None
                raise

    atomic_write(path, write, what="the checkpoint")


class _KeepWriteError:
    """A writable file that remembers the OSError of a failed write (torch's writer swallows it)."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def save_resume_state(run_dir: PathLike, state: dict) -> None:
    """``checkpoint.pt``: everything a resumed run needs (model, optimiser, step, open logging window...)."""
    atomic_torch_save(state, Path(run_dir) / CHECKPOINT_FILE)


def load_resume_state(run_dir: PathLike, device) -> Optional[dict]:
    """The run's ``checkpoint.pt`` (None when there is none); a truncated or corrupt one is a ``ResumeError``."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError, UnpicklingError, EOFError ... for a bad file
        raise ResumeError(f"{path} is truncated or corrupt and cannot be resumed from "
                          f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); delete it to "
                          "restart this run from step 0") from None


def remove_resume_state(run_dir: PathLike) -> None:
    (Path(run_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)


class MetricsLog:
    """Append-only JSON lines; on resume, lines after the checkpoint's step are dropped (they will be redone)."""

    def __init__(self, path: Path, enabled: bool):
        self.path, self.enabled = path, enabled

    def truncate_after(self, step: int) -> None:
        if not (self.enabled and self.path.exists()):
            return
        kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def write(self, **record) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


def check_run_dir_matches(run_dir: Path, cfg) -> None:
    """Refuse to resume or reuse a run directory that holds another config (e.g. a reused ``run_name``)."""
    path = Path(run_dir) / CONFIG_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        # Run directories written before config.json carried its identity: compare the fields as saved.
        saved = saved.get("identity") or {k: v for k, v in saved.items() if k not in cfg.NOT_IDENTITY}
        current = cfg.identity_fields()
        diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if diff:
            raise ValueError(f"{run_dir} holds a run with another config (differs in {diff}); "
                             f"pick another run_name or out_dir, or delete the folder")


class RunDirBusy(RuntimeError):
    """Another process holds the lock of a run directory (it is training the same config)."""


class RunDirLock:
    """An exclusive ``fcntl.flock`` on ``<run_dir>/.lock`` for as long as a run writes there.

    flock is released by the kernel when the holder exits or dies (kill -9,
    OOM), so a crashed run never leaves a stale lock. The holder's pid and host
    are written into the file for the error message of the next taker. The file
    is removed on release; a taker that locked a file removed meanwhile tries again.
    """

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: Optional[int] = None

    @staticmethod
    def holder(path: Path) -> str:
        with contextlib.suppress(OSError):
            text = path.read_text().split()
            if text:
                return f"pid {text[0]}" + (f" on {text[1]}" if len(text) > 1 else "")
        return "an unknown process"

    def busy_error(self) -> RunDirBusy:
        return RunDirBusy(f"{self.path.parent} is in use by another process ({self.holder(self.path)}) running the "
                          f"same config; wait for it to finish or stop it (its checkpoint lets this run resume), "
                          f"then run the same command again")

    def __enter__(self) -> "RunDirLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self.busy_error() from None
            try:  # the file we locked must still be the one at the path (the last holder removes it)
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {platform.node()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)  # closing releases the flock
            self.fd = None

    @classmethod
    def check_free(cls, run_dir: Path) -> None:
        """Raise RunDirBusy now if another process holds the lock (creates nothing)."""
        path = Path(run_dir) / ".lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise cls(run_dir).busy_error() from None
        finally:
            os.close(fd)


def remove_stale_temp_files(run_dir: Path) -> list[str]:
    """Delete the hidden ``.*.tmp`` files an atomic write leaves when killed mid-write (call with the lock held)."""
    removed = []
    for p in Path(run_dir).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
            removed.append(p.name)
    return removed


class ResumeError(ValueError):
    """A run directory's ``checkpoint.pt`` cannot be resumed from."""


# Set (to "1") by ``repro reproduce --redraw``: tables, claims and figures are rebuilt from the files that
# finished runs left (config, metrics, final.json, probes) without training anything; their weights need
# not be there (they are not committed).
REDRAW_ENV = "REPRO_REDRAW"


def redraw_only() -> bool:
    """True in redraw mode (``REPRO_REDRAW=1``): ``train`` returns finished runs without their weights and
    trains nothing."""
    return os.environ.get(REDRAW_ENV) == "1"


class RunNotFinished(LookupError):
    """Redraw mode asked for a run that has not finished here: only a run that trains can provide it."""


class DataMismatch(ValueError):
    """A run of the same config exists, trained on other data (another folder with other images)."""


def recorded_data_source(run_dir: Path) -> Optional[dict]:
    """The ``data_source`` of a run's "start" event (None when there is none, or it is from before records)."""
    start = next((r for r in read_metrics(run_dir) if r.get("event") == "start"), {})
    record = start.get("data_source")
    return record if isinstance(record, dict) else None


def _data_words(record: dict) -> str:
    """A data record as a few words for an error message: source, folder, images and checksum per split."""
    splits = ", ".join(f"{name} {v.get('images')} images sha1 {str(v.get('sha1'))[:8]}"
                       for name, v in (record.get("fingerprint") or {}).items())
    where = " ".join(str(record[k]) for k in ("description", "folder") if record.get(k))
    return f"{where or '?'} ({splits})"


def check_data_fingerprint(run_dir: Path, data_source: Optional[dict]) -> None:
    """Refuse to hand back or resume the run in ``run_dir`` for other data than it was trained on.

    A run's name does not depend on which local folder holds its data (a copy of a data set is the same data
    wherever it lies), so ``data_dir=A`` and ``data_dir=B`` name the same run; its "start" event records the
    data's fingerprint (``describe_data``), compared here with ``data_source`` of the data just decoded. Checked
    when the run holds something that would be reused (``checkpoint.pt``, or final metrics with weights);
    runs recorded before fingerprints existed, and shard-streamed data, are not checked. Raises a one-line
    ``DataMismatch`` naming both data sources and the fixes.
    """
    current = (data_source or {}).get("fingerprint")
    run_dir = Path(run_dir)
    finished = is_finished(run_dir) and has_weights(run_dir)
    if current is None or not (finished or (run_dir / CHECKPOINT_FILE).exists()):
        return
    recorded = recorded_data_source(run_dir)
    if not recorded or recorded.get("fingerprint") in (None, current):
        return
    raise DataMismatch(f"{run_dir} holds a run of this config on other data: {_data_words(recorded)}; this run "
                       f"reads {_data_words(data_source)}. Its results are not handed back for other data: give "
                       f"this data another out_dir, or delete {run_dir} to train it again")


# --- reading finished runs -----------------------------------------------------------------------

def describe_data_source(record) -> Optional[str]:
    """A run's data source (the "start" event's ``data_source``) as one portable line, e.g.
    "local parquet $REPRO_DATA_DIR/cifar10 (train 49000, val 1000, test 10000 images)"."""
    if not record:
        return None
    if isinstance(record, str):  # runs written before the source became a record
        return portable_text(record)
    images = record.get("images") or {}
    counts = ", ".join(f"{split} {n}" for split, n in images.items())
    task = []  # a task selected from the data set (repro.data.get_datasets: classes, train_part)
    if record.get("classes") is not None:
        task.append("classes " + ", ".join(map(str, record["classes"])))
    if record.get("train_part"):
        task.append(f"{record['train_part']} part of train")
    details = "; ".join(task + ([f"{counts} images"] if counts else []))
    return portable_text(str(record.get("description", record.get("kind", "?")))) + (f" ({details})" if details else "")


def load_run(run_dir: str | Path) -> dict:
    """One run as a flat dict: its config, its final metrics (``val_accuracy``, ``test_accuracy``...), env."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    final = read_final(run_dir) if is_finished(run_dir) else {}
    env = json.loads((run_dir / ENV_FILE).read_text()) if (run_dir / ENV_FILE).exists() else {}
    row = {**config, "run_dir": repo_relative(run_dir), "finished": bool(final)}
    for split in ("val", "test"):
        if split in final:
            row[f"{split}_accuracy"] = final[split]["accuracy"]
            row[f"{split}_loss"] = final[split]["loss"]
    row["train_seconds"] = final.get("train_seconds")
    records = read_metrics(run_dir)
    start = next((r for r in records if r.get("event") == "start"), {})
    row["data_source"] = describe_data_source(start.get("data_source"))
    row["params"] = start.get("params")
    train_records = [r for r in records if r.get("event") == "train"]
    if train_records:
        # Skip the first window (start-up, compilation) when it is not the only one.
        speeds = [r["images_per_s"] for r in train_records[1:]] or [train_records[0]["images_per_s"]]
        row["images_per_s"] = sum(speeds) / len(speeds)
    row["device_name"] = env.get("device_name")
    row["git_revision"] = env.get("git_revision")
    return row


def load_runs(run_dirs: Iterable[str | Path]) -> pd.DataFrame:
    """Many runs as a DataFrame, one row each (see ``load_run``)."""
    return pd.DataFrame([load_run(d) for d in run_dirs])



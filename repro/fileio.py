"""Atomic file writes (a reader, or a resumed run, never sees half a file) and JSON-lines reading.

Also the two checks every writer shares: that a folder can be written before
any work starts (``check_writable``), and a "no space left" error that says
which file could not be written (``NoSpaceError``) instead of a bus error or a
bare errno.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Callable


class NoSpaceError(OSError):
    """The disk filled up while writing a file; the message names the file and the fix."""

    def __init__(self, path: str | os.PathLike, what: str = "a file"):
        super().__init__(errno.ENOSPC, "No space left on device", str(path))
        self.message = (f"no space left on device while writing {what} {path}; free some space "
                        "(or point REPRO_CACHE_DIR / out_dir at another disk) and run the same command again")

    def __str__(self) -> str:
        return self.message


def is_no_space(err: BaseException) -> bool:
    """True for ENOSPC (disk full) and EDQUOT (quota exceeded).

    Also for the errors of writers that are not Python's own file objects and report the OS error only in
    their text: safetensors (Rust) raises ``SafetensorError: ... No space left on device (os error 28)``.
    """
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(err)
    return any(f"(os error {code})" in text for code in (errno.ENOSPC, errno.EDQUOT))


def _umask() -> int:
    # os.umask can only be read by setting it; set it straight back (the window is a few instructions).
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, what: str = "a file") -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The rename is atomic on POSIX, so a crash or a kill leaves the previous file
    in place; the temporary file (``.<name>.<random>.tmp``, hidden) is removed
    when ``write`` fails. The file gets the permissions a plain ``open()`` would
    give (0666 minus the umask), not mkstemp's private 0600. A full disk is a
    :class:`NoSpaceError` naming ``what`` and ``path``.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_no_space(e):
            raise NoSpaceError(path, what) from e
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def _probe_write(folder: Path) -> None:
    """Create and remove a file in `folder` (raises OSError when it cannot be written)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=".tmp")
    os.close(fd)
    os.unlink(name)


def check_writable(path: str | os.PathLike, what: str = "folder") -> None:
    """Raise a PermissionError naming `path` unless it (or, when absent, its nearest existing parent) is writable.

    Tried by writing a probe file, not by ``os.access``: that is also right on a
    read-only mount and for root. Nothing is created when `path` does not exist yet.
    """
    p = Path(path).expanduser().absolute()
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise NotADirectoryError(f"{what} {p}: {probe} is a file, not a folder")
    try:
        _probe_write(probe)
    except OSError as e:
        if is_no_space(e):
            raise NoSpaceError(p, what) from e
        raise PermissionError(f"{what} {p} is not writable ({probe}: {e.strerror or e}); "
                              f"choose another folder or fix its permissions") from e


def read_jsonl(path: Path) -> list[dict]:
    """The records of a JSON-lines file (empty when it does not exist); unreadable lines are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line torn by a hard kill mid-write (or a blank one)
    return records

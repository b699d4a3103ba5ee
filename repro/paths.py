"""Where results go, written so that committed files read the same in any clone: paths relative to the
repository, never absolute."""
from __future__ import annotations

import os
import re
from pathlib import Path


# The repository this package lives in; paths inside it are written relative to it.
REPO_ROOT = Path(__file__).resolve().parents[1]

# An absolute POSIX path (or a Windows drive path) inside free text, e.g. a data source's description.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])(?:/|[A-Za-z]:\\)[^\s'\",;:()\[\]]+")


def repo_relative(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it (``results/01_.../runs/x``),
    otherwise relative to the repository through ``..``; never absolute, so committed files are portable."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return Path(os.path.relpath(resolved, REPO_ROOT)).as_posix()


def portable_text(text: str) -> str:
    """``text`` with every absolute path in it replaced by its repository-relative form (inside the repo)
    or by ``.../<last two parts>`` (outside, e.g. ``/data/sets/cifar10`` -> ``.../sets/cifar10``)."""
    def shorten(match: re.Match) -> str:
        path = Path(match.group(0))
        try:
            return path.resolve().relative_to(REPO_ROOT).as_posix()
        except ValueError:
            return ".../" + "/".join(path.parts[-2:])
    return _ABSOLUTE_PATH.sub(shorten, text)


# Where a notebook run from JupyterLab (not by ``repro reproduce``) writes when its ``out_dir`` is left at None:
# ``$REPRO_RESULTS_DIR`` when set, else this folder of the repository (ignored by git), so that an interactive run
# never overwrites the committed ``results/`` by accident.
RESULTS_ENV = "REPRO_RESULTS_DIR"
INTERACTIVE_RESULTS = "lab/results"


def in_repo(path: str | Path) -> Path:
    """``path`` as an absolute path: a relative one is read against the repository (not the working directory),
    so ``results`` means ``<repo>/results`` from ``notebooks/``, from the root, under papermill or from an executed
    copy under ``results/``; ``~`` is expanded, an absolute path kept."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def results_root(out_dir: str | Path | None = None) -> Path:
    """The folder a notebook writes ``<notebook>/<scale>/`` into: ``out_dir`` read by ``in_repo``; None: the
    interactive default (``$REPRO_RESULTS_DIR``, else ``<repo>/lab/results``). ``repro reproduce`` passes
    ``out_dir="results"``."""
    if out_dir is None:
        out_dir = os.environ.get(RESULTS_ENV) or INTERACTIVE_RESULTS
    return in_repo(out_dir)

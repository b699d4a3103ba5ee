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


def results_dir(experiment: str, scale: str, root: str | Path = "results") -> Path:
    """``<root>/<experiment>/<scale>/``, created."""
    path = Path(root) / experiment / scale
    path.mkdir(parents=True, exist_ok=True)
    return path



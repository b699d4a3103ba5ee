"""Run every notebook through papermill at one scale; executed copies go under ``results/``.

``python -m repro reproduce --scale smoke`` (or ``make reproduce SCALE=smoke``) runs
``notebooks/*.ipynb`` in order. Each notebook writes its tables and figures to
``<out>/<notebook>/<scale>/`` and its executed copy lands beside them as
``<notebook>.ipynb``. Each notebook's own output (its training progress) streams to
the terminal while it runs. No absolute path of this machine is written: the
notebook gets ``out_dir`` relative to its working directory, and the executed copy's
papermill metadata holds repository-relative paths.
"""
from __future__ import annotations

import ast
import json
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def list_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The experiment notebooks, in their numbered order."""
    found = sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebooks found in {notebook_dir}")
    return found


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Reject parameters the notebook does not declare, or whose type differs from the declared default's."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise TypeError(f"{notebook.name} has no parameter(s) {unknown}; it declares {sorted(declared)}")
    for key, value in parameters.items():
        try:  # papermill gives the default as source text; its literal's type is the declared type
            default = ast.literal_eval(declared[key]["default"])
        except (ValueError, SyntaxError):
            continue
        if value is None or default is None:
            continue
        expected = {float: (int, float), list: (list, tuple)}.get(type(default), type(default))
        if isinstance(value, bool) != isinstance(default, bool) or not isinstance(value, expected):
            raise TypeError(f"{notebook.name}: parameter {key}={value!r} should be {type(default).__name__}, "
                            f"like its default {default!r}")


def portable_executed_notebook(path: Path) -> None:
    """Rewrite papermill's ``input_path`` / ``output_path`` in an executed notebook's metadata relative to the
    repository, so the committed copy names no folder of the machine that ran it."""
    from .results import repo_relative

    nb = json.loads(path.read_text())
    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = repo_relative(meta[key])
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def run_notebooks(scale: str, *, out_dir: str | Path = "results", notebooks: Optional[Iterable[str]] = None,
                  extra_parameters: Optional[dict] = None, notebook_dir: Path = NOTEBOOK_DIR,
                  kernel_name: Optional[str] = None, stream_output: bool = True) -> list[Path]:
    """Execute the notebooks (all, or those whose name starts with one of ``notebooks``) at ``scale``.

    Returns the executed copies. A failing notebook stops the run with papermill's error, after its
    partial executed copy has been written (so the failing cell can be read there). ``stream_output``
    echoes each notebook's printed output (one line per training logging window, see
    ``repro.experiments.progress_kwargs``) to this process's stdout/stderr as it comes.
    """
    import papermill as pm

    from .config import get_scale
    from .experiments import PROGRESS_ENV

    get_scale(scale)  # fail early on a bad scale name
    selected = [nb for nb in list_notebooks(notebook_dir)
                if not notebooks or any(nb.stem.startswith(prefix) for prefix in notebooks)]
    if not selected:
        raise ValueError(f"no notebook matches {list(notebooks or [])}; have {[p.stem for p in list_notebooks(notebook_dir)]}")
    out_dir = Path(out_dir).resolve()
    executed = []
    # The kernels inherit this process's environment: progress as printed lines, which papermill can stream
    # (tqdm's widgets would go to a front end that is not there and bloat the executed copy).
    previous = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "lines"
    try:
        for nb in selected:
            # Relative to the kernel's working directory (the notebook's folder): "../results" by default.
            relative_out = Path(os.path.relpath(out_dir, nb.parent)).as_posix()
            parameters = {"scale": scale, "out_dir": relative_out, **(extra_parameters or {})}
            check_parameters(nb, parameters)
            target_dir = out_dir / nb.stem / scale
            target_dir.mkdir(parents=True, exist_ok=True)
            target = target_dir / nb.name
            start = time.perf_counter()
            print(f"[reproduce] {nb.name} at scale={scale} -> {target}", flush=True)
            try:
                pm.execute_notebook(str(nb), str(target), parameters=parameters, cwd=str(nb.parent),
                                    kernel_name=kernel_name, progress_bar=not stream_output,
                                    stdout_file=sys.stdout if stream_output else None,
                                    stderr_file=sys.stderr if stream_output else None)
            finally:
                if target.exists():
                    portable_executed_notebook(target)
            print(f"[reproduce] {nb.name} done in {time.perf_counter() - start:.0f} s", flush=True)
            executed.append(target)
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = previous
    return executed

"""Run every notebook through papermill at one scale; executed copies go under ``results/``.

``python -m repro reproduce --scale smoke`` (or ``make reproduce SCALE=smoke``) runs
``notebooks/*.ipynb`` in order. Each notebook writes its tables and figures to
``<out>/<notebook>/<scale>/`` and its executed copy lands beside them as
``<notebook>.ipynb``. Each notebook's own output (its training progress) streams to
the terminal while it runs. No absolute path of this machine is written: the
notebook gets ``out_dir`` relative to the repository (``results``; the notebooks read a
relative path against the repository, ``repro.paths.in_repo``, not against their working
directory), and the executed copy's papermill metadata holds repository-relative paths.
The kernel is the project's own, ``repro-vit`` (``repro.lab``), so the executed copies
name the same kernelspec as the notebooks.
"""
from __future__ import annotations

import ast
import contextlib
import importlib
import inspect
import json
import os
import re
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Iterable, Optional

from .fileio import atomic_write_text, check_writable, is_no_space, NoSpaceError
from .lab import ensure_kernel, KERNEL_NAME
from .paths import in_repo, repo_relative
from .progress import PROGRESS_ENV
from .rundir import REDRAW_ENV, RunDirBusy, RunDirLock
from .runtime import check_device_name
from .scales import get_scale
from .summary import write_summary

# papermill is imported inside the functions that read or run notebooks: its import takes 1-2 s (measured with
# python -X importtime), which the training commands of repro.cli, importing this module for its errors, should not pay.

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def list_notebooks(notebook_dir: Path = NOTEBOOK_DIR) -> list[Path]:
    """The experiment notebooks, in their numbered order."""
    found = sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebooks found in {notebook_dir}")
    return found


def experiment_module(notebook: Path) -> Optional[ModuleType]:
    """The experiment module a notebook imports (``from repro.experiments import <module> as exp``), or None."""
    match = re.search(r"from repro\.experiments import (\w+) as exp", Path(notebook).read_text())
    return importlib.import_module(f"repro.experiments.{match.group(1)}") if match else None


def scale_refusal(notebook: Path, scale: str) -> Optional[str]:
    """Why ``notebook`` does not run at ``scale``, or None when it does: its experiment module (the notebook's
    ``from repro.experiments import <module> as exp``) is asked for its config at that scale, which raises a
    ValueError naming the scales it has (e.g. notebook 02 at ``paper``: Table 8 needs JFT-300M)."""
    module = experiment_module(notebook)
    if module is None:
        return None
    try:
        module.get_config(scale)
    except ValueError as err:
        return str(err)
    return None


_KINDS = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple, "dict": dict,
          "List": list, "Tuple": tuple, "Dict": dict, "Sequence": (list, tuple)}


def _declared_kind(declared: dict) -> tuple[Optional[tuple], str]:
    """The types a parameter accepts, and where that was read from; (None, why) when nothing can be checked.

    The rule, in order:
    1. a default other than None: the default's type (an int is also a float,
       a tuple also a list; papermill gives the default as source text);
    2. a default of None with a type annotation (``seeds: Optional[list] = None``,
       papermill's ``inferred_type_name``): that type;
    3. a default of None whose comment gives an example after "e.g."
       (``seeds = None  # ..., e.g. [0, 1, 2]``): the example's type;
    4. a default of None with neither: a string (these are paths and names,
       e.g. ``data_dir``, ``pretrained_checkpoint``).
    None is accepted wherever the default is None.
    """
    try:
        default = ast.literal_eval(declared["default"])
    except (ValueError, SyntaxError):
        return None, "the default is not a literal"
    if default is not None:
        kind = {float: (int, float), list: (list, tuple)}.get(type(default), (type(default),))
        return kind, f"like its default {default!r}"
    annotation = (declared.get("inferred_type_name") or "None").replace(" ", "")
    names = [n for n in re.findall(r"[A-Za-z_]+", annotation) if n not in ("Optional", "Union", "None", "typing")]
    if names and names[0] in _KINDS:
        kind = _KINDS[names[0]]
        kind = kind if isinstance(kind, tuple) else (kind,)
        if list in kind:
            kind = (list, tuple)
        return kind, f"as annotated ({declared['inferred_type_name']})"
    example = re.search(r"e\.g\.\s*(.+)$", declared.get("help") or "")
    if example:
        try:
            value = ast.literal_eval(example.group(1).strip().rstrip(".;,)"))
        except (ValueError, SyntaxError):
            value = None
        if value is not None:
            kind = {float: (int, float), list: (list, tuple), tuple: (list, tuple)}.get(type(value), (type(value),))
            return kind, f"like the example in its comment ({example.group(1).strip()})"
    return (str,), "a string (its default is None and it declares no other type)"


def check_parameters(notebook: Path, parameters: dict) -> None:
    """Reject parameters the notebook does not declare, or whose type is not the declared kind.

    The declared kind follows ``_declared_kind`` (the default's type, else the
    annotation, else the comment's "e.g." example, else str). ``out_dir`` must
    also be a folder this process can write, checked before any notebook runs.
    """
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise TypeError(f"{notebook.name} has no parameter(s) {unknown}; it declares {sorted(declared)}")
    for key, value in parameters.items():
        kind, why = _declared_kind(declared[key])
        if value is None or kind is None:
            continue
        if isinstance(value, bool) != (bool in kind) or not isinstance(value, kind):
            names = " or ".join(k.__name__ for k in kind)
            raise TypeError(f"{notebook.name}: parameter {key}={value!r} should be {names}, {why}")
    if isinstance(parameters.get("out_dir"), str):
        check_writable(str(in_repo(parameters["out_dir"])), "results folder (out_dir)")


def check_values(notebook: Path, scale: str, parameters: dict) -> None:
    """Ask the notebook's experiment module for its config with the values the notebook will run with (its
    declared defaults, replaced by ``parameters``), so that a value of the right type but out of range
    (``lrs=[]``, ``sizes=[100, -5]``, ``inspect_images=0``, a ``run_dir`` that holds no run, no
    ``pretrained_checkpoint`` at paper scale) is refused by its ``get_config`` before any notebook runs.

    ``get_config`` gets the parameters it names; the rest are the notebook's own. Relative paths are read against
    the repository, as the notebook reads them (``repro.paths.in_repo``). Raises a one-line ValueError or TypeError naming the notebook.
    """
    import papermill as pm

    module = experiment_module(notebook)
    if module is None:
        return
    values = {}
    for key, declared in pm.inspect_notebook(str(notebook)).items():
        with contextlib.suppress(ValueError, SyntaxError):
            values[key] = ast.literal_eval(declared["default"])
    values.update(parameters)
    signature = inspect.signature(module.get_config).parameters
    named = {name for name, p in signature.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    kwargs = {key: value for key, value in values.items() if key in named - {"scale"}}
    try:
        if isinstance(values.get("device"), str):
            check_device_name(values["device"])
        module.get_config(scale, **kwargs)
    except (ValueError, TypeError, OSError) as err:  # OSError: a checkpoint file that is not there
        text = " ".join(str(err).split())
        named = text.startswith(f"notebook {notebook.stem[:2]}")  # get_config's messages name their notebook
        raise (TypeError if isinstance(err, TypeError) else ValueError)(
            text if named else f"{notebook.name}: {text}") from err


def _notebook_parameters(notebook: Path, scale: str, out_dir: Path, extra_parameters: Optional[dict]) -> dict:
    """The parameters ``run_notebooks`` gives a notebook: the scale, ``out_dir`` relative to the repository
    (``results`` by default; the notebook reads it against the repository, whatever its working directory), and
    the caller's."""
    return {"scale": scale, "out_dir": repo_relative(out_dir), **(extra_parameters or {})}


def check_notebooks(notebooks: list[Path], scale: str, out_dir: Path, extra_parameters: Optional[dict]) -> None:
    """Check the parameters of every notebook (``check_parameters``: names and types; ``check_values``: their
    experiment's ranges) before the first one runs, so that a bad value for the third notebook is not found
    after the first two have run. The first problem is raised as one line that names the other notebooks
    with problems too."""
    problems = []
    for nb in notebooks:
        parameters = _notebook_parameters(nb, scale, out_dir, extra_parameters)
        try:
            check_parameters(nb, parameters)
            check_values(nb, scale, parameters)
        except (ValueError, TypeError, OSError) as err:
            problems.append((nb, err))
    if len(problems) == 1:
        raise problems[0][1]
    if problems:
        first = problems[0][1]
        others = ", ".join(nb.stem for nb, _ in problems[1:])
        raise ValueError(f"{first} (and a problem with the parameters of {others})") from first


class NotebookFailed(RuntimeError):
    """A notebook raised an error inside papermill; the message names the notebook, the last line of its error
    and the executed copy that holds the whole traceback."""

    def __init__(self, notebook: Path, copy: Path, err: Exception):
        lines = [line.strip() for line in str(getattr(err, "evalue", "") or "").splitlines() if line.strip()]
        ename = getattr(err, "ename", type(err).__name__)
        cell = getattr(err, "exec_count", None)
        super().__init__(f"notebook {notebook.name} failed{f' in cell [{cell}]' if cell else ''}: {ename}"
                         f"{': ' + lines[-1] if lines else ''}; the failed copy, with its traceback, is {copy}")


class ResultsFolderLock(RunDirLock):
    """An exclusive lock on a results folder for as long as one ``reproduce`` writes there
    (``<out>/.reproduce.lock``, an flock the kernel drops when its holder dies); a second ``reproduce`` on the
    same folder gets ``RunDirBusy`` naming the holder's pid, before it writes anything."""

    def __init__(self, out_dir: Path):
        super().__init__(out_dir)
        self.path = Path(out_dir) / ".reproduce.lock"

    def busy_error(self) -> RunDirBusy:
        return RunDirBusy(f"results folder {self.path.parent} is in use by another `repro reproduce` "
                          f"({self.holder(self.path)}); wait for it to finish or stop it, or give another --out")


def portable_executed_notebook(path: Path) -> None:
    """Rewrite papermill's ``input_path`` / ``output_path`` in an executed notebook's metadata relative to the
    repository, so the committed copy names no folder of the machine that ran it."""

    nb = json.loads(path.read_text())
    meta = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        if meta.get(key):
            meta[key] = repo_relative(meta[key])
    # As Jupyter writes a notebook (nbformat: sorted keys), so that JupyterLab saving the copy unchanged changes no byte.
    atomic_write_text(path, json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")  # ENOSPC: names it


def run_notebooks(scale: str, *, out_dir: str | Path = "results", notebooks: Optional[Iterable[str]] = None,
                  extra_parameters: Optional[dict] = None, notebook_dir: Path = NOTEBOOK_DIR,
                  kernel_name: str = KERNEL_NAME, stream_output: bool = True, redraw: bool = False) -> list[Path]:
    """Execute the notebooks (all, or those whose name starts with one of ``notebooks``) at ``scale``.

    A notebook that does not run at ``scale`` (``scale_refusal``) is skipped with its reason when all notebooks
    were asked for, and is an error, before anything runs, when it was asked for by name.

    With ``redraw`` nothing is trained: the notebooks rebuild their tables, claims and figures from the finished
    runs' files (``repro.train.redraw_only``). Before the first notebook runs, the parameters of every one are
    checked (``check_notebooks``) and the results folder is locked (``ResultsFolderLock``: a second ``reproduce``
    on it is refused). After the notebooks, ``<out_dir>/SUMMARY.md`` is rebuilt from every notebook's claims
    (``repro.summary.write_summary``).

    Returns the executed copies. A failing notebook stops the run with ``NotebookFailed`` (its name, the last
    line of its error, the path of its partial executed copy, where the failing cell can be read). ``stream_output``
    echoes each notebook's printed output (a dozen progress lines, see ``repro.progress``) to this process's
    stdout/stderr as it comes.
    """
    import papermill as pm

    get_scale(scale)  # fail early on a bad scale name
    out_dir = in_repo(out_dir)  # a relative out_dir is read against the repository, as the notebooks read it
    selected = [nb for nb in list_notebooks(notebook_dir)
                if not notebooks or any(nb.stem.startswith(prefix) for prefix in notebooks)]
    if not selected:
        raise ValueError(f"no notebook matches {list(notebooks or [])}; have {[p.stem for p in list_notebooks(notebook_dir)]}")
    # Found before anything runs: at paper scale notebook 01 runs for hours, and 02 would fail only after it.
    refused = {nb.stem: why for nb in selected if (why := scale_refusal(nb, scale)) is not None}
    if refused and notebooks:
        raise ValueError(f"not at scale {scale!r}: " + "; ".join(f"{name}: {why}" for name, why in refused.items()))
    for name, why in refused.items():
        print(f"[reproduce] skipping {name} at scale={scale}: {why}", flush=True)
    selected = [nb for nb in selected if nb.stem not in refused]
    if not selected:
        raise ValueError(f"no notebook runs at scale {scale!r}")
    check_notebooks(selected, scale, out_dir, extra_parameters)  # every notebook's, before the first one runs
    out_dir = out_dir.resolve()
    ensure_kernel()  # papermill starts the notebooks' kernel, repro-vit, by name
    executed = []
    lock = ResultsFolderLock(out_dir).__enter__()  # a second reproduce on this folder stops here, writing nothing
    # The kernels inherit this process's environment: progress as printed lines, which papermill can stream
    # (tqdm's widgets would go to a front end that is not there and bloat the executed copy).
    previous = {name: os.environ.get(name) for name in (PROGRESS_ENV, REDRAW_ENV)}
    os.environ[PROGRESS_ENV] = "lines"
    if redraw:
        os.environ[REDRAW_ENV] = "1"
    try:
        for nb in selected:
            parameters = _notebook_parameters(nb, scale, out_dir, extra_parameters)  # out_dir: "results"
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
            except pm.PapermillExecutionError as err:
                raise NotebookFailed(nb, target, err) from err
            except OSError as err:
                if is_no_space(err):  # papermill's own [Errno 28] names no file
                    raise NoSpaceError(target, "the executed notebook") from err
                raise
            finally:
                if target.exists():
                    portable_executed_notebook(target)
            print(f"[reproduce] {nb.name} done in {time.perf_counter() - start:.0f} s", flush=True)
            executed.append(target)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        try:
            if len(executed) == len(selected):  # every notebook ran: the summary is rebuilt while the folder is ours
                print(f"[reproduce] {write_summary(out_dir)}", flush=True)
        finally:
            lock.__exit__(None, None, None)
    return executed

"""One module per notebook: its per-scale settings, its runs, its table, its claims and their verdicts.

Following big_vision's per-experiment configs, each module has ``get_config(scale, ...)`` (the scale's
preset from ``repro.scales.SCALES`` plus what this experiment adds), ``run(...)`` (trains, returns the run
directories with their labels), ``table(runs)``, ``claims(runs)`` and ``summary(runs, claims)``. Notebooks
keep the paper's text, their papermill parameters and a few calls to these, so tests can call the same
functions and every notebook builds its results the same way.

- ``pretrain_transfer``: notebook 01 (Sec. 4.2, Table 2; the small-data end of Fig. 3; Sec. 3.2).
"""
from __future__ import annotations

import os

# Set by ``repro reproduce`` for the notebooks' kernels: there no front end draws tqdm's widgets, so a
# plain line per logging window is printed instead; papermill streams it to the terminal.
PROGRESS_ENV = "REPRO_PROGRESS"


def progress_kwargs(label: str, steps: int) -> dict:
    """``repro.train.train`` keyword arguments that show a run's progress where the user looks.

    By default, none: ``train`` draws a tqdm bar (an ipywidgets bar in JupyterLab). With
    ``REPRO_PROGRESS=lines`` (set by ``repro reproduce``), the bar is off and each logging window prints
    one line (step, loss, training top-1, images/s), which papermill streams to the terminal and which
    keeps the executed notebook small (no widget state in it).
    """
    if os.environ.get(PROGRESS_ENV) != "lines":
        return {}

    def print_window(step: int, record: dict) -> None:
        print(f"  {label}: step {step}/{steps}  loss {record['loss']:.3f}  train top-1 "
              f"{100 * record['accuracy']:.1f}%  {record['images_per_s']:.0f} images/s", flush=True)

    return {"progress": False, "callback": print_window}

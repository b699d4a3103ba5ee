"""Progress of long work, shown where the user looks.

Interactively (JupyterLab, a terminal) every training run draws its own tqdm bar, labelled by what it is
(model, stage, seed). When ``repro reproduce`` runs the notebooks through papermill there is no front end to
draw bars, and every printed line ends up in the executed notebook: it sets ``REPRO_PROGRESS=lines``, under
which runs draw no bar, data sets decode silently, and a notebook prints one line when its first run is done
and then each time another tenth of its runs is (``RunProgress``): about a dozen lines however many runs.
"""
from __future__ import annotations

import math
import os
import time
from typing import Optional

PROGRESS_ENV = "REPRO_PROGRESS"


def lines_mode() -> bool:
    """True when progress is printed as a few plain lines (``REPRO_PROGRESS=lines``) instead of bars."""
    return os.environ.get(PROGRESS_ENV) == "lines"


class RunProgress:
    """The progress of one notebook's ``total`` runs (training runs, found or trained).

    ``train_kwargs(label)`` gives ``repro.train.train`` its bar (interactive) or none (lines mode);
    ``finished(label)`` counts a run and, in lines mode, prints a line at the first run and at every further
    tenth: how many are done, the minutes so far and the run that just finished.
    """

    def __init__(self, total: int, what: str = "runs"):
        self.total, self.what, self.done = max(int(total), 1), what, 0
        self.started = time.perf_counter()
        self._every = max(1, math.ceil(self.total / 10))

    def train_kwargs(self, label: str) -> dict:
        """``train(cfg, **progress.train_kwargs(label))``: a labelled bar, or no bar in lines mode."""
        return {"progress": not lines_mode(), "label": label}

    def finished(self, label: str, note: Optional[str] = None) -> None:
        """Count one finished run (``note``: e.g. its score) and report it where a line is due."""
        self.done += 1
        if lines_mode() and (self.done == 1 or self.done % self._every == 0 or self.done == self.total):
            minutes = (time.perf_counter() - self.started) / 60
            print(f"[{self.done}/{self.total} {self.what}, {minutes:.1f} min] {label}" + (f": {note}" if note else ""),
                  flush=True)

"""Progress of long work, shown where the user looks, and leaving nothing behind that breaks on reopen.

Interactively every training run shows one progress line, labelled by what it is (model, stage, seed, lr), that
ends as ONE plain text line: ``ViT-XXS/8 pre-train seed 0, lr 0.001: 40 steps, loss 2.103, train top-1 21.9%,
test top-1 24.0%, 12 s``. In a Jupyter kernel (JupyterLab, papermill) the line is a ``text/plain`` display
updated in place (``IPython.display`` with a display id): no widget, so a saved notebook shows the same text when
reopened, and no stderr output, so nothing is left as an empty strip when a bar clears itself. In a terminal it is
a tqdm bar on stderr that gives way to the same final line. Data decoding shows the same kind of line
(``decoded cifar10 train: 45,000 images in 14 s``).

When ``repro reproduce`` runs the notebooks through papermill, every printed line ends up in the executed notebook:
it sets ``REPRO_PROGRESS=lines``, under which runs show no line of their own, data sets decode silently, and a
notebook prints one line when its first run is done and then each time another tenth of its runs is
(``RunProgress``): about a dozen lines however many runs.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Optional

PROGRESS_ENV = "REPRO_PROGRESS"


def lines_mode() -> bool:
    """True when progress is printed as a few plain lines (``REPRO_PROGRESS=lines``) instead of bars."""
    return os.environ.get(PROGRESS_ENV) == "lines"


def in_jupyter_kernel() -> bool:
    """True inside a Jupyter kernel (JupyterLab, the classic notebook, papermill), where stderr becomes an output
    of its own and tqdm.auto would draw widgets."""
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return bool(shell) and "IPKernelApp" in getattr(shell, "config", {})


def format_seconds(seconds: float) -> str:
    """``12 s``, ``4.5 min``, ``1.2 h``."""
    if seconds < 100:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 6000 else f"{seconds / 3600:.1f} h"


class ProgressLine:
    """A progress line over ``total`` items, labelled ``desc``, that ends as one plain text line.

    ``update(n)`` counts items, ``set_postfix(**values)`` shows the latest values beside the count, and
    ``close(final)`` replaces the line by ``final`` (e.g. the run's summary); ``close()`` without it leaves
    ``<desc>: stopped at <n>/<total> <unit>``. With ``enabled=False`` nothing is shown at all. In a Jupyter kernel
    the line is a display updated at most every ``interval`` seconds; in a terminal a tqdm bar on stderr; with
    neither (a pipe, a log file) only the final line is printed. With ``leave=False`` a line that ends well leaves
    nothing outside a kernel (in a kernel a display cannot be taken back: it shows ``final``).
    """

    def __init__(self, total: int, desc: str, *, unit: str = "steps", initial: int = 0, enabled: bool = True,
                 interval: float = 0.5, leave: bool = True):
        self.total, self.desc, self.unit, self.n = int(total), desc, unit, int(initial)
        self.postfix: dict = {}
        self.started = time.perf_counter()
        self.interval, self._shown_at, self._closed, self.leave = interval, 0.0, False, leave
        self._handle = self._bar = None
        self.mode = "off" if not enabled else "kernel" if in_jupyter_kernel() else \
            "terminal" if sys.stderr.isatty() else "final"
        if self.mode == "kernel":
            from IPython.display import display
            self._handle = display({"text/plain": self._text()}, raw=True, display_id=True)
        elif self.mode == "terminal":
            from tqdm import tqdm
            self._bar = tqdm(total=self.total, initial=self.n, desc=desc, unit=f" {unit}", leave=False,
                             dynamic_ncols=True, mininterval=interval)

    def _text(self) -> str:
        elapsed = time.perf_counter() - self.started
        values = "".join(f", {key} {value}" for key, value in self.postfix.items())
        return f"{self.desc}: {self.n:,}/{self.total:,} {self.unit}{values}, {format_seconds(elapsed)}"

    def _show(self, text: str) -> None:
        self._handle.update({"text/plain": text}, raw=True)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._handle is not None and time.perf_counter() - self._shown_at >= self.interval:
            self._shown_at = time.perf_counter()
            self._show(self._text())

    def set_postfix(self, **values) -> None:
        self.postfix = {key: str(value) for key, value in values.items()}
        if self._bar is not None:
            self._bar.set_postfix(values)

    def close(self, final: Optional[str] = None) -> None:
        """End the line as ``final`` (or as where it stopped); a second close does nothing."""
        if self._closed or self.mode == "off":
            self._closed = True
            return
        self._closed = True
        text = final if final is not None else f"{self.desc}: stopped at {self.n:,}/{self.total:,} {self.unit}"
        if self._handle is not None:
            self._show(text)
            return
        if self._bar is not None:
            self._bar.close()
        if self.leave or final is None:
            print(text, file=sys.stderr, flush=True)


class RunProgress:
    """The progress of one notebook's ``total`` runs (training runs, found or trained).

    ``train_kwargs(label)`` gives ``repro.train.train`` its progress line (interactive) or none (lines mode);
    ``finished(label)`` counts a run and, in lines mode, prints a line at the first run and at every further
    tenth: how many are done, the minutes so far and the run that just finished.
    """

    def __init__(self, total: int, what: str = "runs"):
        self.total, self.what, self.done = max(int(total), 1), what, 0
        self.started = time.perf_counter()
        self._every = max(1, math.ceil(self.total / 10))

    def train_kwargs(self, label: str) -> dict:
        """``train(cfg, **progress.train_kwargs(label))``: a labelled line, or none in lines mode."""
        return {"progress": not lines_mode(), "label": label}

    def finished(self, label: str, note: Optional[str] = None) -> None:
        """Count one finished run (``note``: e.g. its score) and report it where a line is due."""
        self.done += 1
        if lines_mode() and (self.done == 1 or self.done % self._every == 0 or self.done == self.total):
            minutes = (time.perf_counter() - self.started) / 60
            print(f"[{self.done}/{self.total} {self.what}, {minutes:.1f} min] {label}" + (f": {note}" if note else ""),
                  flush=True)

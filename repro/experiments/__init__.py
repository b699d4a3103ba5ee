"""One module per notebook: its per-scale settings, its runs, its table, its claims and their verdicts.

Following big_vision's per-experiment configs, each module has ``get_config(scale, ...)`` (the scale's
preset from ``repro.scales.SCALES`` plus what this experiment adds), ``run(...)`` (trains, returns the run
directories with their labels), ``table(runs)``, ``claims(runs)`` and ``summary(runs, claims)``. Notebooks
keep the paper's text, their papermill parameters and a few calls to these, so tests can call the same
functions and every notebook builds its results the same way.

- ``pretrain_transfer``: notebook 01 (Sec. 4.2, Table 2; the small-data end of Fig. 3; Sec. 3.2).
- ``position_embeddings``: notebook 02 (App. D.4, Table 8, every cell; Fig. 7 centre).
- ``cls_vs_gap``: notebook 03 (App. D.3, Fig. 9).
- ``data_scaling``: notebook 04 (Sec. 4.3, Fig. 3, 4: accuracy against the pre-training set size).
- ``compute_scaling``: notebook 05 (Sec. 4.4, Fig. 5).
- ``masked_patch``: notebook 06 (Sec. 4.6, App. B.1.2: masked patch prediction, its ablation).
- ``inspect_model``: notebook 07 (Sec. 4.5, Fig. 6, 7; the cost of attention, Sec. 3.1).

Shared here: ``train_fields`` (a scale's TrainConfig fields with a notebook's paths), ``train_and_probe``
and ``probe_model`` (5-shot linear probes of a run, at the end and along training, kept in
``fewshot.json``), ``run_training_flops`` (a run's pre-training FLOPs, kept in ``flops.json``). Every
verdict is decided by ``repro.claims``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ..claims import MIN_SUPPORT_DRAWS, VERDICT_WORDS
from ..fileio import atomic_write_text
from ..progress import RunProgress
from ..scales import Scale

# --- shared by the experiment modules ---------------------------------------------------------------------

# Rows of repro.scales.PAPER_SETTINGS that a pre-training-only experiment (notebooks 02, 03, 07) departs in.
PRETRAIN_SETTING_ROWS = ("models (ViT / BiT / hybrid)", "pre-training data", "pre-training resolution",
                         "pre-training batch", "pre-training length", "pre-training warm-up",
                         "pre-training lr, decay, weight decay", "pre-training dropout / clipping",
                         "pre-logits layer", "pre-training augmentation")


def train_fields(scale, stage: str, family: str, *, data_dir, out_dir, device: str, **extra) -> dict:
    """The ``repro.train.TrainConfig`` fields of ``scale`` (a ``repro.scales.Scale``) for a stage and model
    family, with the notebook's data folder, run folder and device; ``extra`` fields win. When the scale
    decodes at the model's size and ``extra`` changes the size, the decode size follows it."""
    fields = {**scale.train_fields(stage, family.lower()), "data_dir": data_dir, "device": device,
              "out_dir": str(out_dir), **extra}
    if "data_image_size" in fields and "image_size" in extra:  # decode at the model's resolution
        fields["data_image_size"] = extra["image_size"]
    return fields


def pretrain_departures_markdown(scale, rows: Optional[dict] = None, setting_rows: Sequence[str] = PRETRAIN_SETTING_ROWS
                                  ) -> str:
    """The "paper vs this experiment" table for ``setting_rows`` (default: the pre-training rows), for a ``Scale``
    that an experiment has changed (its own model, steps, lr...): ``repro.scales.departures_markdown`` takes
    preset names only. The models row names the ViT alone (what notebooks 02 and 03 train); ``rows`` replaces any
    row's text."""
    from ..scales import PAPER_SETTINGS, scale_settings

    ours = {**scale_settings(scale), "models (ViT / BiT / hybrid)": scale.vit, **(rows or {})}
    lines = [f"| setting | paper | this notebook (`{scale.name}`) |", "|---|---|---|"]
    for row in setting_rows:
        value = ours[row]
        lines.append(f"| {row} | {PAPER_SETTINGS[row]} | {'= paper' if value == PAPER_SETTINGS[row] else value} |")
    return "\n".join(lines) + "\n"


# --- few-shot probes of a run's representation, written beside it ---------------------------------------

FEWSHOT_FILE = "fewshot.json"


# The probe of Table 8 and Fig. 9: 5-shot linear accuracy.
FEWSHOT_SHOTS = 5


@dataclass(frozen=True)
class Probe:
    """How a run's frozen representation is probed: ``repro.fewshot``'s ridge (big_vision ``fewshot_lsr``) on
    the pre-logits features (or another of ``repro.fewshot.REPRESENTATIONS``), seeds of the support sampling,
    and the images used (None: the whole split)."""

    dataset: str = "cifar10"
    data_dir: Optional[str] = None
    shots: tuple = (5,)
    seeds: tuple = tuple(range(MIN_SUPPORT_DRAWS))  # support draws: the score is their mean (repro.claims)
    max_train: Optional[int] = None   # support sets are drawn from this many training images (class-balanced)
    max_test: Optional[int] = None
    classes: Optional[tuple] = None   # probe on these classes only (``repro.data.get_datasets``), e.g. a target task
    train_part: Optional[str] = None  # support sets from the "source" or "target" part of the training set
    target_size: int = 5000
    features: str = "pre_logits"      # what is probed: "pre_logits" or "patch_mean" (repro.fewshot.REPRESENTATIONS)

    def record(self) -> dict:
        """What identifies the probe in ``fewshot.json`` (not where the data lies); the task selection and the
        features only when they differ from the defaults, so probes recorded before they existed still match."""
        view = {"classes": list(self.classes) if self.classes is not None else None, "train_part": self.train_part,
                "features": self.features if self.features != "pre_logits" else None}
        view = {**view, "target_size": self.target_size} if self.train_part else view
        return {"dataset": self.dataset, "shots": list(self.shots), "seeds": list(self.seeds),
                "max_train": self.max_train, "max_test": self.max_test, "embedded": self.data_dir == "embedded",
                **{k: v for k, v in view.items() if v is not None}}


def probe_model(model, probe: Probe, device: str = "auto") -> dict:
    """Few-shot accuracy (%) of a frozen model and its classifier's test top-1 (%), from one pass over the data.

    The classifier's logits are its head applied to the same pre-logits test features, so both numbers come
    from the same weights and the same test images. Returns ``{"fewshot": {k: {"mean", "std", "per_seed"}},
    "classifier_test_top1": float}``, accuracies in %; the classifier's is None when the probe reads other
    features than the pre-logits ones (the head does not read them).
    """
    import torch

    from ..data import get_datasets
    from ..fewshot import classifier_logits, extract_features, fewshot_results

    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    model = model.to(device)
    splits = get_datasets(probe.dataset, data_dir=probe.data_dir, heldout=False, max_train=probe.max_train,
                          max_test=probe.max_test, classes=probe.classes, train_part=probe.train_part,
                          target_size=probe.target_size)
    train, test = splits["train"], splits["test"]
    train_x = extract_features(model, train, features=probe.features)  # (N, F) float32 on the CPU
    test_x = extract_features(model, test, features=probe.features)    # (M, F)
    found = fewshot_results(train_x, train.labels, test_x, test.labels, probe.shots, probe.seeds,
                            num_classes=train.num_classes)
    top1 = None  # the head reads pre-logits features only
    if probe.features == "pre_logits":
        with torch.no_grad():  # (M, K): the trained classifier on the same features
            logits = classifier_logits(model, test_x.to(device)).float().cpu()
        top1 = 100 * float((logits.argmax(-1) == torch.as_tensor(test.labels)).float().mean())
    return {"fewshot": {str(k): {"mean": 100 * v["mean"], "std": 100 * v["std"],
                                 "per_seed": [100 * a for a in v["per_seed"]]} for k, v in found.items()},
            "classifier_test_top1": top1}


def _digest(path: Path) -> Optional[str]:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.exists() else None


def _read_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.exists() else None


def read_probes(run_dir) -> list[dict]:
    """The probe points of a run (``fewshot.json``), one per evaluated step, in step order."""
    saved = _read_json(Path(run_dir) / FEWSHOT_FILE)
    return saved["points"] if saved else []


def support_draws(run_dir) -> int:
    """How many support draws each few-shot score of a run averages (its probe's sampling seeds)."""
    return len(json.loads((Path(run_dir) / FEWSHOT_FILE).read_text())["probe"]["seeds"])


def draws_text(run_dirs: Sequence) -> str:
    """The support draws behind these runs' few-shot scores, for a table note: "drawn 5 times (support seeds
    0-4), their mean per run"."""
    counts = sorted({support_draws(d) for d in run_dirs})
    if not counts:
        return "no probe"
    times = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"drawn {times} times (support seeds 0-{counts[-1] - 1}), their mean per run"


def support_std(run_dirs: Sequence, shots: int = 5) -> Optional[float]:
    """The std of a few-shot score over its support draws (points), averaged over ``run_dirs``: the part of a
    score's noise that comes from which images were drawn as the support set (kept beside the score in tables)."""
    stds = [read_probes(d)[-1]["fewshot"][str(shots)]["std"] for d in run_dirs if read_probes(d)]
    return sum(stds) / len(stds) if stds else None


def fewshot_top1(run_dir, shots: int = 5) -> float:
    """A run's final ``shots``-shot linear accuracy (%), the mean over the probe's support draws."""
    return read_probes(run_dir)[-1]["fewshot"][str(shots)]["mean"]


def _same_probe_but_draws(saved: dict, probe: "Probe") -> bool:
    """The saved probe is ``probe`` except, perhaps, for its number of support draws (redraw mode keeps it:
    the claims see the draws and ask for the next run where they are too few)."""
    wanted = {k: v for k, v in probe.record().items() if k != "seeds"}
    return {k: v for k, v in saved.items() if k != "seeds"} == wanted


PARTIAL_FILE = "fewshot.partial.json"   # the probe points along training so far (kept across an interruption)


def train_and_probe(cfg, probe: Probe, *, label: str, at_steps: Sequence[int] = (), device: str = "auto",
                    progress: Optional[RunProgress] = None) -> Path:
    """Train ``cfg`` (or find it finished) and probe its representation at ``at_steps`` and at the end.

    The intermediate probes are ``train``'s ``on_step`` hook: at each step of ``at_steps`` the engine hands
    over the model of this very run, which is probed (its time left out of the run's) and trains on, so the
    probes cost no extra training. Points along the way are kept in ``fewshot.partial.json``, so an
    interrupted run resumes with them. The points go to ``<run_dir>/fewshot.json`` with the probe's settings
    and a digest of ``final.json``; a later call with the same settings reads them back. In redraw mode a
    saved probe that differs only in its number of support draws is kept (``support_draws`` tells the claims).
    """
    from ..checkpoints import load_model
    from ..train import RunNotFinished, redraw_only, train

    run_dir = cfg.run_dir
    path = run_dir / FEWSHOT_FILE
    saved = _read_json(path)
    current = saved is not None and saved.get("final_digest") == _digest(run_dir / "final.json") and \
        saved.get("at_steps") == sorted(at_steps)
    kwargs = progress.train_kwargs(label) if progress else {"label": label}
    if redraw_only():
        if not (current and _same_probe_but_draws(saved["probe"], probe)):
            raise RunNotFinished(f"redraw: {run_dir.name} ({label}) has no probe with these settings; run without "
                                 "--redraw to probe it")
        train(cfg, **kwargs)  # checks that the run itself is there
    elif current and saved["probe"] == probe.record() and (run_dir / "model.safetensors").exists():
        pass
    else:
        partial_path = run_dir / PARTIAL_FILE
        partial = _read_json(partial_path) if (run_dir / "checkpoint.pt").exists() else None  # a resumed run
        points = partial["points"] if partial and partial.get("probe") == probe.record() else []

        def probe_along(step: int, model) -> None:
            points.append({"step": step, **probe_model(model, probe, device)})
            atomic_write_text(partial_path, json.dumps({"probe": probe.record(), "points": points}, indent=1))

        steps = sorted(set(at_steps))
        train(cfg, at_steps=steps, on_step=probe_along, **kwargs)
        final_step = json.loads((run_dir / "final.json").read_text())["step"]
        points = [p for p in points if p["step"] < final_step]
        points.append({"step": final_step, **probe_model(load_model(run_dir / "model.safetensors"), probe, device)})
        atomic_write_text(path, json.dumps({"probe": probe.record(), "at_steps": steps,
                                            "final_digest": _digest(run_dir / "final.json"), "points": points},
                                           indent=1))
        partial_path.unlink(missing_ok=True)
    if progress:
        progress.finished(label, f"{probe.shots[0]}-shot {fewshot_top1(run_dir, probe.shots[0]):.1f}%")
    return run_dir


# --- held-out learning-rate choices (fine-tuning sweeps) ---------------------------------------------------

@dataclass(frozen=True)
class SweepResult:
    """What one held-out lr choice (``repro.train.finetune_sweep``) leaves for the claims and the lr table."""

    grid: tuple                          # ((lr, run_dir), ...) every lr tried, ascending
    chosen: float
    heldout_images: Optional[int]        # held-out images the choice was made on
    at_edge: bool                        # the choice lies at an edge of the final grid
    extended_to: Optional[float] = None  # the lr added one grid step past an edge
    extension_missing: Optional[float] = None  # redraw: the extension the rule asks for was never trained

    @classmethod
    def of(cls, sweep: dict) -> "SweepResult":
        return cls(tuple((lr, Path(d)) for lr, d in sweep["runs"].items()), sweep["best_lr"],
                   sweep.get("heldout_images"), bool(sweep.get("at_edge")), sweep.get("extended_to"),
                   sweep.get("extension_missing"))

    @property
    def heldout_top1(self) -> float:
        """The chosen lr's held-out top-1 (%)."""
        run_dir = dict(self.grid)[self.chosen]
        return 100 * json.loads((run_dir / "final.json").read_text())["val"]["accuracy"]

    def rows(self, **what) -> list[dict]:
        """One lr-table row per lr tried (``what``: the columns naming the fine-tuning): held-out and test
        top-1 (%), whether it was chosen, and a note on the grid's extension."""
        rows = []
        for lr, run_dir in self.grid:
            final = json.loads((run_dir / "final.json").read_text())
            note = "one grid step past the edge" if lr == self.extended_to else ""
            if lr == self.chosen and self.at_edge:
                note = (note + "; " if note else "") + "chosen at the edge of the grid"
            rows.append({**what, "lr": f"{lr:g}", "held-out images": final["val"].get("count"),
                         "held-out top-1 (%)": 100 * final["val"]["accuracy"],
                         "test top-1 (%)": 100 * final["test"]["accuracy"] if "test" in final else None,
                         "chosen": lr == self.chosen, "note": note})
        if self.extension_missing is not None:
            rows.append({**what, "lr": f"{self.extension_missing:g}", "held-out images": None,
                         "held-out top-1 (%)": None, "test top-1 (%)": None, "chosen": False,
                         "note": "one grid step past the edge: not run yet (needs the next run)"})
        return rows


def run_sweep(cfg, *, lrs: Sequence[float], refit: bool, label: str, progress: Optional[RunProgress] = None) -> dict:
    """``repro.train.finetune_sweep`` of ``cfg`` over ``lrs`` (extended past an edge), counted as one unit of
    ``progress``; returns the sweep's dict."""
    from ..train import finetune_sweep

    kwargs = progress.train_kwargs(label) if progress else {"label": label}
    sweep = finetune_sweep(cfg, lrs=lrs, refit=refit, **kwargs)
    if progress:
        progress.finished(label, f"lr {sweep['best_lr']:g} chosen on {sweep['heldout_images']} held-out images")
    return sweep


FLOPS_FILE = "flops.json"
FLOPS_COUNTED_WITH = ("torch.utils.flop_counter.FlopCounterMode, forward + backward, matrix products, convolutions "
                      "and attention")


def run_training_flops(run_dir) -> float:
    """A run's pre-training compute in FLOPs: ``repro.results.training_flops`` (``torch.utils.flop_counter`` on
    one forward + backward) of the model in its ``config.json`` (variant, overrides, resolution, data set's
    classes) times its batch and steps. Counted once and kept in ``flops.json`` beside the run, so tables and
    figures read it from files."""
    from ..data import get_info
    from ..results import training_flops

    run_dir = Path(run_dir)
    path = run_dir / FLOPS_FILE
    saved = _read_json(path)
    if saved and saved.get("counted_with") == FLOPS_COUNTED_WITH:
        return saved["train_flops"]  # else stale: counted before attention was (recounted from the config)
    cfg = json.loads((run_dir / "config.json").read_text())
    per_image = training_flops(cfg["model"], cfg["image_size"], get_info(cfg["dataset"]).num_classes,
                               cfg.get("model_overrides") or {})
    total = per_image * cfg["batch_size"] * cfg["steps"]
    atomic_write_text(path, json.dumps({"flops_per_image": per_image, "train_flops": total,
                                        "counted_with": FLOPS_COUNTED_WITH}, indent=1))
    return total


SMOKE_CAVEAT = "Smoke scale: a few steps on a few hundred images prove the plumbing, not the claims."


def finish_note(note: str, config, *, cifar10: str) -> str:
    """A table note's common ending: ``cifar10`` (what the reader should know of the data, e.g. that it is the
    JPEG copy) when the scale trains on CIFAR-10, and the smoke-scale caveat when the claims are undecidable."""
    if config.scale.dataset == "cifar10":
        note += cifar10 + " "
    if not config.decidable:
        note += SMOKE_CAVEAT
    return note.strip()


def summary_markdown(settings: str, first_run: dict, found: Sequence[dict], *, decidable: bool,
                     extra_lines: Sequence[str] = ()) -> str:
    """A notebook's closing paragraph in Markdown, generated from its claims' numbers and verdicts.

    ``settings`` names the scale and what was run (e.g. "scale `cpu`, 3 seed(s)"); ``first_run`` is one run's
    ``repro.results.load_run`` row, for the hardware and the data source.
    """
    lines = [f"**Summary** ({settings}, {first_run.get('device_name') or '—'}, "
             f"data: {first_run.get('data_source') or '—'}):", ""]
    lines += [f"- {c['claim']}: **{VERDICT_WORDS[c['holds']]}**: {c['why']}." for c in found]
    lines += list(extra_lines)
    if not decidable:
        lines += ["", "At smoke scale these runs prove the plumbing, not the claims: run `cpu` or `gpu` for verdicts."]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Pretraining:
    """The settings of a notebook that pre-trains its own ViT (02, 03, 07): a scale's preset, where its data
    lies and the ViT's pre-training budget (this experiment's own model, size, batch and steps)."""

    scale: Scale
    data_dir: Optional[str]
    model: str
    image_size: int          # px
    batch_size: int
    steps: int
    warmup_steps: int

    def scale_with_budget(self, lr: float, family: str = "vit") -> Scale:
        """The scale's preset with this experiment's model, budget and ``lr`` (what ``train_fields`` reads).

        ``family`` ("vit", "bit" or "hybrid") is the scale's model field that this model fills, and so the
        lr field it sets (``bit_lr`` for a BiT, ``pretrain_lr`` otherwise); read it back with the same family.
        """
        lr_field = "bit_lr" if family == "bit" else "pretrain_lr"
        self.scale.model_name(family)  # an unknown family is an error here, not a silently ignored field
        return dataclasses.replace(self.scale, **{family: self.model, lr_field: lr}, image_size=self.image_size,
                                   batch_size=self.batch_size, pretrain_steps=self.steps,
                                   warmup_steps=self.warmup_steps)

    @property
    def decidable(self) -> bool:
        """False at smoke scale: a few steps on a few hundred images test the plumbing, not the claims."""
        return self.scale.name != "smoke"


@dataclass(frozen=True)
class ProbedPretraining(Pretraining):
    """The settings that notebooks 02 and 03 share: ``Pretraining`` plus the few-shot probe."""

    fewshot_max_train: Optional[int]  # support sets are drawn from this many training images (None: all)

    @property
    def probe(self) -> Probe:
        return Probe(dataset=self.scale.dataset, data_dir=self.data_dir, shots=(FEWSHOT_SHOTS,),
                     max_train=self.fewshot_max_train or self.scale.max_train, max_test=self.scale.max_test)


def preset_values(presets: dict, scale: str, overrides: dict, *, what: str, seed_fields: dict) -> dict:
    """An experiment's preset at ``scale`` with ``overrides`` applied (None keeps the preset's; an unknown key is
    a TypeError naming ``what``) and the seed lists of ``seed_fields`` (None keeps the preset's) as tuples."""
    values = dict(presets[scale])
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        raise TypeError(f"unknown setting(s) {unknown}; {what} has {sorted(values)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    values.update({k: v for k, v in seed_fields.items() if v is not None})
    check_settings(values, what)
    return {**values, **{k: tuple(values[k]) for k in seed_fields}}


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _members(v) -> list:
    return list(v.values()) if isinstance(v, dict) else list(v) if isinstance(v, (list, tuple)) else [v]


# The range of each setting the experiments share a name for, as (what it must be, test). get_config refuses a
# value outside it with one line, so ``repro reproduce`` finds it before any notebook runs.
_RANGES = {
    **{key: ("a positive integer", lambda v: _integer(v) and v > 0)
       for key in ("image_size", "batch_size", "steps", "finetune_steps", "ablation_steps", "target_size",
                   "inspect_images", "rollout_images", "cost_image_size", "cost_batch", "cost_repeats",
                   "fit_min_tokens")},
    **{key: ("an integer >= 0", lambda v: _integer(v) and v >= 0) for key in ("warmup_steps", "probes", "eval_every")},
    **{key: ("a positive integer or None", lambda v: v is None or (_integer(v) and v > 0))
       for key in ("fewshot_max_train", "explicit_max_tokens", "heldout_images")},
    **{key: ("a positive number", lambda v: _number(v) and v > 0) for key in ("lr", "bit_lr", "mpp_lr")},
    "warmup_fraction": ("a fraction in [0, 1)", lambda v: _number(v) and 0 <= v < 1),
    **{key: ("a non-empty list of positive numbers",
             lambda v: isinstance(v, (list, tuple, dict)) and len(v) > 0 and all(_number(x) and x > 0 for x in _members(v)))
       for key in ("lrs", "finetune_lrs", "scratch_lrs")},
    "cost_patches": ("a non-empty list of positive integers",
                     lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_integer(x) and x > 0 for x in v)),
    **{key: ("a list of integers >= 0",
             lambda v: isinstance(v, (list, tuple)) and all(_integer(x) and x >= 0 for x in v))
       for key in ("seeds", "placement_seeds", "ablation_seeds", "transfer_seeds")},
}


def check_settings(values: dict, what: str) -> None:
    """A one-line ValueError for a setting of ``values`` of the right type but out of range (``lrs=[]``,
    ``inspect_images=0``, a negative seed), or a model name that names no model (``model``, ``bit``)."""
    from ..config import parse_variant

    for key, value in values.items():
        if key in _RANGES and not _RANGES[key][1](value):
            raise ValueError(f"{what}: {key}={value!r} must be {_RANGES[key][0]}")
        if key in ("model", "bit") and isinstance(value, str):
            try:
                parse_variant(value)
            except ValueError as err:
                raise ValueError(f"{what}: {key}={value!r}: {str(err).split('. Valid names')[0]}") from None


@dataclass
class RunSet:
    """The runs of one execution of a notebook: its settings, where its results go (``<out_dir>/<notebook>/
    <scale>``) and one record per run (a dataclass naming what the run stands for, with its ``run_dir``)."""

    config: Any
    out: Path
    records: list = field(default_factory=list)

    def select(self, **match) -> list:
        """The records whose fields equal ``match``, e.g. ``select(stage="pre-train", seed=0)``."""
        return [r for r in self.records if all(getattr(r, k) == v for k, v in match.items())]

    def first_run(self) -> dict:
        """The first run's ``repro.results.load_run`` row (its hardware and data source name the summary's
        setting), or {} before any run."""
        from ..results import load_run

        return load_run(self.records[0].run_dir) if self.records else {}


def cost_columns(loaded: Sequence[dict]) -> dict:
    """A table row's cost and provenance columns from its runs' ``repro.results.load_run`` rows: parameters,
    training speed and minutes (means over the runs), the hardware and the data source of the first."""
    import pandas as pd

    return {
        "params (M)": (loaded[0].get("params") or 0) / 1e6 or None,
        "train images/s": pd.Series([r.get("images_per_s") for r in loaded], dtype=float).mean(),
        "train min / run": pd.Series([r.get("train_seconds") for r in loaded], dtype=float).mean() / 60,
        "hardware": loaded[0].get("device_name"), "data source": loaded[0].get("data_source"),
    }

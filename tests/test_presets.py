"""One set of defaults: a scale and every experiment's preset only list what differs from the defaults below them,
and the committed runs are found again by the configs the experiments build today."""
import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from repro.experiments import (cls_vs_gap, compute_scaling, data_scaling, inspect_model, masked_patch,
                               position_embeddings, pretrain_transfer)
from repro.recipes import FINETUNE_TRAINING
from repro.rundir import REDRAW_ENV
from repro.runconfig import TrainConfig
from repro.scales import SCALES, get_scale

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = (pretrain_transfer, position_embeddings, cls_vs_gap, data_scaling, compute_scaling, masked_patch,
               inspect_model)
DEFAULTS = TrainConfig()


def repeated(changes: dict, base) -> list[str]:
    """The keys of ``changes`` whose value is already ``base``'s (a TrainConfig or a dict)."""
    get = (lambda k: base[k]) if isinstance(base, dict) else (lambda k: getattr(base, k))
    return [f"{k}={v!r}" for k, v in changes.items() if get(k) == v]


@pytest.mark.parametrize("name", list(SCALES))
def test_a_scale_lists_only_what_differs_from_the_run_defaults(name):
    scale = SCALES[name]
    assert not repeated(scale.common, DEFAULTS), name
    assert not repeated(scale.pretrain, {**dataclasses.asdict(DEFAULTS), **scale.common}), name
    assert not repeated(scale.finetune, {**dataclasses.asdict(DEFAULTS), **FINETUNE_TRAINING, **scale.common}), name


def preset_layers(module) -> list[tuple[str, str, dict, TrainConfig]]:
    """(scale, layer name, the layer's changes, the run they change) for every preset layer of an experiment."""
    layers = []
    for scale, preset in getattr(module, "PRESETS", {}).items():
        s = get_scale(scale)
        layers.append((scale, "train", preset["train"], s.pretraining))
        if "bit_train" in preset:
            layers.append((scale, "bit_train", preset["bit_train"], s.run_config("pretrain", "bit")))
    for scale, preset in getattr(module, "MAIN_PRESETS", {}).items():
        s = get_scale(scale)
        layers += [(scale, "main train", preset.get("train", {}), s.pretraining),
                   (scale, "main vit", preset.get("vit", {}), s.pretraining),
                   (scale, "main bit", preset.get("bit", {}), s.run_config("pretrain", "bit")),
                   (scale, "main finetune", preset.get("finetune", {}), s.finetuning)]
    for scale, preset in getattr(module, "TRANSFER_PRESETS", {}).items():
        s = get_scale(scale)
        layers += [(scale, "transfer source", preset["source"], s.pretraining),
                   (scale, "transfer vit", preset["vit"], s.pretraining),
                   (scale, "transfer bit", preset["bit"], s.run_config("pretrain", "bit")),
                   (scale, "transfer target", preset["target"], s.finetuning)]
    return layers


@pytest.mark.parametrize("module", EXPERIMENTS, ids=lambda m: m.NAME)
def test_no_preset_repeats_a_default(module):
    """Each layer of an experiment's preset changes the scale's run: a value equal to the scale's is a default
    written twice (it would silently stop following the scale)."""
    layers = preset_layers(module)
    assert layers, module.NAME
    for scale, layer, changes, base in layers:
        assert not repeated(changes, base), f"{module.NAME} {scale} {layer}: {repeated(changes, base)}"


def test_a_repeated_default_is_caught():
    assert repeated({"steps": 900, "batch_size": 128}, DEFAULTS) == ["batch_size=128"]


def tracked_results(notebook: str, scale: str, dest: Path) -> Path:
    """The committed files of ``results/<notebook>/<scale>`` (no weights: they are not committed) copied to
    ``dest/<notebook>/<scale>``; returns ``dest``."""
    listed = subprocess.run(["git", "ls-files", f"results/{notebook}/{scale}"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    for file in listed:
        target = dest / Path(file).relative_to("results")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / file, target)
    return dest


@pytest.mark.parametrize("module", EXPERIMENTS, ids=lambda m: m.NAME)
def test_committed_smoke_runs_are_found_by_todays_configs(module, tmp_path, monkeypatch):
    """Redraw mode trains nothing and fails on a run it cannot find: every run the experiment builds at smoke scale
    today is a committed run directory (its name is the hash of its config, ``TrainConfig.identity``)."""
    out = tracked_results(module.NAME, "smoke", tmp_path)
    committed = {p.name for p in (out / module.NAME / "smoke" / "runs").iterdir()}
    monkeypatch.setenv(REDRAW_ENV, "1")
    runs = module.run(module.get_config("smoke", out_dir=out, device="cpu"))
    found = {Path(r.run_dir).name for r in runs.records if getattr(r, "run_dir", None)}
    assert found and found <= committed

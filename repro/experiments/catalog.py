"""What every notebook runs at every scale, read from the experiments' own configs (``get_config``).

``scales_markdown()`` is the README's "Scales" table; a test keeps the README in sync with it, so the table
describes what the notebooks run, not a scale's generic preset.
"""
from __future__ import annotations

from typing import Callable

from . import (cls_vs_gap, compute_scaling, data_scaling, inspect_model, masked_patch, position_embeddings,
               pretrain_transfer)

SCALE_NAMES = ("smoke", "cpu", "gpu", "paper")


def _seeds(seeds) -> str:
    return f"{len(seeds)} seed{'s' * (len(seeds) != 1)}"


def _notebook_01(c) -> str:
    if c.scale.name == "paper":
        return f"fine-tunes a given checkpoint at {c.finetune_image_size} px ({', '.join(pretrain_transfer.PAPER_DATASETS)})"
    pre = c.pretrain["ViT"]
    text = (f"{c.vit} vs {c.bit}, {pre.steps} steps x {pre.batch_size}, fine-tuned {c.finetune_steps} steps at "
            f"{'/'.join(str(r) for r in c.finetune_resolutions)} px, {_seeds(c.seeds)}")
    t = c.transfer
    if t is not None:
        text += (f"; transfer {t.vit} and {t.source['BiT'].model}, {t.source_steps} + {t.target_steps} steps, "
                 f"{_seeds(t.seeds)}")
    return text


def _notebook_02(c) -> str:
    return (f"{c.model}, {len(position_embeddings.CELLS)} cells x {c.steps} steps x {c.batch_size}, stem "
            f"{_seeds(c.seeds)}, placements {_seeds(c.placement_seeds)}")


def _notebook_03(c) -> str:
    return f"{c.model}, 2 pools x {len(c.lrs)} lrs x {c.steps} steps x {c.batch_size}, {_seeds(c.seeds)}"


def _notebook_04(c) -> str:
    return (f"{c.model} vs {c.bit} on {min(c.sizes):,}-{max(c.sizes):,} images, {c.steps} steps x {c.batch_size}, "
            f"{_seeds(c.seeds)}")


def _notebook_05(c) -> str:
    families = {}
    for rung in c.ladder:
        families.setdefault(rung.family, []).append(rung)
    models = "; ".join(f"{f} {rungs[0].model} at {'/'.join(str(r.steps) for r in rungs)} steps"
                       for f, rungs in families.items())
    return f"{models} x {c.batch_size}, lr chosen on held-out, {sum(len(r.seeds) for r in c.ladder)} runs"


def _notebook_06(c) -> str:
    return (f"{c.model}, pre-training {c.steps} steps x {c.batch_size}, fine-tuning {c.finetune_steps} steps on "
            f"{c.target_size:,} images, {_seeds(c.seeds)}; ablation {c.ablation_steps} steps, "
            f"{_seeds(c.ablation_seeds)}")


def _notebook_07(c) -> str:
    return (f"{c.model}, {c.steps} steps x {c.batch_size}, {_seeds(c.seeds)}; attention cost at {c.cost_image_size} px, "
            f"{min(c.cost_tokens)}-{max(c.cost_tokens):,} tokens")


NOTEBOOKS: dict[str, tuple] = {
    "01_pretrain_and_transfer": (pretrain_transfer, _notebook_01),
    "02_position_embeddings": (position_embeddings, _notebook_02),
    "03_cls_vs_gap": (cls_vs_gap, _notebook_03),
    "04_data_scaling": (data_scaling, _notebook_04),
    "05_compute_scaling": (compute_scaling, _notebook_05),
    "06_masked_patch_prediction": (masked_patch, _notebook_06),
    "07_inspect": (inspect_model, _notebook_07),
}


def describe(notebook: str, scale: str) -> str:
    """What ``notebook`` runs at ``scale``, in one line from its ``get_config`` (or why it does not run there)."""
    module, text = NOTEBOOKS[notebook]
    try:
        config = module.get_config(scale)
    except ValueError:
        return "—"
    return text(config)


def scales_markdown(scales: tuple = SCALE_NAMES, describe_one: Callable[[str, str], str] = describe) -> str:
    """The README's "Scales" table: one row per notebook, one column per scale, each cell what runs there."""
    lines = ["| notebook | " + " | ".join(f"`{s}`" for s in scales) + " |", "|---|" + "---|" * len(scales)]
    for notebook in NOTEBOOKS:
        lines.append(f"| {notebook[:2]} | " + " | ".join(describe_one(notebook, s) for s in scales) + " |")
    return "\n".join(lines) + "\n"

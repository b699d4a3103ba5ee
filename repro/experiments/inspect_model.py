"""Notebook 07: inside the Vision Transformer (Sec. 4.5, Fig. 6, 7) and the cost of attention (Sec. 2).

The model inspected: a ViT with the paper's defaults (learned 1-D position embedding, class token) trained
here at the notebook's scale (``run``), or a finished run directory (``run_dir``); beside it, when its path
is given, an official ViT-B/16 or ViT-L/16 ``.npz`` (``pretrained_checkpoint``; the variant is read from the
file's shapes). For each model (``repro.analysis``, on a class-balanced batch of test images):

- Fig. 7 left: the first 28 principal components of the patch-embedding filters;
- Fig. 7 centre: the cosine similarity of every patch's position embedding with every other's;
- Fig. 7 right: the mean attention distance of every head against depth, beside the same architecture at
  initialisation (where attention is near uniform: every head "global");
- Fig. 6: attention-rollout maps (Abnar & Zuidema 2020) of a few test images.

Then the cost of attention (``repro.attention_cost``): forward + backward time and memory of the same ViT
width, depth and heads at one image size cut into ever smaller patches (tens to thousands of tokens), the
fitted exponents, and the arithmetic of pixels as tokens at 224 px as an extrapolation.

Scales. ``smoke``: ViT-XXS/8 trained 8 steps on the embedded mini CIFAR-10, a three-point sweep up to 257
tokens; proves the plumbing, verdicts undecided. ``cpu``: ViT-XXS/4 (4 layers x 2 heads, 8x8 patches of
4 px) trained 6,000 steps of batch 128 on CIFAR-10 at 32 px (15 epochs, until its attention has measurably
left uniform), 3 seeds, inspected on 500 test images; sweep at 96 px, patches 16 ... 2 (37 ... 2305 tokens,
~16 s on one thread, measured); about 35 minutes in all. ``gpu``: ViT-Ti/4 (12 x 3), 3000 steps of 512,
three seeds; sweep at 224 px up to 12,545 tokens (the materialising op up to 4,096).

Departures (stated in the table note): the paper inspects ViT-L/32 and ViT-L/16 pre-trained on JFT-300M at
224 px (14x14 or 7x7 patches); the model trained here is small, trained briefly on CIFAR-10 at 32 px (the
JPEG copy), on an 8x8 grid, so its figures can show the direction of the paper's, not their detail.

Claims tested (``claims``): position embeddings encode distance, and rows and columns (Fig. 7 centre);
the lowest layer mixes global and local heads, and attention distance grows with depth (Fig. 7 right);
attention's cost is quadratic in the number of tokens (Sec. 2). Rules and tolerances are in ``claims``.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..analysis import (collect_attentions, filter_components, mean_attention_distance, patch_distances,
                        position_similarity, rollout_map)
from ..analysis_plots import plot_attention_cost, plot_attention_distance, plot_filter_components, \
    plot_position_similarity, plot_rollout
from ..attention_cost import (EXPLICIT_SAVED, FITTED, FUSED_TIME, attention_cost_sweep, fit_exponents,
                              pixels_as_tokens, pixels_markdown)
from ..claims import (VERDICT_WORDS, Verdict, at_scale, claim_entry, mean_interval, regression_interval,
                      verdict_all, verdict_in_band, verdict_trend)
from ..checkpoints import (check_checkpoint_file, CheckpointError, is_official_layout, load_checkpoint, load_model,
                           npz_to_state_dict, read_checkpoint)
from ..config import VIT_SIZES
from ..data import balanced_subset, denormalize, load_split, normalize, resolve_source
from ..figures import plot_claims as draw_claims
from ..models import build_model, create_model
from ..paths import in_repo, repo_relative
from ..progress import RunProgress
from ..rundir import CONFIG_FILE, load_run, redraw_only, RunNotFinished, weights_path, WEIGHTS_FILE
from ..scales import get_scale
from ..summary import epochs_text
from ..tables import write_table
from .. import train as engine
from .reporting import cost_columns, RunSet, summary_markdown, with_csv_only
from .settings import (apply_preset, experiment_out, preset_of, pretrain_departures_markdown, Pretraining,
                       pretraining_run)

NAME = "07_inspect"
FILTER_COMPONENTS = 28          # Fig. 7 left shows the first 28
PERMUTATIONS = 1000             # permutation tests of the position and depth structure (their p-values are reported)
GLOBAL_FRACTION = 0.5           # a head "attends to most of the image": mean distance >= half of uniform attention's
LOCAL_FRACTION = 0.3            # a head attends locally: mean distance <= 0.3 of uniform's (about one patch on 8x8)
EXPONENT_TOLERANCE = 0.3        # "quadratic": a fitted exponent within 2 +- 0.3 (linear is 1)
# Effect-size floors of the trend claims (a structure smaller than its floor is undecided, however significant):
# - near - far cosine similarity of position embeddings: 0.1, a twentieth of the cosine's range [-1, 1]; the paper's
#   Fig. 7 centre goes from ~1 next to a patch to below 0 far from it;
# - same row/column excess at equal Manhattan distance: 0.05 of cosine similarity;
# - growth of the layers' mean attention distance from the first to the last layer (least-squares line through the
#   layer means), as a fraction of uniform attention's distance: 0.1; Fig. 7 right grows from ~20-120 px in the first
#   layers to ~120 px (of 224) in the last, several tenths of uniform's.
GAP_FLOOR, ROW_COLUMN_FLOOR, DEPTH_FLOOR = 0.1, 0.05, 0.1
OFFICIAL_IMAGES = 64            # test images for an official ViT-B/L at 224 px (a forward costs ~18-60 GFLOPs)
INIT_IMAGES = 32                # images for the attention distance of the architecture at initialisation
COST_FILE = "attention_cost.csv"

POSITION_CLAIM = ("Position embeddings encode distance in the image: closer patches have more similar position "
                  "embeddings (Sec. 4.5, Fig. 7 centre)")
ROW_COLUMN_CLAIM = ("Position embeddings show a row-column structure: patches in the same row or column have "
                    "similar embeddings (Sec. 4.5, Fig. 7 centre)")
LOWEST_LAYER_CLAIM = ("Already in the lowest layer some heads attend to most of the image while others attend "
                      "locally (Sec. 4.5, Fig. 7 right)")
DEPTH_CLAIM = (f"The attention distance increases with network depth, by at least {DEPTH_FLOOR:g} of uniform attention's "
               "distance from the first to the last layer (Sec. 4.5, Fig. 7 right)")
COST_CLAIM = ("Self-attention's cost grows quadratically with the number of tokens, which is why the image is cut "
              "into patches (Sec. 2; claim 7)")

# This experiment's own choices per scale: ``train`` is what the pre-training of the model inspected changes from the
# scale's (repro.scales), the rest its own knobs.
PRESETS = {
    "smoke": dict(train=dict(steps=8, warmup_steps=2), seeds=(0, 1),
                  inspect_images=32, rollout_images=4, cost_image_size=32, cost_patches=(8, 4, 2), cost_batch=2,
                  cost_repeats=2, fit_min_tokens=16, explicit_max_tokens=None),
    # Trained until its attention is measurably not uniform: a calibration run of ViT-XXS/4 (2026-12-04) had its
    # layer-1 heads at 0.93-0.99 of uniform attention's distance after 900 steps of ViT-XS/4 (the old preset), and
    # at 0.81-0.84 (0.98-1.00 at initialisation) after 6,000 steps (15 epochs, 66.5% test top-1), its layer means
    # growing by 0.15 of uniform's with depth. 3 seeds, so that the claims on the models can be decided. Measured
    # at 32 px on 2 cores (Intel Xeon): ViT-XXS/4 ~1,150 images/s in the loop: 3 x 6,000 x 128 = 2.3M images =
    # 33 min; the inspection of 500 test images and the attention-cost sweep (~16 s on one thread) ~1 min. At patch
    # 4 a filter has 48 values, so Fig. 7 left's 28 components all exist (each drawn as a 4x4 tile).
    "cpu": dict(train=dict(model="ViT-XXS/4", steps=6000, warmup_steps=300, lr=2e-3), seeds=(0, 1, 2), inspect_images=500, rollout_images=8, cost_image_size=96,
                cost_patches=(16, 12, 8, 6, 4, 3, 2), cost_batch=1, cost_repeats=3, fit_min_tokens=256,
                explicit_max_tokens=None),
    "gpu": dict(train=dict(steps=3000, warmup_steps=300), seeds=(0, 1, 2), inspect_images=1000, rollout_images=8, cost_image_size=224,
                cost_patches=(32, 16, 14, 8, 7, 4, 2), cost_batch=8, cost_repeats=5, fit_min_tokens=784,
                explicit_max_tokens=4096),
}


@dataclass(frozen=True)
class Config(Pretraining):
    """What notebook 07 runs at one scale: the pre-training run of the model inspected (``train``, every seed
    varies it) or a finished run (``inspect_run_dir``), an official checkpoint to inspect beside it, the images
    they are inspected on, and the attention-cost sweep."""

    seeds: tuple                 # training seeds; the figures show the first
    inspect_images: int          # class-balanced test images for the attention distance and rollout share
    rollout_images: int          # of which this many are drawn in Fig. 6
    cost_image_size: int         # px: the sweep cuts this image into ...
    cost_patches: tuple          # ... patches of these sizes (px)
    cost_batch: int
    cost_repeats: int            # timed repeats per point (the median is kept)
    fit_min_tokens: int          # exponents are fitted over the points with at least this many tokens
    explicit_max_tokens: Optional[int]  # the materialising attention op only up to this many tokens (None: all)
    inspect_run_dir: Optional[str] = None        # a finished run to inspect instead of training one
    pretrained_checkpoint: Optional[str] = None  # an official ViT .npz to inspect beside it

    @property
    def cost_tokens(self) -> list[int]:
        """Token counts of the sweep (patches + the class token), few first."""
        return sorted((self.cost_image_size // p) ** 2 + 1 for p in self.cost_patches)

    def budget(self) -> str:
        runs = len(self.seeds)
        return (f"{runs} training run(s) x {self.steps} steps x batch {self.batch_size} = "
                f"{runs * self.steps * self.batch_size:,} images ({self.model} at {self.image_size} px, seeds "
                f"{list(self.seeds)}); inspected on {self.inspect_images} test images; attention cost: "
                f"{self.model}'s width at {self.cost_image_size} px, patches {list(self.cost_patches)} -> "
                f"{self.cost_tokens} tokens, batch {self.cost_batch}, median of {self.cost_repeats}")


def get_config(scale: str = "cpu", *, seeds: Optional[Sequence[int]] = None, data_dir: Optional[str] = None,
               out_dir: str | Path | None = None, device: str = "auto", run_dir: Optional[str] = None,
               pretrained_checkpoint: Optional[str] = None, model: Optional[str] = None,
               image_size: Optional[int] = None, batch_size: Optional[int] = None, steps: Optional[int] = None,
               warmup_steps: Optional[int] = None, lr: Optional[float] = None, inspect_images: Optional[int] = None,
               rollout_images: Optional[int] = None, cost_image_size: Optional[int] = None,
               cost_patches: Optional[Sequence[int]] = None, cost_batch: Optional[int] = None,
               cost_repeats: Optional[int] = None, fit_min_tokens: Optional[int] = None,
               explicit_max_tokens: Optional[int] = None) -> Config:
    """The runs of notebook 07 at ``scale``: the preset, with any parameter that is not None in its place.
    ``run_dir`` (a finished run to inspect instead of training) and ``pretrained_checkpoint`` (an official .npz to
    inspect beside it), when given, are checked: a folder that holds a finished run, a checkpoint file."""
    # Relative paths are read against the repository, whatever the working directory (repro.paths.in_repo).
    run_dir = None if run_dir is None else str(in_repo(run_dir))
    pretrained_checkpoint = None if pretrained_checkpoint is None else str(in_repo(pretrained_checkpoint))
    if run_dir is not None:
        folder = Path(run_dir)
        missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
        if not folder.is_dir() or missing:
            why = "is not a folder" if not folder.is_dir() else f"holds no finished run (no {' or '.join(missing)})"
            raise ValueError(f"notebook 07: run_dir={str(run_dir)!r} {why}; give the folder of a finished run "
                             "with its weights, e.g. results/01_pretrain_and_transfer/cpu/runs/<run>, or leave "
                             "run_dir out to train one")
        check_checkpoint_file(weights_path(folder))  # weights that are there but no checkpoint
    if pretrained_checkpoint is not None:
        check_checkpoint_file(pretrained_checkpoint)
    preset = preset_of(PRESETS, scale, "notebook 07 runs at {scales}; to inspect the paper's models, run it at one of "
                                       "these with an official ViT-B/16 or ViT-L/16 .npz as pretrained_checkpoint")
    changes, knobs = apply_preset(
        preset, what="notebook 07", seeds=seeds, inspect_images=inspect_images, rollout_images=rollout_images,
        cost_image_size=cost_image_size, cost_patches=cost_patches, cost_batch=cost_batch, cost_repeats=cost_repeats,
        fit_min_tokens=fit_min_tokens, explicit_max_tokens=explicit_max_tokens,
        train=dict(model=model, image_size=image_size, batch_size=batch_size, steps=steps, warmup_steps=warmup_steps,
                   lr=lr))
    out = experiment_out(NAME, scale, out_dir)
    # eval_every=0: the model is inspected, not tracked along training; its test top-1 comes at the end.
    train = pretraining_run(get_scale(scale), changes, data_dir=data_dir, out=out, device=device, eval_every=0,
                            seed=knobs["seeds"][0] if knobs["seeds"] else 0)
    return Config(scale=get_scale(scale), train=train, out=out,
                  **{**knobs, "cost_patches": tuple(int(p) for p in knobs["cost_patches"])},
                  inspect_run_dir=run_dir, pretrained_checkpoint=pretrained_checkpoint)


def settings_markdown(config: Config) -> str:
    """Where the pre-training of the model inspected here departs from the paper."""
    return pretrain_departures_markdown(config.scale.name, config.train)


# --- the models inspected -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Inspected:
    """One model inspected: what it is, where it came from, and the file of its inspection arrays."""

    label: str                   # e.g. "ViT-XS/4, trained here, seed 0"
    source: str                  # trained here | run directory | official checkpoint
    seed: Optional[int]
    run_dir: Optional[Path]      # None for an official checkpoint
    arrays: Path                 # inspection.npz (``inspect_vit``'s arrays)
    primary: bool                # the claims' verdicts are computed on the primary models


@dataclass
class Runs(RunSet):
    """The models of one execution of notebook 07 (``Inspected`` each), with where its results go."""

    cost_table: Optional[Path] = None

    @property
    def primary(self) -> list:
        return [r for r in self.records if r.primary]


def official_model(path):
    """An official google-research/vision_transformer ViT ``.npz`` as our model, its variant read from the
    file's shapes (width, depth, heads, MLP, patch, grid, pre-logits, classes); loaded strictly."""
    arrays, _ = read_checkpoint(path)
    if not is_official_layout(arrays):
        raise CheckpointError(f"{path}: not in the official .npz layout")
    if any(k.endswith("conv_root/kernel") for k in arrays):
        raise CheckpointError(f"{path}: a hybrid (ResNet + ViT); notebook 07 inspects plain ViTs")
    sd = npz_to_state_dict(arrays)
    dim, _, patch, _ = sd["patch_embed.proj.weight"].shape                       # (D, C, P, P)
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    query = next(v for k, v in arrays.items() if k.endswith("encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"))
    heads, mlp = query.shape[1], sd["blocks.0.mlp.fc1.weight"].shape[0]          # query kernel (D, H, Dh)
    sizes = [name for name, s in VIT_SIZES.items() if (s.embed_dim, s.depth, s.num_heads, s.mlp_dim) == (dim, depth, heads, mlp)]
    if not sizes:
        raise CheckpointError(f"{path}: width {dim}, depth {depth}, {heads} heads, MLP {mlp} match no ViT size")
    tokens = sd["pos_embed"].shape[1] - ("cls_token" in sd)
    grid = math.isqrt(tokens)
    pre_logits = sd.get("pre_logits.fc.weight")
    head = sd.get("head.weight")
    model = create_model(f"ViT-{sizes[0]}/{patch}", img_size=grid * patch,
                         num_classes=int(head.shape[0]) if head is not None else 0,
                         representation_size=int(pre_logits.shape[0]) if pre_logits is not None else None)
    load_checkpoint(model, path)
    return model


def _test_images(dataset: str, data_dir: Optional[str], count: int, image_size: tuple[int, int]):
    """``count`` class-balanced test images (seed 0), (B, 3, H, W) in [-1, 1] at the model's size (resized
    bilinearly with antialiasing, as ``repro.data.loader`` does, when it differs)."""

    test = load_split(dataset, "test", source=resolve_source(dataset, data_dir))
    idx = balanced_subset(test.labels, min(count, len(test)), seed=0) if count < len(test) else slice(None)
    x = normalize(test.images[idx])                                                 # (B, 3, h, w)
    if tuple(x.shape[-2:]) != tuple(image_size):
        x = F.interpolate(x, size=tuple(image_size), mode="bilinear", antialias=True, align_corners=False)
    return x


def _attention_numbers(model, images, device, rollout: bool = True, chunk: int = 100):
    """Mean attention distance (layers, heads) over ``images`` and, with ``rollout``, each image's rollout map
    (B, gh, gw); one pass in chunks of ``chunk`` images (the distance: the chunks' means weighted by size)."""
    model = model.to(device)
    grid = tuple(model.grid_size)
    total, maps = 0.0, []
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk]
        attentions = collect_attentions(model, x)                   # per layer (b, heads, T, T)
        total = total + len(x) * mean_attention_distance(attentions, grid, model.cfg.patch_size)
        if rollout:
            maps.append(rollout_map(attentions, grid))
    return total / len(images), (np.concatenate(maps) if rollout else None)


def central_mask(grid: Sequence[int]) -> np.ndarray:
    """(gh, gw) bool: the middle half of the rows and of the columns (a quarter of the patches on even grids)."""
    gh, gw = grid
    mask = np.zeros((gh, gw), dtype=bool)
    mask[gh // 4: gh - gh // 4, gw // 4: gw - gw // 4] = True
    return mask


def inspect_vit(model, images, *, rollout_images: int, device: str = "cpu", seed: int = 0) -> dict[str, np.ndarray]:
    """Every inspection array of one ViT on ``images`` ((B, 3, H, W) in [-1, 1], at the model's size).

    Returns: ``filters`` (k, P, P, C) and ``filter_variance`` (k,) (Fig. 7 left); ``similarity`` (N, N) when
    the model has an absolute position table (Fig. 7 centre); ``distance`` and ``distance_init`` (layers,
    heads), the trained model's and the same architecture's at initialisation (``seed``, on the first
    ``INIT_IMAGES`` images) (Fig. 7 right);
    ``rollout`` (R, gh, gw) and ``images`` (R, H, W, 3) uint8 for Fig. 6; ``central_share`` (B,), the share of
    each image's rollout map on the central patches (``central_mask``); ``grid``, ``patch``, ``image_size``.
    """
    out: dict[str, np.ndarray] = {}
    out["filters"], out["filter_variance"] = filter_components(model, k=FILTER_COMPONENTS)
    try:
        out["similarity"] = position_similarity(model).astype(np.float32)
    except ValueError:  # no absolute position table (pos_embed none or relative)
        pass
    grid = tuple(model.grid_size)
    out["distance"], maps = _attention_numbers(model, images, device)                # maps (B, gh, gw)
    # At initialisation attention hardly depends on the image: a few images show where every head starts.
    torch.manual_seed(seed)
    out["distance_init"], _ = _attention_numbers(build_model(model.cfg), images[:INIT_IMAGES], device, rollout=False)
    out["central_share"] = maps[:, central_mask(grid)].sum(axis=1) / maps.reshape(len(maps), -1).sum(axis=1)
    out["rollout"] = maps[:rollout_images].astype(np.float32)
    shown = denormalize(images[:rollout_images]).clamp(0, 1).permute(0, 2, 3, 1)      # (R, H, W, 3) in [0, 1]
    out["images"] = (shown * 255).round().to(torch.uint8).numpy()
    out["grid"], out["patch"] = np.array(grid), np.array(model.cfg.patch_size)
    out["params"] = np.array(sum(p.numel() for p in model.parameters()))
    out["image_size"] = np.array(images.shape[-2:])
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _save_inspection(runs: Runs, label: str, source: str, seed, run_dir, model, dataset: str, count: int,
                     rollout: int, device: str, primary: bool) -> None:
    """Inspect ``model`` (a callable returning it, so that redraw mode needs no weights) and keep its arrays in
    ``<out>/inspection/<label>.npz``; in redraw mode the arrays saved by the run that had the weights are read."""
    path = runs.out / "inspection" / f"{_slug(label)}.npz"
    if redraw_only():
        if not path.exists():
            raise RunNotFinished(f"redraw: no inspection arrays {path.name} for {label}; run without --redraw")
    else:
        model = model()
        images = _test_images(dataset, runs.config.data_dir, count, tuple(model.cfg.img_size))
        arrays = inspect_vit(model, images, rollout_images=rollout, device=device, seed=seed or 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)
        print(f"inspected {label} on {len(images)} test images", flush=True)
    runs.records.append(Inspected(label, source, seed, Path(run_dir) if run_dir else None, path, primary))


def run(config: Config) -> Runs:
    """Train the ViT for each seed (or take the finished ``config.inspect_run_dir``), inspect it, and inspect the
    official ``config.pretrained_checkpoint`` too when given. Runs that finished before are found by their config
    and not trained again; the inspection arrays go to ``<out>/inspection/<label>.npz``."""
    device = _device(config.device)
    runs = Runs(config, config.out)
    run_dir = config.inspect_run_dir
    if run_dir is not None:
        print(f"inspecting the run in {repo_relative(run_dir)}", flush=True)
        finished = load_run(run_dir)
        _save_inspection(runs, f"{finished['model']}, run {Path(run_dir).name}", "run directory", finished.get("seed"),
                         run_dir, lambda: load_model(weights_path(run_dir)), finished["dataset"],
                         config.inspect_images, config.rollout_images, device, True)
    else:
        progress = RunProgress(len(config.seeds), "training runs")
        for seed in config.seeds:
            cfg = config.run_config(seed=seed)
            label = f"{config.model}, trained here, seed {seed}"
            done = engine.train(cfg, **progress.train_kwargs(label))
            progress.finished(label)
            _save_inspection(runs, label, "trained here", seed, done, lambda done=done: load_model(weights_path(done)),
                             cfg.dataset, config.inspect_images, config.rollout_images, device, True)
    if config.pretrained_checkpoint is not None:
        model = official_model(config.pretrained_checkpoint)
        label = f"{model.variant_name}, official checkpoint {Path(config.pretrained_checkpoint).name}"
        _save_inspection(runs, label, "official checkpoint", None, None, lambda: model, config.train.dataset,
                         min(config.inspect_images, OFFICIAL_IMAGES), config.rollout_images, device, False)
    return runs


def _device(device: str) -> str:
    """``device`` with "auto" resolved: CUDA when there is one."""
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def measure_cost(runs: Runs, device: Optional[str] = None) -> pd.DataFrame:
    """The attention-cost sweep of the scale (``repro.attention_cost.attention_cost_sweep``) with the inspected
    model's width, depth and heads, on ``device`` (None: the runs' device); written to ``attention_cost.csv`` /
    ``.md`` and returned."""
    c = runs.config
    if redraw_only() and (runs.out / COST_FILE).exists():  # the measurement stands; redraw only re-reads it
        runs.cost_table = runs.out / COST_FILE
        return pd.read_csv(runs.cost_table)
    device = _device(device or c.device)
    print(f"attention cost: {c.model} at {c.cost_image_size} px, {c.cost_tokens} tokens on {device}", flush=True)
    table = attention_cost_sweep(c.model, c.cost_image_size, c.cost_patches, batch=c.cost_batch, repeats=c.cost_repeats,
                                 device=device, explicit_max_tokens=c.explicit_max_tokens,
                                 progress=lambda line: print(line, flush=True))
    write_table(table, runs.out, Path(COST_FILE).stem, note=cost_note(runs), floatfmt=".3g")
    runs.cost_table = runs.out / COST_FILE
    return table


def cost_note(runs: Runs) -> str:
    c = runs.config
    return (f"{c.model}'s width, depth and heads at {c.cost_image_size} px, cut into patches of {list(c.cost_patches)} "
            f"px: batch {c.cost_batch}, median of {c.cost_repeats} timed forward + backward passes after one untimed "
            "(on the CPU on one thread). "
            "Fused attention: F.scaled_dot_product_attention, the op the model trains with; explicit: softmax(q k^T / "
            "sqrt(d)) v with the T x T weights materialised (the return_attention path). Saved: bytes autograd keeps for "
            "backward (inputs and parameters excluded); CUDA peak: torch.cuda.max_memory_allocated. Exponents are "
            f"fitted over the points with at least {c.fit_min_tokens} tokens.")


def read_cost(runs: Runs) -> Optional[pd.DataFrame]:
    path = runs.cost_table or runs.out / COST_FILE
    return pd.read_csv(path) if path.exists() else None


# --- numbers ------------------------------------------------------------------------------------------

def _ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks from 1, ties sharing their mean rank."""
    return pd.Series(x, dtype=float).rank().to_numpy()


def _pearson_rows(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Pearson correlation of ``x`` (n,) with every row of ``ys`` (P, n)."""
    xc = x - x.mean()
    yc = ys - ys.mean(axis=-1, keepdims=True)
    return (yc @ xc) / np.sqrt((yc ** 2).sum(axis=-1) * (xc ** 2).sum())


def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (ties share their mean rank)."""
    return float(_pearson_rows(_ranks(x), _ranks(y)[None])[0])


def _p_value(observed: float, null: np.ndarray) -> float:
    """One-sided permutation p-value: how often a permutation reaches the observed statistic (with +1)."""
    return float((1 + np.sum(null >= observed)) / (1 + len(null)))


def position_structure(similarity: np.ndarray, grid: Sequence[int], permutations: int = PERMUTATIONS,
                       seed: int = 0) -> dict[str, float]:
    """How much a position-similarity map (N, N) follows the 2-D grid, with permutation p-values.

    - ``near``, ``far``: mean cosine similarity of neighbouring patches (grid distance 1) and of far ones
      (Euclidean grid distance > half the longer side); ``gap`` = near - far.
    - ``row_column``: at each Manhattan distance d >= 2, the mean similarity of pairs in the same row or column
      minus that of the other pairs at d (which lie closer in Euclidean distance), averaged over d: positive
      when rows and columns matter beyond mere distance.
    - ``gap_p``, ``row_column_p``: the share of random relabellings of the patches (``permutations``) that reach
      the statistic: a map unrelated to the grid gives p ~ uniform.
    """
    sim = np.asarray(similarity, dtype=float)
    gh, gw = grid
    rows, cols = np.divmod(np.arange(gh * gw), gw)
    dr, dc = np.abs(rows[:, None] - rows[None]), np.abs(cols[:, None] - cols[None])
    euclid, manhattan = np.hypot(dr, dc), dr + dc
    # Every pair's group, as integer labels so that one bincount gives every group's mean: for the gap,
    # 0 near, 1 far, 2 neither; for the excess, 2d + (0 straight | 1 off-axis) at Manhattan distance d.
    gap_label = np.where(euclid == 1, 0, np.where(euclid > max(gh, gw) / 2, 1, 2)).ravel()
    pair_label = (2 * manhattan + ((dr != 0) & (dc != 0))).ravel()
    both = [d for d in range(2, gh + gw - 1)
            if np.any(pair_label == 2 * d) and np.any(pair_label == 2 * d + 1)]  # d with both kinds of pair
    gap_counts, pair_counts = np.bincount(gap_label, minlength=3), np.bincount(pair_label)
    has_far = gap_counts[1] > 0

    def stats(flat: np.ndarray) -> tuple[float, float]:
        means = np.bincount(gap_label, weights=flat, minlength=3) / np.maximum(gap_counts, 1)
        by_pair = np.bincount(pair_label, weights=flat, minlength=len(pair_counts)) / np.maximum(pair_counts, 1)
        excess = np.mean([by_pair[2 * d] - by_pair[2 * d + 1] for d in both]) if both else math.nan
        return (means[0] - means[1] if has_far else math.nan), excess

    gap, excess = stats(sim.ravel())
    rng = np.random.default_rng(seed)
    null = np.array([stats(sim[np.ix_(p, p)].ravel()) for p in (rng.permutation(len(sim)) for _ in range(permutations))])
    near, far = sim.ravel()[gap_label == 0].mean(), sim.ravel()[gap_label == 1].mean() if has_far else math.nan
    return {"near": float(near), "far": float(far), "gap": float(gap),
            "gap_p": _p_value(gap, null[:, 0]) if has_far else math.nan,
            "row_column": float(excess), "row_column_p": _p_value(excess, null[:, 1]) if both else math.nan}


def depth_trend(distance: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> tuple[float, float]:
    """Spearman correlation of depth with the heads' mean attention distance (layers, heads), and its one-sided
    permutation p-value (the distances shuffled over (layer, head) slots)."""
    d = np.asarray(distance, dtype=float)
    layers = _ranks(np.repeat(np.arange(d.shape[0]), d.shape[1]))
    values = _ranks(d.reshape(-1))
    rho = float(_pearson_rows(layers, values[None])[0])
    rng = np.random.default_rng(seed)
    null = _pearson_rows(layers, rng.permuted(np.tile(values, (permutations, 1)), axis=1))   # (permutations,)
    return rho, _p_value(rho, null)


def uniform_distance(grid: Sequence[int], patch: float) -> float:
    """Mean attention distance (px) of a head attending uniformly to every patch: the mean distance between
    patch centres over all (query, key) pairs. The reference for "attends to most of the image"."""
    return float(patch_distances(tuple(int(g) for g in grid), float(patch)).mean())


def model_metrics(arrays: dict) -> dict[str, float]:
    """The numbers the claims and the table use, from one model's inspection arrays."""
    grid, patch = tuple(int(g) for g in arrays["grid"]), float(arrays["patch"])
    dist, init = np.asarray(arrays["distance"]), np.asarray(arrays["distance_init"])
    uniform = uniform_distance(grid, patch)
    rho, rho_p = depth_trend(dist)
    layer_means = dist.mean(axis=1)                                                   # (layers,)
    slope = float(np.polyfit(np.arange(len(layer_means)), layer_means, 1)[0]) if len(layer_means) > 1 else 0.0
    out = {"depth_growth": slope * (len(layer_means) - 1) / uniform,  # first -> last layer, fraction of uniform
           "uniform": uniform, "layer1_max": float(dist[0].max()), "layer1_min": float(dist[0].min()),
           "layer1_max_fraction": float(dist[0].max()) / uniform, "layer1_min_fraction": float(dist[0].min()) / uniform,
           "init_min_fraction": float(init.min()) / uniform, "init_max_fraction": float(init.max()) / uniform,
           "first_layer_mean": float(dist[0].mean()), "last_layer_mean": float(dist[-1].mean()),
           "depth_rho": rho, "depth_p": rho_p,
           "central_share": 100 * float(np.mean(arrays["central_share"])),
           "central_area": 100 * float(central_mask(grid).mean()),
           "filter_variance": 100 * float(np.sum(arrays["filter_variance"]))}
    if "similarity" in arrays:
        out.update(position_structure(arrays["similarity"], grid))
    return out


def load_arrays(record: Inspected) -> dict:
    with np.load(record.arrays) as f:
        return {k: f[k] for k in f.files}


@functools.lru_cache(maxsize=32)
def _metrics_of_file(path: str, mtime_ns: int) -> dict[str, float]:
    with np.load(path) as f:
        return model_metrics({k: f[k] for k in f.files})


def metrics(runs: Runs) -> dict[str, dict]:
    """``{label: model_metrics}`` of every inspected model (computed once per inspection file)."""
    return {r.label: dict(_metrics_of_file(str(r.arrays), r.arrays.stat().st_mtime_ns)) for r in runs.records}


# --- claims -------------------------------------------------------------------------------------------

def _ours(found: dict[str, dict], key: str, scale_by: float = 1.0) -> dict[str, list[float]]:
    """``{label: [value]}`` of one metric per model (one model = one seed), for ``claim_entry``."""
    return {label: [m[key] * scale_by] for label, m in found.items() if key in m and not math.isnan(m[key])}


def _per_seed(runs: Runs, found: dict[str, dict], key: str) -> dict[int, float]:
    """``{seed: value}`` of one metric over the primary models (the trained seeds, or the given run as seed 0)."""
    return {(r.seed if r.seed is not None else i): found[r.label][key] for i, r in enumerate(runs.primary)
            if key in found[r.label] and not math.isnan(found[r.label][key])}


def _others(found: dict[str, dict], primary: Sequence[str], text) -> str:
    """The non-primary models' numbers (an official checkpoint), for a claim's ``why``."""
    lines = [f"{label}: {text(m)}" for label, m in found.items() if label not in primary]
    return ("; for comparison " + "; ".join(lines)) if lines else ""


def cost_fits(runs: Runs) -> dict:
    table = read_cost(runs)
    return fit_exponents(table, runs.config.fit_min_tokens) if table is not None else {}


def claims(runs: Runs) -> list[dict]:
    """The claims of Sec. 4.5 and Sec. 2, with ours per model and verdicts from ``repro.claims`` over the primary
    models (one per trained seed, or the given run; an official checkpoint's numbers stand beside them in ``why``).

    - position embeddings encode distance: the near - far similarity gap per seed, its 90% interval above zero
      and its mean at least ``GAP_FLOOR`` (``verdict_trend``); the permutation p-values are reported beside.
    - row-column structure: the same rule on the same-row-or-column excess, floor ``ROW_COLUMN_FLOOR``.
    - lowest layer mixes global and local heads: the interval of the largest layer-1 head distance (a fraction
      of uniform attention's) at least ``GLOBAL_FRACTION`` and that of the smallest at most ``LOCAL_FRACTION``
      (``verdict_in_band``, both). (At initialisation every head is near uniform, so "global" alone would hold
      untrained.)
    - distance grows with depth: the growth of the layers' mean distance from the first to the last layer, as a
      fraction of uniform's, per seed: interval above zero and mean at least ``DEPTH_FLOOR``.
    - quadratic cost: the fused attention op's time and the explicit op's saved memory both ~ T^k, the interval
      of each fitted k (points - 2 degrees of freedom) within 2 +- ``EXPONENT_TOLERANCE``.
    A claim on the models needs at least 2 seeds; at smoke scale every verdict is undecided, with the numbers.
    """
    config, found = runs.config, metrics(runs)
    primary = [r.label for r in runs.primary]
    prim = {label: found[label] for label in primary}
    undecidable = "smoke scale: a model trained a few steps on a few hundred images tests the plumbing, not the claim"
    model_metric = (f"{config.model} trained {config.steps} steps at {config.image_size} px on "
                    f"{config.train.dataset}" if not any(r.source == "run directory" for r in runs.primary)
                    else "the given run")

    def decide(verdict: Verdict) -> Verdict:
        return at_scale(verdict, config.decidable, undecidable)

    out = []
    if prim and all("gap" in m for m in prim.values()):
        for claim, key, floor, paper, describe in (
                (POSITION_CLAIM, "gap", GAP_FLOOR, "Fig. 7 centre (ViT-L/32): each patch's embedding is most similar "
                 "to its neighbours' and falls off with distance",
                 lambda m: f"near {m['near']:.2f} vs far {m['far']:.2f}, gap {m['gap']:.2f} (permutation p "
                           f"{m['gap_p']:.3f})"),
                (ROW_COLUMN_CLAIM, "row_column", ROW_COLUMN_FLOOR, "Fig. 7 centre (ViT-L/32): row-column structure, "
                 "patches in the same row/column have similar embeddings",
                 lambda m: f"same row/column {m['row_column']:+.3f} above the rest at equal Manhattan distance "
                           f"(permutation p {m['row_column_p']:.3f})")):
            verdict = verdict_trend(_per_seed(runs, found, key), what=f"{key.replace('_', '-')} per seed",
                                    floor=floor, unit="cosine")
            why = "; ".join(f"{label}: {describe(m)}" for label, m in prim.items())
            why += _others(found, primary, lambda m: describe(m) if key in m else "no position table")
            out.append(claim_entry(claim, paper, f"cosine similarity of learned 1-D position embeddings, {model_metric}",
                                   _per_seed_named(runs, found, key), decide(Verdict(verdict.holds,
                                                                                    f"{verdict.why}; {why}",
                                                                                    verdict.difference)),
                                   rule=f"the statistic per seed: its 90% interval above zero and its mean at least "
                                        f"{floor:g} holds; below zero does not hold; otherwise undecided"))
    if prim:
        def layer1(m: dict) -> str:
            return (f"layer-1 heads from {m['layer1_min']:.1f} to {m['layer1_max']:.1f} px = {m['layer1_min_fraction']:.2f}-"
                    f"{m['layer1_max_fraction']:.2f} of uniform attention's {m['uniform']:.1f} px (at initialisation "
                    f"{m['init_min_fraction']:.2f}-{m['init_max_fraction']:.2f})")

        verdict = verdict_all([
            verdict_in_band(mean_interval(_per_seed(runs, found, "layer1_max_fraction")), GLOBAL_FRACTION, math.inf,
                            what="largest layer-1 head distance / uniform's"),
            verdict_in_band(mean_interval(_per_seed(runs, found, "layer1_min_fraction")), 0.0, LOCAL_FRACTION,
                            what="smallest layer-1 head distance / uniform's")])
        why = f"{verdict.why}; " + "; ".join(f"{label}: {layer1(m)}" for label, m in prim.items()) + \
            _others(found, primary, layer1)
        out.append(claim_entry(LOWEST_LAYER_CLAIM, "Fig. 7 right (ViT-L/16, 224 px): in the lowest layers head "
                               "distances range from ~10 to ~120 px, the image's extent",
                               f"mean attention distance of layer 1's heads / uniform attention's, {model_metric}",
                               {**{f"{k}: largest": v for k, v in _per_seed_named(runs, found, "layer1_max_fraction").items()},
                                **{f"{k}: smallest": v for k, v in _per_seed_named(runs, found, "layer1_min_fraction").items()}},
                               decide(Verdict(verdict.holds, why, verdict.difference)),
                               rule=f"the largest head's 90% interval at least {GLOBAL_FRACTION:g} and the smallest's "
                                    f"at most {LOCAL_FRACTION:g} of uniform attention's distance"))

        def trend(m: dict) -> str:
            return (f"layer means {m['first_layer_mean']:.1f} -> {m['last_layer_mean']:.1f} px of uniform's "
                    f"{m['uniform']:.1f} (growth {m['depth_growth']:+.2f} of uniform; Spearman rho {m['depth_rho']:.2f}, "
                    f"permutation p {m['depth_p']:.3f})")

        verdict = verdict_trend(_per_seed(runs, found, "depth_growth"), what="growth first -> last layer per seed",
                                floor=DEPTH_FLOOR, unit="of uniform")
        why = f"{verdict.why}; " + "; ".join(f"{label}: {trend(m)}" for label, m in prim.items()) + \
            _others(found, primary, trend)
        out.append(claim_entry(DEPTH_CLAIM, "Fig. 7 right: attention distance increases with network depth",
                               f"growth of the layers' mean attention distance, first to last layer, as a fraction of "
                               f"uniform attention's distance, {model_metric}",
                               _per_seed_named(runs, found, "depth_growth"),
                               decide(Verdict(verdict.holds, why, verdict.difference)),
                               rule=f"its 90% interval over seeds above zero and its mean at least {DEPTH_FLOOR:g} holds; "
                                    "below zero does not hold; otherwise undecided"))
    fits = cost_fits(runs)
    if FUSED_TIME in fits and EXPLICIT_SAVED in fits:
        time_fit, memory_fit = fits[FUSED_TIME], fits[EXPLICIT_SAVED]
        band = (2 - EXPONENT_TOLERANCE, 2 + EXPONENT_TOLERANCE)
        verdict = verdict_all([
            verdict_in_band(regression_interval(time_fit.exponent, time_fit.exponent_se, time_fit.points), *band,
                            what="fused attention time exponent"),
            verdict_in_band(regression_interval(memory_fit.exponent, memory_fit.exponent_se, memory_fit.points), *band,
                            what="explicit attention memory exponent")])
        others = ", ".join(f"{FITTED[c]} ~T^{f.exponent:.2f}" for c, f in fits.items()
                           if c not in (FUSED_TIME, EXPLICIT_SAVED))
        why = (f"{verdict.why}; fitted over the points from {time_fit.x_range[0]:.0f} to {time_fit.x_range[1]:.0f} "
               f"tokens; besides: {others}")
        out.append(claim_entry(COST_CLAIM, "Sec. 2: self-attention has quadratic cost in the number of pixels; ViT "
                               "uses 16x16 patches (196 tokens at 224 px instead of 50,176)",
                               f"fitted exponent k of cost ~ T^k, {config.model}'s layout at {config.cost_image_size} px",
                               {FITTED[c]: [f.exponent] for c, f in fits.items()},
                               decide(Verdict(verdict.holds, why, verdict.difference)),
                               rule=f"the 90% interval of each fitted exponent (least squares in log-log, points - 2 "
                                    f"degrees of freedom) within 2 +- {EXPONENT_TOLERANCE:g}"))
    return out


def _per_seed_named(runs: Runs, found: dict[str, dict], key: str) -> dict[str, dict[int, float]]:
    """For claims.json: ``{model description: {seed: value}}`` of the primary models, one name for all seeds."""
    sample = _per_seed(runs, found, key)
    if not sample:
        return {}
    first = runs.primary[0]
    name = first.label.rsplit(", seed", 1)[0] if first.source == "trained here" else first.label
    return {name: sample}


# --- table, figures, summary --------------------------------------------------------------------------

def table(runs: Runs) -> pd.DataFrame:
    """One row per inspected model: accuracy and cost (for the runs), and its inspection numbers; the claims'
    verdicts in ``paper``."""
    verdicts = "; ".join(f"claim: {c['claim']} — ours: {VERDICT_WORDS[c['holds']]}" for c in claims(runs))
    found = metrics(runs)
    rows = []
    for r in runs.records:
        m = found[r.label]
        loaded = [load_run(r.run_dir)] if r.run_dir is not None else []
        arrays = load_arrays(r)
        rows.append({
            "model": r.label, "source": r.source, "seed": r.seed,
            "grid": "x".join(str(int(g)) for g in arrays["grid"]), "image size (px)": int(arrays["image_size"][0]),
            "test top-1 (%)": 100 * loaded[0]["test_accuracy"] if loaded and "test_accuracy" in loaded[0] else None,
            **(cost_columns(loaded) if loaded else {"params (M)": int(arrays["params"]) / 1e6, "train images/s": None,
                                                    "train min / run": None, "hardware": None, "data source": None}),
            f"filters: variance in first {FILTER_COMPONENTS} PCs (%)": m["filter_variance"],
            "pos. sim. near": m.get("near"), "pos. sim. far": m.get("far"),
            "pos. sim. same row/col excess": m.get("row_column"),
            "layer 1 min / max distance (px)": f"{m['layer1_min']:.1f} / {m['layer1_max']:.1f}",
            "uniform distance (px)": m["uniform"], "last layer mean distance (px)": m["last_layer_mean"],
            "depth Spearman rho": m["depth_rho"],
            "rollout on central patches (%)": m["central_share"], "central patches (% of image)": m["central_area"],
            "paper": verdicts or "—",
            "run dir": repo_relative(r.run_dir) if r.run_dir is not None else "—",
        })
    return with_csv_only(pd.DataFrame(rows), "source", "grid", "image size (px)", "params (M)", "uniform distance (px)", "central patches (% of image)", "train min / run")


def table_note(runs: Runs) -> str:
    c = runs.config
    note = (f"Inspection on {c.inspect_images} class-balanced test images (an official checkpoint: "
            f"{OFFICIAL_IMAGES}, resized to its resolution). Filters: the share of the embedding filters' variance in "
            f"their first {FILTER_COMPONENTS} principal components. Position similarity: mean cosine of neighbouring "
            "patches (near) and of patches farther than half the grid (far); row/col excess: same row or column minus "
            "the other pairs at equal Manhattan distance. Attention distance: per head, the attention-weighted pixel "
            "distance between query and key patches (class token left out), in the model's input pixels; uniform: a "
            "head attending to every patch equally. Rollout on central patches: the share of the class token's "
            "rollout on the middle half of rows and columns (CIFAR-10 objects are mostly centred; it has no object "
            "masks), beside that area's share of the image. ")
    if any(r.source == "trained here" for r in runs.records):
        note += (f"Trained here: {c.model} at {c.image_size} px, {c.steps} steps of batch {c.batch_size}, lr {c.lr:g}, "
                 "1-D position embedding and class token. The paper's Fig. 7 shows ViT-L/32 and ViT-L/16 pre-trained "
                 "on JFT-300M at 224 px: only the direction is comparable. ")
    if c.train.dataset == "cifar10" and c.train.data_dir != "embedded":
        note += "CIFAR-10 is the JPEG copy (quality ~75). "
    if not c.decidable:
        note += "Smoke scale: a few steps on a few hundred images prove the plumbing, not the claims."
    return note.strip()


def _suffix(record: Inspected, runs: Runs) -> Optional[str]:
    """File-name suffix of a model's figures: "" for the first primary model, "_official" for a checkpoint,
    None (no figures) for the other seeds."""
    if record.source == "official checkpoint":
        return "_official"
    return "" if record is runs.primary[0] else None


def plot(runs: Runs) -> list[Path]:
    """Fig. 7 left, centre, right and Fig. 6 for the first primary model (and an official checkpoint), from the
    saved inspection arrays: ``fig7_left_filters``, ``fig7_centre_position_similarity``,
    ``fig7_right_attention_distance``, ``fig6_rollout`` (.png, ``_official`` for the checkpoint's)."""
    paths = []
    for r in runs.records:
        suffix = _suffix(r, runs)
        if suffix is None:
            continue
        a = load_arrays(r)
        grid = tuple(int(g) for g in a["grid"])
        paths.append(plot_filter_components(a["filters"], a["filter_variance"], runs.out / f"fig7_left_filters{suffix}.png",
                                            title=f"{r.label}: embedding filters, first principal components (Fig. 7 left)"))
        if "similarity" in a:
            paths.append(plot_position_similarity(a["similarity"], grid,
                                                  runs.out / f"fig7_centre_position_similarity{suffix}.png",
                                                  title=f"{r.label}: position embedding similarity (Fig. 7 centre)"))
        paths.append(plot_attention_distance({"trained": a["distance"], "at initialisation": a["distance_init"]},
                                             runs.out / f"fig7_right_attention_distance{suffix}.png",
                                             title=f"{r.label}\nmean attention distance per head (Fig. 7 right)",
                                             reference=uniform_distance(grid, float(a["patch"]))))
        size = tuple(int(s) for s in a["image_size"])
        maps = F.interpolate(torch.from_numpy(a["rollout"])[:, None], size=size, mode="bilinear",
                             align_corners=False)[:, 0].numpy()                       # (R, H, W)
        paths.append(plot_rollout(a["images"] / 255.0, maps, runs.out / f"fig6_rollout{suffix}.png",
                                  title=f"{r.label}: attention rollout (Fig. 6)"))
    return paths


def plot_cost(runs: Runs) -> Path:
    """``attention_cost.png``: time and memory against tokens, log-log, with the fitted exponents."""
    c = runs.config
    table = read_cost(runs)
    return plot_attention_cost(table, cost_fits(runs), runs.out / "attention_cost.png",
                               title=f"notebook 07, scale {c.scale.name}: the cost of attention, {c.model}'s layout at "
                                     f"{c.cost_image_size} px, patches {list(c.cost_patches)} "
                                     f"({table['hardware'].iloc[0]})")


def pixels_paragraph(runs: Runs) -> str:
    """Pixels as tokens at 224 px, from the sweep's fits (``repro.attention_cost.pixels_as_tokens``)."""
    table = read_cost(runs)
    if table is None:
        return ""
    row = table.iloc[0]
    numbers = pixels_as_tokens(cost_fits(runs), heads=int(row["heads"]), embed_dim=int(row["heads"] * row["head dim"]),
                               depth=int(row["depth"]))
    return pixels_markdown(numbers, runs.config.model, str(row["hardware"]))


def summary(runs: Runs, found: Sequence[dict]) -> str:
    """A closing paragraph in Markdown, generated from the claims' numbers and verdicts."""
    first = load_run(runs.primary[0].run_dir) if runs.primary and runs.primary[0].run_dir else {}
    c = runs.config
    numbers = metrics(runs)
    extra = [f"- Fig. 6 proxy ({label}): {m['central_share']:.0f}% of the class token's rollout lies on the central "
             f"{m['central_area']:.0f}% of the patches; Fig. 7 left: the first {FILTER_COMPONENTS} components hold "
             f"{m['filter_variance']:.0f}% of the filters' variance (judge the figures by eye)."
             for label, m in numbers.items()]
    paragraph = pixels_paragraph(runs)
    if paragraph:
        extra += ["", paragraph]
    return summary_markdown(f"scale `{c.scale.name}`, {c.model} at {c.image_size} px, {c.steps} steps, seeds "
                            f"{list(c.seeds)}", first, found, decidable=c.decidable, extra_lines=extra)



def findings(runs: Runs) -> dict:
    """What the paper found and the measured reasons why ours may differ, for ``results/SUMMARY.md``."""
    c, found = runs.config, metrics(runs)
    why = []
    trained = [r for r in runs.primary if r.run_dir is not None]
    if trained:
        why.append(f"The model inspected is {c.model} trained {c.steps} steps of {c.batch_size} on CIFAR-10 at "
                   f"{c.image_size} px ({epochs_text([r.run_dir for r in trained])}); the paper inspects ViT-L/16 and "
                   "L/32 trained on JFT-300M at 224 px.")
    for r in runs.primary:
        m = found[r.label]
        why.append(f"{r.label}: its layer-1 heads attend at {m['layer1_min_fraction']:.2f}-{m['layer1_max_fraction']:.2f}"
                   f" of uniform attention's distance (at initialisation {m['init_min_fraction']:.2f}-"
                   f"{m['init_max_fraction']:.2f}), and its layer means grow by {m['depth_growth']:+.2f} of uniform's "
                   "from the first to the last layer: "
                   + ("attention is still close to uniform, so local and global heads cannot yet appear."
                      if m["layer1_min_fraction"] > 0.8 else "attention has moved away from uniform."))
    if len(runs.primary) < 2:
        why.append("One model was trained, and a verdict on the models needs at least two seeds.")
    return {"title": "Inside the ViT (Sec. 4.5, Fig. 6, 7) and the cost of attention (Sec. 2)",
            "paper": "The first principal components of the patch embedding look like plausible basis functions; "
                     "position embeddings are most similar within a row and a column; some heads attend globally "
                     "already in the lowest layers and the attention distance grows with depth; self-attention's "
                     "cost is quadratic in the number of tokens.",
            "why": why}


def plot_claims(runs: Runs, found: Sequence[dict]) -> Optional[Path]:
    """``claims.png``: the claims on the trained models, each seed a dot, the means with their 90% intervals (the
    cost claim has its own figure, ``attention_cost.png``)."""
    c = runs.config
    return draw_claims(found, runs.out / "claims.png",
                       arms_of=lambda entry: list(entry["per_seed"]) if entry["claim"] != COST_CLAIM else None,
                       title=f"notebook 07, scale {c.scale.name}: {c.model} on CIFAR-10 at {c.image_size} px")

__all__ = ["plot_claims", "findings", "NAME", "Config", "Inspected", "Runs", "get_config", "settings_markdown", "run", "official_model",
           "inspect_vit", "measure_cost", "position_structure", "depth_trend", "uniform_distance", "model_metrics",
           "claims", "table", "table_note",
           "plot", "plot_cost", "pixels_paragraph", "summary"]

"""Time to accuracy on CIFAR-10: test top-1 against training seconds, our engine vs a plain timm loop.

What is measured, in one process on one machine:

- ours: the ``cpu``-scale ViT (``repro.scales.SCALES["cpu"]``, changed by the flags below or any
  TrainConfig field with ``--set key=value``) trained by ``repro.train.train``, which evaluates the test
  split every ``--eval-every`` steps. Training seconds come from the engine's own clock with the time spent
  evaluating taken out (``_common.run_engine``: ``repro.train.evaluate`` is timed while the run lasts).
- plain: a loop anyone would write on the same model and data: timm's ``VisionTransformer`` with the same
  width, depth, heads, MLP size, patch and pooling (timm's initialisation, no pre-logits layer), AdamW
  with the same lr, betas and weight decay (on every parameter), the same warm-up + decay schedule,
  batch and steps, plain cross-entropy (no label smoothing), the same augmentation (reflection pad by
  ``crop_padding`` + random crop + flip, plain torch ops on the decoded uint8 tensors of
  ``repro.data.get_datasets``), bf16 autocast only when ours uses it, no torch.compile. It is evaluated on
  the same test split at the same steps; its clock stops while it evaluates.

Ours' seconds include what the engine does besides the steps (logging, its periodic checkpoint); each
side's clock starts at its first step, after its data and model are ready. The two runs follow each other
(ours first, so it also pays the process's one-time library start-up, well under a second), and a machine
that is busier during one of them shows up in the ratio: run it twice when a figure matters, on an
otherwise idle machine. The training split is the whole 50,000 images (``heldout=False``) unless
``--set heldout=true``. Test evaluations cost wall time but no training seconds; ``--set max_test=N``
makes them cheaper (a class-balanced subset, the same on both sides).

    python benchmarks/time_to_accuracy.py                                    # cpu scale, both sides
    python benchmarks/time_to_accuracy.py --patch 8 --steps 2000 --set label_smoothing=0.1 --targets 50 55 60
    python benchmarks/time_to_accuracy.py --no-plain --set amp=bf16            # ours only
    python benchmarks/time_to_accuracy.py --tiny                               # seconds: the test's mode
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from _common import (CurvePoint, command_line, config_from_args, fmt_s, hardware_lines, resolve_device,
                     run_engine, seconds_to, sync, table, timm_vit_like, with_patch)
from repro import create_model
from repro import data as data_lib
from repro.scales import SCALES
from repro.runconfig import TrainConfig
from repro.train import lr_at

TINY = dict(model="ViT-XXS/8", data_dir="embedded", max_train=512, max_test=256, batch_size=32, steps=20,
            warmup_steps=3, eval_every=5, log_every=5)


def uses_bf16(cfg: TrainConfig, device: torch.device) -> bool:
    """Whether our engine trains ``cfg`` under bf16 autocast (``repro.train.autocast_context``'s rule)."""
    return cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")


def pad_crop_flip(x: torch.Tensor, padding: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """CIFAR augmentation of a float batch (B, 3, H, W): reflection pad, random crop back to H x W, flip."""
    b, _, h, w = x.shape
    if padding:
        x = F.pad(x, (padding,) * 4, mode="reflect")  # (B, 3, H + 2p, W + 2p)
        top, left = torch.randint(0, 2 * padding + 1, (2, b, 1), generator=g)
        rows, cols = top + torch.arange(h), left + torch.arange(w)  # (B, H), (B, W)
        x = x[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    if flip:
        x = torch.where(torch.rand(b, 1, 1, 1, generator=g) < 0.5, x.flip(3), x)
    return x


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [-1, 1] (the ViT convention, as ours)."""
    return images.float() / 127.5 - 1.0


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """The batch at the model's input size (a no-op at CIFAR's own 32 px)."""
    return x if x.shape[-1] == size else F.interpolate(x, size=size, mode="bilinear", antialias=True)


def plain_run(cfg: TrainConfig, device: torch.device) -> list[CurvePoint]:
    """Train timm's ViT with a plain loop on ``cfg``'s model shape, data and schedule; the test curve."""
    if cfg.crop == "inception":
        raise ValueError("the plain loop has the CIFAR augmentation only (crop='pad' or 'none'); use --no-plain")
    splits = data_lib.get_datasets(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, heldout=cfg.heldout,
                                   max_train=cfg.max_train, max_test=cfg.max_test)
    train, test = splits["train"], splits["test"]
    with torch.device("meta"):
        shape = create_model(cfg.model, num_classes=train.num_classes, img_size=cfg.image_size,
                             **cfg.model_overrides).cfg
    torch.manual_seed(cfg.seed)
    model = timm_vit_like(shape).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=uses_bf16(cfg, device))
    g = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = len(train) // cfg.batch_size
    padding = cfg.crop_padding if cfg.crop == "pad" else 0

    eval_batch = max(cfg.batch_size, 256)  # as ours

    def evaluate() -> float:
        model.eval()
        correct = 0
        with torch.no_grad(), autocast:
            for i in range(0, len(test), eval_batch):
                x = resize(normalize(test.images[i:i + eval_batch]), cfg.image_size).to(device)
                correct += (model(x).argmax(-1).cpu() == test.labels[i:i + x.shape[0]]).sum().item()
        model.train()
        return correct / len(test)

    curve, train_seconds, start = [], 0.0, time.perf_counter()
    for step in range(cfg.steps):
        if step % steps_per_epoch == 0:
            order = torch.randperm(len(train), generator=g)
        idx = order[(step % steps_per_epoch) * cfg.batch_size:][:cfg.batch_size]
        x = resize(pad_crop_flip(normalize(train.images[idx]), padding, cfg.flip, g), cfg.image_size)
        x, y = x.to(device), train.labels[idx].to(device)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)  # the same warm-up + decay formula as ours
        with autocast:
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done = step + 1
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps:
            sync(device)
            train_seconds += time.perf_counter() - start  # the clock stops while evaluating
            curve.append(CurvePoint(done, train_seconds, evaluate()))
            start = time.perf_counter()
    return curve


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", default="cpu", choices=sorted(SCALES), help="the scale whose ViT recipe is the base")
    p.add_argument("--model")
    p.add_argument("--patch", type=int, help="the model's patch size, e.g. 8 for ViT-XS/8")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup", type=int)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--schedule", choices=("linear", "cosine"))
    p.add_argument("--patch-drop", type=float,
                   help="ours only: the fraction of patch tokens dropped in training (the model's patch_drop)")
    p.add_argument("--plain-steps", type=int,
                   help="the plain loop's own steps (its schedule ends there; default: ours), so that each side "
                        "gets the schedule it needs to reach the targets")
    p.add_argument("--eval-every", type=int, default=100, help="steps between test evaluations (both sides)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="any repro.train.TrainConfig field, repeatable, e.g. --set amp=bf16")
    p.add_argument("--targets", type=float, nargs="+", default=[50, 55, 60, 65, 70], help="test top-1 in %%")
    p.add_argument("--no-plain", action="store_true", help="train ours only")
    p.add_argument("--out", help="folder for the run directories (default: a new temporary folder)")
    p.add_argument("--tiny", action="store_true", help="seconds: ViT-XXS/8 on the embedded mini CIFAR-10")
    args = p.parse_args(argv)

    changes = {"heldout": False, "eval_every": args.eval_every}
    if args.tiny:
        changes.update(TINY)
        args.targets = [10, 20]
    model = with_patch(args.model or changes.get("model") or SCALES[args.scale].vit, args.patch)
    if args.patch_drop is not None:  # the plain loop's timm model is built from the shape only: it drops nothing
        changes["model_overrides"] = {"patch_drop": args.patch_drop}
    shortcuts = dict(model=model, steps=args.steps, batch_size=args.batch, lr=args.lr, warmup_steps=args.warmup,
                     label_smoothing=args.label_smoothing, schedule=args.schedule)
    given = {k: v for k, v in shortcuts.items() if v is not None}  # a flag left out keeps the tiny or scale value
    cfg = config_from_args(args.scale, {**changes, **given}, args.overrides)
    out = Path(tempfile.mkdtemp(prefix="time_to_accuracy-", dir=args.out))
    cfg = dataclasses.replace(cfg, out_dir=str(out), run_name="ours")
    device = resolve_device(cfg.device)

    _, ours, stopped = run_engine(cfg)
    plain_cfg = cfg if args.plain_steps is None else dataclasses.replace(cfg, steps=args.plain_steps)
    plain = [] if args.no_plain else plain_run(plain_cfg, device)

    print("time to accuracy on", cfg.dataset, "(test top-1 against training seconds, evaluation excluded)")
    print("command:", command_line())
    for line in hardware_lines(device):
        print(line)
    bf16 = "bf16 autocast" if uses_bf16(cfg, device) else "fp32"
    print(f"ours: {cfg.model} {cfg.model_overrides} via repro.train.train on {device}, {bf16}, "
          f"compile={cfg.compile}, batch {cfg.batch_size}, {cfg.steps} steps ({stopped}), lr {cfg.lr:g} "
          f"{cfg.schedule} warm-up {cfg.warmup_steps}, wd {cfg.weight_decay:g} (not on 1-D params), "
          f"label smoothing {cfg.label_smoothing:g}, crop {cfg.crop}, flip {cfg.flip}")
    if not args.no_plain:
        print(f"plain: timm VisionTransformer of the same shape, {bf16}, no compile, AdamW wd {cfg.weight_decay:g} "
              f"on all params, same schedule shape, batch and augmentation, {plain_cfg.steps} steps, no label "
              "smoothing, no patch dropping (timm defaults: no pre-logits, no dropout)")
    print(f"runs in {out}\n")

    plain_at = {pt.step: pt for pt in plain}
    rows = [[pt.step, f"{pt.seconds:.1f}", f"{100 * pt.accuracy:.2f}"]
            + ([f"{plain_at[pt.step].seconds:.1f}", f"{100 * plain_at[pt.step].accuracy:.2f}"]
               if pt.step in plain_at else []) for pt in ours]
    headers = ["step", "ours s", "ours top-1 %"] + ([] if args.no_plain else ["plain s", "plain top-1 %"])
    print(table(headers, rows), "\n")

    reached = [{"target": t, "ours_s": seconds_to(ours, t / 100), "plain_s": seconds_to(plain, t / 100)}
               for t in args.targets]
    for r in reached:
        r["ratio"] = r["plain_s"] / r["ours_s"] if r["ours_s"] and r["plain_s"] else None
    headers = ["target top-1 %", "ours s"] + ([] if args.no_plain else ["plain s", "ratio plain/ours"])
    rows = [[f"{r['target']:g}", fmt_s(r["ours_s"])] + ([] if args.no_plain else [
        fmt_s(r["plain_s"]), "-" if r["ratio"] is None else f"{r['ratio']:.2f}"]) for r in reached]
    print(table(headers, rows))
    summary = {"command": command_line(), "hardware": hardware_lines(device), "config": cfg.to_dict(),
               "ours": [dataclasses.asdict(pt) for pt in ours], "plain": [dataclasses.asdict(pt) for pt in plain],
               "targets": reached, "stopped": stopped}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


if __name__ == "__main__":
    main()

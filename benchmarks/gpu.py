"""One GPU, under 5 minutes: ViT-B/16 training throughput and MFU, then CIFAR-10 time to 90% / 94% test top-1.

(a) Throughput: images/s of one training step (bf16 autocast forward, fp32 loss, backward, AdamW) of our
    ``repro.create_model("ViT-B/16")`` and of timm's ``vit_base_patch16_224`` on the same synthetic batch
    at 224 px, in alternating rounds (the best round of each counts; ``--compile`` compiles both).
    Model FLOPs utilisation = FLOPs per image x images/s / the GPU's dense bf16 peak. FLOPs per image are
    counted by ``torch.utils.flop_counter.FlopCounterMode`` over one forward + backward (matrix multiplies
    and attention; the optimizer and elementwise work are not counted). The peak comes from
    ``PEAK_BF16_TFLOPS`` by device name (vendor data sheets, dense, no sparsity) or ``--peak-tflops``.
(b) Time to accuracy: the ``gpu``-scale ViT (``repro.scales.SCALES["gpu"].run_config``, any TrainConfig field via
    ``--set key=value``) trained from scratch by ``repro.train.train`` on all 50,000 CIFAR-10 training
    images, data resident on the GPU (``repro.data.loader.DeviceLoader``), the test split evaluated every
    ``--eval-every`` steps. Training seconds exclude evaluation time (``_common.run_engine``). It stops
    when the test top-1 reaches the last target (94%) or once ``--budget-s`` training seconds are spent.

    python benchmarks/gpu.py                                  # both parts, one GPU
    python benchmarks/gpu.py --compile --batch 256 --budget-s 200 --set compile=true --set lr=2e-3
    python benchmarks/gpu.py --tiny                           # CPU, seconds: the code path only, not a GPU figure
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from _common import (command_line, config_from_args, fmt_s, hardware_lines, run_engine, seconds_to, sync, table,
                     timm_vit_like)
from repro import create_model

# Dense bf16 tensor-core peak in TFLOP/s by device name (first match wins: specific names first).
PEAK_BF16_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0), ("L40S", 362.0),
                    ("L4", 121.0)]
CPU_PLACEHOLDER_TFLOPS = 1.0  # --tiny on a CPU: exercises the MFU arithmetic, measures nothing about a GPU

TINY_CIFAR = dict(model="ViT-XXS/8", data_dir="embedded", max_train=512, max_test=256, batch_size=32, steps=20,
                  warmup_steps=3, eval_every=5, log_every=5, device="cpu")


def peak_tflops(device_name: str | None, override: float | None = None) -> tuple[float | None, str]:
    """The dense bf16 peak to divide by (None when unknown) and where it comes from; ``device_name`` is
    ``torch.cuda.get_device_name()``, or None on a CPU (a stated placeholder)."""
    if override:
        return override, f"{override:g} TFLOP/s (--peak-tflops)"
    if device_name is None:
        return CPU_PLACEHOLDER_TFLOPS, f"{CPU_PLACEHOLDER_TFLOPS:g} TFLOP/s PLACEHOLDER for a CPU: not a GPU measurement"
    for key, tflops in PEAK_BF16_TFLOPS:
        if key in device_name:
            return tflops, f"{tflops:g} TFLOP/s dense bf16 ({key} data sheet)"
    return None, f"unknown for {device_name!r}: pass --peak-tflops"


def flops_per_image(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of one forward + backward per image, counted on the batch ``x`` (B, 3, H, W).

    Attention runs through the math backend while counting: it is plain matmuls, which the counter sees
    on every device (the fused CPU kernel has no FLOP formula), so the count is the model's, not a kernel's.
    """
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH), \
            torch.autocast(x.device.type, dtype=torch.bfloat16):
        F.cross_entropy(model(x).float(), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / x.shape[0]


def images_per_s(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, warmup: int) -> float:
    """Training images/s over ``steps`` steps after ``warmup`` untimed ones (compilation happens there)."""
    fast = {"fused": True} if x.device.type == "cuda" else {"foreach": True}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **fast)
    for i in range(warmup + steps):
        if i == warmup:
            sync(x.device)
            start = time.perf_counter()
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(x.device)
    return steps * x.shape[0] / (time.perf_counter() - start)


def throughput(args, device: torch.device) -> dict:
    """Part (a): ours vs timm, images/s, FLOPs per image and MFU."""
    torch.manual_seed(0)
    if args.tiny:  # timm's twin of the tiny ViT (vit_base_patch16_224 is the full mode's)
        ours = create_model("ViT-XXS/8", num_classes=10, img_size=32)
        models = {"ours ViT-XXS/8": ours, "timm VisionTransformer (same shape)": timm_vit_like(ours.cfg)}
    else:
        models = {"ours ViT-B/16": create_model("ViT-B/16"),
                  "timm vit_base_patch16_224": timm.create_model("vit_base_patch16_224", pretrained=False)}
    size = 32 if args.tiny else 224
    x = torch.randn(args.batch, 3, size, size, device=device)
    y = torch.randint(0, 10 if args.tiny else 1000, (args.batch,), device=device)
    models = {name: m.to(device).train() for name, m in models.items()}
    flops = {name: flops_per_image(m, x[:2], y[:2]) for name, m in models.items()}
    runners = {name: torch.compile(m) if args.compile else m for name, m in models.items()}
    best = {name: 0.0 for name in models}
    for _ in range(args.rounds):  # alternate, so that machine noise hits both alike
        for name, m in runners.items():
            warmup = 10 if args.compile else 3
            best[name] = max(best[name], images_per_s(m, x, y, args.steps, warmup))
    gpu_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak, peak_text = peak_tflops(gpu_name, args.peak_tflops)
    rows, result = [], {"peak": peak_text, "batch": args.batch, "image_size": size, "compile": args.compile}
    for name in models:
        achieved = flops[name] * best[name] / 1e12  # TFLOP/s
        mfu = achieved / peak if peak else None
        result[name] = {"images_per_s": best[name], "gflops_per_image": flops[name] / 1e9,
                        "tflops": achieved, "mfu": mfu}
        rows.append([name, f"{best[name]:.0f}", f"{flops[name] / 1e9:.4g}", f"{achieved:.4g}",
                     "-" if mfu is None else f"{100 * mfu:.1f}%"])
    names = list(models)
    result["ratio_ours_timm"] = best[names[0]] / best[names[1]]
    print(f"(a) training throughput at {size} px, batch {args.batch}, bf16 autocast, AdamW, synthetic batch, "
          f"compile={args.compile}, best of {args.rounds} alternating rounds of {args.steps} steps")
    print(table(["model", "images/s", "GFLOPs/image (fwd+bwd)", "TFLOP/s", "MFU"], rows))
    print(f"ratio ours/timm: {result['ratio_ours_timm']:.3f}; peak used: {peak_text}\n")
    return result


def time_to_accuracy(args, out: Path) -> dict:
    """Part (b): the gpu-scale ViT's training seconds to each target test top-1."""
    changes = {"heldout": False, "eval_every": args.eval_every, "device": "cuda", **(TINY_CIFAR if args.tiny else {})}
    cfg = config_from_args("gpu", changes, args.overrides)
    cfg = dataclasses.replace(cfg, out_dir=str(out), run_name="gpu-scale")
    targets = sorted(args.targets)
    _, curve, stopped = run_engine(cfg, stop_at=targets[-1] / 100, budget_s=args.budget_s)
    print(f"(b) time to accuracy on CIFAR-10: {cfg.model} {cfg.model_overrides}, batch {cfg.batch_size}, "
          f"{cfg.steps} steps scheduled, lr {cfg.lr:g} {cfg.schedule} warm-up {cfg.warmup_steps}, amp={cfg.amp} (auto: bf16 on CUDA), "
          f"compile={cfg.compile}, device {cfg.device}; stopped: {stopped}")
    print(table(["step", "training s", "test top-1 %"],
                [[p.step, f"{p.seconds:.1f}", f"{100 * p.accuracy:.2f}"] for p in curve]), "\n")
    reached = {t: seconds_to(curve, t / 100) for t in targets}
    print(table(["target test top-1 %", "training s (evaluation excluded)"],
                [[f"{t:g}", fmt_s(s)] for t, s in reached.items()]), "\n")
    return {"config": cfg.to_dict(), "curve": [dataclasses.asdict(p) for p in curve], "stopped": stopped,
            "seconds_to": reached}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=256, help="(a) the batch of both models")
    p.add_argument("--steps", type=int, default=30, help="(a) timed steps per round")
    p.add_argument("--rounds", type=int, default=3, help="(a) alternating rounds; the best counts")
    p.add_argument("--compile", action="store_true", help="(a) torch.compile both models")
    p.add_argument("--peak-tflops", type=float, help="(a) the dense bf16 peak to use instead of the table")
    p.add_argument("--eval-every", type=int, default=200, help="(b) steps between test evaluations")
    p.add_argument("--budget-s", type=float, default=180.0, help="(b) stop after this many training seconds")
    p.add_argument("--targets", type=float, nargs="+", default=[90, 94], help="(b) test top-1 in %%")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="(b) any repro.train.TrainConfig field, repeatable, e.g. --set compile=true")
    p.add_argument("--skip", choices=("throughput", "cifar"), help="leave one part out")
    p.add_argument("--out", help="folder for the run directory (default: a new temporary folder)")
    p.add_argument("--tiny", action="store_true", help="CPU, seconds: ViT-XXS/8 at 32 px, embedded data")
    args = p.parse_args(argv)
    if args.tiny:
        args.batch, args.steps, args.rounds = 8, 2, 1
    elif not torch.cuda.is_available():
        sys.exit("gpu.py measures a CUDA GPU and torch sees none; --tiny runs its code path on the CPU")
    device = torch.device("cpu" if args.tiny else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as repro.train does
    out = Path(tempfile.mkdtemp(prefix="gpu-bench-", dir=args.out))

    print("command:", command_line())
    for line in hardware_lines(device):
        print(line)
    if args.tiny:
        print("TINY MODE on the CPU: checks the code path; none of these figures is a GPU measurement")
    print()
    summary = {"command": command_line(), "hardware": hardware_lines(device), "tiny": args.tiny}
    if args.skip != "throughput":
        summary["throughput"] = throughput(args, device)
    if args.skip != "cifar":
        summary["cifar10"] = time_to_accuracy(args, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"summary: {out / 'summary.json'}")
    return summary


if __name__ == "__main__":
    main()

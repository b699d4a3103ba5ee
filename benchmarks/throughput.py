"""Training throughput, printed as figures and ratios measured in one run (never a timed test).

1. ours vs timm: images/s of one training step of the same ViT at the same batch
   (weights copied, so the work is identical); the ratio is what to compare.
2. input pipeline overhead: images/s of the full step with batches cut and
   augmented by ``repro.data.loader.DeviceLoader`` from real data, vs the same step on a
   synthetic batch that is already on the device.

    python benchmarks/throughput.py --model ViT-XS/4 --batch 128 --steps 20
    python benchmarks/throughput.py --data-dir ../shared/data/cifar10 --device cuda --batch 512
"""
from __future__ import annotations

import argparse
import time

import timm
import torch
import torch.nn.functional as F

from repro import create_model
from repro import data as data_lib
from repro.data.loader import DeviceLoader
from repro.runconfig import TrainConfig
from repro.runtime import autocast_context


def timm_twin(model):
    """timm's VisionTransformer with our model's shape and weights."""
    cfg = model.cfg
    twin = timm.models.vision_transformer.VisionTransformer(
        img_size=cfg.img_size, patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_dim / cfg.embed_dim, num_classes=cfg.num_classes)
    twin.load_state_dict(model.state_dict())
    return twin


def time_steps(model, next_batch, steps, device, amp_cfg):
    """Images per second of ``steps`` optimizer steps after 3 warm-up steps."""
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    n = 0
    for i in range(steps + 3):
        if i == 3:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, n = time.perf_counter(), 0
        x, y = next_batch(i)
        with autocast_context(amp_cfg, device):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += y.numel()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return n / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-XS/4")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison; the best round counts")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir", default=None, help="default: the lookup order of repro.data")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    amp_cfg = TrainConfig(amp="auto").amp
    torch.manual_seed(0)
    ours = create_model(args.model, num_classes=10, img_size=args.image_size)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    synthetic = lambda i: (x, y)  # noqa: E731
    print(f"model {args.model} at {args.image_size}px, batch {args.batch}, {args.steps} steps, device {device} "
          f"({torch.get_num_threads()} CPU threads), torch {torch.__version__}, timm {timm.__version__}")

    if hasattr(ours, "blocks") and not hasattr(ours.patch_embed, "backbone") and ours.cfg.pos_embed == "1d":
        twin = timm_twin(ours)
        # Alternate the two so that machine noise hits both alike.
        ours_ips, timm_ips = [], []
        for _ in range(args.rounds):
            ours_ips.append(time_steps(ours, synthetic, args.steps, device, amp_cfg))
            timm_ips.append(time_steps(twin, synthetic, args.steps, device, amp_cfg))
        o, t = max(ours_ips), max(timm_ips)
        print(f"ours vs timm (synthetic batch): ours {o:.0f} img/s, timm {t:.0f} img/s, ratio ours/timm {o / t:.3f}")

    arrays = data_lib.get_datasets(args.dataset, data_dir=args.data_dir, heldout=False)["train"]
    resize_to = args.image_size if args.image_size != arrays.images.shape[-1] else None
    loader = DeviceLoader(arrays, args.batch, device=device, train=True, seed=0, crop_padding=4, flip=True,
                                   image_size=resize_to)
    # Alternate in rounds and keep each side's best round, so that machine noise hits both alike.
    reals, synths = [], []
    for _ in range(args.rounds):
        reals.append(time_steps(ours, loader.get_batch, args.steps, device, amp_cfg))
        synths.append(time_steps(ours, synthetic, args.steps, device, amp_cfg))
    real, synth = max(reals), max(synths)
    t0 = time.perf_counter()
    for i in range(args.steps):
        loader.get_batch(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    batch_ms = 1000 * (time.perf_counter() - t0) / args.steps
    print(f"real data ({arrays.source}): {real:.0f} img/s; synthetic: {synth:.0f} img/s; "
          f"ratio real/synthetic {real / synth:.3f}; batch cut+augment alone {batch_ms:.1f} ms")


if __name__ == "__main__":
    main()

"""Masked patch prediction (Sec. 4.6, App. B.1.2): corruption, targets, loss and a training step."""
import math

import pytest
import torch
import torch.nn.functional as F

from repro import create_model
from repro.mpp import (KEPT, MASKED, RANDOM, TARGETS, UNCHANGED, MaskedPatchPrediction, build_mpp_model, corrupt,
                       decode_mean_color, downsized_targets, evaluate_mpp, load_mpp_model, masked_loss,
                       mean_color_targets, mpp_objective, num_corrupted, pixel_targets, predict_mean_colors,
                       quantize_colors, save_mpp_head)

TINY = dict(num_classes=10, img_size=32)  # ViT-XXS/8 at 32 px: a 4x4 grid, N = 16


def _tiny_wrapper(target="mean_color", rate=0.5, **overrides):
    torch.manual_seed(0)
    return build_mpp_model(create_model("ViT-XXS/8", **TINY, **overrides), target, rate)


def _uint8_like(shape, seed=0):
    """Images in [0, 1] on a grid of 1/256: patch and cell means are exact in float32 (sums of < 2^24/256)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 257, shape, generator=g).float() / 256


# --------------------------------------------------------------------------- corruption


def test_corrupt_proportions_over_many_draws():
    B, N, D, draws = 128, 16, 8, 50
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(B, N, D)
    mask_token = torch.zeros(1, 1, D)
    kinds = []
    for _ in range(draws):
        _, corrupted, kind = corrupt(tokens, 0.5, mask_token, generator=g)
        assert corrupted.dtype == torch.bool and kind.dtype == torch.int8
        assert torch.equal(corrupted, kind > 0)
        assert (corrupted.sum(1) == 8).all(), "exactly half of each image's patches are chosen"
        kinds.append(kind)
    kind = torch.stack(kinds)  # (draws, B, N)
    chosen = (kind > 0).sum().item()
    assert chosen == draws * B * N // 2
    assert ((kind == MASKED).sum().item() / chosen) == pytest.approx(0.8, abs=0.01)
    assert ((kind == RANDOM).sum().item() / chosen) == pytest.approx(0.1, abs=0.01)
    assert ((kind == UNCHANGED).sum().item() / chosen) == pytest.approx(0.1, abs=0.01)
    # Every position is equally likely to be chosen (no bias towards, e.g., the first patches).
    per_position = (kind > 0).float().mean(dim=(0, 1))  # (N,)
    assert torch.allclose(per_position, torch.full((N,), 0.5), atol=0.03)


@pytest.mark.parametrize("num_patches,rate,expected", [(16, 0.5, 8), (16, 0.15, 2), (196, 0.5, 98),
                                                       (196, 0.15, 29), (4, 0.1, 1), (16, 1.0, 16)])
def test_number_corrupted(num_patches, rate, expected):
    assert num_corrupted(num_patches, rate) == expected
    _, corrupted, _ = corrupt(torch.randn(3, num_patches, 4), rate, torch.zeros(1, 1, 4))
    assert (corrupted.sum(1) == expected).all()


@pytest.mark.parametrize("rate", [0.0, -0.1, 1.5])
def test_bad_rate_is_an_error(rate):
    with pytest.raises(ValueError, match="corrupt_rate"):
        corrupt(torch.randn(2, 4, 3), rate, torch.zeros(1, 1, 3))


def test_corrupted_values():
    B, N, D = 8, 16, 32
    g = torch.Generator().manual_seed(1)
    mask_token = torch.randn(1, 1, D)
    flat_own = torch.arange(B * N).view(B, N)
    from_other_image = random_total = 0
    for _ in range(20):
        tokens = torch.randn(B, N, D)
        out, corrupted, kind = corrupt(tokens, 0.5, mask_token, generator=g)
        not_replaced = (kind == KEPT) | (kind == UNCHANGED)
        assert torch.equal(out[not_replaced], tokens[not_replaced]), "kept tokens must be bit-identical"
        assert torch.equal(out[kind == MASKED], mask_token[0].expand(int((kind == MASKED).sum()), D))
        # A random replacement is exactly the (uncorrupted) embedding of another patch of the batch.
        flat = tokens.reshape(B * N, D)
        for b, n in (kind == RANDOM).nonzero().tolist():
            matches = (flat == out[b, n]).all(-1).nonzero().flatten().tolist()
            assert len(matches) == 1 and matches[0] != flat_own[b, n], "must be another patch's embedding"
            from_other_image += matches[0] // N != b
            random_total += 1
    assert random_total > 50
    # Drawn over the whole batch: most come from other images ((B-1)N / (BN-1) = 0.88 here).
    assert from_other_image / random_total > 0.7


def test_corrupt_randomness_is_reproducible():
    tokens, mask_token = torch.randn(4, 16, 8), torch.zeros(1, 1, 8)
    a = corrupt(tokens, 0.5, mask_token, generator=torch.Generator().manual_seed(5))
    b = corrupt(tokens, 0.5, mask_token, generator=torch.Generator().manual_seed(5))
    torch.manual_seed(5)
    c = corrupt(tokens, 0.5, mask_token)
    torch.manual_seed(5)
    d = corrupt(tokens, 0.5, mask_token)
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    for x, y in zip(c, d):
        assert torch.equal(x, y)


# --------------------------------------------------------------------------- targets


def _loop_mean_colors(images, P, bits):
    """Direct per-patch reference: mean of each channel in float64, then the spec's bins."""
    B, _, H, W = images.shape
    levels = 2 ** bits
    out = torch.zeros(B, (H // P) * (W // P), dtype=torch.long)
    for b in range(B):
        for i in range(H // P):
            for j in range(W // P):
                patch = images[b, :, i * P:(i + 1) * P, j * P:(j + 1) * P].double()
                r, g, bl = (min(math.floor(patch[c].mean().item() * levels), levels - 1) for c in range(3))
                out[b, i * (W // P) + j] = r * levels * levels + g * levels + bl
    return out


@pytest.mark.parametrize("patch_size,bits", [(8, 3), (4, 3), (8, 2)])
def test_mean_color_targets_against_a_loop(patch_size, bits):
    images = _uint8_like((3, 3, 32, 32))
    P = patch_size
    # Patches on the bin edges: all ones (top edge 1.0 -> last bin), all zeros, exactly 0.5 and 0.125, just under 1.
    images[0, :, :P, :P] = 1.0
    images[0, :, :P, P:2 * P] = 0.0
    images[0, :, P:2 * P, :P] = 0.5
    images[0, :, P:2 * P, P:2 * P] = 0.125
    images[0, :, :P, 2 * P:3 * P] = 255 / 256
    targets = mean_color_targets(images, P, bits)
    levels = 2 ** bits
    assert targets.dtype == torch.int64 and targets.shape == (3, (32 // P) ** 2)
    assert torch.equal(targets, _loop_mean_colors(images, P, bits))
    top = levels ** 3 - 1
    assert targets[0, 0] == top                                                 # 1.0 is in the last bin
    assert targets[0, 1] == 0
    assert targets[0, 32 // P] == (levels // 2) * (levels ** 2 + levels + 1)    # 0.5 opens the upper half
    assert targets[0, 2] == top                                                 # 255/256 -> last bin too
    if bits == 3:
        assert targets[0, 32 // P + 1] == 1 * 64 + 1 * 8 + 1                    # 0.125 opens bin 1
    assert targets.min() >= 0 and targets.max() <= top


def test_quantize_and_decode_round_trip():
    classes = torch.arange(512)
    rgb = decode_mean_color(classes)
    assert rgb.shape == (512, 3) and rgb.min() > 0 and rgb.max() < 1
    assert torch.equal(quantize_colors(rgb), classes)
    assert torch.allclose(decode_mean_color(torch.tensor(511)), torch.full((3,), 15 / 16))
    assert torch.allclose(decode_mean_color(torch.tensor(1 * 64 + 2 * 8 + 3)), torch.tensor([1.5, 2.5, 3.5]) / 8)
    assert torch.equal(quantize_colors(torch.tensor([[1.0, 0.0, 0.5]])), torch.tensor([7 * 64 + 0 + 4]))


def test_downsized_targets_against_a_loop():
    images = _uint8_like((2, 3, 32, 32), seed=1)
    P, cell = 8, 2  # 4x4 cells of 2x2 pixels per patch
    targets = downsized_targets(images, P)
    assert targets.shape == (2, 16, 16) and targets.dtype == torch.int64
    for b in range(2):
        for n in range(16):
            i, j = divmod(n, 4)
            patch = images[b, :, i * P:(i + 1) * P, j * P:(j + 1) * P]
            for k in range(16):
                ci, cj = divmod(k, 4)
                block = patch[:, ci * cell:(ci + 1) * cell, cj * cell:(cj + 1) * cell].double()
                r, g, bl = (min(math.floor(block[c].mean().item() * 8), 7) for c in range(3))
                assert targets[b, n, k] == r * 64 + g * 8 + bl
    # A patch whose cells all share one colour has that mean colour in every cell.
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.equal(downsized_targets(flat, 8), mean_color_targets(flat, 8)[..., None].expand(1, 1, 16))
    with pytest.raises(ValueError, match="divisible by 4"):
        downsized_targets(torch.rand(1, 3, 12, 12), 6)


def test_pixel_targets():
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    targets = pixel_targets(images, 8)
    assert targets.shape == (2, 16, 3 * 8 * 8)
    for b, n in [(0, 0), (1, 5), (1, 15)]:
        i, j = divmod(n, 4)
        assert torch.equal(targets[b, n], images[b, :, i * 8:(i + 1) * 8, j * 8:(j + 1) * 8].reshape(-1))


def test_wrapper_targets_from_normalised_images():
    images = _uint8_like((2, 3, 32, 32), seed=2)
    normalised = images * 2 - 1  # the loaders' [-1, 1]
    assert torch.equal(_tiny_wrapper("mean_color").targets(normalised), mean_color_targets(images, 8))
    assert torch.equal(_tiny_wrapper("downsized").targets(normalised), downsized_targets(images, 8))
    assert torch.equal(_tiny_wrapper("pixels").targets(normalised), pixel_targets(normalised, 8))


# --------------------------------------------------------------------------- loss


def _random_problem(target, B=4, N=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    corrupted = torch.rand(B, N, generator=g) < 0.5
    if target == "mean_color":
        return torch.randn(B, N, 512, generator=g), torch.randint(0, 512, (B, N), generator=g), corrupted
    if target == "downsized":
        return torch.randn(B, N, 16, 512, generator=g), torch.randint(0, 512, (B, N, 16), generator=g), corrupted
    return torch.randn(B, N, 48, generator=g), torch.rand(B, N, 48, generator=g) * 2 - 1, corrupted


@pytest.mark.parametrize("target", TARGETS)
def test_loss_ignores_uncorrupted_patches(target):
    predictions, targets, corrupted = _random_problem(target)
    loss, correct, predicted = masked_loss(predictions, targets, corrupted, target)
    # Change the predictions and the targets of every uncorrupted patch: nothing may move.
    keep = ~corrupted
    other_predictions, other_targets = predictions.clone(), targets.clone()
    other_predictions[keep] = torch.randn_like(other_predictions[keep]) * 10
    other_targets[keep] = (torch.randint_like(other_targets[keep], 0, 512) if target != "pixels"
                           else torch.rand_like(other_targets[keep]))
    again = masked_loss(other_predictions, other_targets, corrupted, target)
    assert torch.equal(loss, again[0]) and torch.equal(correct, again[1]) and torch.equal(predicted, again[2])
    # ... while a change on a corrupted patch does.
    changed = predictions.clone()
    changed[corrupted] += 1.0 if target == "pixels" else torch.randn_like(changed[corrupted])
    assert not torch.equal(masked_loss(changed, targets, corrupted, target)[0], loss)


@pytest.mark.parametrize("target", TARGETS)
def test_loss_value_against_direct_selection(target):
    predictions, targets, corrupted = _random_problem(target, seed=1)
    loss, correct, predicted = masked_loss(predictions, targets, corrupted, target)
    p, t = predictions[corrupted], targets[corrupted]
    if target == "mean_color":
        assert loss == pytest.approx(F.cross_entropy(p, t).item(), rel=1e-5)
        assert correct == (p.argmax(-1) == t).sum() and predicted == corrupted.sum()
    elif target == "downsized":
        assert loss == pytest.approx(F.cross_entropy(p.flatten(0, 1), t.flatten()).item(), rel=1e-5)
        assert correct == (p.argmax(-1) == t).sum() and predicted == corrupted.sum() * 16
    else:
        assert loss == pytest.approx(F.mse_loss(p, t).item(), rel=1e-5)
        assert predicted == corrupted.sum()
        assert 0 <= correct <= predicted


def test_wrapper_loss_reads_only_corrupted_outputs():
    wrapper = _tiny_wrapper()
    torch.nn.init.normal_(wrapper.mpp_head.weight, std=0.1)  # a zero head would give zero gradients everywhere
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    predictions, corrupted, kind, _ = wrapper.predict(images, torch.Generator().manual_seed(0))
    predictions.retain_grad()
    loss, _, _ = masked_loss(predictions, wrapper.targets(images), corrupted)
    loss.backward()
    assert (predictions.grad[~corrupted] == 0).all()
    assert (predictions.grad[corrupted].abs().sum(-1) > 0).all()
    # forward() computes the same loss from the same corruption.
    same, _, _ = wrapper(images, torch.Generator().manual_seed(0))
    assert same.item() == pytest.approx(loss.item(), rel=1e-6)


# --------------------------------------------------------------------------- the model and the engine hooks


@pytest.mark.parametrize("target", TARGETS)
def test_adam_steps_lower_the_loss_on_a_fixed_batch(target):
    wrapper = _tiny_wrapper(target)
    images = _uint8_like((4, 3, 32, 32), seed=3) * 2 - 1
    optimizer = torch.optim.Adam(wrapper.parameters(), lr=3e-3)

    def loss_now():
        torch.manual_seed(123)  # the same corruption every step, as a fixed batch
        return wrapper(images)[0]

    first = loss_now()
    if target != "pixels":
        assert first.item() == pytest.approx(math.log(512), rel=1e-4), "a zero head starts at log(512)"
    for _ in range(8):
        optimizer.zero_grad()
        loss_now().backward()
        optimizer.step()
    with torch.no_grad():
        last = loss_now()
    assert last.item() < 0.8 * first.item()


@pytest.mark.parametrize("overrides", [{}, {"pool": "gap"}, {"representation_size": 32}, {"pos_embed": "relative"}])
def test_every_parameter_gets_a_gradient(overrides):
    """DDP needs every parameter in the graph, the ViT's unused head and pre-logits included."""
    wrapper = _tiny_wrapper(**overrides)
    loss, correct, predicted = wrapper(torch.rand(2, 3, 32, 32) * 2 - 1)
    loss.backward()
    missing = [n for n, p in wrapper.named_parameters() if p.grad is None]
    assert not missing
    assert predicted == 2 * 8 and 0 <= correct <= predicted


def test_vit_state_dict_is_a_plain_vit_checkpoint():
    wrapper = _tiny_wrapper()
    fresh = create_model("ViT-XXS/8", **TINY)
    fresh.load_state_dict(wrapper.vit.state_dict(), strict=True)
    extra = {k for k in wrapper.state_dict() if not k.startswith("vit.")}
    assert extra == {"mask_token", "mpp_head.weight", "mpp_head.bias"}
    assert wrapper.mask_token.shape == (1, 1, 64)
    # The whole wrapper reloads strictly too (resume).
    other = _tiny_wrapper()
    other.load_state_dict(wrapper.state_dict(), strict=True)


def test_mpp_head_round_trip(tmp_path):
    wrapper = _tiny_wrapper("downsized", rate=0.15)
    torch.nn.init.normal_(wrapper.mpp_head.weight, std=0.1)
    path = save_mpp_head(wrapper, tmp_path / "mpp_head.safetensors")
    vit = create_model("ViT-XXS/8", **TINY)
    vit.load_state_dict(wrapper.vit.state_dict())
    again = load_mpp_model(vit, path)
    assert again.target == "downsized" and again.corrupt_rate == 0.15 and again.bits == 3
    for (name, a), (_, b) in zip(wrapper.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


def test_forward_is_reproducible_from_the_global_seed():
    wrapper = _tiny_wrapper()
    torch.nn.init.normal_(wrapper.mpp_head.weight, std=0.1)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    results = []
    for _ in range(2):
        torch.manual_seed(7)
        results.append(wrapper(images))
    assert all(torch.equal(a, b) for a, b in zip(*results))
    torch.manual_seed(8)
    assert not torch.equal(wrapper(images)[0], results[0][0])


def test_objective_reports_per_prediction_accuracy():
    images = torch.zeros(8, 3, 32, 32)

    def fake_model(x):  # 24 right of 64 predictions (8 per image) -> 3 "images" of the engine's count
        return torch.tensor(1.5), torch.tensor(24), torch.tensor(64)

    loss, correct = mpp_objective(fake_model, images, torch.zeros(8, dtype=torch.long), None)
    assert loss.item() == 1.5 and correct.dtype == torch.int64 and correct.item() == 3
    assert correct.item() / images.shape[0] == 24 / 64
    wrapper = _tiny_wrapper()
    loss, correct = mpp_objective(wrapper, images, None, None)
    assert loss.ndim == 0 and correct.ndim == 0


def test_predict_mean_colors_and_evaluate():
    wrapper = _tiny_wrapper("downsized")
    torch.nn.init.normal_(wrapper.mpp_head.weight, std=0.1)
    images = torch.rand(3, 3, 32, 32) * 2 - 1
    classes, kind = predict_mean_colors(wrapper, images, generator=torch.Generator().manual_seed(0),
                                        return_corruption=True)
    assert classes.shape == (3, 16) and classes.dtype == torch.int64 and kind.shape == (3, 16)
    assert classes.min() >= 0 and classes.max() < 512 and wrapper.training
    assert decode_mean_color(classes).shape == (3, 16, 3)
    batches = [(images, None), (images.flip(0), None)]
    first, second = evaluate_mpp(wrapper, batches), evaluate_mpp(wrapper, batches)
    assert first == second and first["count"] == 6 and 0 <= first["accuracy"] <= 1


def test_bad_target_is_an_error():
    with pytest.raises(ValueError, match="target"):
        MaskedPatchPrediction(create_model("ViT-XXS/8", **TINY), target="colour")


# --------------------------------------------------------------------------- through the training engine


def test_mpp_through_the_engine_resumes_exactly_and_fine_tunes(tmp_path):
    """objective="mpp": the engine trains the wrapper, resumes to the same losses after an interrupt, saves a
    plain ViT that fine-tuning starts from, and the [mask] embedding is not weight-decayed."""
    from repro.fileio import read_jsonl
    from repro.runconfig import finetune_config, TrainConfig
    from repro.train import make_optimizer, train

    base = dict(model="ViT-XXS/8", dataset="cifar10", data_dir="embedded", max_train=128, max_test=64,
                batch_size=16, steps=6, warmup_steps=2, log_every=2, checkpoint_every=2, objective="mpp",
                out_dir=str(tmp_path / "runs"))
    reference = train(TrainConfig(**base, run_name="straight"), progress=False)

    def stop_at_4(step, record):
        if step == 4:
            raise KeyboardInterrupt

    cfg = TrainConfig(**base, run_name="interrupted")
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callback=stop_at_4, progress=False)
    resumed = train(cfg, progress=False)

    def losses(run_dir):
        return [r["loss"] for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("event") == "train"]

    assert len(losses(reference)) == 3 and losses(resumed) == pytest.approx(losses(reference), rel=1e-6)
    assert (reference / "mpp_head.safetensors").exists()
    wrapper = build_mpp_model(create_model("ViT-XXS/8", num_classes=10, img_size=32))
    optimizer = make_optimizer(wrapper, TrainConfig(), torch.device("cpu"))
    no_decay = {id(p) for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(wrapper.mask_token) in no_decay and id(wrapper.vit.pos_embed) in no_decay
    tuned = train(finetune_config(model="ViT-XXS/8", dataset="cifar10", data_dir="embedded", max_train=64,
                                  max_test=32, batch_size=16, steps=2, log_every=2, out_dir=str(tmp_path / "runs"),
                                  init_from=str(reference / "model.safetensors")), progress=False)
    assert (tuned / "final.json").exists()

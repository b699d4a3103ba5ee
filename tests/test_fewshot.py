"""Few-shot ridge probe (repro.fewshot): the closed form, the support sets, and the feature extraction."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from repro import create_model
from repro.data import ImageArrays, normalize
from repro.fewshot import (BIAS_CONSTANT, classifier_logits, extract_features, fewshot_results, fit_ridge,
                           linear_fewshot, representation, ridge_weights, standardize, support_indices)


def _gaussian_classes(num_classes, n_per_class, dim, spread, seed):
    """Fixed class means (5 x N(0, 1) per coordinate, the same for every seed) plus N(0, spread^2)
    noise drawn from `seed`, shuffled; (N, dim), (N,)."""
    means = 5.0 * torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(num_classes).repeat_interleave(n_per_class)
    x = means[y] + spread * torch.randn(y.shape[0], dim, generator=g)
    perm = torch.randperm(y.shape[0], generator=g)
    return x[perm], y[perm]


def _reference_accuracy(train_x, train_y, test_x, test_y, idx, num_classes, l2_reg):
    """The protocol written out once more with a plain torch.linalg.solve of the primal system."""
    sx = train_x[idx].double()
    mean, std = sx.mean(0), sx.std(0, unbiased=False) + 1e-5
    design = torch.cat([(sx - mean) / std, torch.full((len(idx), 1), 100.0, dtype=torch.float64)], 1)
    targets = 2 * F.one_hot(train_y[idx], num_classes).double() - 1
    w = torch.linalg.solve(design.T @ design + l2_reg * torch.eye(design.shape[1], dtype=torch.float64),
                           design.T @ targets)
    tx = torch.cat([(test_x.double() - mean) / std, torch.full((len(test_x), 1), 100.0, dtype=torch.float64)], 1)
    pred = (tx @ w).argmax(1)
    return (pred == test_y).double().mean().item(), pred


@pytest.mark.parametrize("shots,dim", [(2, 40), (10, 8)])  # dual (N=6 < D=41) and primal (N=30 >= D=9)
def test_matches_a_direct_solve(shots, dim):
    train_x, train_y = _gaussian_classes(3, 40, dim, spread=6.0, seed=1)  # overlapping: accuracy well below 1
    test_x, test_y = _gaussian_classes(3, 200, dim, spread=6.0, seed=2)
    idx = support_indices(train_y, shots, seed=0)
    ref_acc, ref_pred = _reference_accuracy(train_x, train_y, test_x, test_y, idx, 3, 2.0 ** 10)
    assert 0.4 < ref_acc < 0.99  # a case where a wrong detail would show
    probe = fit_ridge(train_x[idx], train_y[idx], num_classes=3)
    assert torch.equal(probe.predict(test_x), ref_pred)
    assert linear_fewshot(train_x, train_y, test_x, test_y, shots, seed=0) == pytest.approx(ref_acc, abs=1e-12)
    # numpy in, same answer
    acc_np = linear_fewshot(train_x.numpy(), train_y.numpy(), test_x.numpy(), test_y.numpy(), shots, seed=0)
    assert acc_np == pytest.approx(ref_acc, abs=1e-12)


@pytest.mark.parametrize("n,d", [(5, 30), (30, 5), (12, 12)])
def test_primal_and_dual_agree(n, d):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, d, generator=g, dtype=torch.float64), torch.randn(n, 4, generator=g, dtype=torch.float64)
    primal = ridge_weights(x, y, 3.0, solver="primal")
    dual = ridge_weights(x, y, 3.0, solver="dual")
    assert primal.shape == dual.shape == (d, 4)
    assert torch.allclose(primal, dual, atol=1e-10)
    assert torch.allclose(ridge_weights(x, y, 3.0), primal, atol=1e-10)
    with pytest.raises(ValueError, match="solver"):
        ridge_weights(x, y, 3.0, solver="svd")


def test_separable_classes_are_all_right():
    train_x, train_y = _gaussian_classes(10, 30, 32, spread=0.1, seed=3)
    test_x, test_y = _gaussian_classes(10, 50, 32, spread=0.1, seed=4)
    res = fewshot_results(train_x, train_y, test_x, test_y, shots=(1, 5), seeds=(0, 1, 2))
    for k in (1, 5):
        assert res[k]["per_seed"] == [1.0, 1.0, 1.0]
        assert res[k]["mean"] == 1.0 and res[k]["std"] == 0.0


def test_random_labels_give_chance():
    # Labels independent of the features: whatever the probe predicts, each test
    # prediction is right with probability 1/10, so accuracy ~ Binomial(20000, 0.1)/20000,
    # std 0.0021; the 0.02 tolerance is over 9 standard deviations (and the seed is fixed).
    g = torch.Generator().manual_seed(0)
    train_x, train_y = torch.randn(500, 16, generator=g), torch.randint(0, 10, (500,), generator=g)
    test_x, test_y = torch.randn(20000, 16, generator=g), torch.randint(0, 10, (20000,), generator=g)
    for seed in (0, 1):
        assert abs(linear_fewshot(train_x, train_y, test_x, test_y, 10, seed) - 0.1) < 0.02


def test_support_sets_are_nested_and_balanced():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 7, (400,), generator=g)
    sets = {k: support_indices(y, k, seed=3) for k in (1, 5, 10, 25)}
    for k, idx in sets.items():
        assert idx.unique().numel() == idx.numel()
        assert torch.equal(torch.bincount(y[idx], minlength=7), torch.full((7,), k))
    for small, big in [(1, 5), (5, 10), (10, 25)]:
        assert set(sets[small].tolist()) <= set(sets[big].tolist())
        # the first `small` of each class in the bigger set are exactly the smaller set
        for c in range(7):
            assert torch.equal(sets[big][y[sets[big]] == c][:small], sets[small][y[sets[small]] == c])
    assert not torch.equal(support_indices(y, 5, seed=4), sets[5])  # another seed, another support set
    assert torch.equal(support_indices(y, 5, seed=3), sets[5])      # same seed, same set
    # a class with too few examples gives what it has
    y_small = torch.tensor([0, 0, 0, 1])
    assert torch.bincount(y_small[support_indices(y_small, 2, seed=0)]).tolist() == [2, 1]


def test_standardisation_uses_support_statistics():
    support = torch.tensor([[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]])
    test = torch.tensor([[3.0, 10.0], [7.0, 11.0]])
    s, t = standardize(support, test)
    assert torch.allclose(s.mean(0), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    std0 = (8.0 / 3.0) ** 0.5 + 1e-5  # population std of (1, 3, 5) = sqrt(8/3), plus the 1e-5
    assert t[1, 0].item() == pytest.approx((7.0 - 3.0) / std0)
    assert t[1, 1].item() == pytest.approx(1.0 / 1e-5)  # a feature constant on the support: std = 1e-5
    # Behaviour: class 0 sits at -1, class 1 at +1 on the support set; every test point
    # (all class 1) lies in [4, 6]. With the support's statistics all are class 1; a
    # probe that standardised the test set by its own statistics would centre them and
    # get about half right.
    train_x = torch.tensor([[-1.0], [1.0], [-1.0], [1.0]])
    train_y = torch.tensor([0, 1, 0, 1])
    test_x = torch.linspace(4, 6, 101)[:, None]
    test_y = torch.ones(101, dtype=torch.long)
    assert linear_fewshot(train_x, train_y, test_x, test_y, shots=2, seed=0) == 1.0


def test_bias_feature_is_the_constant_100():
    x = torch.randn(6, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    probe = fit_ridge(x, y, 3)
    assert probe.weights.shape == (4, 3)
    # The intercept is the last weight row times 100: the score of a point at the support mean.
    assert torch.allclose(probe.scores(probe.mean), BIAS_CONSTANT * probe.weights[-1:], atol=1e-12)


def test_fewshot_results_layout():
    train_x, train_y = _gaussian_classes(4, 30, 6, spread=5.0, seed=5)
    test_x, test_y = _gaussian_classes(4, 30, 6, spread=5.0, seed=6)
    res = fewshot_results(train_x, train_y, test_x, test_y, shots=(1, 5), seeds=(0, 1, 2))
    assert sorted(res) == [1, 5]
    for k, r in res.items():
        assert len(r["per_seed"]) == 3
        assert r["per_seed"][1] == linear_fewshot(train_x, train_y, test_x, test_y, k, 1)
        assert r["mean"] == pytest.approx(np.mean(r["per_seed"]))
        assert r["std"] == pytest.approx(np.std(r["per_seed"], ddof=1))


@pytest.mark.parametrize("name,width", [("ViT-XXS/8", 64), ("R14x1", 2048)])
def test_extract_features_is_the_pre_logits_representation(name, width):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, img_size=32)
    assert model.num_features == width
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    model.train()  # extract_features must switch to eval itself, then restore the mode
    feats = extract_features(model, x, batch_size=2)
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
    assert feats.shape == (5, width) and feats.dtype == torch.float32
    assert torch.allclose(feats, expected, atol=1e-5)


@pytest.mark.parametrize("name", ["ViT-XXS/8", "R14x1"])
def test_classifier_logits_on_the_representation_are_the_models_logits(name):
    """The probe scores the trained classifier from the features it already has: ViT head or BiT's 1x1 conv."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, img_size=32).eval()
    for p in model.parameters():  # a fresh head is zero: give it weights, so the check is not 0 == 0
        if p.ndim > 1 and p.shape[0] == 7:
            torch.nn.init.normal_(p, std=0.05)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        logits = classifier_logits(model, representation(model, x))
        expected = model(x)
    assert logits.shape == (3, 7) and expected.abs().max() > 0
    assert torch.allclose(logits, expected, atol=1e-5)


def test_extract_features_from_uint8_arrays_resizes_and_normalises():
    torch.manual_seed(0)
    model = create_model("ViT-XXS/8", num_classes=10, img_size=32, representation_size=16).eval()
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    arrays = ImageArrays(images, torch.arange(4), 10, "toy", "train", "test")
    feats = extract_features(model, arrays, batch_size=3)
    x = F.interpolate(normalize(images), size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
    assert feats.shape == (4, 16)
    assert (feats.abs() <= 1).all()  # after the tanh pre-logits layer
    assert torch.allclose(feats, expected, atol=1e-5)
    # an iterable of (x, y) batches gives the same
    batches = [(x[:2], None), (x[2:], None)]
    assert torch.allclose(extract_features(model, batches), expected, atol=1e-5)


def test_evaluate_fewshot_on_the_embedded_cifar10():
    from repro.fewshot import evaluate_fewshot

    torch.manual_seed(0)
    model = create_model("ViT-XXS/8", num_classes=10, img_size=32)
    res = evaluate_fewshot(model, "cifar10", data_dir="embedded", shots=(1, 5), seeds=(0, 1),
                           max_train=100, max_test=50, batch_size=64)
    assert sorted(res) == [1, 5]
    for r in res.values():
        assert len(r["per_seed"]) == 2
        assert all(0.0 <= a <= 1.0 and (a * 50) == pytest.approx(round(a * 50)) for a in r["per_seed"])

"""repro.recipes: Table 3 / Table 4 as data; the paper scale reads them; pre-logits at pre-training only."""
from pathlib import Path

import pytest

from repro.checkpoints import load_model
from repro.rundir import read_metrics, weights_path
from repro.scales import departures_markdown, SCALES
from repro.train import train
from repro.recipes import (FINETUNE_RECIPES, finetune_dropout, finetune_recipe, pretrain_model_overrides,
                           pretrain_recipe)


def test_table3_rows():
    i1k = pretrain_recipe("imagenet1k", "ViT-B/16")
    assert (i1k.epochs, i1k.lr, i1k.schedule, i1k.weight_decay, i1k.dropout, i1k.grad_clip) == \
        (300, 3e-3, "cosine", 0.3, 0.1, 1.0)
    assert (i1k.batch_size, i1k.warmup_steps, i1k.image_size) == (4096, 10_000, 224)
    assert i1k.steps() == round(300 * 1_281_167 / 4096)
    i21k = pretrain_recipe("imagenet21k", "ViT-B/32")
    assert (i21k.epochs, i21k.lr, i21k.schedule, i21k.weight_decay, i21k.dropout) == (90, 1e-3, "linear", 0.03, 0.1)
    jft = {m: pretrain_recipe("jft300m", m).lr for m in
           ("ViT-B/16", "ViT-L/32", "ViT-L/16", "ViT-H/14", "R50+ViT-B/16", "R50+ViT-L/32")}
    assert jft == {"ViT-B/16": 8e-4, "ViT-L/32": 6e-4, "ViT-L/16": 4e-4, "ViT-H/14": 3e-4, "R50+ViT-B/16": 8e-4,
                   "R50+ViT-L/32": 2e-4}
    assert all(pretrain_recipe("jft300m", m).weight_decay == 0.1 and pretrain_recipe("jft300m", m).dropout == 0
               for m in jft)
    with pytest.raises(ValueError, match="Table 3 has no row"):
        pretrain_recipe("jft300m", "R152x4")


def test_table4_rows():
    assert {d: (finetune_recipe(d).steps, finetune_recipe(d).lr_grid) for d in
            ("imagenet1k", "cifar10", "cifar100", "oxford_iiit_pet", "oxford_flowers102")} == {
        "imagenet1k": (20_000, (0.003, 0.01, 0.03, 0.06)),
        "cifar10": (10_000, (0.001, 0.003, 0.01, 0.03)), "cifar100": (10_000, (0.001, 0.003, 0.01, 0.03)),
        "oxford_iiit_pet": (500, (0.001, 0.003, 0.01, 0.03)), "oxford_flowers102": (500, (0.001, 0.003, 0.01, 0.03)),
    }
    assert all((r.batch_size, r.warmup_steps, r.image_size, r.grad_clip, r.crop) == (512, 500, 384, 1.0, "inception")
               for r in FINETUNE_RECIPES)
    assert [finetune_dropout(m) for m in ("ViT-L/16", "ViT-H/14", "R50+ViT-B/16", "ViT-B/16")] == [0.1, 0.1, 0.1, 0]
    with pytest.raises(ValueError, match="Table 4 has no row"):
        finetune_recipe("mnist")


def test_paper_scale_comes_from_the_tables():
    paper = SCALES["paper"]
    pre, fine = pretrain_recipe("imagenet1k", paper.vit), finetune_recipe("cifar10")
    run = paper.run_config("pretrain", "vit")
    assert (run.lr, run.weight_decay, run.schedule, run.grad_clip, run.batch_size, run.warmup_steps, run.steps,
            run.image_size, run.crop) == \
        (pre.lr, pre.weight_decay, pre.schedule, pre.grad_clip, pre.batch_size, pre.warmup_steps, pre.steps(), 224,
         "inception")
    assert run.model_overrides == {"representation_size": 768, "dropout": 0.1}
    assert run.data_format == "shards"  # ImageNet streams from tar shards (repro.data.streaming)
    assert run.data_image_size == 224  # decoded at the model's resolution (images differ in size)
    ft = paper.run_config("finetune", "vit")
    assert (ft.steps, ft.batch_size, ft.warmup_steps, ft.image_size, ft.crop, ft.data_image_size) == \
        (fine.steps, fine.batch_size, fine.warmup_steps, 384, "inception", 384)
    assert (ft.optimizer, ft.weight_decay, ft.schedule, ft.grad_clip) == ("sgd", 0.0, "cosine", 1.0)
    assert paper.finetune_lrs == fine.lr_grid and ft.model_overrides == {}


def test_pre_logits_at_pretraining_only():
    assert pretrain_model_overrides("ViT-B/16") == {"representation_size": 768}
    assert pretrain_model_overrides("R50+ViT-B/16") == {"representation_size": 768}
    assert pretrain_model_overrides("R50x1") == {}
    for scale in SCALES.values():
        assert "representation_size" in scale.run_config("pretrain", "vit").model_overrides
        assert "representation_size" not in scale.run_config("finetune", "vit").model_overrides
        assert "representation_size" not in scale.run_config("pretrain", "bit").model_overrides
        # a model named by the caller gets its own width D, not the scale's ViT's
        assert scale.run_config("pretrain", "vit", model="ViT-S/16").model_overrides["representation_size"] == 384


def test_pretrained_pre_logits_are_dropped_at_finetuning(tmp_path):
    """Through the engine at smoke scale: the pre-trained ViT has the tanh layer, the fine-tuned one has none,
    and the load report says the layer was dropped (Sec. 3.1)."""
    smoke = SCALES["smoke"]
    common = dict(out_dir=str(tmp_path / "runs"), max_train=64, max_test=32, log_every=2, steps=2)
    pre = train(smoke.run_config("pretrain", "vit", **common), progress=False)
    assert load_model(weights_path(pre)).pre_logits.fc.out_features == 64
    fine = train(smoke.run_config("finetune", "vit", **common, init_from=str(weights_path(pre))), progress=False)
    tuned = load_model(weights_path(fine))
    assert not hasattr(tuned.pre_logits, "fc") and tuned.cfg.representation_size is None
    start = read_metrics(fine)[0]
    assert "pre_logits.fc.weight" in start["init"]["dropped"]


def test_readme_shows_the_current_departures_table():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert departures_markdown() in readme, "regenerate the README's table with repro.scales.departures_markdown()"

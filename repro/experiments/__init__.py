"""One module per notebook: its per-scale settings, its runs, its table, its claims and their verdicts.

Following big_vision's per-experiment configs, each module has ``get_config(scale, ...)``, which returns the
run configs themselves (``repro.runconfig.TrainConfig``s, built as differences from the scale's by
``repro.scales.Scale.run_config``, and probe settings), and ``run(config)``, which trains them and returns the
run directories with their labels; then ``table(runs)``, ``claims(runs)`` and ``summary(runs, claims)``.
Notebooks keep the paper's text, their papermill parameters and a few calls to these, so tests call the same
functions and every notebook builds its results the same way. Every verdict is decided by ``repro.claims``.

- ``pretrain_transfer``: notebook 01 (Sec. 4.2, Table 2; the small-data end of Fig. 3; Sec. 3.2).
- ``position_embeddings``: notebook 02 (App. D.4, Table 8, every cell; Fig. 7 centre).
- ``cls_vs_gap``: notebook 03 (App. D.3, Fig. 9).
- ``data_scaling``: notebook 04 (Sec. 4.3, Fig. 3, 4: accuracy against the pre-training set size).
- ``compute_scaling``: notebook 05 (Sec. 4.4, Fig. 5).
- ``masked_patch``: notebook 06 (Sec. 4.6, App. B.1.2: masked patch prediction, its ablation).
- ``inspect_model``: notebook 07 (Sec. 4.5, Fig. 6, 7; the cost of attention, Sec. 3.1).
- ``catalog``: what every notebook runs at every scale (the README's "Scales" table).

What they share: ``settings`` (presets as differences, ``Pretraining``, checks of a notebook's parameters, the
"paper vs this notebook" table), ``probes`` (5-shot linear probes of a run, at the end and along training, kept
in ``fewshot.json``), ``sweeps`` (held-out lr choices) and ``reporting`` (the set of runs, cost columns, notes,
the closing summary).
"""

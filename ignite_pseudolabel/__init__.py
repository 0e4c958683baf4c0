"""ignite-pseudolabel: handlers that turn a PyTorch-Ignite supervised trainer semi-supervised.

The package root holds what a training script attaches or feeds to its engines: the loss and its
options, the schedules, the data wrappers, the miner, the checkpointers and the TensorBoard helper
(the names in ``__all__``). The building blocks they are made of (pure loss and selection
functions, the ramp function, the batch target, the TensorBoard handlers) live in their
submodules, e.g. ``from ignite_pseudolabel.losses import masked_cross_entropy``.

Importing the package imports no torchvision: the names that need it (:class:`WeakStrongViews`,
:func:`weak_strong_transforms`) load their module at first use, so that a training script on the
batched path (:class:`BatchViews` with kornia, :class:`DeviceBatches`) never imports torchvision.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from .alignment import DistributionAlignment
from .batch import SemiSupervisedBatch, Views
from .batch_views import BatchViews
from .checkpoint import BestCheckpoint, BestValCheckpoint, ResumeCheckpoint
from .data import SemiSupervisedLoader
from .datasets import PseudoLabeledDataset, UnlabeledDataset
from .device_data import DeviceBatches
from .losses import PseudoLabelLoss, SelfAdaptiveFairness
from .mining import PseudoLabelMiner
from .rng import RNGState
from .schedules import AlphaRamp
from .split import class_balanced_split
from .tensorboard import attach_tensorboard
from .thresholds import FixedThreshold, FlexMatchThreshold, FreeMatchThreshold, ThresholdPolicy

__version__ = "0.3.0"

__all__ = [
    "AlphaRamp",
    "BatchViews",
    "BestCheckpoint",
    "BestValCheckpoint",
    "DeviceBatches",
    "DistributionAlignment",
    "FixedThreshold",
    "FlexMatchThreshold",
    "FreeMatchThreshold",
    "PseudoLabelLoss",
    "PseudoLabelMiner",
    "PseudoLabeledDataset",
    "RNGState",
    "ResumeCheckpoint",
    "SelfAdaptiveFairness",
    "SemiSupervisedBatch",
    "SemiSupervisedLoader",
    "ThresholdPolicy",
    "UnlabeledDataset",
    "Views",
    "WeakStrongViews",
    "attach_tensorboard",
    "class_balanced_split",
    "weak_strong_transforms",
]

#: Names of ``__all__`` whose module imports torchvision: loaded at first access (name -> submodule).
_LAZY = {
    "WeakStrongViews": "augment",
    "weak_strong_transforms": "augment",
}

#: Names importable from the root in 0.2 that now live in a submodule only: name -> submodule.
#: Importing them from the root still works in 0.3 with a DeprecationWarning; 0.4 removes the aliases.
_MOVED = {
    "hard_pseudo_labels": "losses",
    "masked_cross_entropy": "losses",
    "masked_soft_cross_entropy": "losses",
    "self_adaptive_fairness": "losses",
    "sharpen": "alignment",
    "lee_ramp": "schedules",
    "select_pseudo_labels": "selection",
    "SemiSupervisedTarget": "batch",
    "prepare_semi_supervised_batch": "batch",
    "log_mining": "tensorboard",
    "MiningHandler": "tensorboard",
    "ThresholdsHandler": "tensorboard",
    "SplitIndices": "split",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # the next access is an ordinary attribute
        return value
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"ignite_pseudolabel.{name} is deprecated and will be removed in 0.4: import it from "
                  f"ignite_pseudolabel.{module} instead", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(f".{module}", __name__), name)


def __dir__() -> list[str]:
    """The module's names, the lazily loaded ones included (not the deprecated aliases)."""
    return sorted(set(globals()) | set(_LAZY))

"""ignite-pseudolabel: handlers that turn a PyTorch-Ignite supervised trainer semi-supervised.

The public API is flat: everything below is importable from ``ignite_pseudolabel``.
"""

from .alignment import DistributionAlignment, sharpen
from .augment import WeakStrongViews, weak_strong_transforms
from .batch import SemiSupervisedBatch, SemiSupervisedTarget, Views, prepare_semi_supervised_batch
from .checkpoint import BestCheckpoint, BestValCheckpoint, ResumeCheckpoint
from .data import SemiSupervisedLoader
from .datasets import PseudoLabeledDataset, UnlabeledDataset
from .losses import (
    PseudoLabelLoss,
    SelfAdaptiveFairness,
    hard_pseudo_labels,
    masked_cross_entropy,
    masked_soft_cross_entropy,
    self_adaptive_fairness,
)
from .mining import PseudoLabelMiner, select_pseudo_labels
from .rng import RNGState
from .schedules import AlphaRamp, lee_ramp
from .split import SplitIndices, class_balanced_split
from .tensorboard import MiningHandler, ThresholdsHandler, attach_tensorboard, log_mining
from .thresholds import FixedThreshold, FlexMatchThreshold, FreeMatchThreshold, ThresholdPolicy

__version__ = "0.2.0"

__all__ = [
    "AlphaRamp",
    "BestCheckpoint",
    "BestValCheckpoint",
    "DistributionAlignment",
    "FixedThreshold",
    "FlexMatchThreshold",
    "FreeMatchThreshold",
    "MiningHandler",
    "PseudoLabelLoss",
    "PseudoLabelMiner",
    "PseudoLabeledDataset",
    "RNGState",
    "ResumeCheckpoint",
    "SelfAdaptiveFairness",
    "SemiSupervisedBatch",
    "SemiSupervisedLoader",
    "SemiSupervisedTarget",
    "SplitIndices",
    "ThresholdPolicy",
    "ThresholdsHandler",
    "UnlabeledDataset",
    "Views",
    "WeakStrongViews",
    "attach_tensorboard",
    "class_balanced_split",
    "hard_pseudo_labels",
    "lee_ramp",
    "log_mining",
    "masked_cross_entropy",
    "masked_soft_cross_entropy",
    "prepare_semi_supervised_batch",
    "select_pseudo_labels",
    "self_adaptive_fairness",
    "sharpen",
    "weak_strong_transforms",
]

"""ignite-pseudolabel: handlers that turn a PyTorch-Ignite supervised trainer semi-supervised.

The public API is flat: everything below is importable from ``ignite_pseudolabel``.
"""

from .alignment import DistributionAlignment, sharpen
from .augment import Views, WeakStrongViews, weak_strong_transforms
from .checkpoint import BestValCheckpoint
from .data import SemiSupervisedBatch, SemiSupervisedLoader, SemiSupervisedTarget
from .datasets import PseudoLabeledDataset, UnlabeledDataset
from .losses import PseudoLabelLoss, hard_pseudo_labels, masked_cross_entropy, masked_soft_cross_entropy
from .mining import PseudoLabelMiner, select_pseudo_labels
from .rng import RNGState
from .schedules import AlphaRamp, lee_ramp
from .split import SplitIndices, class_balanced_split
from .tensorboard import attach_tensorboard, log_mining
from .thresholds import FixedThreshold, FlexMatchThreshold, FreeMatchThreshold, ThresholdPolicy

__version__ = "0.2.0"

__all__ = [
    "AlphaRamp",
    "BestValCheckpoint",
    "DistributionAlignment",
    "FixedThreshold",
    "FlexMatchThreshold",
    "FreeMatchThreshold",
    "PseudoLabelLoss",
    "PseudoLabelMiner",
    "PseudoLabeledDataset",
    "RNGState",
    "SemiSupervisedBatch",
    "SemiSupervisedLoader",
    "SemiSupervisedTarget",
    "SplitIndices",
    "ThresholdPolicy",
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
    "select_pseudo_labels",
    "sharpen",
    "weak_strong_transforms",
]

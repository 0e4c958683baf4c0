"""Weak and strong views of unlabeled samples for consistency training (FixMatch), from torchvision v2."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, NamedTuple

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ._validation import check_choice, check_float, check_int

__all__ = ["Views", "WeakStrongViews", "weak_strong_transforms"]


class Views(NamedTuple):
    """A weakly and a strongly augmented view of the same unlabeled sample(s), and their position(s).

    ``DataLoader``'s default collation turns a list of ``Views`` into one ``Views`` of batched tensors,
    which :class:`~ignite_pseudolabel.PseudoLabelLoss` recognises: pseudo-labels come from the weak
    view and train the prediction on the strong view. ``sample_index`` is the position of the sample in the
    unlabeled dataset (used by per-sample statistics such as FlexMatch's, and to measure
    pseudo-label accuracy against held-back labels).
    """

    weak: Any
    strong: Any
    sample_index: Any


class WeakStrongViews(Dataset):
    """Wraps an inputs-only dataset so that each item is ``Views(weak(x), strong(x), index)``.

    The transforms run per sample, in the ``DataLoader`` workers.

    Args:
        dataset: the unlabeled dataset, returning raw inputs (e.g. ``uint8`` image tensors or PIL images).
        weak: the weak augmentation (e.g. shifts).
        strong: the strong augmentation (e.g. RandAugment and Cutout).

    Examples:
        >>> images = torch.randint(0, 256, (10, 1, 28, 28), dtype=torch.uint8)
        >>> weak, strong = weak_strong_transforms("digits", mean=(0.13,), std=(0.31,))
        >>> views = WeakStrongViews(images, weak, strong)[3]
        >>> views.weak.shape, views.strong.dtype, views.sample_index
        (torch.Size([1, 28, 28]), torch.float32, 3)

    .. versionadded:: 0.2.0
    """

    def __init__(self, dataset: Any, weak: Callable[[Any], Any], strong: Callable[[Any], Any]) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"Argument dataset should be a map-style dataset, but given {type(dataset).__name__}")
        for name, fn in (("weak", weak), ("strong", strong)):
            if not callable(fn):
                raise TypeError(f"Argument {name} should be a callable transform, but given {type(fn).__name__}")
        self.dataset, self.weak, self.strong = dataset, weak, strong

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Views:
        x = self.dataset[i]
        if isinstance(x, (tuple, list)):
            raise TypeError(f"WeakStrongViews expects an inputs-only dataset, but item {i} is a {type(x).__name__}; "
                            "wrap a labeled dataset in UnlabeledDataset first")
        return Views(self.weak(x), self.strong(x), i)


def weak_strong_transforms(
    kind: str = "natural",
    *,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.5,),
    size: int | None = None,
    num_ops: int = 2,
    magnitude: int = 10,
    cutout: float = 0.5,
    policy: str = "randaugment",
) -> tuple[v2.Transform, v2.Transform]:
    """FixMatch's weak and strong augmentations built from torchvision v2 transforms.

    * ``"natural"`` images (CIFAR-like): weak = horizontal flip + random crop with 12.5% reflect
      padding (needs ``size``); strong = weak + RandAugment (or TrivialAugment) + Cutout.
    * ``"digits"`` (MNIST-like, where flips change the class): weak = random shift of up to 12.5%;
      strong = weak + RandAugment (or TrivialAugment) + Cutout. No flips.

    Both end with ``ToDtype(float32, scale=True)`` and ``Normalize(mean, std)``; Cutout is
    ``RandomErasing`` of a square patch covering up to ``cutout`` of the image side (FixMatch: 0.5).
    Inputs are ``uint8`` tensor images ``(C, H, W)`` (or PIL images).

    Args:
        kind: ``"natural"`` or ``"digits"``.
        mean: per-channel mean for normalisation.
        std: per-channel standard deviation for normalisation.
        size: image side for the random crop of ``"natural"`` images.
        num_ops: RandAugment operations per image (FixMatch: 2).
        magnitude: RandAugment magnitude (0-30 in torchvision; FixMatch samples it, 10 is typical).
        cutout: largest Cutout side as a fraction of the image side, in [0, 1] (0 disables it).
        policy: ``"randaugment"`` or ``"trivialaugment"``.

    Returns:
        ``(weak, strong)`` transforms.
    """
    check_choice("kind", kind, ("natural", "digits"))
    check_choice("policy", policy, ("randaugment", "trivialaugment"))
    num_ops = check_int("num_ops", num_ops, minimum=0)
    magnitude = check_int("magnitude", magnitude, minimum=0)
    cutout = check_float("cutout", cutout, low=0.0, high=1.0)
    if len(mean) != len(std):
        raise ValueError(f"Arguments mean and std should have the same length, but given {len(mean)} and {len(std)}")
    if kind == "natural":
        if size is None:
            raise ValueError("Argument size (the image side) is required for kind='natural' (random crop)")
        size = check_int("size", size, minimum=1)
        geometric: list[Any] = [v2.RandomHorizontalFlip(), v2.RandomCrop(size, padding=max(1, size // 8),
                                                                           padding_mode="reflect")]
    else:
        geometric = [v2.RandomAffine(degrees=0, translate=(0.125, 0.125))]
    to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    augment = v2.RandAugment(num_ops=num_ops, magnitude=magnitude) if policy == "randaugment" \
        else v2.TrivialAugmentWide()
    # Cutout: one square patch whose side is up to `cutout` of the image side (area up to cutout^2).
    erase = [v2.RandomErasing(p=1.0, scale=(0.0001, max(cutout**2, 0.0002)), ratio=(1.0, 1.0), value=0)] \
        if cutout > 0 else []
    weak = v2.Compose([*geometric, *to_float])
    strong = v2.Compose([*geometric, augment, *to_float, *erase])
    return weak, strong

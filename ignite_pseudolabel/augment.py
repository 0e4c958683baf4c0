"""Weak and strong views of unlabeled samples for consistency training (FixMatch), from torchvision v2.

Per sample, in the ``DataLoader``. :class:`~ignite_pseudolabel.batch_views.BatchViews` makes the same
views of whole batches on the trainer's device (kornia), much faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ._validation import check_inputs_only, check_map_style
from .batch import Views
from .view_options import CUTOUT_SIDES, MAX_MAGNITUDE, ViewOptions  # noqa: F401  (MAX_MAGNITUDE: re-exported)

# Views moved to .batch, MAX_MAGNITUDE and CUTOUT_SIDES to .view_options; importing them from here still works
__all__ = ["WeakStrongViews", "weak_strong_transforms"]


class WeakStrongViews(Dataset):
    """Wraps an inputs-only dataset so that each item is ``Views(weak(x), strong(x), index)``.

    The transforms run per sample, in the ``DataLoader`` workers. For the same views made on whole
    batches on the trainer's device (several times faster, and the only fast path on a GPU), feed
    raw batches and give :class:`~ignite_pseudolabel.batch_views.BatchViews` to
    ``PseudoLabelLoss(views=...)`` instead.

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
        check_map_style("dataset", dataset)
        for name, fn in (("weak", weak), ("strong", strong)):
            if not callable(fn):
                raise TypeError(f"Argument {name} should be a callable transform, but given {type(fn).__name__}")
        self.dataset, self.weak, self.strong = dataset, weak, strong

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> Views:
        x = check_inputs_only("WeakStrongViews", self.dataset[i], f"item {i} is", " first")
        return Views(self.weak(x), self.strong(x), i)


def weak_strong_transforms(
    kind: str = "natural",
    *,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.5,),
    size: int | None = None,
    num_ops: int = 2,
    magnitude: int | None = None,
    cutout: float = 0.5,
    policy: str = "randaugment",
    strength: str = "torchvision",
) -> tuple[v2.Transform, v2.Transform]:
    """FixMatch's weak and strong augmentations built from torchvision v2 transforms.

    * ``"natural"`` images (CIFAR-like): weak = horizontal flip + random crop with 12.5% reflect
      padding (needs ``size``); strong = weak + RandAugment (or TrivialAugment) + Cutout.
    * ``"digits"`` (MNIST-like, where flips change the class): weak = random shift of up to 12.5%;
      strong = weak + RandAugment (or TrivialAugment) + Cutout. No flips.

    Both end with ``ToDtype(float32, scale=True)`` and ``Normalize(mean, std)``; Cutout is
    ``RandomErasing`` of a square patch, set to 0 after normalisation (the mean colour), always
    applied. Inputs are ``uint8`` tensor images ``(C, H, W)`` (or PIL images). ``strength`` sets how
    the strong view samples:

    * ``"torchvision"`` (the default): torchvision's RandAugment, every image with the same
      ``magnitude`` (default 10); the Cutout area is uniform up to ``cutout**2`` of the image.
    * ``"fixmatch"``: as FixMatch (and USB, TorchSSL) sample it: each of the ``num_ops`` RandAugment
      operations draws its own magnitude uniformly from 0 to ``magnitude`` (default 30, the whole range
      of torchvision's operations; its largest translation, 45% of the side, exceeds FixMatch's 30%),
      and the Cutout side is uniform up to ``cutout`` of the image side (among 16 equally spaced
      values; on images of at least 16 pixels a side every patch covers a pixel). USB and TorchSSL use
      ``num_ops=3``. TrivialAugment is the same in both.

    Args:
        kind: ``"natural"`` or ``"digits"``.
        mean: per-channel mean for normalisation.
        std: per-channel standard deviation for normalisation.
        size: image side for the random crop of ``"natural"`` images.
        num_ops: RandAugment operations per image (FixMatch: 2).
        magnitude: RandAugment magnitude, in [0, 30]: the magnitude of every image (default 10), or with
            ``strength="fixmatch"`` the largest one drawn (default 30).
        cutout: largest Cutout side as a fraction of the image side, in [0, 1] (0 disables it; a
            patch that would not fit strictly inside the image is not erased).
        policy: ``"randaugment"`` or ``"trivialaugment"``.
        strength: ``"torchvision"`` or ``"fixmatch"``, see above.

    Returns:
        ``(weak, strong)`` transforms.

    Examples:
        >>> weak, strong = weak_strong_transforms("natural", size=32, num_ops=3, strength="fixmatch")
        >>> _ = torch.manual_seed(0)
        >>> strong(torch.full((3, 32, 32), 255, dtype=torch.uint8)).shape
        torch.Size([3, 32, 32])

    .. versionchanged:: 0.3.0
        ``strength``.
    """
    o = ViewOptions.check(kind, mean=mean, std=std, size=size, num_ops=num_ops, magnitude=magnitude, cutout=cutout,
                          policy=policy, strength=strength)
    geometric: list[Any] = [v2.RandomAffine(degrees=0, translate=(0.125, 0.125))]
    if o.size is not None and o.kind == "natural":
        geometric = [v2.RandomHorizontalFlip(),
                     v2.RandomCrop(o.size, padding=max(1, o.size // 8), padding_mode="reflect")]
    to_float = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(o.mean), list(o.std))]
    augment: v2.Transform
    if o.policy == "trivialaugment":
        augment = v2.TrivialAugmentWide()
    elif o.strength == "fixmatch" and o.num_ops > 0:
        # Each operation with its own magnitude: one-operation RandAugments, each picked at random per image.
        augment = v2.Compose([v2.RandomChoice([v2.RandAugment(num_ops=1, magnitude=m) for m in range(o.magnitude + 1)])
                              for _ in range(o.num_ops)])
    else:
        augment = v2.RandAugment(num_ops=o.num_ops, magnitude=o.magnitude)
    # Cutout: one square patch whose side is up to `cutout` of the image side.
    erase: list[v2.Transform] = []
    if o.cutout > 0 and o.strength == "fixmatch":  # side uniform up to `cutout`
        sides = [o.cutout * k / CUTOUT_SIDES for k in range(1, CUTOUT_SIDES + 1)]
        erase = [v2.RandomChoice([v2.RandomErasing(p=1.0, scale=(f * f, f * f), ratio=(1.0, 1.0), value=0)
                                  for f in sides])]
    elif o.cutout > 0:  # area uniform up to `cutout`^2
        erase = [v2.RandomErasing(p=1.0, scale=(0.0001, max(o.cutout**2, 0.0002)), ratio=(1.0, 1.0), value=0)]
    weak = v2.Compose([*geometric, *to_float])
    strong = v2.Compose([*geometric, augment, *to_float, *erase])
    return weak, strong

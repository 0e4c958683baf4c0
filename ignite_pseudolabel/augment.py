"""Weak and strong views of unlabeled samples for consistency training (FixMatch), from torchvision v2.

Per sample, in the ``DataLoader``. :class:`~ignite_pseudolabel.batch_views.BatchViews` makes the same
views of whole batches on the trainer's device (kornia), much faster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ._validation import check_float, check_inputs_only, check_int, check_map_style
from .batch import Views
from .randaugment import OPERATIONS, fixmatch_value
from .view_ops import Cutout, RandomSource
from .view_options import CUTOUT_SIDES, MAX_MAGNITUDE, ViewOptions  # noqa: F401  (MAX_MAGNITUDE: re-exported)

# Views moved to .batch, MAX_MAGNITUDE and CUTOUT_SIDES to .view_options; importing them from here still works
__all__ = ["FixMatchCutout", "FixMatchRandAugment", "WeakStrongViews", "weak_strong_transforms"]


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


def _operation(image: Any, name: str, value: float) -> Any:
    """RandAugment's operation ``name`` with its value (see :mod:`~ignite_pseudolabel.randaugment`) on a ``uint8``
    tensor image or a PIL image, through torchvision's functional API as its ``RandAugment`` applies it."""
    nearest = v2.InterpolationMode.NEAREST
    shear = math.degrees(math.atan(value))
    operations: dict[str, Callable[[], Any]] = {
        "identity": lambda: image,
        "shear_x": lambda: F.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=[shear, 0.0],
                                    interpolation=nearest, center=[0, 0]),
        "shear_y": lambda: F.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, shear],
                                    interpolation=nearest, center=[0, 0]),
        "translate_x": lambda: F.affine(image, angle=0.0, translate=[int(value), 0], scale=1.0, shear=[0.0, 0.0],
                                        interpolation=nearest),
        "translate_y": lambda: F.affine(image, angle=0.0, translate=[0, int(value)], scale=1.0, shear=[0.0, 0.0],
                                        interpolation=nearest),
        "rotate": lambda: F.rotate(image, angle=value, interpolation=nearest),
        "brightness": lambda: F.adjust_brightness(image, value),
        "color": lambda: F.adjust_saturation(image, value),
        "contrast": lambda: F.adjust_contrast(image, value),
        "sharpness": lambda: F.adjust_sharpness(image, value),
        "posterize": lambda: F.posterize(image, bits=int(value)),
        "solarize": lambda: image if value > 1.0 else F.solarize(image, threshold=255.0 * value),
        "autocontrast": lambda: F.autocontrast(image),
        "equalize": lambda: F.equalize(image),
    }
    return operations[name]()


class FixMatchRandAugment(v2.Transform):
    """USB's RandAugment, the strong augmentation of ``strength="fixmatch"``, for one image at a time.

    Each of ``num_ops`` rounds picks one of the 14 operations of
    :data:`~ignite_pseudolabel.randaugment.OPERATIONS` uniformly and draws its value uniformly in USB's
    fixed range (:data:`~ignite_pseudolabel.randaugment.FIXMATCH_RANGES`: no magnitude, no sign). The
    operations are torchvision's (``torchvision.transforms.v2.functional``, as its ``RandAugment``
    applies them: nearest-pixel geometry, shears about the top-left corner). Every draw comes from
    torch's global CPU generator, as torchvision's transforms draw theirs. Inputs: ``uint8`` tensor
    images ``(C, H, W)`` or PIL images. Cutout, the last step of USB's RandAugment, is
    :class:`FixMatchCutout`, after normalisation.

    Args:
        num_ops: operations per image, >= 0 (FixMatch: 2; USB: 3).

    Examples:
        >>> augment = FixMatchRandAugment(num_ops=2)
        >>> _ = torch.manual_seed(4)
        >>> params = augment.make_params([torch.zeros(1, 28, 28, dtype=torch.uint8)])  # (name, value) per round
        >>> [(name, round(value, 2)) for name, value in params["operations"]]  # 6 bits kept; -17.4 degrees
        [('posterize', 6.0), ('rotate', -17.4)]
        >>> augment(torch.zeros(1, 28, 28, dtype=torch.uint8)).shape
        torch.Size([1, 28, 28])

    .. versionadded:: 0.3.0
    """

    def __init__(self, num_ops: int = 2) -> None:
        super().__init__()
        self.num_ops = check_int("num_ops", num_ops, minimum=0)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = F.get_size(flat_inputs[0])
        operations = []
        for _ in range(self.num_ops):
            name = OPERATIONS[int(torch.randint(len(OPERATIONS), ()))]
            operations.append((name, fixmatch_value(name, torch.rand(()), height, width).item()))
        return {"operations": operations}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        for name, value in params["operations"]:
            inpt = _operation(inpt, name, value)
        return inpt


class FixMatchCutout(v2.Transform):
    """USB's Cutout, the last step of ``strength="fixmatch"``, for one (normalised) image at a time.

    A square of side ``round(f * sqrt(H * W))`` pixels, ``f`` uniform in ``[0, fraction)``, centred on
    a pixel drawn uniformly over the image and clipped at its borders, set to ``value`` (0 after
    normalisation: the mean colour, where USB paints grey); :class:`~ignite_pseudolabel.view_ops.Cutout`
    with ``sides="continuous"``, drawn from torch's global CPU generator. Inputs: tensor images
    ``(C, H, W)``, on any device.

    Args:
        fraction: largest side as a fraction of the image side, in (0, 1] (USB: 0.5).
        value: what the patch is set to.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> erased = FixMatchCutout(0.5)(torch.ones(1, 8, 8))
        >>> erased.shape, bool((erased == 0).any())
        (torch.Size([1, 8, 8]), True)

    .. versionadded:: 0.3.0
    """

    def __init__(self, fraction: float = 0.5, value: float = 0.0) -> None:
        super().__init__()
        self.cutout, self.value = Cutout(fraction, sides="continuous"), check_float("value", value)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = F.get_size(flat_inputs[0])
        source = RandomSource(flat_inputs[0].device, torch.default_generator)  # torch's CPU generator, any device
        return {"patch": self.cutout.draw(1, height, width, source)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return Cutout.apply(inpt.unsqueeze(0), params["patch"], self.value)[0]


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
    strength: str = "fixmatch",
) -> tuple[v2.Transform, v2.Transform]:
    """FixMatch's weak and strong augmentations built from torchvision v2 transforms.

    * ``"natural"`` images (CIFAR-like): weak = horizontal flip + random crop with 12.5% reflect
      padding (needs ``size``); strong = weak + RandAugment (or TrivialAugment) + Cutout.
    * ``"digits"`` (MNIST-like, where flips change the class): weak = random shift of up to 12.5%;
      strong = weak + RandAugment (or TrivialAugment) + Cutout. No flips.

    Both end with ``ToDtype(float32, scale=True)`` and ``Normalize(mean, std)``; Cutout erases one
    square patch, set to 0 after normalisation (the mean colour; USB paints it grey), always applied.
    Inputs are ``uint8`` tensor images ``(C, H, W)`` (or PIL images). ``strength`` sets how the
    strong view samples (the ranges of every operation are tabled in the recipes how-to, "Strong
    view strengths"):

    * ``"fixmatch"`` (the default): USB's RandAugment, with which FixMatch's results are reproduced
      (:class:`~ignite_pseudolabel.augment.FixMatchRandAugment`): each of the ``num_ops`` operations is
      one of the 14 drawn uniformly, with a value drawn uniformly in a fixed range (enhance factors in [0.05, 0.95],
      rotations up to 30 degrees, shears up to 0.3, translations up to 30% of the side, posterize to
      4-7 bits, a solarize threshold anywhere in [0, 256]); then Cutout of a side uniform up to
      ``cutout`` of the image side, centred anywhere and clipped at the borders
      (:class:`~ignite_pseudolabel.augment.FixMatchCutout`). No ``magnitude``. USB uses ``num_ops=3``,
      the FixMatch paper 2 (our default).
    * ``"fixmatch-torchvision"``: torchvision's RandAugment ranges sampled per operation: each
      operation draws its own magnitude bin uniformly from 0 to ``magnitude`` (default 30, the whole
      range; the largest translation is then 45% of the side, enhance factors 1 +- 0.9) and a random
      sign, and the Cutout side is uniform up to ``cutout`` of the image side (among 16 equally
      spaced values, placed inside the image): what ``"fixmatch"`` meant before it took USB's
      ranges.
    * ``"torchvision"``: torchvision's RandAugment, every image with the same ``magnitude``
      (default 10); the Cutout area is uniform up to ``cutout**2`` of the image (``RandomErasing``).

    TrivialAugment (``policy="trivialaugment"``) is torchvision's in every strength; only its Cutout
    follows the strength.

    Args:
        kind: ``"natural"`` or ``"digits"``.
        mean: per-channel mean for normalisation.
        std: per-channel standard deviation for normalisation.
        size: image side for the random crop of ``"natural"`` images.
        num_ops: RandAugment operations per image (FixMatch: 2).
        magnitude: RandAugment magnitude, in [0, 30], for the two torchvision strengths: the
            magnitude of every image (``"torchvision"``, default 10), or the largest one drawn
            (``"fixmatch-torchvision"``, default 30). ``strength="fixmatch"`` takes none.
        cutout: largest Cutout side as a fraction of the image side, in [0, 1] (0 disables it).
        policy: ``"randaugment"`` or ``"trivialaugment"``.
        strength: ``"fixmatch"``, ``"fixmatch-torchvision"`` or ``"torchvision"``, see above.

    Returns:
        ``(weak, strong)`` transforms.

    Examples:
        >>> weak, strong = weak_strong_transforms("natural", size=32, num_ops=3)
        >>> _ = torch.manual_seed(0)
        >>> strong(torch.full((3, 32, 32), 255, dtype=torch.uint8)).shape
        torch.Size([3, 32, 32])
        >>> type(strong.transforms[2]).__name__, type(strong.transforms[-1]).__name__
        ('FixMatchRandAugment', 'FixMatchCutout')

    .. versionchanged:: 0.3.0
        ``strength``; ``strength="fixmatch"`` (USB's ranges) is the default.
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
    elif o.strength == "fixmatch":
        augment = FixMatchRandAugment(o.num_ops)
    elif o.strength == "fixmatch-torchvision" and o.num_ops > 0:
        # Each operation with its own magnitude: one-operation RandAugments, each picked at random per image.
        augment = v2.Compose([v2.RandomChoice([v2.RandAugment(num_ops=1, magnitude=m) for m in range(o.magnitude + 1)])
                              for _ in range(o.num_ops)])
    else:
        augment = v2.RandAugment(num_ops=o.num_ops, magnitude=o.magnitude)
    # Cutout: one square patch whose side is up to `cutout` of the image side.
    erase: list[v2.Transform] = []
    if o.cutout > 0 and o.strength == "fixmatch":  # side uniform up to `cutout`, centred anywhere
        erase = [FixMatchCutout(o.cutout)]
    elif o.cutout > 0 and o.strength == "fixmatch-torchvision":  # side uniform up to `cutout`, among 16
        sides = [o.cutout * k / CUTOUT_SIDES for k in range(1, CUTOUT_SIDES + 1)]
        erase = [v2.RandomChoice([v2.RandomErasing(p=1.0, scale=(f * f, f * f), ratio=(1.0, 1.0), value=0)
                                  for f in sides])]
    elif o.cutout > 0:  # area uniform up to `cutout`^2
        erase = [v2.RandomErasing(p=1.0, scale=(0.0001, max(o.cutout**2, 0.0002)), ratio=(1.0, 1.0), value=0)]
    weak = v2.Compose([*geometric, *to_float])
    strong = v2.Compose([*geometric, augment, *to_float, *erase])
    return weak, strong

"""Weak and strong views of whole batches, made on the trainer's device (FixMatch's augmentation, batched).

:class:`BatchViews` is the batched counterpart of :class:`~ignite_pseudolabel.WeakStrongViews`:
instead of transforming one image at a time in the ``DataLoader``, it transforms the raw ``uint8``
batch after ``prepare_batch`` has moved it to the device, with independent random parameters for
every sample. Give it to ``PseudoLabelLoss(views=...)`` (or ``prepare_semi_supervised_batch(...,
views=...)``) and feed the unlabeled stream raw batches: ``uint8`` image tensors, or
:class:`RawBatch` (images and their positions in the unlabeled dataset, which per-sample statistics
such as FlexMatch's need). The weak and strong views then go through the model in the same single
forward pass as :class:`~ignite_pseudolabel.Views`.

The augmentations are those of :func:`~ignite_pseudolabel.weak_strong_transforms`, at the same
strengths: with the ``kornia`` backend (``pip install ignite-pseudolabel[fast]``) the shifts, flips
and crops are kornia's augmentations and the RandAugment / TrivialAugment operations are kornia's
image functions, one operation drawn per sample and per round, each giving torchvision's image for the
same operation and magnitude (shears about the top-left corner, whole-pixel translations, results
truncated to the 8-bit grid; tested operation by operation; sharpness may differ by one grey level,
as kornia does not round the blurred image as torchvision's ``uint8`` path does); with the
``torchvision`` backend (the fallback when kornia is absent) the torchvision transforms run once per
image, on the device, drawing their random parameters in :class:`~ignite_pseudolabel.WeakStrongViews`'
order: with
:class:`~ignite_pseudolabel.device_data.DeviceBatches` in place of a ``DataLoader`` over
``WeakStrongViews``, a seeded run is the per-image run exactly, on CPU (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn

from ._validation import check_choice, check_float, check_int
from .augment import CUTOUT_SIDES, MAX_MAGNITUDE, weak_strong_transforms
from .batch import RawBatch, Views  # RawBatch is defined with the batch types; importable here still

__all__ = ["BatchViews"]

_INSTALL_HINT = ("pip install 'ignite-pseudolabel[fast]' (or pip install kornia), or use backend='torchvision' "
                 "(the same transforms, one image at a time)")


def _import_kornia() -> Any:
    try:
        import kornia
    except ImportError as error:
        raise ImportError(f"BatchViews(backend='kornia') needs kornia, which is not installed: {_INSTALL_HINT}") \
            from error
    return kornia


def _kornia_available() -> bool:
    try:
        _import_kornia()
    except ImportError:
        return False
    return True


# RandAugment (Cubuk et al., 2020) and TrivialAugment-Wide (Mueller and Hutter, 2021) operations, with the
# largest magnitude of each as torchvision defines it (magnitude bin 30 of 0..30). Signed operations get a
# random sign per sample. Translations: a fraction of the side (RandAugment) or pixels (TrivialAugment-Wide).
_OPERATIONS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
               "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")
_SPACES = {
    "randaugment": {"shear": 0.3, "translate": 150.0 / 331.0, "translate_in_pixels": False, "rotate": 30.0,
                    "enhance": 0.9, "posterize_bits": 4},
    "trivialaugment": {"shear": 0.99, "translate": 32.0, "translate_in_pixels": True, "rotate": 135.0,
                       "enhance": 0.99, "posterize_bits": 6},
}


class _BatchRandAugment(nn.Module):
    """RandAugment / TrivialAugment-Wide on a float batch in [0, 1]: every sample draws its own operations.

    Each of the ``num_ops`` rounds draws one operation, one magnitude bin and one sign per sample; the
    geometric operations of a round are one affine warp (kornia), the photometric ones are kornia's
    image functions applied to the whole batch and kept where selected (``torch.where``), so the
    round costs the same whatever the draw, with no host synchronisation.
    """

    def __init__(self, policy: str, num_ops: int, magnitude: int, per_op_magnitude: bool) -> None:
        super().__init__()
        self.space = _SPACES[policy]
        self.num_ops = 1 if policy == "trivialaugment" else num_ops
        self.magnitude = magnitude
        # TrivialAugment draws the magnitude bin uniformly; "fixmatch" RandAugment uniformly up to `magnitude`.
        self.random_magnitude = policy == "trivialaugment" or per_op_magnitude
        self.max_bin = MAX_MAGNITUDE if policy == "trivialaugment" else magnitude

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.num_ops):
            x = self._round(x)
        return x

    def _round(self, x: torch.Tensor) -> torch.Tensor:
        n, device = x.shape[0], x.device
        op = torch.randint(len(_OPERATIONS), (n,), device=device)
        if self.random_magnitude:
            level = torch.randint(self.max_bin + 1, (n,), device=device).to(x.dtype) / MAX_MAGNITUDE
        else:
            level = torch.full((n,), self.magnitude / MAX_MAGNITUDE, device=device, dtype=x.dtype)
        sign = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0).to(x.dtype)
        return _apply_operations(x, op, level, sign, self.space)


def _apply_operations(x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor,
                      space: dict[str, Any]) -> torch.Tensor:
    """Applies operation ``_OPERATIONS[op[i]]`` at magnitude ``level[i]`` in [0, 1] (signed by ``sign[i]``
    where the operation is) to sample ``i`` of a float batch in [0, 1], as torchvision's RandAugment does.

    The geometric operations are one affine warp (kornia); the photometric ones are kornia's image
    functions applied to the whole batch and kept where selected (``torch.where``), so the cost does
    not depend on the draw and nothing waits for the host.
    """
    kornia = _import_kornia()
    n, channels, height, width = x.shape
    device = x.device
    signed = level * sign

    def chosen(name: str) -> torch.Tensor:
        return op == _OPERATIONS.index(name)

    def amount(name: str, largest: float) -> torch.Tensor:
        return torch.where(chosen(name), signed * largest, 0.0)

    # Geometric operations: one affine warp, the identity for the other samples. As torchvision: rotations
    # and translations about the image centre (translations truncated to whole pixels), shears about the
    # top-left corner (which also shifts the image), angles counter-clockwise.
    pixels_x, pixels_y = (1.0, 1.0) if space["translate_in_pixels"] else (width, height)
    translations = torch.stack([amount("translate_x", space["translate"] * pixels_x),
                                amount("translate_y", space["translate"] * pixels_y)], dim=1).trunc()
    sheared = chosen("shear_x") | chosen("shear_y")  # the corner of the top-left pixel is at (-0.5, -0.5)
    center = torch.stack([torch.where(sheared, -0.5, (width - 1) / 2),
                          torch.where(sheared, -0.5, (height - 1) / 2)], dim=1).to(x.dtype)
    matrix = kornia.geometry.transform.get_affine_matrix2d(
        translations, center, torch.ones(n, 2, device=device, dtype=x.dtype), -amount("rotate", space["rotate"]),
        torch.atan(amount("shear_x", space["shear"])), torch.atan(amount("shear_y", space["shear"])))
    warped = kornia.geometry.transform.warp_affine(x, matrix[:, :2], (height, width), mode="nearest",
                                                   padding_mode="zeros")
    geometric = sum(chosen(name) for name in _GEOMETRIC)
    out = torch.where(_rows(geometric.bool()), warped, x)

    # Photometric operations on the input, each kept for the samples that drew it.
    enhance = kornia.enhance
    factor = 1.0 + signed * space["enhance"]
    bins = torch.round(level * MAX_MAGNITUDE / (MAX_MAGNITUDE / space["posterize_bits"]))
    photometric: dict[str, Callable[[], torch.Tensor]] = {
        "brightness": lambda: (x * _rows(factor)).clamp(0.0, 1.0),  # blend with black, as torchvision
        "contrast": lambda: enhance.adjust_contrast_with_mean_subtraction(x, factor),
        "sharpness": lambda: enhance.sharpness(x, factor),
        "posterize": lambda: enhance.posterize(x, (8 - bins).to(torch.int64)),
        "solarize": lambda: enhance.solarize(x, 1.0 - level),
        "autocontrast": lambda: _autocontrast(x),
        "equalize": lambda: enhance.equalize(x),
    }
    if channels == 3:  # saturation; an identity on other images, as in torchvision
        photometric["color"] = lambda: _blend(x, kornia.color.rgb_to_grayscale(x), factor)
    for name, fn in photometric.items():
        out = torch.where(_rows(chosen(name)), fn(), out)
    # Back on the 8-bit grid, truncated as torchvision's operations on uint8 images do (the small margin
    # keeps values already on the grid there despite float rounding).
    return torch.floor(out * 255.0 + 1e-3) / 255.0


def _rows(values: torch.Tensor) -> torch.Tensor:
    """A per-sample ``(N,)`` tensor shaped to broadcast over ``(N, C, H, W)``."""
    return values.view(-1, 1, 1, 1)


def _blend(image: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (_rows(factor) * image + (1 - _rows(factor)) * other).clamp(0.0, 1.0)


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Per image and channel, stretches [min, max] to [0, 1] (unchanged where min == max), as torchvision."""
    low, high = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    flat = high <= low
    scale = torch.where(flat, 1.0, 1.0 / (high - low).clamp(min=1e-12))
    return ((x - torch.where(flat, 0.0, low)) * scale).clamp(0.0, 1.0)


def _cutout(x: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """Sets one square patch per image to 0, of ``side`` pixels (per sample; 0: none), placed inside the image."""
    n, _, height, width = x.shape
    side = torch.where((side < height) & (side < width), side, 0)  # a patch that does not fit is not erased
    top = (torch.rand(n, device=x.device) * (height - side + 1)).floor()
    left = (torch.rand(n, device=x.device) * (width - side + 1)).floor()
    rows = torch.arange(height, device=x.device).view(1, -1)
    cols = torch.arange(width, device=x.device).view(1, -1)
    inside_rows = (rows >= top.view(-1, 1)) & (rows < (top + side).view(-1, 1))
    inside_cols = (cols >= left.view(-1, 1)) & (cols < (left + side).view(-1, 1))
    patch = inside_rows.unsqueeze(2) & inside_cols.unsqueeze(1)
    return x.masked_fill(patch.unsqueeze(1), 0.0)


class BatchViews:
    """FixMatch's weak and strong views of whole batches, on the device of the batch.

    Takes the same arguments as :func:`~ignite_pseudolabel.weak_strong_transforms` and makes the
    same augmentations, at the same strengths (no flips for ``"digits"``), but on a batch of raw
    ``uint8`` images ``(N, C, H, W)`` at once, each sample with its own random parameters. Call it
    on a raw batch (a tensor or a :class:`RawBatch`) to get :class:`~ignite_pseudolabel.Views`;
    :meth:`weak` alone augments a labeled batch. Pass it to ``PseudoLabelLoss(views=...)`` so that
    its ``prepare_batch`` applies it after moving the raw batch to the trainer's device.

    Randomness comes from torch's generators (of the batch's device, and the CPU one for kornia's
    parameters), so ``torch.manual_seed`` makes the views reproducible on CPU and
    :class:`~ignite_pseudolabel.RNGState` in a checkpoint resumes them exactly.

    Args:
        kind: ``"natural"`` or ``"digits"``, see :func:`~ignite_pseudolabel.weak_strong_transforms`.
        mean: per-channel mean for normalisation.
        std: per-channel standard deviation for normalisation.
        size: image side for the random crop of ``"natural"`` images.
        num_ops: RandAugment operations per image (FixMatch: 2).
        magnitude: RandAugment magnitude in [0, 30] (default 10, or 30 with ``strength="fixmatch"``).
        cutout: largest Cutout side as a fraction of the image side, in [0, 1].
        policy: ``"randaugment"`` or ``"trivialaugment"``.
        strength: ``"torchvision"`` or ``"fixmatch"``.
        backend: ``"kornia"`` (batched; needs ``pip install ignite-pseudolabel[fast]``),
            ``"torchvision"`` (the torchvision transforms, one image at a time, on the batch's device)
            or ``"auto"`` (the default: kornia when it is installed, else torchvision).

    Raises:
        ImportError: with ``backend="kornia"`` when kornia is not installed.

    Examples:
        >>> views = BatchViews("digits", mean=(0.13,), std=(0.31,), strength="fixmatch")
        >>> _ = torch.manual_seed(0)
        >>> images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
        >>> out = views(RawBatch(images, torch.arange(6)))
        >>> out.weak.shape, out.strong.dtype, out.sample_index.tolist()
        (torch.Size([6, 1, 28, 28]), torch.float32, [0, 1, 2, 3, 4, 5])
        >>> views.weak(images).shape  # e.g. the labeled batch
        torch.Size([6, 1, 28, 28])

    .. versionadded:: 0.3.0
    """

    def __init__(
        self,
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
        backend: str = "auto",
    ) -> None:
        check_choice("backend", backend, ("auto", "kornia", "torchvision"))
        # The torchvision transforms validate every shared argument (and are the fallback backend).
        self._per_image = weak_strong_transforms(kind, mean=mean, std=std, size=size, num_ops=num_ops,
                                                 magnitude=magnitude, cutout=cutout, policy=policy, strength=strength)
        if backend == "auto":
            backend = "kornia" if _kornia_available() else "torchvision"
        self.backend = backend
        self.kind, self.policy, self.strength = kind, policy, strength
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.cutout = check_float("cutout", cutout, low=0.0, high=1.0)
        if magnitude is None:
            magnitude = MAX_MAGNITUDE if strength == "fixmatch" else 10
        self.magnitude = check_int("magnitude", magnitude, minimum=0)
        self.num_ops = check_int("num_ops", num_ops, minimum=0)
        self._stats: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}
        if backend == "kornia":
            augmentation = _import_kornia().augmentation
            geometric: list[nn.Module]
            if kind == "natural":
                side = int(size)  # type: ignore[arg-type]  # checked by weak_strong_transforms
                geometric = [augmentation.RandomHorizontalFlip(p=0.5),
                             augmentation.RandomCrop((side, side), padding=max(1, side // 8), padding_mode="reflect",
                                                     p=1.0)]
            else:
                geometric = [augmentation.RandomAffine(degrees=0.0, translate=(0.125, 0.125), resample="nearest",
                                                       p=1.0)]
            self._geometric = nn.Sequential(*geometric)
            self._augment: nn.Module | None = None
            if policy == "trivialaugment" or self.num_ops > 0:
                self._augment = _BatchRandAugment(policy, self.num_ops, self.magnitude, strength == "fixmatch")

    def __repr__(self) -> str:
        return (f"BatchViews(kind={self.kind!r}, policy={self.policy!r}, strength={self.strength!r}, "
                f"backend={self.backend!r})")

    def __call__(self, batch: torch.Tensor | RawBatch) -> Views:
        """The weak and strong views of a raw batch, with its positions (``None`` for a plain tensor)."""
        if isinstance(batch, RawBatch):
            images, index = batch.inputs, batch.sample_index
        elif isinstance(batch, torch.Tensor):
            images, index = batch, None
        else:
            raise TypeError(f"BatchViews expects a raw batch: a uint8 image tensor (N, C, H, W) or a RawBatch "
                            f"(images, sample_index), but given a {type(batch).__name__}")
        if self.backend == "torchvision":
            # image by image, weak then strong: WeakStrongViews' order of random draws, so that this data path
            # (e.g. DeviceBatches + BatchViews) trains exactly as the per-image one given the same seed
            weak, strong = self._per_image
            pairs = [(weak(image), strong(image)) for image in self._check(images)]
            return Views(torch.stack([w for w, _ in pairs]), torch.stack([s for _, s in pairs]), index)
        return Views(self.weak(images), self.strong(images), index)

    def weak(self, images: torch.Tensor) -> torch.Tensor:
        """The weak view (shifts, or flip and crop) of a raw ``uint8`` batch, as normalised float32."""
        images = self._check(images)
        if self.backend == "torchvision":
            return self._each(self._per_image[0], images)
        return self._normalize(self._geometric(self._to_float(images)))

    def strong(self, images: torch.Tensor) -> torch.Tensor:
        """The strong view (weak + RandAugment or TrivialAugment + Cutout) of a raw ``uint8`` batch."""
        images = self._check(images)
        if self.backend == "torchvision":
            return self._each(self._per_image[1], images)
        x = self._geometric(self._to_float(images))
        if self._augment is not None:
            x = self._augment(x)
        x = self._normalize(x)
        if self.cutout > 0:
            x = _cutout(x, self._cutout_sides(x))
        return x

    def _cutout_sides(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample Cutout sides in pixels, distributed as in :func:`~ignite_pseudolabel.weak_strong_transforms`."""
        n, _, height, width = x.shape
        if self.strength == "fixmatch":  # side uniform among 16 equally spaced fractions of `cutout`
            k = torch.randint(1, CUTOUT_SIDES + 1, (n,), device=x.device)
            fraction = self.cutout * k / CUTOUT_SIDES
            area = fraction * fraction
        else:  # area uniform up to cutout^2, as RandomErasing(scale=(0.0001, cutout^2))
            high = max(self.cutout**2, 0.0002)
            area = 0.0001 + (high - 0.0001) * torch.rand(n, device=x.device)
        return torch.round(torch.sqrt(area * height * width)).to(torch.int64)

    @staticmethod
    def _check(images: Any) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.dtype != torch.uint8:
            shape = (f"shape {tuple(images.shape)} and dtype {images.dtype}" if isinstance(images, torch.Tensor)
                     else f"a {type(images).__name__}")
            raise ValueError(f"BatchViews expects raw uint8 images of shape (N, C, H, W), but given {shape}")
        return images

    @staticmethod
    def _each(transform: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        return torch.stack([transform(image) for image in images])

    @staticmethod
    def _to_float(images: torch.Tensor) -> torch.Tensor:
        return images.to(torch.float32) / 255.0

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        key = (x.device, x.dtype)
        if key not in self._stats:  # built once per device, not copied to it every batch
            self._stats[key] = (torch.tensor(self.mean, dtype=x.dtype).view(1, -1, 1, 1).to(x.device),
                                torch.tensor(self.std, dtype=x.dtype).view(1, -1, 1, 1).to(x.device))
        mean, std = self._stats[key]
        return (x - mean) / std


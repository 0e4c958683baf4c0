"""Weak and strong views of whole batches, made on the trainer's device (FixMatch's augmentation, batched).

:class:`BatchViews` is the batched counterpart of :class:`~ignite_pseudolabel.WeakStrongViews`:
instead of transforming one image at a time in the ``DataLoader``, it transforms the raw ``uint8``
batch after ``prepare_batch`` has moved it to the device, with independent random parameters for
every sample. Give it to ``PseudoLabelLoss(views=...)`` (or ``prepare_semi_supervised_batch(...,
views=...)``) and feed the unlabeled stream raw batches: ``uint8`` image tensors, or
:class:`~ignite_pseudolabel.batch.RawBatch` (images and their positions in the unlabeled dataset,
which per-sample statistics such as FlexMatch's need). The weak and strong views then go through
the model in the same single forward pass as :class:`~ignite_pseudolabel.Views`.

Anything that follows the :class:`ViewBackend` protocol can take its place; ``BatchViews`` has one
small class per backend (:class:`KorniaBatchViews`, :class:`TorchvisionBatchViews`), and
``BatchViews(backend=...)`` builds the one asked for.

The augmentations are those of :func:`~ignite_pseudolabel.weak_strong_transforms`, at the same
strengths: with the ``kornia`` backend (``pip install -e ".[fast]"``) the shifts, flips
and crops are exact pixel gathers (:mod:`~ignite_pseudolabel.view_ops`) and the RandAugment /
TrivialAugment operations kornia's image functions, one operation and its value drawn per sample and
per round (from the ranges of :mod:`~ignite_pseudolabel.randaugment`, as the per-image path draws
them), each giving torchvision's image for the same operation and value (shears about the top-left
corner, whole-pixel translations, results truncated to the 8-bit grid; tested operation by
operation; sharpness may differ by one grey level, as kornia does not round the blurred image as
torchvision's ``uint8`` path does); its random parameters are drawn apart from their application
(:meth:`KorniaBatchViews.draw`, :meth:`KorniaBatchViews.apply`), all from one generator. With the
``torchvision`` backend (the fallback when kornia is absent) the torchvision transforms run once
per image, on the device, drawing their random parameters in
:class:`~ignite_pseudolabel.WeakStrongViews`' order: with
:class:`~ignite_pseudolabel.device_data.DeviceBatches` in place of a ``DataLoader`` over
``WeakStrongViews``, a seeded run is the per-image run exactly, on CPU (tested). Only that backend
imports torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

import torch

from ._validation import check_choice
from .batch import RawBatch, Views  # RawBatch is defined with the batch types; importable here still
from .randaugment import OPERATIONS, TORCHVISION_SPACES, binned_values, fixmatch_values
from .view_ops import (
    CropParams,
    Cutout,
    CutoutParams,
    Normalize,
    RandomCrop,
    RandomShift,
    RandomSource,
    adjust_brightness,
    adjust_contrast,
    blend,
    check_raw_images,
    grey,
    per_sample,
    quantize,
    split_raw_batch,
)
from .view_options import MAX_MAGNITUDE, ViewOptions

__all__ = ["BatchViews", "KorniaBatchViews", "OperationParams", "TorchvisionBatchViews", "ViewBackend", "ViewParams"]

_INSTALL_HINT = ("pip install 'ignite-pseudolabel[fast]' (or pip install kornia), or use backend='torchvision' "
                 "(the same transforms, one image at a time)")


@runtime_checkable
class ViewBackend(Protocol):
    """What ``PseudoLabelLoss(views=...)`` and ``prepare_semi_supervised_batch(views=...)`` call.

    A view backend turns a raw unlabeled batch, on the trainer's device, into its weak and strong
    views, and makes the weak view of a raw labeled batch. It needs no base class: any object with
    these two methods will do (see the "A view backend" how-to). :class:`BatchViews` is one.
    """

    def __call__(self, raw: torch.Tensor | RawBatch) -> Views:
        """The :class:`~ignite_pseudolabel.Views` of ``raw``: a ``uint8`` batch ``(N, C, H, W)`` (positions
        ``None``) or a :class:`~ignite_pseudolabel.batch.RawBatch` (its ``sample_index`` becomes the views'
        ``sample_index``)."""

    def weak(self, raw: torch.Tensor) -> torch.Tensor:
        """The weak view of a raw batch (the labeled rows' inputs), as the model's float inputs."""


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


# RandAugment (Cubuk et al., 2020) and TrivialAugment-Wide (Mueller and Hutter, 2021): the operations, and the
# values each strength draws for them, are those of the per-image path (module randaugment).
_GEOMETRIC = ("shear_x", "shear_y", "translate_x", "translate_y", "rotate")


class OperationParams(NamedTuple):
    """One RandAugment round drawn for a batch, each ``(N,)``: per sample an operation (``op``, an index into
    :data:`~ignite_pseudolabel.randaugment.OPERATIONS`) and its ``value`` (the operation's argument: shear
    factor, whole pixels, degrees, enhance factor, bits, or solarize threshold as a fraction of white; see
    :mod:`~ignite_pseudolabel.randaugment`)."""

    op: torch.Tensor
    value: torch.Tensor


class _BatchRandAugment:
    """RandAugment / TrivialAugment-Wide on a float batch in [0, 1]: every sample draws its own operations.

    Each of the ``num_ops`` rounds draws one operation and its value per sample (:meth:`draw`): for
    ``strength="fixmatch"`` RandAugment a value uniform in USB's range, otherwise a magnitude bin (the
    fixed ``magnitude``, or uniform up to it, or up to 30 for TrivialAugment) and a sign, as torchvision.
    :meth:`apply` makes the geometric operations of a round one affine warp (kornia) and applies the
    photometric ones to the whole batch, kept where selected (``torch.where``), so the round costs the
    same whatever the draw, with no host synchronisation.
    """

    def __init__(self, policy: str, num_ops: int, magnitude: int | None, strength: str) -> None:
        self.space = TORCHVISION_SPACES[policy]
        self.num_ops = 1 if policy == "trivialaugment" else num_ops
        self.usb_ranges = policy == "randaugment" and strength == "fixmatch"
        # TrivialAugment draws the magnitude bin uniformly; "fixmatch-torchvision" RandAugment uniformly up to
        # `magnitude`; "torchvision" RandAugment takes `magnitude` itself.
        self.random_magnitude = policy == "trivialaugment" or strength == "fixmatch-torchvision"
        self.max_bin = MAX_MAGNITUDE if policy == "trivialaugment" or magnitude is None else magnitude

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(x, self.draw(x.shape[0], x.shape[-2], x.shape[-1], RandomSource(x.device)))

    def draw(self, n: int, height: int, width: int, source: RandomSource) -> tuple[OperationParams, ...]:
        rounds = []
        for _ in range(self.num_ops):
            op = source.integers(n, len(OPERATIONS))
            if self.usb_ranges:
                rounds.append(OperationParams(op, fixmatch_values(op, source.uniform(n), height, width)))
                continue
            if self.random_magnitude:
                level = source.integers(n, self.max_bin + 1).to(torch.float32) / MAX_MAGNITUDE
            else:
                level = torch.full((n,), self.max_bin / MAX_MAGNITUDE, device=source.device)
            sign = torch.where(source.bernoulli(n, 0.5), -1.0, 1.0)
            rounds.append(OperationParams(op, binned_values(op, level, sign, self.space, height, width)))
        return tuple(rounds)

    @staticmethod
    def apply(x: torch.Tensor, rounds: tuple[OperationParams, ...]) -> torch.Tensor:
        for r in rounds:
            x = _apply_operations(x, r.op, r.value.to(x.dtype))
        return x


def _apply_operations(x: torch.Tensor, op: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Applies operation ``OPERATIONS[op[i]]`` with its value ``value[i]`` (see
    :mod:`~ignite_pseudolabel.randaugment`) to sample ``i`` of a float batch in [0, 1], as torchvision does.

    The geometric operations are one affine warp (kornia); the photometric ones are kornia's image
    functions applied to the whole batch and kept where selected (``torch.where``), so the cost does
    not depend on the draw and nothing waits for the host.
    """
    kornia = _import_kornia()
    n, channels, height, width = x.shape
    device = x.device

    def chosen(name: str) -> torch.Tensor:
        return op == OPERATIONS.index(name)

    def amount(name: str) -> torch.Tensor:
        return torch.where(chosen(name), value, 0.0)

    # Geometric operations: one affine warp, the identity for the other samples. As torchvision: rotations
    # and translations (whole pixels) about the image centre, shears about the top-left corner (which also
    # shifts the image), angles counter-clockwise.
    translations = torch.stack([amount("translate_x"), amount("translate_y")], dim=1)
    sheared = chosen("shear_x") | chosen("shear_y")  # the corner of the top-left pixel is at (-0.5, -0.5)
    center = torch.stack([torch.where(sheared, -0.5, (width - 1) / 2),
                          torch.where(sheared, -0.5, (height - 1) / 2)], dim=1).to(x.dtype)
    matrix = kornia.geometry.transform.get_affine_matrix2d(
        translations, center, torch.ones(n, 2, device=device, dtype=x.dtype), -amount("rotate"),
        torch.atan(amount("shear_x")), torch.atan(amount("shear_y")))
    warped = kornia.geometry.transform.warp_affine(x, matrix[:, :2], (height, width), mode="nearest",
                                                   padding_mode="zeros")
    geometric = sum(chosen(name) for name in _GEOMETRIC)
    out = torch.where(per_sample(geometric.bool()), warped, x)

    # Photometric operations on the input, each kept for the samples that drew it (the others' values are
    # another operation's: computed and dropped; posterize's bits get a valid 8 there).
    enhance = kornia.enhance
    photometric: dict[str, Callable[[], torch.Tensor]] = {
        "brightness": lambda: adjust_brightness(x, value),  # blend with black, as torchvision
        "contrast": lambda: adjust_contrast(x, value),
        "sharpness": lambda: enhance.sharpness(x, value),
        "posterize": lambda: enhance.posterize(x, torch.where(chosen("posterize"), value, 8.0).to(torch.int64)),
        "solarize": lambda: enhance.solarize(x, value),
        "autocontrast": lambda: _autocontrast(x),
        "equalize": lambda: enhance.equalize(x),
    }
    if channels == 3:  # saturation; an identity on other images, as in torchvision
        photometric["color"] = lambda: blend(x, grey(x), value)
    for name, fn in photometric.items():
        out = torch.where(per_sample(chosen(name)), fn(), out)
    return quantize(out)  # back on the 8-bit grid, truncated as torchvision's operations on uint8 images do


def _autocontrast(x: torch.Tensor) -> torch.Tensor:
    """Per image and channel, stretches [min, max] to [0, 1] (unchanged where min == max), as torchvision."""
    low, high = x.amin(dim=(-2, -1), keepdim=True), x.amax(dim=(-2, -1), keepdim=True)
    flat = high <= low
    scale = torch.where(flat, 1.0, 1.0 / (high - low).clamp(min=1e-12))
    return ((x - torch.where(flat, 0.0, low)) * scale).clamp(0.0, 1.0)


class ViewParams(NamedTuple):
    """One draw of :class:`KorniaBatchViews`' random parameters for a batch (see :meth:`KorniaBatchViews.draw`).

    Attributes:
        crop: the geometry: shifts (digits), or flips and crop offsets (natural images).
        operations: one :class:`OperationParams` per RandAugment round; empty for a weak view.
        cutout: the Cutout patches, or ``None`` (a weak view, or ``cutout=0``).
    """

    crop: CropParams
    operations: tuple[OperationParams, ...]
    cutout: CutoutParams | None


class BatchViews:
    """FixMatch's weak and strong views of whole batches, on the device of the batch.

    Takes the same arguments as :func:`~ignite_pseudolabel.weak_strong_transforms` and makes the
    same augmentations, at the same strengths (no flips for ``"digits"``), but on a batch of raw
    ``uint8`` images ``(N, C, H, W)`` at once, each sample with its own random parameters. Call it
    on a raw batch (a tensor or a :class:`~ignite_pseudolabel.batch.RawBatch`) to get
    :class:`~ignite_pseudolabel.Views`;
    :meth:`weak` alone augments a labeled batch. Pass it to ``PseudoLabelLoss(views=...)`` so that
    its ``prepare_batch`` applies it after moving the raw batch to the trainer's device. It follows
    the :class:`ViewBackend` protocol; ``BatchViews(...)`` returns a :class:`KorniaBatchViews` or a
    :class:`TorchvisionBatchViews` (both are ``BatchViews``), chosen by ``backend``.

    Seeding. The ``kornia`` backend draws every random parameter of a batch (shifts, flips and
    crops, RandAugment operations and their values, Cutout sides and places) from one
    generator: ``generator`` when given (drawn on its device and delivered to the batch's device, so
    a CPU generator gives the same parameters for a CPU and a CUDA batch), else the default
    generator of the batch's device: the CPU generator for a CPU batch, that GPU's CUDA generator
    for a CUDA batch. ``torch.manual_seed(s)`` seeds the CPU generator and those of every CUDA
    device; ``torch.cuda.manual_seed(s)`` alone (the current device) then suffices for views made on
    that GPU. The ``torchvision`` backend draws from torch's CPU generator whatever the device (as
    torchvision's transforms do), image by image, and takes no ``generator``.
    :class:`~ignite_pseudolabel.RNGState` in a checkpoint resumes the default generators exactly;
    save a ``generator`` of your own with ``RNGState(generators=[generator])``.

    Args:
        kind: ``"natural"`` or ``"digits"``, see :func:`~ignite_pseudolabel.weak_strong_transforms`.
        mean: per-channel mean for normalisation.
        std: per-channel standard deviation for normalisation.
        size: image side for the random crop of ``"natural"`` images.
        num_ops: RandAugment operations per image (FixMatch: 2).
        magnitude: RandAugment magnitude in [0, 30] for ``strength="torchvision"`` (default 10) or
            ``"fixmatch-torchvision"`` (the largest drawn, default 30); ``"fixmatch"`` takes none.
        cutout: largest Cutout side as a fraction of the image side, in [0, 1].
        policy: ``"randaugment"`` or ``"trivialaugment"``.
        strength: ``"fixmatch"`` (the default: USB's RandAugment ranges and Cutout),
            ``"fixmatch-torchvision"`` or ``"torchvision"``; see
            :func:`~ignite_pseudolabel.weak_strong_transforms` and the table of each operation's range
            per strength in the recipes how-to.
        backend: ``"kornia"`` (batched; needs ``pip install -e ".[fast]"``),
            ``"torchvision"`` (the torchvision transforms, one image at a time, on the batch's device)
            or ``"auto"`` (the default: kornia when it is installed, else torchvision).
        generator: the ``torch.Generator`` of every random parameter of the ``kornia`` backend, or
            ``None`` (the default generator of the batch's device); see "Seeding" above.

    Raises:
        ImportError: with ``backend="kornia"`` when kornia is not installed.
        ValueError: with a ``generator`` and the ``torchvision`` backend.

    Examples:
        >>> views = BatchViews("digits", mean=(0.13,), std=(0.31,))  # strength="fixmatch"
        >>> _ = torch.manual_seed(0)
        >>> images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
        >>> out = views(RawBatch(images, torch.arange(6)))
        >>> out.weak.shape, out.strong.dtype, out.sample_index.tolist()
        (torch.Size([6, 1, 28, 28]), torch.float32, [0, 1, 2, 3, 4, 5])
        >>> views.weak(images).shape  # e.g. the labeled batch
        torch.Size([6, 1, 28, 28])
        >>> isinstance(views, BatchViews) and isinstance(views, ViewBackend)
        True

    .. versionadded:: 0.3.0
    """

    backend = "auto"  # the backend of the subclass: "kornia" or "torchvision"

    def __new__(cls, *args: Any, backend: str = "auto", **kwargs: Any) -> BatchViews:
        if cls is BatchViews:  # the public entry point: the class of the backend asked for
            check_choice("backend", backend, ("auto", "kornia", "torchvision"))
            if backend == "auto":
                backend = "kornia" if _kornia_available() else "torchvision"
            cls = KorniaBatchViews if backend == "kornia" else TorchvisionBatchViews
        return super().__new__(cls)

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
        strength: str = "fixmatch",
        backend: str = "auto",
        generator: torch.Generator | None = None,
    ) -> None:
        check_choice("backend", backend, ("auto", self.backend))
        self.options = ViewOptions.check(kind, mean=mean, std=std, size=size, num_ops=num_ops, magnitude=magnitude,
                                         cutout=cutout, policy=policy, strength=strength)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"Argument generator should be a torch.Generator or None, but given "
                            f"{type(generator).__name__}")
        o = self.options
        self.kind, self.policy, self.strength, self.mean, self.std = o.kind, o.policy, o.strength, o.mean, o.std
        self.cutout, self.magnitude, self.num_ops, self.generator = o.cutout, o.magnitude, o.num_ops, generator

    def __repr__(self) -> str:
        return (f"BatchViews(kind={self.kind!r}, policy={self.policy!r}, strength={self.strength!r}, "
                f"backend={self.backend!r})")

    def __call__(self, batch: torch.Tensor | RawBatch) -> Views:
        """The weak and strong views of a raw batch, with its positions (``None`` for a plain tensor)."""
        images, index = split_raw_batch(batch, "BatchViews")
        return Views(self.weak(images), self.strong(images), index)

    def weak(self, images: torch.Tensor) -> torch.Tensor:
        """The weak view (shifts, or flip and crop) of a raw ``uint8`` batch, as normalised float32."""
        raise NotImplementedError

    def strong(self, images: torch.Tensor) -> torch.Tensor:
        """The strong view (weak + RandAugment or TrivialAugment + Cutout) of a raw ``uint8`` batch."""
        raise NotImplementedError


#: the Cutout of each strength (see :class:`~ignite_pseudolabel.view_ops.Cutout`)
_CUTOUT_SIDES = {"fixmatch": "continuous", "fixmatch-torchvision": "uniform", "torchvision": "area"}


class KorniaBatchViews(BatchViews):
    """The ``kornia`` backend of :class:`BatchViews`: whole batches at once, parameters drawn apart from their use.

    :meth:`draw` returns one :class:`ViewParams` for a batch and :meth:`apply` makes the view of
    that draw, so one draw can be applied again (to the same images, or to other images aligned
    with them). Every parameter comes from one generator (see "Seeding" in :class:`BatchViews`).
    Construct it as ``BatchViews(..., backend="kornia")`` or directly, with the same arguments.
    The geometry and Cutout are plain torch; the RandAugment / TrivialAugment operations need kornia.

    Examples:
        >>> views = KorniaBatchViews("natural", size=8, num_ops=0, generator=torch.Generator().manual_seed(0))
        >>> images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
        >>> params = views.draw(images)  # a strong view's flips and crops, RandAugment rounds (none here), Cutout
        >>> params.crop.top.shape, params.operations, params.cutout.side.shape
        (torch.Size([4]), (), torch.Size([4]))
        >>> torch.equal(views.apply(images, params), views.apply(images, params))  # the same draw, replayed
        True
    """

    backend = "kornia"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        o = self.options
        self._geometry: RandomCrop = RandomShift(0.125)
        if o.kind == "natural" and o.size is not None:
            self._geometry = RandomCrop(o.size, padding=max(1, o.size // 8), padding_mode="reflect", flip=True)
        self._augment: _BatchRandAugment | None = None
        if o.policy == "trivialaugment" or o.num_ops > 0:
            _import_kornia()  # the operations are kornia's: ImportError now rather than at the first batch
            self._augment = _BatchRandAugment(o.policy, o.num_ops, o.magnitude, o.strength)
        self._cutout = Cutout(o.cutout, _CUTOUT_SIDES[o.strength]) if o.cutout > 0 else None
        self._normalize = Normalize(o.mean, o.std)

    def draw(self, images: torch.Tensor, strong: bool = True) -> ViewParams:
        """The random parameters of the strong (or, with ``strong=False``, the weak) views of ``images``
        ``(N, C, H, W)``, on their device, in this order: geometry, RandAugment rounds, Cutout."""
        n, _, height, width = images.shape
        source = RandomSource(images.device, self.generator)
        crop = self._geometry.draw(n, height, width, source)
        if not strong:
            return ViewParams(crop, (), None)
        size = self._geometry.output_size(height, width)
        operations = () if self._augment is None else self._augment.draw(n, *size, source)
        cutout = None if self._cutout is None else self._cutout.draw(n, *size, source)
        return ViewParams(crop, operations, cutout)

    def apply(self, images: torch.Tensor, params: ViewParams) -> torch.Tensor:
        """The view of raw ``uint8`` ``images`` that ``params`` describes, as normalised float32."""
        x = self._geometry.apply(check_raw_images(images, "BatchViews"), params.crop).to(torch.float32) / 255.0
        if self._augment is not None and params.operations:
            x = self._augment.apply(x, params.operations)
        x = self._normalize(x)
        return x if params.cutout is None else Cutout.apply(x, params.cutout)

    def weak(self, images: torch.Tensor) -> torch.Tensor:
        """The weak view (shifts, or flip and crop) of a raw ``uint8`` batch, as normalised float32."""
        return self.apply(images, self.draw(check_raw_images(images, "BatchViews"), strong=False))

    def strong(self, images: torch.Tensor) -> torch.Tensor:
        """The strong view (weak + RandAugment or TrivialAugment + Cutout) of a raw ``uint8`` batch."""
        return self.apply(images, self.draw(check_raw_images(images, "BatchViews")))


class TorchvisionBatchViews(BatchViews):
    """The ``torchvision`` backend of :class:`BatchViews`: :func:`~ignite_pseudolabel.weak_strong_transforms`
    image by image, on the batch's device, weak then strong view of each image in turn
    (:class:`~ignite_pseudolabel.WeakStrongViews`' order of random draws, so that a seeded run on
    :class:`~ignite_pseudolabel.device_data.DeviceBatches` is the per-image ``DataLoader`` run exactly).
    Imports torchvision when constructed.

    Examples:
        >>> views = BatchViews("digits", backend="torchvision")
        >>> type(views).__name__, views(torch.zeros(2, 1, 28, 28, dtype=torch.uint8)).strong.shape
        ('TorchvisionBatchViews', torch.Size([2, 1, 28, 28]))
    """

    backend = "torchvision"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.generator is not None:
            raise ValueError("Argument generator is for backend='kornia' only (torchvision's transforms draw from "
                             "torch's CPU generator), but given a generator with backend='torchvision'")
        from .augment import weak_strong_transforms  # torchvision: imported by this backend only

        self._weak, self._strong = weak_strong_transforms(**self.options._asdict())

    def __call__(self, batch: torch.Tensor | RawBatch) -> Views:
        """The weak and strong views of a raw batch, with its positions (``None`` for a plain tensor)."""
        images, index = split_raw_batch(batch, "BatchViews")
        pairs = [(self._weak(image), self._strong(image)) for image in images]  # weak, strong, next image
        return Views(torch.stack([w for w, _ in pairs]), torch.stack([s for _, s in pairs]), index)

    def weak(self, images: torch.Tensor) -> torch.Tensor:
        """The weak view (shifts, or flip and crop) of a raw ``uint8`` batch, as normalised float32."""
        return self._each(self._weak, images)

    def strong(self, images: torch.Tensor) -> torch.Tensor:
        """The strong view (weak + RandAugment or TrivialAugment + Cutout) of a raw ``uint8`` batch."""
        return self._each(self._strong, images)

    @staticmethod
    def _each(transform: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        return torch.stack([transform(image) for image in check_raw_images(images, "BatchViews")])

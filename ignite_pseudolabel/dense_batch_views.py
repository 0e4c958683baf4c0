"""Pixel-aligned weak and strong views of whole raw batches, made on their device (dense prediction).

:class:`DenseBatchViews` is the batched counterpart of
:class:`~ignite_pseudolabel.dense.DenseWeakStrongViews`: instead of one image at a time in the
``DataLoader``, it makes the :class:`~ignite_pseudolabel.batch.DenseViews` of a raw ``uint8``
batch on the trainer's device, each sample with its own random parameters. One geometric draw
moves the image, its valid mask and its held-back label map alike (a gather of pixels by index,
:class:`~ignite_pseudolabel.view_ops.RandomCrop`); the photometric changes touch the strong view
only, after the geometry, so that both views show the same pixels at the same places. Pure torch
(no kornia needed), no host synchronisation, every parameter from one generator.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ._validation import check_float, check_int
from .batch import DenseViews, RawBatch
from .view_ops import (
    CropParams,
    Cutout,
    CutoutParams,
    Normalize,
    RandomCrop,
    RandomSource,
    adjust_brightness,
    adjust_contrast,
    gaussian_blur,
    per_sample,
    quantize,
    split_raw_batch,
)

__all__ = ["DenseBatchViews", "DenseParams"]


class DenseParams(NamedTuple):
    """One draw of :class:`DenseBatchViews`' random parameters for a batch; every field is per sample ``(N,)``.

    Attributes:
        crop: the geometry, shared by the image, its valid mask and its held-back map.
        brightness: the brightness factor of the strong view.
        contrast: the contrast factor of the strong view.
        brightness_first: True where brightness comes before contrast (``ColorJitter``'s random order).
        blur: True where the strong view is blurred.
        sigma: the blur's standard deviation.
        cutout: the strong view's Cutout patches, or ``None`` (``cutout=0``).
    """

    crop: CropParams
    brightness: torch.Tensor
    contrast: torch.Tensor
    brightness_first: torch.Tensor
    blur: torch.Tensor
    sigma: torch.Tensor
    cutout: CutoutParams | None


class DenseBatchViews:
    """Pixel-aligned weak and strong views, valid masks and held-back maps of a raw ``uint8`` batch, on its device.

    For every image of a raw batch ``(N, C, H, W)`` (a ``uint8`` tensor, or a
    :class:`~ignite_pseudolabel.batch.RawBatch` whose ``sample_index`` gives the images' positions):

    * one random crop (torchvision's ``RandomCrop(size, padding=padding)``, with zeros in the
      padding; optionally a horizontal flip first) gives the weak view; the same draw moves an
      all-True valid mask (the pixels brought in from outside the image become False) and, with
      ``held_back_targets``, the image's true label map (``nearest``: pixels are moved, never mixed;
      padding gets ``ignore_index``);
    * the strong view is the weak view's pixels with ``ColorJitter(brightness, contrast)`` (both in
      a random order per image), then a Gaussian blur with probability ``blur_p`` (kernel
      ``blur_kernel``, sigma uniform in ``blur_sigma``), then Cutout (``cutout`` > 0: a black square of
      side up to ``cutout`` of the image side), as torchvision does on ``uint8`` images (each result
      on the 8-bit grid);
    * both views become float32 in [0, 1] (``ToDtype(float32, scale=True)``), normalised with
      ``mean`` and ``std`` when given.

    The defaults are the per-image views of ``examples/segmentation_pseudo_label.py``. The result
    is a :class:`~ignite_pseudolabel.batch.DenseViews` ``(weak, strong, valid, sample_index,
    held_back)``, ``held_back`` an empty ``(N, 0)`` tensor without ``held_back_targets`` (as the
    collated items of ``DenseWeakStrongViews``); give it to
    :class:`~ignite_pseudolabel.dense.DensePrepareBatch` as the batch's unlabeled part.
    :meth:`draw` and :meth:`geometry` apply one draw to other aligned tensors, e.g. a labeled
    batch's images and masks.

    Every random parameter comes from ``generator`` (drawn on its device, delivered to the batch's),
    or from the default generator of the batch's device when it is ``None`` (``torch.manual_seed``
    seeds the CPU and every CUDA device; :class:`~ignite_pseudolabel.RNGState` resumes it).

    Args:
        size: the side of the crop, or ``None`` for the images' own height and width.
        padding: zeros added on every side before the crop, >= 0.
        flip: mirror left-right with probability 1/2 before the crop.
        brightness: ``ColorJitter``'s brightness, >= 0: a factor uniform in [max(0, 1 - b), 1 + b].
        contrast: ``ColorJitter``'s contrast, >= 0, likewise.
        blur_p: probability of the blur, in [0, 1].
        blur_kernel: the blur's kernel side, an odd integer >= 1.
        blur_sigma: the smallest and largest sigma of the blur, 0 < low <= high.
        cutout: largest Cutout side as a fraction of the image side, in [0, 1] (0: none).
        mean: per-channel mean for normalisation, or ``None`` (none).
        std: per-channel standard deviation for normalisation (with ``mean``).
        held_back_targets: ``(M, H, W)`` true label maps of the whole unlabeled set (indexed by the
            batches' ``sample_index``; moved to each device once), or ``None``.
        ignore_index: the held-back maps' value for pixels without a class (padding included).
        generator: the ``torch.Generator`` of every random parameter, or ``None``.

    Examples:
        >>> from ignite_pseudolabel.batch import RawBatch
        >>> images = torch.randint(1, 256, (4, 3, 16, 16), dtype=torch.uint8)
        >>> truth = torch.randint(0, 5, (4, 16, 16))
        >>> views = DenseBatchViews(held_back_targets=truth, generator=torch.Generator().manual_seed(0))
        >>> out = views(RawBatch(images, torch.arange(4)))
        >>> out.weak.shape, out.valid.dtype, out.held_back_targets.shape
        (torch.Size([4, 3, 16, 16]), torch.bool, torch.Size([4, 16, 16]))
        >>> bool(((out.weak == 0).all(1) == ~out.valid).all()), bool((out.held_back_targets[~out.valid] == 255).all())
        (True, True)
        >>> params = views.draw(images)  # one draw, applied to a labeled batch's images and masks alike
        >>> views.geometry(images, params).shape, views.geometry(truth, params, fill=255).shape
        (torch.Size([4, 3, 16, 16]), torch.Size([4, 16, 16]))

    .. versionadded:: 0.3.0
    """

    def __init__(
        self,
        size: int | None = None,
        *,
        padding: int = 4,
        flip: bool = False,
        brightness: float = 0.5,
        contrast: float = 0.5,
        blur_p: float = 0.5,
        blur_kernel: int = 3,
        blur_sigma: tuple[float, float] = (0.1, 1.5),
        cutout: float = 0.0,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        held_back_targets: torch.Tensor | None = None,
        ignore_index: int = 255,
        generator: torch.Generator | None = None,
    ) -> None:
        self._crop = RandomCrop(size, padding=padding, padding_mode="constant", flip=flip)
        self.brightness = check_float("brightness", brightness, low=0.0)
        self.contrast = check_float("contrast", contrast, low=0.0)
        self.blur_p = check_float("blur_p", blur_p, low=0.0, high=1.0)
        self.blur_kernel = check_int("blur_kernel", blur_kernel, minimum=1)
        if self.blur_kernel % 2 == 0:
            raise ValueError(f"Argument blur_kernel should be an odd integer >= 1, but given {blur_kernel}")
        low, high = (check_float("blur_sigma", s, low=0.0, low_inclusive=False) for s in blur_sigma)
        if low > high:
            raise ValueError(f"Argument blur_sigma should be (smallest, largest), but given {blur_sigma}")
        self.blur_sigma = (low, high)
        self._cutout = None if check_float("cutout", cutout, low=0.0, high=1.0) == 0 else Cutout(cutout)
        self._normalize = None
        if mean is not None and std is not None and len(mean) == len(std):
            self._normalize = Normalize([check_float("mean", float(m)) for m in mean],
                                        [check_float("std", float(s), low=0.0, low_inclusive=False) for s in std])
        elif mean is not None or std is not None:
            raise ValueError(f"Arguments mean and std should both be None or have the same length, but given {mean} "
                             f"and {std}")
        if held_back_targets is not None:
            held_back_targets = torch.as_tensor(held_back_targets)
            if held_back_targets.ndim != 3:
                raise ValueError(f"Argument held_back_targets should hold one label map per image (M, H, W), but "
                                 f"given shape {tuple(held_back_targets.shape)}")
        self.held_back_targets = held_back_targets
        self._maps: dict[torch.device, torch.Tensor] = {}
        self.ignore_index = check_int("ignore_index", ignore_index, minimum=0)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"Argument generator should be a torch.Generator or None, but given "
                            f"{type(generator).__name__}")
        self.generator = generator

    def draw(self, images: torch.Tensor) -> DenseParams:
        """The random parameters of the views of ``images`` ``(N, C, H, W)``, on their device."""
        n, _, height, width = images.shape
        source = RandomSource(images.device, self.generator)
        crop = self._crop.draw(n, height, width, source)
        brightness = source.uniform(n, max(0.0, 1 - self.brightness), 1 + self.brightness)
        contrast = source.uniform(n, max(0.0, 1 - self.contrast), 1 + self.contrast)
        first, blur = source.bernoulli(n, 0.5), source.bernoulli(n, self.blur_p)
        sigma = source.uniform(n, *self.blur_sigma)
        cutout = None if self._cutout is None else self._cutout.draw(n, *self._crop.output_size(height, width), source)
        return DenseParams(crop, brightness, contrast, first, blur, sigma, cutout)

    def geometry(self, x: torch.Tensor, params: DenseParams, fill: float = 0) -> torch.Tensor:
        """Moves ``x`` ``(N, ..., H, W)`` (images, masks, label maps; any dtype) by the draw's crop; ``fill``
        in the padding."""
        return self._crop.apply(x, params.crop, fill)

    def photometric(self, x: torch.Tensor, params: DenseParams) -> torch.Tensor:
        """The strong view's changes of a float batch ``x`` in [0, 1] (already moved by :meth:`geometry`)."""
        first = per_sample(params.brightness_first)
        if self.brightness > 0:
            x = torch.where(first, quantize(adjust_brightness(x, params.brightness)), x)
        if self.contrast > 0:
            x = quantize(adjust_contrast(x, params.contrast))
        if self.brightness > 0:
            x = torch.where(first, x, quantize(adjust_brightness(x, params.brightness)))
        if self.blur_p > 0:
            blurred = quantize(gaussian_blur(x, params.sigma, self.blur_kernel), "round")
            x = torch.where(per_sample(params.blur), blurred, x)
        return x if params.cutout is None else Cutout.apply(x, params.cutout)

    def __call__(self, raw: torch.Tensor | RawBatch) -> DenseViews:
        """The :class:`~ignite_pseudolabel.batch.DenseViews` of a raw batch (``sample_index`` ``None`` for a tensor)."""
        images, index = split_raw_batch(raw, "DenseBatchViews")
        params = self.draw(images)
        n, _, height, width = images.shape
        weak = self.geometry(images, params).to(torch.float32) / 255.0
        inside = torch.ones(1, height, width, dtype=torch.bool, device=images.device).expand(n, -1, -1)
        valid = self.geometry(inside, params, fill=False)
        strong = self.photometric(weak, params)
        if self._normalize is not None:
            weak, strong = self._normalize(weak), self._normalize(strong)
        return DenseViews(weak, strong, valid, index, self._held_back(images, index, params))

    def weak(self, images: torch.Tensor) -> torch.Tensor:
        """A raw labeled batch as float inputs (scaled to [0, 1], normalised), *without* geometry.

        What ``PseudoLabelLoss(views=...)``'s ``prepare_batch`` applies to labeled ``uint8`` images: their
        masks travel apart, in the labels, so a random crop would misalign them. Crop labeled images and
        masks together with :meth:`draw` and :meth:`geometry` before, if wanted.
        """
        images, _ = split_raw_batch(images, "DenseBatchViews")
        x = images.to(torch.float32) / 255.0
        return x if self._normalize is None else self._normalize(x)

    def _held_back(self, images: torch.Tensor, index: Any, params: DenseParams) -> torch.Tensor:
        if self.held_back_targets is None:
            return torch.empty((images.shape[0], 0), device=images.device)
        if index is None:
            raise ValueError("DenseBatchViews with held_back_targets needs the images' positions: give it "
                             "RawBatch(images, sample_index) batches, e.g. DeviceBatches(..., return_index=True)")
        if self.held_back_targets.shape[-2:] != images.shape[-2:]:
            raise ValueError(f"The held-back maps are {tuple(self.held_back_targets.shape[-2:])} pixels but the images "
                             f"{tuple(images.shape[-2:])}")
        if images.device not in self._maps:  # moved to each device once, not at every batch
            self._maps[images.device] = self.held_back_targets.to(images.device)
        maps = self._maps[images.device].index_select(0, index.to(images.device))
        return self.geometry(maps, params, fill=self.ignore_index)

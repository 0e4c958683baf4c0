"""Dense prediction (semantic segmentation): pixel-aligned views, CutMix of images and label maps, label-map encoding.

Semi-supervised segmentation uses the pieces of classification with one rule added: every map that
describes the pixels of an unlabeled image (its pseudo-label map, confidence, valid mask, held-back
truth) must follow the image through every change of geometry. Here

* :class:`DenseWeakStrongViews` makes the weak and the strong view of an image with one shared
  geometric transform (torchvision v2, which moves :class:`~torchvision.tv_tensors.Mask` objects
  with the image) and photometric changes and Cutout on the strong view only; pixels that the
  geometry brings in from outside the image (padding) are marked invalid in a mask of their own;
* :func:`cutmix_boxes` and :func:`cutmix` (from :mod:`ignite_pseudolabel.mixing`) paste a box of
  another sample of the batch into each sample, applied alike to the student's inputs and, in the
  loss, to the pseudo-label sources (so the pseudo-labels, their confidences and masks), the valid
  masks and the held-back truth;
* :class:`DensePrepareBatch` is the ``prepare_batch`` of the trainer that mixes on top of the
  loss's :class:`~ignite_pseudolabel.prepare.PrepareBatch` and decodes mined label maps;
* :func:`encode_label_maps` / :func:`decode_label_maps`: the compact encoding of mined per-pixel
  pseudo-labels (``uint8`` with an ignore value for the pixels that are not confident).

Everything runs batched on the device without host synchronisation, except the per-sample
torchvision transforms, which run in the ``DataLoader`` workers (torchvision is imported when an
item is made, not with this module).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import torch
from torch.utils.data import Dataset

from ._validation import check_inputs_only, check_int, check_map_style
from .batch import DenseViews, SemiSupervisedBatch, SemiSupervisedTarget
from .label_maps import decode_label_maps, encode_label_maps  # re-exported: the dense toolbox in one place
from .mixing import cutmix, cutmix_boxes  # re-exported
from .prepare import PrepareBatch

__all__ = [
    "DensePrepareBatch",
    "DenseViews",
    "DenseWeakStrongViews",
    "cutmix",
    "cutmix_boxes",
    "decode_label_maps",
    "encode_label_maps",
]


# ------------------------------------------------------------------------------------------- views
class DenseWeakStrongViews(Dataset):
    """Wraps an inputs-only image dataset so that each item is a :class:`~ignite_pseudolabel.batch.DenseViews`.

    ``geometric`` (a torchvision v2 transform: crops, flips, affine maps) runs once per item, on the
    image together with an all-True valid :class:`~torchvision.tv_tensors.Mask` (and the held-back
    label map), so every map moves exactly like the image and the pixels filled in from outside
    become invalid (give ``fill=0`` for masks, the v2 default). The strong view is then
    ``photometric`` applied to the *geometrically transformed* image: both views show the same
    pixels at the same places, so the weak view's pseudo-label of pixel ``(i, j)`` trains the strong
    view's prediction at ``(i, j)``. ``to_float`` (e.g. ``ToDtype`` and ``Normalize``) ends both views.
    Put Cutout (``v2.RandomErasing``) at the end of ``photometric``: it erases image pixels only.

    Args:
        dataset: the unlabeled images (inputs only), e.g. ``uint8`` tensors ``(C, H, W)``.
        geometric: shared geometric transform, or ``None``.
        photometric: strong-view transform of the image only (colour, blur, Cutout).
        to_float: final transform of both views, or ``None``.
        held_back_targets: ``(N, H, W)`` true label maps of the images (benchmarks have them), or ``None``.
        ignore_index: value of the held-back pixels that carry no class (padding included).

    Examples:
        >>> from torchvision.transforms import v2
        >>> images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
        >>> views = DenseWeakStrongViews(images, v2.RandomCrop(8, padding=2), v2.ColorJitter(0.5, 0.5),
        ...                              v2.ToDtype(torch.float32, scale=True))[1]
        >>> views.weak.shape, views.valid.dtype, views.sample_index
        (torch.Size([1, 8, 8]), torch.bool, 1)
        >>> bool(((views.weak == 0) | views.valid.unsqueeze(0)).all())  # padded pixels are zeros and invalid
        True
    """

    def __init__(
        self,
        dataset: Any,
        geometric: Callable[..., Any] | None,
        photometric: Callable[[Any], Any],
        to_float: Callable[[Any], Any] | None = None,
        *,
        held_back_targets: torch.Tensor | None = None,
        ignore_index: int = 255,
    ) -> None:
        check_map_style("dataset", dataset)
        for name, fn in (("geometric", geometric), ("photometric", photometric), ("to_float", to_float)):
            if fn is not None and not callable(fn):
                raise TypeError(f"Argument {name} should be a callable transform, but given {type(fn).__name__}")
        if held_back_targets is not None:
            held_back_targets = torch.as_tensor(held_back_targets)
            if held_back_targets.ndim < 2 or held_back_targets.shape[0] != len(dataset):
                raise ValueError(f"Argument held_back_targets should hold one label map per image ({len(dataset)}, "
                                 f"H, W), but given shape {tuple(held_back_targets.shape)}")
        self.dataset, self.geometric, self.photometric, self.to_float = dataset, geometric, photometric, to_float
        self.held_back_targets = held_back_targets
        self.ignore_index = check_int("ignore_index", ignore_index, minimum=0)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> DenseViews:
        from torchvision import tv_tensors  # here: importing this module imports no torchvision

        x = check_inputs_only("DenseWeakStrongViews", self.dataset[i], f"item {i} is", " first")
        image = tv_tensors.Image(x)
        valid = tv_tensors.Mask(torch.ones(image.shape[-2:], dtype=torch.bool))
        truth = None if self.held_back_targets is None else tv_tensors.Mask(self.held_back_targets[i])
        if self.geometric is not None:
            image, valid, truth = self.geometric(image, valid, truth)
        strong = self.photometric(image)
        if self.to_float is not None:
            image, strong = self.to_float(image), self.to_float(strong)
        held_back = torch.empty(0) if truth is None else torch.where(valid, truth.as_subclass(torch.Tensor),
                                                                     self.ignore_index)
        return DenseViews(image.as_subclass(torch.Tensor), strong.as_subclass(torch.Tensor),
                          valid.as_subclass(torch.Tensor), i, held_back)


# ----------------------------------------------------------------------------------- prepare_batch
class DensePrepareBatch:
    """The trainer's ``prepare_batch`` for semi-supervised segmentation: a loss's ``prepare_batch``, plus
    mined label maps and CutMix.

    It calls the loss's :class:`~ignite_pseudolabel.prepare.PrepareBatch`, which already reads
    :class:`~ignite_pseudolabel.batch.DenseViews` (per-pixel valid masks and held-back maps into the
    target), and adds:

    * mined batches ``(images, label maps)`` (from :class:`~ignite_pseudolabel.PseudoLabelMiner` on a
      segmentation model): the maps are decoded
      (:func:`~ignite_pseudolabel.label_maps.decode_label_maps`) and their ignored pixels become
      invalid;
    * with ``cutmix``, the student's unlabeled (or pseudo-labeled) inputs are mixed by
      :func:`~ignite_pseudolabel.mixing.cutmix` with fresh :func:`~ignite_pseudolabel.mixing.cutmix_boxes`
      before the concatenation, and so are the teacher's logits or the mined labels, the valid masks
      and the held-back maps; with weak and strong views in one forward pass (no teacher), the boxes
      travel in the target (``mix``) and the loss mixes the weak view's predictions with them:
      UniMatch's online CutMix.

    The labeled masks are left as they are: give the loss ``supervised_loss=nn.CrossEntropyLoss(
    ignore_index=255)`` for their ignore value (unrelated to the unlabeled valid masks).

    Args:
        loss: the trainer's loss (its ``prepare_batch``) or a :class:`~ignite_pseudolabel.prepare.PrepareBatch`.
        cutmix: keyword arguments of :func:`~ignite_pseudolabel.mixing.cutmix_boxes` (e.g. ``{"p": 0.5}``),
            ``True`` for its defaults, or ``None`` / ``False`` for no CutMix.
        ignore_index: the ignore value of mined label maps.
        generator: random generator of the boxes (on the device), or ``None``.

    Examples:
        >>> from ignite_pseudolabel.losses import PseudoLabelLoss
        >>> prepare = DensePrepareBatch(PseudoLabelLoss(alpha=1.0), cutmix={"p": 1.0})
        >>> labeled = (torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
        >>> views = DenseViews(torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4), torch.ones(3, 4, 4, dtype=torch.bool),
        ...                    torch.arange(3), torch.empty(3, 0))
        >>> x, target = prepare(SemiSupervisedBatch(labeled, unlabeled=views))
        >>> x.shape, target.num_views, target.mix is not None, target.unlabeled_valid.shape
        (torch.Size([8, 1, 4, 4]), 2, True, torch.Size([3, 4, 4]))

    .. versionchanged:: 0.3.0
        Online CutMix without a teacher (the loss mixes the weak view's predictions).
    """

    def __init__(
        self,
        loss: Any,
        cutmix: dict[str, Any] | bool | None = None,
        *,
        ignore_index: int = 255,
        generator: torch.Generator | None = None,
    ) -> None:
        prepare = getattr(loss, "prepare_batch", loss)
        if not isinstance(prepare, PrepareBatch):
            raise TypeError(f"Argument loss should be a PseudoLabelLoss or a PrepareBatch, but given "
                            f"{type(loss).__name__}")
        if cutmix is not None and not isinstance(cutmix, (bool, dict)):
            raise TypeError(f"Argument cutmix should be a dict of cutmix_boxes arguments, a bool or None, but given "
                            f"{type(cutmix).__name__}")
        self.prepare = prepare
        self.cutmix: dict[str, Any] | None = ({} if cutmix is True else dict(cutmix)) if cutmix else None
        if self.cutmix is not None:
            cutmix_boxes(0, (1, 1), **self.cutmix)  # validates the arguments now
        self.ignore_index = check_int("ignore_index", ignore_index, minimum=0)
        self.generator = generator

    def __call__(
        self, batch: SemiSupervisedBatch, device: str | torch.device | None = None, non_blocking: bool = False
    ) -> tuple[torch.Tensor, SemiSupervisedTarget]:
        x, target = self.prepare(batch, device, non_blocking, mix=self._draw if self.cutmix is not None else None)
        if target.pseudo_labels is None or x.shape[0] == target.labels.shape[0]:
            return x, target
        labels, valid = decode_label_maps(target.pseudo_labels, self.ignore_index)  # mined label maps
        if target.unlabeled_valid is not None:  # the per-sample validity (non-finite inputs)
            per_sample = target.unlabeled_valid
            valid = valid & per_sample.view(*per_sample.shape, *([1] * (valid.ndim - per_sample.ndim)))
        return x, target._replace(pseudo_labels=labels, unlabeled_valid=valid)

    def _draw(self, student: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """Fresh boxes for the student's rows, and the function pasting them into any aligned tensor."""
        boxes = cutmix_boxes(student.shape[0], (student.shape[-2], student.shape[-1]), device=student.device,
                             generator=self.generator, **self.cutmix)  # type: ignore[arg-type]
        return functools.partial(cutmix, boxes=boxes)

"""Dense prediction (semantic segmentation): pixel-aligned views, CutMix of images and label maps, label-map encoding.

Semi-supervised segmentation uses the pieces of classification with one rule added: every map that
describes the pixels of an unlabeled image (its pseudo-label map, confidence, valid mask, held-back
truth) must follow the image through every change of geometry. Here

* :class:`DenseWeakStrongViews` makes the weak and the strong view of an image with one shared
  geometric transform (torchvision v2, which moves :class:`~torchvision.tv_tensors.Mask` objects
  with the image) and photometric changes and Cutout on the strong view only; pixels that the
  geometry brings in from outside the image (padding) are marked invalid in a mask of their own;
* :func:`cutmix_boxes` and :func:`cutmix` paste a box of another sample of the batch into each
  sample, applied alike to the strong views, the teacher's logits (so the pseudo-labels, their
  confidences and masks), the valid masks and the held-back truth;
* :class:`DensePrepareBatch` is the ``prepare_batch`` of the trainer that does both on top of
  :meth:`PseudoLabelLoss.prepare_batch <ignite_pseudolabel.PseudoLabelLoss.prepare_batch>`, and
  decodes mined label maps;
* :func:`encode_label_maps` / :func:`decode_label_maps`: the compact encoding of mined per-pixel
  pseudo-labels (``uint8`` with an ignore value for the pixels that are not confident).

Everything runs batched on the device without host synchronisation, except the per-sample
torchvision transforms, which run in the ``DataLoader`` workers.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from ignite.utils import convert_tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ._validation import check_float, check_inputs_only, check_int, check_map_style
from .batch import SemiSupervisedBatch, SemiSupervisedTarget, Views
from .label_maps import decode_label_maps, encode_label_maps  # re-exported: the dense toolbox in one place

__all__ = [
    "DensePrepareBatch",
    "DenseViews",
    "DenseWeakStrongViews",
    "cutmix",
    "cutmix_boxes",
    "decode_label_maps",
    "encode_label_maps",
]


# -------------------------------------------------------------------------------------------- CutMix
def cutmix_boxes(
    batch_size: int,
    size: tuple[int, int],
    *,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    ratio: float = 0.3,
    device: str | torch.device | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random CutMix boxes: an ``(N, H, W)`` ``bool`` mask, True inside the box of every mixed sample.

    With probability ``p`` a sample gets one box whose area is uniform in ``area`` (fractions of the
    image) and whose aspect ratio is log-uniform in ``[ratio, 1 / ratio]``, placed uniformly inside
    the image; the defaults are UniMatch's. The other samples get an empty box. Drawn on ``device``,
    without host synchronisation.

    kornia's ``RandomCutMixV2`` and torchvision's ``CutMix`` mix images and class labels but not
    masks, which is why this and :func:`cutmix` exist.

    Args:
        batch_size: N.
        size: ``(H, W)``.
        p: probability that a sample is mixed, in [0, 1].
        area: smallest and largest box area as fractions of the image, in (0, 1].
        ratio: smallest aspect ratio (height / width) of a box, in (0, 1].
        device: where to draw the boxes.
        generator: random generator (on ``device``).

    Examples:
        >>> boxes = cutmix_boxes(4, (8, 8), p=1.0, area=(0.25, 0.25), ratio=1.0,
        ...                      generator=torch.Generator().manual_seed(0))
        >>> boxes.shape, boxes.sum(dim=(1, 2)).tolist()
        (torch.Size([4, 8, 8]), [16, 16, 16, 16])
    """
    batch_size = check_int("batch_size", batch_size, minimum=0)
    p = check_float("p", p, low=0.0, high=1.0)
    low, high = (check_float("area", a, low=0.0, high=1.0, low_inclusive=False) for a in area)
    if low > high:
        raise ValueError(f"Argument area should be (smallest, largest), but given {area}")
    ratio = check_float("ratio", ratio, low=0.0, high=1.0, low_inclusive=False)
    height, width = size
    u = torch.rand(batch_size, 5, device=device, generator=generator)
    box_area = (low + (high - low) * u[:, 0]) * height * width
    # log(ratio) as a float32 number on the host: no copy to the device per call
    log_ratio = float(torch.log(torch.tensor(ratio))) * (1 - 2 * u[:, 1])
    aspect = torch.exp(log_ratio)  # height / width
    box_h = torch.sqrt(box_area * aspect).round().clamp(1, height)
    box_w = torch.sqrt(box_area / aspect).round().clamp(1, width)
    top = torch.floor(u[:, 2] * (height - box_h + 1))
    left = torch.floor(u[:, 3] * (width - box_w + 1))
    rows = torch.arange(height, device=u.device).view(1, -1, 1)
    cols = torch.arange(width, device=u.device).view(1, 1, -1)
    inside_rows = (rows >= top.view(-1, 1, 1)) & (rows < (top + box_h).view(-1, 1, 1))
    inside_cols = (cols >= left.view(-1, 1, 1)) & (cols < (left + box_w).view(-1, 1, 1))
    return inside_rows & inside_cols & (u[:, 4] < p).view(-1, 1, 1)


def cutmix(x: torch.Tensor, boxes: torch.Tensor, shift: int = 1) -> torch.Tensor:
    """Pastes, inside each sample's box, the same pixels of the sample ``shift`` places further in the batch.

    Apply it with the same ``boxes`` to everything that describes the pixels: images ``(N, C, H, W)``,
    logits ``(N, C, H, W)``, label or valid maps ``(N, H, W)``. Sample ``i`` receives pixels of
    sample ``(i + shift) mod N``: with a shuffled loader that is a random partner, never itself
    (for ``N > 1``). Works on any device, without host synchronisation.

    Examples:
        >>> x = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)
        >>> boxes = torch.tensor([[[True, False], [False, False]]]).expand(3, 2, 2)
        >>> cutmix(x, boxes)[:, 0].tolist()
        [[[1.0, 0.0], [0.0, 0.0]], [[2.0, 1.0], [1.0, 1.0]], [[0.0, 2.0], [2.0, 2.0]]]
    """
    if boxes.shape[0] != x.shape[0] or boxes.shape[1:] != x.shape[-2:]:
        raise ValueError(f"Expected boxes of shape (N, H, W) = {(x.shape[0], *x.shape[-2:])}, but given "
                         f"{tuple(boxes.shape)}")
    inside = boxes.view(boxes.shape[0], *([1] * (x.ndim - 3)), *boxes.shape[1:])
    return torch.where(inside, torch.roll(x, -shift, dims=0), x)


# ------------------------------------------------------------------------------------------- views
class DenseViews(NamedTuple):
    """Pixel-aligned weak and strong views of unlabeled images, with their valid masks and positions.

    Attributes:
        weak: the weak view (shared geometry only).
        strong: the strong view: the weak view's pixels with photometric changes (and Cutout).
        valid: ``bool`` mask, False for the pixels the geometry brought in from outside the image
            (padding): they are never trained on and never enter threshold statistics. It is not
            the labels' ignore value: an unlabeled image has no labels.
        sample_index: the position of the image in its dataset.
        held_back: the image's held-back true label map moved with the same geometry (padding set to
            the ignore value), for measuring pseudo-label accuracy only; an empty tensor when there
            is none.
    """

    weak: Any
    strong: Any
    valid: Any
    sample_index: Any
    held_back: Any


class DenseWeakStrongViews(Dataset):
    """Wraps an inputs-only image dataset so that each item is a :class:`DenseViews`.

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
    """The trainer's ``prepare_batch`` for semi-supervised segmentation with a :class:`PseudoLabelLoss`.

    It calls ``loss.prepare_batch`` and then completes the target for dense predictions:

    * batches of :class:`DenseViews` (online pseudo-labels): the per-pixel valid masks go into
      ``target.unlabeled_valid`` (ANDed with the loss's own per-sample validity), and the held-back
      label maps into ``target.unlabeled_targets``, so that ``pseudo_mask_rate`` and
      ``pseudo_accuracy`` are per valid pixel;
    * mined batches ``(images, label maps)`` (from :class:`~ignite_pseudolabel.PseudoLabelMiner` on a
      segmentation model): the maps are decoded (:func:`decode_label_maps`) and their ignored pixels
      become invalid;
    * with ``cutmix``, the student's unlabeled (or pseudo-labeled) images are mixed by
      :func:`cutmix` with fresh :func:`cutmix_boxes`, and the same boxes mix the teacher's logits,
      the mined labels, the valid masks and the held-back maps. The pseudo-labels of the weak views
      must exist before the mix, so online CutMix needs the loss to have a ``teacher`` (e.g.
      ``EMAHandler(model).ema_model``); with weak and strong views in one forward pass and no
      teacher it raises ``ValueError``.

    The labeled masks are left as they are: give the loss ``supervised_loss=nn.CrossEntropyLoss(
    ignore_index=255)`` for their ignore value (unrelated to the unlabeled valid masks).

    Args:
        loss: the trainer's loss.
        cutmix: keyword arguments of :func:`cutmix_boxes` (e.g. ``{"p": 0.5}``), ``True`` for its
            defaults, or ``None`` / ``False`` for no CutMix.
        ignore_index: the ignore value of mined label maps and held-back maps.
        generator: random generator of the boxes (on the device), or ``None``.

    Examples:
        >>> from ignite_pseudolabel.losses import PseudoLabelLoss
        >>> loss = PseudoLabelLoss(alpha=1.0, teacher=torch.nn.Conv2d(1, 3, 1))
        >>> prepare = DensePrepareBatch(loss, cutmix={"p": 1.0})
        >>> labeled = (torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long))
        >>> views = DenseViews(torch.rand(3, 1, 4, 4), torch.rand(3, 1, 4, 4), torch.ones(3, 4, 4, dtype=torch.bool),
        ...                    torch.arange(3), torch.empty(3, 0))
        >>> x, target = prepare(SemiSupervisedBatch(labeled, unlabeled=views))
        >>> x.shape, target.teacher_logits.shape, target.unlabeled_valid.shape
        (torch.Size([5, 1, 4, 4]), torch.Size([3, 3, 4, 4]), torch.Size([3, 4, 4]))
    """

    def __init__(
        self,
        loss: Any,
        cutmix: dict[str, Any] | bool | None = None,
        *,
        ignore_index: int = 255,
        generator: torch.Generator | None = None,
    ) -> None:
        if not callable(getattr(loss, "prepare_batch", None)):
            raise TypeError(f"Argument loss should be a PseudoLabelLoss, but given {type(loss).__name__}")
        if cutmix is not None and not isinstance(cutmix, (bool, dict)):
            raise TypeError(f"Argument cutmix should be a dict of cutmix_boxes arguments, a bool or None, but given "
                            f"{type(cutmix).__name__}")
        self.loss = loss
        self.cutmix: dict[str, Any] | None = ({} if cutmix is True else dict(cutmix)) if cutmix else None
        if self.cutmix is not None:
            cutmix_boxes(0, (1, 1), **self.cutmix)  # validates the arguments now
        self.ignore_index = check_int("ignore_index", ignore_index, minimum=0)
        self.generator = generator

    def __call__(
        self, batch: SemiSupervisedBatch, device: str | torch.device | None = None, non_blocking: bool = False
    ) -> tuple[torch.Tensor, SemiSupervisedTarget]:
        dense: DenseViews | None = None
        if isinstance(batch, SemiSupervisedBatch) and isinstance(batch.unlabeled, DenseViews):
            dense = batch.unlabeled
            batch = batch._replace(unlabeled=Views(dense.weak, dense.strong, dense.sample_index))
        x, target = self.loss.prepare_batch(batch, device, non_blocking)
        n_labeled = target.labels.shape[0]
        if x.shape[0] == n_labeled:  # labeled rows only (alpha 0, or nothing mined yet)
            return x, target
        if target.pseudo_labels is not None:  # mined label maps
            labels, valid = decode_label_maps(target.pseudo_labels, self.ignore_index)
            target = target._replace(pseudo_labels=labels)
            held_back = None
        else:
            if dense is None:
                return x, target
            valid = convert_tensor(dense.valid, device=device, non_blocking=non_blocking).bool()
            held_back = dense.held_back if dense.held_back.numel() else None
            if held_back is not None:
                held_back = convert_tensor(held_back, device=device, non_blocking=non_blocking).long()
        if target.unlabeled_valid is not None:  # the loss's per-sample validity (non-finite inputs)
            per_sample = target.unlabeled_valid
            valid = valid & per_sample.view(*per_sample.shape, *([1] * (valid.ndim - per_sample.ndim)))
        if self.cutmix is not None:
            x, target, valid, held_back = self._mix(x, target, valid, held_back)
        return x, target._replace(unlabeled_valid=valid, unlabeled_targets=held_back)

    def _mix(
        self, x: torch.Tensor, target: SemiSupervisedTarget, valid: torch.Tensor, held_back: torch.Tensor | None
    ) -> tuple[torch.Tensor, SemiSupervisedTarget, torch.Tensor, torch.Tensor | None]:
        if target.views == 2:
            raise ValueError("CutMix of online pseudo-labels needs their sources computed before the mix: give "
                             "the PseudoLabelLoss a teacher (e.g. EMAHandler(model).ema_model)")
        n_labeled = target.labels.shape[0]
        student = x[n_labeled:]
        boxes = cutmix_boxes(student.shape[0], (student.shape[-2], student.shape[-1]), device=x.device,
                             generator=self.generator, **self.cutmix)  # type: ignore[arg-type]
        x = torch.cat([x[:n_labeled], cutmix(student, boxes)])
        if target.teacher_logits is not None:
            target = target._replace(teacher_logits=cutmix(target.teacher_logits, boxes))
        if target.pseudo_labels is not None:
            target = target._replace(pseudo_labels=cutmix(target.pseudo_labels, boxes))
        return x, target, cutmix(valid, boxes), None if held_back is None else cutmix(held_back, boxes)

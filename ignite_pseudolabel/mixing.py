"""CutMix of images together with everything that describes their pixels (labels, logits, valid masks).

Pure tensor functions, torch only: :func:`cutmix_boxes` draws one box per sample, :func:`cutmix`
pastes each sample's box from its neighbour in the batch. The same boxes apply to the student's
inputs (in batch preparation) and to the pseudo-label sources, valid masks and held-back maps (in
the loss, which reads them from ``SemiSupervisedTarget.mix_boxes``), so all of them stay aligned.
``ignite_pseudolabel.dense`` re-exports both.
"""

from __future__ import annotations

import torch

from ._validation import check_float, check_int

__all__ = ["cutmix", "cutmix_boxes"]


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

"""Per-pixel pseudo-labels stored compactly: label maps with an ignore value for unconfident pixels.

The storage format of mined dense pseudo-labels (:class:`~ignite_pseudolabel.PseudoLabelMiner` on
dense logits); torch only, so that mining never imports torchvision.
"""

from __future__ import annotations

import torch

from ._stats import confident_labels
from ._validation import check_int, optional_threshold

__all__ = ["decode_label_maps", "encode_label_maps"]


def _map_dtype(num_classes: int, ignore_index: int) -> torch.dtype:
    return torch.uint8 if max(num_classes - 1, ignore_index) <= 255 else torch.int32


def encode_label_maps(
    logits: torch.Tensor, threshold: float | None = None, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel pseudo-labels in a compact encoding, and a confidence per image.

    Every element of dense logits ``(N, C, d1, ...)`` gets its argmax class; the elements whose
    softmax confidence is below ``threshold`` (or whose logits are not finite) get ``ignore_index``
    instead. The maps are ``uint8`` when the classes and ``ignore_index`` fit (else ``int32``): an
    image of 512 x 512 pixels costs 256 KiB. The confidence of an image is the mean confidence of
    its pixels, 0 when any of its logits is not finite (such an image is never mined).

    Args:
        logits: ``(N, C, d1, ...)`` logits.
        threshold: minimum confidence of a pixel's pseudo-label, in (0, 1], or ``None`` (keep all).
        ignore_index: the value of the pixels without a pseudo-label; not a class (>= C).

    Returns:
        ``(maps, confidence)``: ``(N, d1, ...)`` label maps and ``(N,)`` float confidences.

    Raises:
        ValueError: if ``logits`` are not dense or ``ignore_index`` is a class.

    Examples:
        >>> logits = torch.tensor([[[[4.0, 0.0]], [[0.0, 0.2]]]])  # 1 image, 2 classes, 1 x 2 pixels
        >>> maps, confidence = encode_label_maps(logits, threshold=0.9)
        >>> maps.tolist(), maps.dtype, round(float(confidence), 3)
        ([[[0, 255]]], torch.uint8, 0.766)
    """
    threshold = optional_threshold("threshold", threshold, allow_zero=True)
    if logits.ndim < 3:
        raise ValueError(f"Expected dense logits of shape (N, C, d1, ...), but given shape {tuple(logits.shape)}")
    num_classes = logits.shape[1]
    ignore_index = check_int("ignore_index", ignore_index, minimum=0)
    if ignore_index < num_classes:
        raise ValueError(f"Argument ignore_index should not be a class (>= {num_classes}), but given {ignore_index}")
    confidence, labels, finite = confident_labels(logits)
    keep = finite if threshold is None else finite & (confidence >= threshold)
    maps = torch.where(keep, labels, ignore_index).to(_map_dtype(num_classes, ignore_index))
    per_image = confidence.flatten(1).mean(1)
    return maps, torch.where(finite.flatten(1).all(1), per_image, 0.0)


def decode_label_maps(maps: torch.Tensor, ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """Label maps (e.g. from :func:`encode_label_maps`) as ``int64`` labels and a mask of the labelled elements.

    The ignored elements get label 0 (any class would do: they are masked out) so that the result can
    go straight into :func:`~ignite_pseudolabel.functional.masked_cross_entropy`.

    Examples:
        >>> labels, valid = decode_label_maps(torch.tensor([[3, 255, 1]], dtype=torch.uint8))
        >>> labels.tolist(), valid.tolist()
        ([[3, 0, 1]], [[True, False, True]])
    """
    valid = maps != ignore_index
    return torch.where(valid, maps.long(), 0), valid

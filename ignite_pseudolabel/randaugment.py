"""RandAugment's 14 operations and the value each view strength draws for them, shared by both view paths.

An operation is applied with one value, its argument: a shear factor, a translation in whole pixels,
a rotation in degrees (counter-clockwise), an enhance factor (brightness, colour, contrast,
sharpness: 1 is the identity), the posterize bits kept, or the solarize threshold as a fraction of
white (pixels at or above it are inverted; above 1 none is). Identity, autocontrast and equalize take
none. How the value is drawn is what the ``strength`` of
:func:`~ignite_pseudolabel.weak_strong_transforms` and
:class:`~ignite_pseudolabel.batch_views.BatchViews` chooses:

* ``strength="fixmatch"``: USB's RandAugment (microsoft/Semi-supervised-learning, the numbers
  FixMatch's results are reproduced with): a value uniform in a fixed range per operation,
  :data:`FIXMATCH_RANGES`, drawn by :func:`fixmatch_value`;
* ``"torchvision"`` and ``"fixmatch-torchvision"``: torchvision's RandAugment (or TrivialAugment-Wide)
  ranges, a magnitude bin over 30 and a random sign, :data:`TORCHVISION_SPACES` and
  :func:`binned_values`.

Plain torch, vectorised over a batch's ``(N,)`` draws and on their device (no host synchronisation).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["FIXMATCH_RANGES", "OPERATIONS", "TORCHVISION_SPACES", "binned_values", "fixmatch_value",
           "fixmatch_values"]

#: the operations in torchvision's RandAugment order (the index a draw picks)
OPERATIONS = ("identity", "shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color",
              "contrast", "sharpness", "posterize", "solarize", "autocontrast", "equalize")

#: USB's ranges (``augment_list`` of its ``randaugment.py``), each drawn uniformly: enhance factors,
#: posterize bits (truncated to an integer), degrees, shear factors, the solarize threshold in grey
#: levels and translations as a fraction of the image side. Identity, autocontrast and equalize have none.
FIXMATCH_RANGES: dict[str, tuple[float, float]] = {
    "brightness": (0.05, 0.95), "color": (0.05, 0.95), "contrast": (0.05, 0.95), "sharpness": (0.05, 0.95),
    "posterize": (4.0, 8.0), "rotate": (-30.0, 30.0), "shear_x": (-0.3, 0.3), "shear_y": (-0.3, 0.3),
    "solarize": (0.0, 256.0), "translate_x": (-0.3, 0.3), "translate_y": (-0.3, 0.3),
}

#: torchvision's ranges (``_AUGMENTATION_SPACE`` of its RandAugment and TrivialAugmentWide): the largest
#: value of each operation, reached at magnitude bin 30 of 0..30; translations a fraction of the side
#: (RandAugment) or pixels (TrivialAugment-Wide); posterize keeps 8 down to ``8 - posterize_bits`` bits.
TORCHVISION_SPACES: dict[str, dict[str, Any]] = {
    "randaugment": {"shear": 0.3, "translate": 150.0 / 331.0, "translate_in_pixels": False, "rotate": 30.0,
                    "enhance": 0.9, "posterize_bits": 4},
    "trivialaugment": {"shear": 0.99, "translate": 32.0, "translate_in_pixels": True, "rotate": 135.0,
                       "enhance": 0.99, "posterize_bits": 6},
}


def _pick(op: torch.Tensor, candidates: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per sample, the candidate of the operation it drew (0 for the operations without a value)."""
    zero = torch.zeros_like(next(iter(candidates.values())))
    rows = torch.stack([candidates.get(name, zero) for name in OPERATIONS])  # (14, N)
    return rows.gather(0, op.view(1, -1)).view(-1)


def fixmatch_value(name: str, u: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The value of operation ``name`` for uniform draws ``u`` in [0, 1), in USB's range (:data:`FIXMATCH_RANGES`).

    Translations become whole pixels (``round(fraction * side)``, as the nearest-pixel sampling of USB's
    PIL affine transform), posterize bits integers (truncated, as USB's ``int``) and the solarize
    threshold a fraction of white.

    Examples:
        >>> fixmatch_value("rotate", torch.tensor([0.0, 0.5, 0.75]), 28, 28).tolist()
        [-30.0, 0.0, 15.0]
        >>> fixmatch_value("translate_x", torch.tensor([0.0, 0.99]), 28, 28).tolist()  # -0.3 * 28, 0.294 * 28
        [-8.0, 8.0]
        >>> fixmatch_value("posterize", torch.tensor([0.0, 0.3, 0.99]), 28, 28).tolist()
        [4.0, 5.0, 7.0]
    """
    if name not in FIXMATCH_RANGES:
        return torch.zeros_like(u)
    low, high = FIXMATCH_RANGES[name]
    value = low + (high - low) * u
    if name in ("translate_x", "translate_y"):
        return (value * (width if name == "translate_x" else height)).round()
    if name == "posterize":
        return value.floor()
    return value / 255.0 if name == "solarize" else value


def fixmatch_values(op: torch.Tensor, u: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """:func:`fixmatch_value` of the operation each sample drew: ``op`` ``(N,)`` indices into :data:`OPERATIONS`."""
    return _pick(op, {name: fixmatch_value(name, u, height, width) for name in FIXMATCH_RANGES})


def binned_values(op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, space: dict[str, Any], height: int,
                  width: int) -> torch.Tensor:
    """The values torchvision's RandAugment / TrivialAugment-Wide give the operations ``op`` ``(N,)`` at magnitude
    ``level`` (the bin over 30, in [0, 1]) signed by ``sign`` (+1 or -1; unsigned operations ignore it), in one
    of :data:`TORCHVISION_SPACES`; translations truncated to whole pixels, as torchvision does.

    Examples:
        >>> op = torch.tensor([OPERATIONS.index(name) for name in ("rotate", "brightness", "posterize", "solarize")])
        >>> level, sign = torch.full((4,), 0.5), torch.full((4,), -1.0)
        >>> binned_values(op, level, sign, TORCHVISION_SPACES["randaugment"], 28, 28).tolist()
        [-15.0, 0.550000011920929, 6.0, 0.5]
    """
    signed = level * sign
    pixels = (1.0, 1.0) if space["translate_in_pixels"] else (width, height)
    enhance = 1.0 + signed * space["enhance"]
    return _pick(op, {
        "shear_x": signed * space["shear"], "shear_y": signed * space["shear"],
        "translate_x": (signed * (space["translate"] * pixels[0])).trunc(),
        "translate_y": (signed * (space["translate"] * pixels[1])).trunc(),
        "rotate": signed * space["rotate"],
        "brightness": enhance, "color": enhance, "contrast": enhance, "sharpness": enhance,
        "posterize": 8.0 - (level * space["posterize_bits"]).round(),
        "solarize": 1.0 - level,
    })

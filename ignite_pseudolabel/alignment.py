"""Distribution alignment of pseudo-label probabilities (ReMixMatch) and temperature sharpening."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._stats import masked_mean
from ._validation import check_float, check_int

__all__ = ["DistributionAlignment", "sharpen"]


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature sharpening of class probabilities along dimension 1: ``p^(1/T)`` renormalised.

    ``temperature < 1`` makes the distribution more confident; ``1`` leaves it unchanged. Computed in
    log space, ``softmax(log(p) / T)``, so that small temperatures with many classes do not underflow
    to ``0 / 0``; classes with ``p = 0`` keep probability 0 (a row must have some positive entry).

    Examples:
        >>> sharpen(torch.tensor([[0.6, 0.4]]), 0.5)
        tensor([[0.6923, 0.3077]])
        >>> sharpen(torch.tensor([[0.5, 0.3, 0.2, 0.0]]), 0.05).round(decimals=4)
        tensor([[1., 0., 0., 0.]])
        >>> sharpen(torch.full((1, 1000), 1e-3), 0.01).max()  # p^(1/T) = 1e-300 would underflow
        tensor(0.0010)
    """
    return torch.softmax(torch.log(probs) / temperature, dim=1)


class DistributionAlignment(nn.Module):
    """ReMixMatch's distribution alignment of pseudo-label probabilities (Berthelot et al., 2020).

    Multiplies the probabilities of each unlabeled prediction by ``target / running`` and renormalises,
    where ``running`` is the exponential moving average of the model's mean prediction on unlabeled
    data and ``target`` the expected class distribution (uniform by default, or e.g. the labeled
    class frequencies). It counters the drift of pseudo-labels towards the classes the model already
    favours. The running average starts from the mean prediction of the first batch (as USB and
    TorchSSL do), so alignment acts from the first step rather than after ``1 / (1 - momentum)`` steps
    of drifting away from a uniform start. The running average and the ``initialized`` flag are
    buffers (saved in ``state_dict``; a state dict without the flag, from an older version, loads as
    initialised) and batch means are averaged across processes under ``ignite.distributed``.

    Args:
        num_classes: number of classes.
        target: expected class distribution (default: uniform); normalised to sum to 1.
        momentum: EMA momentum of the running mean prediction, in [0, 1).

    Examples:
        >>> align = DistributionAlignment(2)
        >>> align(torch.tensor([[0.9, 0.1], [0.7, 0.3]]), torch.tensor([True, True]))
        tensor([[0.6923, 0.3077],
                [0.3684, 0.6316]])
        >>> align.running, align.initialized
        (tensor([0.8000, 0.2000]), tensor(True))

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
        The running average starts from the first batch's mean prediction (was: uniform).
    """

    #: what the alignment is called in error messages
    role = "alignment"
    target: torch.Tensor
    running: torch.Tensor
    initialized: torch.Tensor

    def __init__(self, num_classes: int, target: torch.Tensor | None = None, momentum: float = 0.999) -> None:
        super().__init__()
        self.num_classes = num_classes = check_int("num_classes", num_classes, minimum=2)
        self.momentum = check_float("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
        if target is None:
            target = torch.full((num_classes,), 1.0 / num_classes)
        target = torch.as_tensor(target, dtype=torch.float32)
        bad = target.shape != (num_classes,) or not torch.isfinite(target).all() or (target < 0).any()
        if bad or target.sum() <= 0:
            raise ValueError(f"Argument target should be {num_classes} non-negative class frequencies, but given "
                             f"{target.tolist()}")
        self.register_buffer("target", target / target.sum())
        self.register_buffer("running", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("initialized", torch.tensor(False))

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # State dicts saved before the flag existed hold a running average that has seen data.
        key = prefix + "initialized"
        if key not in state_dict and prefix + "running" in state_dict:
            state_dict[key] = torch.tensor(True)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, probs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Aligns ``(M, C)`` probabilities; rows where ``valid`` is False do not update the average."""
        m = self.momentum
        mean, count = masked_mean(probs, valid)  # over all processes
        any_valid = count > 0  # a tensor: no host synchronisation
        updated = torch.where(self.initialized, m * self.running + (1 - m) * mean, mean)
        self.running = torch.where(any_valid, updated, self.running)
        self.initialized = self.initialized | any_valid
        aligned = probs * (self.target / self.running.clamp(min=1e-12)).to(probs.dtype)
        return aligned / aligned.sum(dim=1, keepdim=True).clamp(min=1e-12)

    def extra_repr(self) -> str:
        return f"num_classes={self.target.numel()}, momentum={self.momentum}"

"""Batch preparation as an object: the ``prepare_batch`` of a semi-supervised trainer.

:class:`PrepareBatch` holds what turning a :class:`~ignite_pseudolabel.SemiSupervisedBatch` into
one forward pass's inputs needs: the view backend (views of raw batches made on the device), the
teacher (whose predictions become the pseudo-label sources) and the pseudo term's weight, read
through a callable, so that the unlabeled rows stay out of the forward pass while it is 0.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable

import torch

from ._validation import check_callable
from .batch import SemiSupervisedBatch, SemiSupervisedTarget, prepare_semi_supervised_batch

__all__ = ["PrepareBatch"]


class PrepareBatch:
    """``prepare_batch(batch, device, non_blocking)`` for Ignite's supervised trainers, with views and a teacher.

    Calls :func:`~ignite_pseudolabel.batch.prepare_semi_supervised_batch` with its ``views`` and
    ``teacher``; while ``weight()`` returns 0 (and ``skip_when_zero``), the unlabeled or
    pseudo-labeled part is left out, so the warm-up costs what supervised training costs.
    :class:`~ignite_pseudolabel.PseudoLabelLoss` holds one as its ``prepare_batch``, reading its alpha.

    Args:
        views: a view backend: ``views(raw) -> Views`` and ``views.weak(raw)`` (e.g.
            :class:`~ignite_pseudolabel.batch_views.BatchViews`), or ``None``.
        teacher: a model predicting the pseudo-label sources (called without gradients, in its current
            mode; an ``EMAHandler``'s ``ema_model`` is in eval mode), or ``None``. It is not saved with
            anything here: its owner (e.g. the ``EMAHandler``) saves it.
        weight: returns the pseudo term's current weight (e.g. ``lambda: trainer.state.alpha``), or ``None``
            (always include the second part).
        skip_when_zero: leave the second part out while the weight is 0.
        teacher_autocast: run the teacher under ``torch.autocast`` with this dtype (e.g. ``torch.bfloat16``
            when the trainer has ``amp_mode="amp"``: the trainer's autocast does not cover
            ``prepare_batch``), or ``None`` (full precision).

    Examples:
        >>> labeled = (torch.ones(2, 3), torch.tensor([0, 1]))
        >>> prepare = PrepareBatch(weight=lambda: 0.0)
        >>> x, target = prepare(SemiSupervisedBatch(labeled, unlabeled=torch.zeros(4, 3)))
        >>> x.shape  # weight 0: labeled rows only
        torch.Size([2, 3])

    .. versionadded:: 0.3.0
    """

    def __init__(
        self,
        *,
        views: Callable[[Any], Any] | None = None,
        teacher: Callable[[torch.Tensor], torch.Tensor] | None = None,
        weight: Callable[[], float] | None = None,
        skip_when_zero: bool = True,
        teacher_autocast: torch.dtype | None = None,
    ) -> None:
        if views is not None and not (callable(views) and callable(getattr(views, "weak", None))):
            raise TypeError(f"Argument views should be a callable with a weak method (e.g. BatchViews), but given "
                            f"{type(views).__name__}")
        self.views = views
        self.teacher = None if teacher is None else check_callable("teacher", teacher, "a model (callable)")
        self.weight = None if weight is None else check_callable("weight", weight, "a callable returning a number")
        self.skip_when_zero = bool(skip_when_zero)
        if teacher_autocast is not None and not isinstance(teacher_autocast, torch.dtype):
            raise TypeError(f"Argument teacher_autocast should be a torch.dtype or None, but given "
                            f"{type(teacher_autocast).__name__}")
        self.teacher_autocast = teacher_autocast

    def __call__(
        self,
        batch: SemiSupervisedBatch,
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        *,
        mix: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> tuple[torch.Tensor, SemiSupervisedTarget]:
        """``(inputs, target)`` of ``batch`` on ``device``; ``mix`` as in
        :func:`~ignite_pseudolabel.batch.prepare_semi_supervised_batch`.

        Raises:
            TypeError: if the batch does not come from :class:`~ignite_pseudolabel.SemiSupervisedLoader`
                or its parts do not have the documented structure.
            ValueError: if the parts' inputs differ in per-sample shape or dtype.
        """
        use_second = not (self.skip_when_zero and self.weight is not None and self.weight() == 0.0)
        return prepare_semi_supervised_batch(batch, device=device, non_blocking=non_blocking, use_second=use_second,
                                             teacher=self._teacher(device), views=self.views, mix=mix)

    def _teacher(self, device: str | torch.device | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
        teacher, dtype = self.teacher, self.teacher_autocast
        if teacher is None or dtype is None:
            return teacher

        def under_autocast(x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(x.device.type, dtype=dtype) if dtype is not None else nullcontext():
                return teacher(x)

        return under_autocast

    def __repr__(self) -> str:
        return (f"PrepareBatch(views={self.views!r}, teacher={type(self.teacher).__name__ if self.teacher else None}, "
                f"skip_when_zero={self.skip_when_zero})")

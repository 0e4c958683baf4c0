"""The semi-supervised loss ``L_labeled + alpha * L_pseudo`` and its pure building blocks."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events

from ._validation import check_identifier, optional_float, optional_threshold
from .data import SemiSupervisedBatch, SemiSupervisedTarget, prepare_semi_supervised_batch

__all__ = ["PseudoLabelLoss", "hard_pseudo_labels", "masked_cross_entropy"]

#: Attributes that :meth:`PseudoLabelLoss.attach` publishes on ``engine.state`` after every iteration.
STATE_ATTRIBUTES = ("supervised_loss", "pseudo_loss", "pseudo_mask_rate")


def hard_pseudo_labels(
    logits: torch.Tensor, threshold: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hard pseudo-labels (the argmax over classes) and the mask of those confident enough to use.

    Works on classification logits ``(N, C)`` and on dense logits ``(N, C, d1, ...)``, where every
    element gets its own label and mask entry. A prediction with a non-finite logit is never used.

    Args:
        logits: the model's outputs; the class dimension is 1. Gradients never flow through the result.
        threshold: keep predictions whose softmax probability is >= this value (``None``: keep all,
            as in Lee 2013).

    Returns:
        ``(labels, mask)``: ``int64`` labels and a ``bool`` mask, both of shape ``(N, d1, ...)``.

    Examples:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 0.1], [float("nan"), 0.0]])
        >>> labels, mask = hard_pseudo_labels(logits, threshold=0.8)
        >>> labels.tolist()[:2], mask.tolist()
        ([0, 1], [True, False, False])
    """
    if logits.ndim < 2:
        raise ValueError(f"Expected logits of shape (N, C, ...), but given shape {tuple(logits.shape)}")
    logits = logits.detach()
    finite = torch.isfinite(logits).all(dim=1)
    probs = torch.softmax(logits.float(), dim=1)
    confidence, labels = probs.max(dim=1)
    mask = finite if threshold is None else finite & (confidence >= threshold)
    return labels, mask


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over *all* predictions, the masked-out ones contributing zero.

    Dividing by the number of predictions rather than of kept ones follows FixMatch: the term's weight
    grows with the fraction of confident predictions. Masked-out predictions never produce NaN, in
    the value or in the gradient, even when their logits are NaN or infinite.

    Args:
        logits: ``(N, C, d1, ...)`` logits.
        labels: ``(N, d1, ...)`` integer labels.
        mask: ``(N, d1, ...)`` boolean mask of the predictions to use.

    Returns:
        A scalar tensor (zero when ``N == 0``).

    Examples:
        >>> logits = torch.tensor([[0.0, 0.0], [float("inf"), 0.0]])
        >>> masked_cross_entropy(logits, torch.tensor([0, 0]), torch.tensor([True, False]))
        tensor(0.3466)
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    # Zero the logits of masked-out predictions so that neither the loss nor its gradient sees NaN.
    keep = mask.unsqueeze(1)
    safe_logits = torch.where(keep, logits, torch.zeros((), dtype=logits.dtype, device=logits.device))
    per_prediction = F.cross_entropy(safe_logits, labels, reduction="none")
    return torch.where(mask, per_prediction, torch.zeros((), dtype=per_prediction.dtype,
                                                        device=per_prediction.device)).mean()


class PseudoLabelLoss(torch.nn.Module):
    """``L_labeled + alpha * L_pseudo`` for a stock ``create_supervised_trainer``.

    Use it as the trainer's ``loss_fn`` and its :meth:`prepare_batch` as the trainer's
    ``prepare_batch``; run the trainer on a :class:`~ignite_pseudolabel.SemiSupervisedLoader`. The
    inputs of the labeled batch and of the unlabeled (or pseudo-labeled) batch go through the model in
    one forward pass; the loss splits the predictions again:

    * online mode (the loader has ``unlabeled=``): pseudo-labels are the detached argmax of the
      unlabeled predictions of this same forward pass (Lee 2013), optionally kept only where the
      softmax confidence reaches ``threshold``; the pseudo term is :func:`masked_cross_entropy`;
    * mined mode (the loader has ``pseudo=``): the pseudo term is the cross-entropy against the mined
      pseudo-labels.

    ``alpha`` is read from ``engine.state.alpha`` (set by :class:`~ignite_pseudolabel.AlphaRamp`) at
    every call, unless a constant is given. While alpha is 0, :meth:`prepare_batch` leaves the second
    batch out, so the warm-up costs what supervised training costs and trains exactly like it.

    After :meth:`attach`, every iteration publishes detached scalar tensors on ``engine.state`` (no
    host synchronisation; loggers convert them when they log): ``supervised_loss``, ``pseudo_loss``
    and ``pseudo_mask_rate`` (the fraction of unlabeled predictions used; 1 for mined pseudo-labels,
    0 when the batch had none).

    Args:
        threshold: online mode only: minimum softmax confidence of a pseudo-label (``None``: use all,
            as Lee 2013 does). A float in (0, 1].
        alpha: a constant weight instead of reading ``engine.state.<alpha_name>``. A number >= 0.
        supervised_loss: loss of the labeled rows, called as ``fn(logits, labels)`` (default
            cross-entropy; pass e.g. ``nn.CrossEntropyLoss(ignore_index=255)`` for segmentation).
        alpha_name: the ``engine.state`` attribute holding alpha (default ``"alpha"``).
        skip_unlabeled_when_alpha_is_zero: leave the second batch out of the forward pass while alpha
            is 0 (default ``True``).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from ignite.engine import create_supervised_trainer
        >>> from ignite_pseudolabel import AlphaRamp, SemiSupervisedLoader
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Linear(2, 3)
        >>> loss = PseudoLabelLoss()
        >>> trainer = create_supervised_trainer(
        ...     model, torch.optim.SGD(model.parameters(), lr=0.1), loss, prepare_batch=loss.prepare_batch)
        >>> loss.attach(trainer)
        >>> AlphaRamp(t1=1, t2=2, alpha_f=3.0).attach(trainer)
        >>> labeled = DataLoader(TensorDataset(torch.randn(8, 2), torch.randint(0, 3, (8,))), batch_size=4)
        >>> unlabeled = DataLoader(torch.randn(32, 2), batch_size=8, shuffle=True)
        >>> state = trainer.run(SemiSupervisedLoader(labeled, unlabeled=unlabeled), max_epochs=3)
        >>> state.alpha, float(state.pseudo_mask_rate)
        (3.0, 1.0)

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        threshold: float | None = None,
        *,
        alpha: float | None = None,
        supervised_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        alpha_name: str = "alpha",
        skip_unlabeled_when_alpha_is_zero: bool = True,
    ) -> None:
        super().__init__()
        self.threshold = optional_threshold("threshold", threshold)
        self.alpha = optional_float("alpha", alpha, low=0.0)
        if supervised_loss is not None and not callable(supervised_loss):
            raise TypeError(f"Argument supervised_loss should be callable, but given {type(supervised_loss).__name__}")
        self.supervised_loss = supervised_loss if supervised_loss is not None else F.cross_entropy
        self.alpha_name = check_identifier("alpha_name", alpha_name)
        self.skip_unlabeled_when_alpha_is_zero = bool(skip_unlabeled_when_alpha_is_zero)
        self._engine: Engine | None = None
        #: Detached scalar tensors of the last call: ``supervised_loss``, ``pseudo_loss``, ``pseudo_mask_rate``.
        self.components: dict[str, torch.Tensor] = {}

    def attach(self, engine: Engine) -> None:
        """Reads alpha from ``engine.state`` and publishes the loss components there after every iteration.

        Raises:
            ValueError: if this loss is already attached, or ``engine.state`` already has one of the
                attributes it publishes.
        """
        if not isinstance(engine, Engine):
            raise TypeError(f"Argument engine should be an ignite Engine, but given {type(engine).__name__}")
        if self._engine is not None:
            raise ValueError("This PseudoLabelLoss is already attached to an engine; create one loss per trainer")
        for name in STATE_ATTRIBUTES:
            if hasattr(engine.state, name):
                raise ValueError(f"Attribute '{name}' already exists in the engine.state; is another "
                                 "PseudoLabelLoss attached to this engine?")
            setattr(engine.state, name, None)
        self._engine = engine
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._publish)

    def _publish(self, engine: Engine) -> None:
        for name in STATE_ATTRIBUTES:
            setattr(engine.state, name, self.components.get(name))

    def current_alpha(self) -> float:
        """The weight of the pseudo term now: the constant ``alpha`` or ``engine.state.<alpha_name>``.

        Raises:
            RuntimeError: if no constant was given and the attached engine has no alpha (attach an
                :class:`~ignite_pseudolabel.AlphaRamp`), or the loss is not attached.
        """
        if self.alpha is not None:
            return self.alpha
        if self._engine is None:
            raise RuntimeError("PseudoLabelLoss has no alpha: give alpha=... or call loss.attach(trainer) and attach "
                               "an AlphaRamp to that trainer")
        value = getattr(self._engine.state, self.alpha_name, None)
        if value is None:
            raise RuntimeError(f"engine.state.{self.alpha_name} is not set: attach an AlphaRamp (or another state "
                               f"scheduler with param_name='{self.alpha_name}') to the trainer")
        return float(value)

    def prepare_batch(
        self,
        batch: SemiSupervisedBatch,
        device: str | torch.device | None = None,
        non_blocking: bool = False,
    ) -> tuple[torch.Tensor, SemiSupervisedTarget]:
        """Turns a :class:`~ignite_pseudolabel.SemiSupervisedBatch` into ``(inputs, target)``.

        The signature is that of the ``prepare_batch`` argument of Ignite's supervised trainers.
        The labeled inputs come first, then the unlabeled or pseudo-labeled inputs (left out while
        alpha is 0); each part is moved to ``device`` before one concatenation there.

        Raises:
            TypeError: if the batch does not come from :class:`~ignite_pseudolabel.SemiSupervisedLoader`
                or its parts do not have the documented structure.
            ValueError: if the two parts' inputs differ in per-sample shape or dtype.
        """
        use_second = not (self.skip_unlabeled_when_alpha_is_zero and self.current_alpha() == 0.0)
        return prepare_semi_supervised_batch(batch, device=device, non_blocking=non_blocking, use_second=use_second)

    def forward(self, y_pred: torch.Tensor, target: SemiSupervisedTarget) -> torch.Tensor:
        if not isinstance(target, SemiSupervisedTarget):
            raise TypeError(f"Expected a SemiSupervisedTarget as target, but given {type(target).__name__}: pass "
                            "prepare_batch=loss.prepare_batch to create_supervised_trainer")
        if not isinstance(y_pred, torch.Tensor) or y_pred.ndim < 2:
            shape = tuple(y_pred.shape) if isinstance(y_pred, torch.Tensor) else type(y_pred).__name__
            raise ValueError(f"Expected the model to output logits of shape (N, C, ...), but given {shape}")
        n_labeled = target.labels.shape[0]
        n_other = y_pred.shape[0] - n_labeled
        if n_other < 0 or (target.pseudo_labels is not None and target.pseudo_labels.shape[0] != n_other):
            raise ValueError(f"The predictions have {y_pred.shape[0]} rows, which does not match {n_labeled} labels "
                             f"plus {0 if target.pseudo_labels is None else target.pseudo_labels.shape[0]} "
                             "pseudo-labels")
        logits, other = y_pred[:n_labeled], y_pred[n_labeled:]
        supervised = self.supervised_loss(logits, target.labels)
        alpha = self.current_alpha()
        if n_other == 0:
            pseudo = mask_rate = torch.zeros((), device=y_pred.device)
        elif target.pseudo_labels is None:
            labels, mask = hard_pseudo_labels(other, self.threshold)
            pseudo = masked_cross_entropy(other, labels, mask)
            mask_rate = mask.float().mean()
        else:
            pseudo = F.cross_entropy(other, target.pseudo_labels)
            mask_rate = torch.ones((), device=y_pred.device)
        self.components = {
            "supervised_loss": supervised.detach(),
            "pseudo_loss": pseudo.detach(),
            "pseudo_mask_rate": mask_rate.detach(),
        }
        return supervised if alpha == 0.0 or n_other == 0 else supervised + alpha * pseudo

    def extra_repr(self) -> str:
        return f"threshold={self.threshold}, alpha={self.alpha if self.alpha is not None else self.alpha_name!r}"

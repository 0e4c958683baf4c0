"""What a semi-supervised batch holds, and how it becomes one forward pass's inputs and target.

The boundary between the data and the loss: :class:`~ignite_pseudolabel.SemiSupervisedLoader`
yields :class:`SemiSupervisedBatch` objects (whose unlabeled part may be :class:`Views`),
:func:`.prepare_semi_supervised_batch` concatenates their inputs and builds the
:class:`.SemiSupervisedTarget` that :class:`~ignite_pseudolabel.PseudoLabelLoss` reads. This module
depends on torch and Ignite only (no torchvision, no other module of the package).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
from ignite.utils import convert_tensor

__all__ = ["RawBatch", "SemiSupervisedBatch", "SemiSupervisedTarget", "Views", "prepare_semi_supervised_batch",
           "zero_non_finite_rows"]


class Views(NamedTuple):
    """A weakly and a strongly augmented view of the same unlabeled sample(s), and their position(s).

    ``DataLoader``'s default collation turns a list of ``Views`` into one ``Views`` of batched tensors,
    which :class:`~ignite_pseudolabel.PseudoLabelLoss` recognises: pseudo-labels come from the weak
    view and train the prediction on the strong view. ``sample_index`` is the position of the sample in the
    unlabeled dataset (used by per-sample statistics such as FlexMatch's, and to measure
    pseudo-label accuracy against held-back labels).

    :class:`~ignite_pseudolabel.WeakStrongViews` builds them from an inputs-only dataset.

    Examples:
        >>> from torch.utils.data import default_collate
        >>> batch = default_collate([Views(torch.zeros(3), torch.ones(3), 7), Views(torch.zeros(3), torch.ones(3), 2)])
        >>> batch.weak.shape, batch.sample_index
        (torch.Size([2, 3]), tensor([7, 2]))

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
        Defined in ``ignite_pseudolabel.batch`` (``ignite_pseudolabel.augment.Views`` still works).
    """

    weak: Any
    strong: Any
    sample_index: Any


class RawBatch(NamedTuple):
    """Raw inputs (e.g. ``uint8`` images) and their positions in their dataset, before any augmentation.

    What :class:`~ignite_pseudolabel.device_data.DeviceBatches` yields with ``return_index=True``, and what
    :class:`~ignite_pseudolabel.batch_views.BatchViews` turns into :class:`Views` (the positions become
    ``Views.sample_index``). ``DataLoader``'s default collation turns a list of ``RawBatch`` items into
    one ``RawBatch`` of batched tensors.

    Examples:
        >>> from torch.utils.data import default_collate
        >>> batch = default_collate([RawBatch(torch.zeros(2, dtype=torch.uint8), 4),
        ...                          RawBatch(torch.ones(2, dtype=torch.uint8), 9)])
        >>> batch.inputs.shape, batch.sample_index
        (torch.Size([2, 2]), tensor([4, 9]))

    .. versionadded:: 0.3.0
    """

    inputs: Any
    sample_index: Any


class SemiSupervisedBatch(NamedTuple):
    """What :class:`~ignite_pseudolabel.SemiSupervisedLoader` yields: a labeled batch and at most one other batch.

    Attributes:
        labeled: the labeled loader's batch, ``(inputs, labels)``.
        unlabeled: an unlabeled batch (online pseudo-labels): its inputs, or the :class:`Views` of
            :class:`~ignite_pseudolabel.WeakStrongViews` (weak view, strong view, positions); or ``None``.
        pseudo: ``(inputs, pseudo_labels)`` of a pseudo-labeled batch (mined pseudo-labels), or ``None``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
        Defined in ``ignite_pseudolabel.batch`` (``ignite_pseudolabel.data`` re-exports it).
    """

    labeled: Any
    unlabeled: Any = None
    pseudo: Any = None


class SemiSupervisedTarget(NamedTuple):
    """The target that :func:`.prepare_semi_supervised_batch` pairs with the concatenated inputs.

    The first ``labels.shape[0]`` rows of the predictions are the labeled samples. The remaining rows
    are pseudo-labeled (their labels are ``pseudo_labels``) or unlabeled; for unlabeled rows the
    pseudo-labels come from ``teacher_logits`` when given, else from the predictions themselves:
    with ``views == 1`` every unlabeled row is both source and student (Lee 2013); with
    ``views == 2`` the first half of the rows is the weak view (the source) and the second half the
    strong view (the student), as in FixMatch.

    Attributes:
        labels: labels of the labeled rows.
        pseudo_labels: mined pseudo-labels of the other rows, or ``None``.
        views: 1 or 2, see above.
        sample_index: positions of the unlabeled samples in their dataset (from :class:`Views`), or ``None``.
        teacher_logits: a teacher's (e.g. an EMA model's) logits for the unlabeled samples, or ``None``.
        unlabeled_valid: which unlabeled or pseudo-labeled predictions may be used at all, or ``None``
            (all): a ``bool`` tensor of shape ``(M,)``, one entry per sample (broadcast over the
            elements of dense predictions), or ``(M, d1, ...)``, one per element. ``M`` is the number
            of unlabeled or pseudo-labeled samples: with ``views == 2``, the rows of one view (an
            entry describes both views of its sample). :func:`prepare_semi_supervised_batch` sets it
            to False for the samples whose inputs held a NaN or an infinity (replaced by zeros);
            :class:`~ignite_pseudolabel.PseudoLabelLoss` leaves them out of the pseudo term and of
            its statistics.
        unlabeled_targets: held-back true labels of the unlabeled rows, aligned with them (e.g. label
            maps moved and mixed like the views by :class:`~ignite_pseudolabel.dense.DensePrepareBatch`),
            for measuring ``pseudo_accuracy`` only, never trained on; or ``None``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
        Defined in ``ignite_pseudolabel.batch`` (``ignite_pseudolabel.data`` re-exports it);
        ``unlabeled_valid``, ``unlabeled_targets``.
    """

    labels: torch.Tensor
    pseudo_labels: torch.Tensor | None = None
    views: int = 1
    sample_index: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    unlabeled_valid: torch.Tensor | None = None
    unlabeled_targets: torch.Tensor | None = None


def zero_non_finite_rows(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Replaces the samples (rows along dimension 0) of ``inputs`` that hold a NaN or an infinity by zeros.

    A corrupt sample must not reach the forward pass: a zero gradient times a NaN input is NaN in the
    weights' gradient, and a BatchNorm layer spreads a NaN row to the whole batch. Masking the
    sample's loss is therefore not enough; neutralising its inputs is. Pure and without host
    synchronisation (no data-dependent shapes): the finite samples are returned unchanged, and the
    mask says which samples were finite. Integer (and bool) inputs cannot hold NaN and are returned
    as they are, with ``None``.

    Args:
        inputs: a batch, ``(N, ...)``.

    Returns:
        ``(inputs, finite)``: the inputs with every non-finite sample replaced by zeros, and an
        ``(N,)`` ``bool`` tensor, True for the samples whose inputs were all finite (``None`` for
        integer inputs).

    Examples:
        >>> x = torch.tensor([[1.0, 2.0], [float("nan"), 3.0], [4.0, float("inf")]])
        >>> cleaned, finite = zero_non_finite_rows(x)
        >>> cleaned.tolist(), finite.tolist()
        ([[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]], [True, False, False])
        >>> zero_non_finite_rows(torch.tensor([[1, 2]], dtype=torch.uint8))[1] is None
        True

    .. versionadded:: 0.3.0
    """
    if not (inputs.is_floating_point() or inputs.is_complex()) or inputs.ndim == 0:
        return inputs, None
    # x * 0 is 0 for a finite x and NaN for a NaN or an infinity, and a sum of zeros cannot overflow:
    # the same mask as isfinite(x).all(1), computed several times faster on the CPU.
    zeros = inputs * 0
    finite = (zeros.flatten(1).sum(dim=1) if inputs.ndim > 1 else zeros) == 0
    return torch.where(finite.view(-1, *([1] * (inputs.ndim - 1))), inputs, zeros.new_zeros(())), finite


def _all_valid(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """The AND of the masks that are not ``None`` (``None`` if all are)."""
    given = [m for m in masks if m is not None]
    if not given:
        return None
    result = given[0]
    for mask in given[1:]:
        result = result & mask
    return result


def _inputs_of_labeled(batch: Any, name: str) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        shape = f"a {type(batch).__name__}" + (f" of {len(batch)}" if isinstance(batch, (tuple, list)) else "")
        raise TypeError(f"The {name} batch should be an (inputs, labels) pair, but given {shape}")
    return batch[0], batch[1]


def _inputs_of_unlabeled(batch: Any) -> Any:
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1:
            return batch[0]
        raise TypeError(f"The unlabeled batch should hold inputs only, but given a {type(batch).__name__} of "
                        f"{len(batch)}: if these are (inputs, labels), wrap the dataset in UnlabeledDataset so "
                        "its labels are never trained on, or pass (inputs, pseudo_labels) batches as pseudo=")
    return batch


def _check_rows(first: torch.Tensor, second: torch.Tensor, name: str) -> None:
    if not isinstance(second, torch.Tensor) or not isinstance(first, torch.Tensor):
        raise TypeError(f"The labeled and {name} inputs should be tensors, but given {type(first).__name__} "
                        f"and {type(second).__name__}; for other structures write a prepare_batch of your own")
    if first.shape[1:] != second.shape[1:] or first.dtype != second.dtype:
        raise ValueError(f"The {name} inputs should have the labeled inputs' per-sample shape "
                         f"{tuple(first.shape[1:])} and dtype {first.dtype}, but given {tuple(second.shape[1:])} "
                         f"and {second.dtype}")


def prepare_semi_supervised_batch(
    batch: SemiSupervisedBatch,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    use_second: bool = True,
    teacher: Callable[[torch.Tensor], torch.Tensor] | None = None,
    views: Callable[[Any], Views] | None = None,
) -> tuple[torch.Tensor, SemiSupervisedTarget]:
    """Concatenates the inputs of a :class:`SemiSupervisedBatch` for one forward pass.

    The labeled inputs come first, then the unlabeled inputs (or the weak and then the strong view of
    :class:`Views`, or the pseudo-labeled inputs). Each part is moved to ``device`` first and
    concatenated there, so pinned host memory is copied asynchronously. With a ``teacher``, the
    unlabeled inputs (the weak view, for :class:`Views`) go through the teacher without gradients
    and only the student's inputs join the batch.

    Unlabeled and pseudo-labeled samples whose (floating-point) inputs hold a NaN or an infinity, in
    either view, are replaced by zeros before any forward pass (:func:`zero_non_finite_rows`) and
    marked False in the target's ``unlabeled_valid``, so that a corrupt sample can neither poison
    the weights nor spread through a BatchNorm layer; the loss leaves them out. The labeled inputs
    are not checked.

    With ``views`` (e.g. :class:`~ignite_pseudolabel.batch_views.BatchViews`), an unlabeled batch of
    raw inputs (not :class:`Views`) is moved to ``device`` first and ``views(raw)`` makes its weak
    and strong views there, which then count as :class:`Views`; labeled inputs of an integer dtype
    (raw ``uint8`` images) get ``views.weak``, floating-point ones are used as they are.

    :meth:`PseudoLabelLoss.prepare_batch <ignite_pseudolabel.PseudoLabelLoss.prepare_batch>`
    calls it with the loss's teacher and views, leaving the second batch out while alpha is 0; call
    it yourself in a ``prepare_batch`` of your own, e.g. to transform the inputs before the forward pass.

    Args:
        batch: a batch of :class:`~ignite_pseudolabel.SemiSupervisedLoader`.
        device: where to move every part (default: leave them where they are).
        non_blocking: copy to the device asynchronously.
        use_second: include the unlabeled or pseudo-labeled part; ``False`` returns the labeled part only.
        teacher: a model predicting the pseudo-label sources (e.g. an EMA copy), or ``None``.
        views: makes :class:`Views` of a raw unlabeled batch on the device (``views(raw)``) and the
            weak view of raw labeled inputs (``views.weak(x)``), or ``None``.

    Returns:
        ``(inputs, target)``: the concatenated inputs and a :class:`.SemiSupervisedTarget`.

    Raises:
        TypeError: if ``batch`` is not a :class:`SemiSupervisedBatch` or its parts do not have the
            documented structure.
        ValueError: if the parts' inputs differ in per-sample shape or dtype.

    Examples:
        >>> labeled = (torch.ones(2, 3), torch.tensor([0, 1]))
        >>> views = Views(torch.zeros(4, 3), torch.full((4, 3), 2.0), torch.arange(4))
        >>> inputs, target = prepare_semi_supervised_batch(SemiSupervisedBatch(labeled, unlabeled=views))
        >>> inputs[:, 0].tolist(), target.views, target.sample_index.tolist()
        ([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0], 2, [0, 1, 2, 3])
        >>> corrupt = torch.tensor([[1.0, 1.0, 1.0], [float("nan"), 1.0, 1.0]])
        >>> inputs, target = prepare_semi_supervised_batch(SemiSupervisedBatch(labeled, unlabeled=corrupt))
        >>> inputs[2:].tolist(), target.unlabeled_valid.tolist()
        ([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], [True, False])

    .. versionadded:: 0.3.0
        Documented and exported (it existed, undocumented, in ``ignite_pseudolabel.data``); ``views``.
    """
    if not isinstance(batch, SemiSupervisedBatch):
        raise TypeError(f"Expected a SemiSupervisedBatch from SemiSupervisedLoader, but given a "
                        f"{type(batch).__name__}: run the trainer on SemiSupervisedLoader(labeled, unlabeled=...)")

    def move(t: Any) -> Any:
        return convert_tensor(t, device=device, non_blocking=non_blocking)

    inputs, labels = _inputs_of_labeled(batch.labeled, "labeled")
    x, y = move(inputs), move(labels)
    if views is not None and isinstance(x, torch.Tensor) and not (x.is_floating_point() or x.is_complex()):
        x = views.weak(x)  # type: ignore[attr-defined]  # raw labeled images: their weak view
    if not use_second or (batch.unlabeled is None and batch.pseudo is None):
        return x, SemiSupervisedTarget(y)
    if batch.pseudo is not None:
        inputs, pseudo = _inputs_of_labeled(batch.pseudo, "pseudo-labeled")
        x_p = move(inputs)
        _check_rows(x, x_p, "pseudo-labeled")
        x_p, valid = zero_non_finite_rows(x_p)
        return torch.cat([x, x_p]), SemiSupervisedTarget(y, move(pseudo), unlabeled_valid=valid)
    index = None
    unlabeled = batch.unlabeled
    if views is not None and not isinstance(unlabeled, Views):
        # raw inputs (a one-element batch, as TensorDataset(x) gives, is unwrapped; a RawBatch(inputs,
        # sample_index) goes to `views` whole), on the device now: their weak and strong views
        raw = unlabeled if isinstance(unlabeled, RawBatch) else _inputs_of_unlabeled(unlabeled)
        unlabeled = views(move(raw))
    if isinstance(unlabeled, Views):
        weak, strong, index = move(unlabeled.weak), move(unlabeled.strong), move(unlabeled.sample_index)
        _check_rows(x, weak, "weak-view")
        _check_rows(x, strong, "strong-view")
        (source, weak_valid), (student, strong_valid) = zero_non_finite_rows(weak), zero_non_finite_rows(strong)
        valid = _all_valid(weak_valid, strong_valid)
    else:
        student = move(_inputs_of_unlabeled(batch.unlabeled))
        _check_rows(x, student, "unlabeled")
        student, valid = zero_non_finite_rows(student)
        source = student
    if teacher is not None:
        with torch.no_grad():
            teacher_logits = teacher(source)
        return torch.cat([x, student]), SemiSupervisedTarget(y, sample_index=index, teacher_logits=teacher_logits,
                                                             unlabeled_valid=valid)
    if source is student:
        return torch.cat([x, student]), SemiSupervisedTarget(y, sample_index=index, unlabeled_valid=valid)
    return torch.cat([x, source, student]), SemiSupervisedTarget(y, views=2, sample_index=index,
                                                                 unlabeled_valid=valid)

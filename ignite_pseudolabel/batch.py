"""What a semi-supervised batch holds, and how it becomes one forward pass's inputs and target.

The boundary between the data and the loss: :class:`~ignite_pseudolabel.SemiSupervisedLoader`
yields :class:`SemiSupervisedBatch` objects (whose unlabeled part may be raw inputs, a
:class:`RawBatch`, :class:`Views` or :class:`DenseViews`), :func:`.prepare_semi_supervised_batch`
concatenates their inputs and builds the :class:`.SemiSupervisedTarget` that the loss reads. This
module depends on torch and Ignite only (no torchvision, no other module of the package).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, NamedTuple

import torch
from ignite.utils import convert_tensor

__all__ = ["DenseViews", "RawBatch", "SemiSupervisedBatch", "SemiSupervisedTarget", "Views",
           "prepare_semi_supervised_batch", "zero_non_finite_rows"]


def _deprecated_alias(old: str, new: str) -> property:
    def get(self: Any) -> Any:
        warnings.warn(f"{type(self).__name__}.{old} is deprecated and will be removed in 0.4: use {new}",
                      DeprecationWarning, stacklevel=2)
        return getattr(self, new)

    return property(get, doc=f"Deprecated name of :attr:`{new}` (removed in 0.4).")


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


class DenseViews(NamedTuple):
    """Pixel-aligned weak and strong views of unlabeled images, with their valid masks and positions.

    What :class:`~ignite_pseudolabel.dense.DenseWeakStrongViews` yields (collated by a ``DataLoader``)
    and :func:`prepare_semi_supervised_batch` reads: ``weak``, ``strong`` and ``sample_index`` as in
    :class:`Views`, plus the per-pixel ``valid`` mask and ``held_back_targets``, which go into the
    target's ``unlabeled_valid`` and ``held_back_targets``.

    Attributes:
        weak: the weak view (shared geometry only).
        strong: the strong view: the weak view's pixels with photometric changes (and Cutout).
        valid: ``bool`` mask, False for the pixels the geometry brought in from outside the image
            (padding): they are never trained on and never enter threshold statistics. It is not
            the labels' ignore value: an unlabeled image has no labels.
        sample_index: the position of the image in its dataset.
        held_back_targets: the image's held-back true label map moved with the same geometry (padding
            set to the ignore value), for measuring pseudo-label accuracy only; an empty tensor when
            there is none.

    .. versionadded:: 0.3.0
    """

    weak: Any
    strong: Any
    valid: Any
    sample_index: Any
    held_back_targets: Any

    held_back = _deprecated_alias("held_back", "held_back_targets")


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


class _TargetFields(NamedTuple):
    labels: torch.Tensor
    pseudo_labels: torch.Tensor | None = None
    num_views: int = 1
    sample_index: torch.Tensor | None = None
    teacher_logits: torch.Tensor | None = None
    unlabeled_valid: torch.Tensor | None = None
    held_back_targets: torch.Tensor | None = None
    mix: Callable[[torch.Tensor], torch.Tensor] | None = None


_RENAMED = {"views": "num_views", "unlabeled_targets": "held_back_targets"}  # old name -> new name (0.3)


def _renamed(fields: dict[str, Any]) -> dict[str, Any]:
    for old, new in _RENAMED.items():
        if old in fields:
            warnings.warn(f"SemiSupervisedTarget({old}=...) is deprecated and will be removed in 0.4: use {new}=...",
                          DeprecationWarning, stacklevel=3)
            fields[new] = fields.pop(old)
    return fields


class SemiSupervisedTarget(_TargetFields):
    """The target that :func:`.prepare_semi_supervised_batch` pairs with the concatenated inputs.

    The first ``labels.shape[0]`` rows of the predictions are the labeled samples. The remaining rows
    are pseudo-labeled (their labels are ``pseudo_labels``) or unlabeled; for unlabeled rows the
    pseudo-labels come from ``teacher_logits`` when given, else from the predictions themselves:
    with ``num_views == 1`` every unlabeled row is both source and student (Lee 2013); with
    ``num_views == 2`` the first half of the rows is the weak view (the source) and the second half
    the strong view (the student), as in FixMatch.

    Attributes:
        labels: labels of the labeled rows.
        pseudo_labels: mined pseudo-labels of the other rows, or ``None``.
        num_views: 1 or 2, see above.
        sample_index: positions of the unlabeled samples in their dataset (from :class:`Views`), or ``None``.
        teacher_logits: a teacher's (e.g. an EMA model's) logits for the unlabeled samples, or ``None``.
        unlabeled_valid: which unlabeled or pseudo-labeled predictions may be used at all, or ``None``
            (all): a ``bool`` tensor of shape ``(M,)``, one entry per sample (broadcast over the
            elements of dense predictions), or ``(M, d1, ...)``, one per element. ``M`` is the number
            of unlabeled or pseudo-labeled samples: with ``num_views == 2``, the rows of one view (an
            entry describes both views of its sample). :func:`prepare_semi_supervised_batch` sets it
            to False for the samples whose inputs held a NaN or an infinity (replaced by zeros) and
            for the padding pixels of :class:`DenseViews`; the loss leaves them out of the pseudo
            term and of its statistics.
        held_back_targets: held-back true labels of the unlabeled rows, aligned with them (e.g. the
            label maps of :class:`DenseViews`), for measuring ``pseudo_accuracy`` only, never
            trained on; or ``None``.
        mix: with ``num_views == 2``, mixes a tensor aligned with the weak view's rows as the student's
            inputs were mixed (e.g. CutMix boxes, see :func:`prepare_semi_supervised_batch`): the loss
            applies it to the weak view's predictions, whose pseudo-labels then sit on the student's
            pixels; or ``None``. Everything else in the target already describes the student's
            (mixed) rows.

    Examples:
        >>> target = SemiSupervisedTarget(torch.tensor([0, 1]), num_views=2)
        >>> target.num_views, target._replace(num_views=1).num_views
        (2, 1)

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
        Defined in ``ignite_pseudolabel.batch`` (``ignite_pseudolabel.data`` re-exports it);
        ``unlabeled_valid``, ``held_back_targets``, ``mix``; ``views`` renamed ``num_views`` (the old
        name still works, with a ``DeprecationWarning``, until 0.4).
    """

    __slots__ = ()

    def __new__(cls, *args: Any, **fields: Any) -> SemiSupervisedTarget:
        return super().__new__(cls, *args, **_renamed(fields))

    def _replace(self, **fields: Any) -> SemiSupervisedTarget:
        return super()._replace(**_renamed(fields))

    views = _deprecated_alias("views", "num_views")
    unlabeled_targets = _deprecated_alias("unlabeled_targets", "held_back_targets")


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


def _unlabeled_parts(unlabeled: Any, x: torch.Tensor, move: Callable[[Any], Any]) -> tuple[Any, ...]:
    """(source, student, positions, validity, held-back maps) of an unlabeled batch on the device: the
    weak and strong view of :class:`Views` / :class:`DenseViews`, or the plain inputs twice."""
    if not isinstance(unlabeled, (Views, DenseViews)):
        student = move(_inputs_of_unlabeled(unlabeled))
        _check_rows(x, student, "unlabeled")
        student, valid = zero_non_finite_rows(student)
        return student, student, None, valid, None
    weak, strong = move(unlabeled.weak), move(unlabeled.strong)
    index = None if unlabeled.sample_index is None else move(unlabeled.sample_index)
    _check_rows(x, weak, "weak-view")
    _check_rows(x, strong, "strong-view")
    (source, weak_valid), (student, strong_valid) = zero_non_finite_rows(weak), zero_non_finite_rows(strong)
    valid = _all_valid(weak_valid, strong_valid)
    if not isinstance(unlabeled, DenseViews):
        return source, student, index, valid, None
    pixels = move(unlabeled.valid).bool()  # per pixel: padding is invalid
    if valid is not None:
        pixels = pixels & valid.view(*valid.shape, *([1] * (pixels.ndim - valid.ndim)))
    held_back = unlabeled.held_back_targets
    held_back = move(held_back).long() if held_back.numel() else None
    return source, student, index, pixels, held_back


def prepare_semi_supervised_batch(
    batch: SemiSupervisedBatch,
    device: str | torch.device | None = None,
    non_blocking: bool = False,
    use_second: bool = True,
    teacher: Callable[[torch.Tensor], torch.Tensor] | None = None,
    views: Callable[[Any], Any] | None = None,
    mix: Callable[[torch.Tensor], Callable[[torch.Tensor], torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, SemiSupervisedTarget]:
    """Concatenates the inputs of a :class:`SemiSupervisedBatch` for one forward pass.

    The labeled inputs come first, then the unlabeled inputs (or the weak and then the strong view of
    :class:`Views` and :class:`DenseViews`, or the pseudo-labeled inputs). Each part is moved to
    ``device`` first and concatenated there, once, so pinned host memory is copied asynchronously.
    With a ``teacher``, the unlabeled inputs (the weak view, for views) go through the teacher
    without gradients and only the student's inputs join the batch.

    Unlabeled and pseudo-labeled samples whose (floating-point) inputs hold a NaN or an infinity, in
    either view, are replaced by zeros before any forward pass (:func:`zero_non_finite_rows`) and
    marked False in the target's ``unlabeled_valid``, so that a corrupt sample can neither poison
    the weights nor spread through a BatchNorm layer; the loss leaves them out. The labeled inputs
    are not checked. :class:`DenseViews` add their per-pixel ``valid`` masks and held-back maps.

    With ``views`` (e.g. :class:`~ignite_pseudolabel.batch_views.BatchViews`), an unlabeled batch of
    raw inputs (a tensor, a one-element batch or a :class:`RawBatch`) is moved to ``device`` first and
    ``views(raw)`` makes its views there; labeled inputs of an integer dtype (raw ``uint8`` images)
    get ``views.weak``, floating-point ones are used as they are.

    With ``mix`` (e.g. the CutMix of :class:`~ignite_pseudolabel.dense.DensePrepareBatch`),
    ``mixer = mix(student_inputs)`` draws a mix for the batch and ``mixer(t)`` applies it to any
    tensor aligned with the student's rows ``(M, ..., H, W)``: the student's inputs before the
    concatenation, the teacher's logits, the mined labels, the valid masks (made per pixel) and the
    held-back maps; with weak and strong views the mixer goes into the target's ``mix``, for the loss
    to mix the weak view's predictions alike. The pseudo-labels must come from elsewhere than the
    student's inputs (two views, a teacher, or mined labels).

    Args:
        batch: a batch of :class:`~ignite_pseudolabel.SemiSupervisedLoader`.
        device: where to move every part (default: leave them where they are).
        non_blocking: copy to the device asynchronously.
        use_second: include the unlabeled or pseudo-labeled part; ``False`` returns the labeled part only.
        teacher: a model predicting the pseudo-label sources (e.g. an EMA copy), or ``None``.
        views: makes :class:`Views` (or :class:`DenseViews`) of a raw unlabeled batch on the device
            (``views(raw)``) and the weak view of raw labeled inputs (``views.weak(x)``), or ``None``.
        mix: draws a mix from the student's inputs and returns the function applying it, or ``None``.

    Returns:
        ``(inputs, target)``: the concatenated inputs and a :class:`.SemiSupervisedTarget`.

    Raises:
        TypeError: if ``batch`` is not a :class:`SemiSupervisedBatch` or its parts do not have the
            documented structure.
        ValueError: if the parts' inputs differ in per-sample shape or dtype, or ``mix`` is given for
            unlabeled inputs that are their own pseudo-label source.

    Examples:
        >>> labeled = (torch.ones(2, 3), torch.tensor([0, 1]))
        >>> views = Views(torch.zeros(4, 3), torch.full((4, 3), 2.0), torch.arange(4))
        >>> inputs, target = prepare_semi_supervised_batch(SemiSupervisedBatch(labeled, unlabeled=views))
        >>> inputs[:, 0].tolist(), target.num_views, target.sample_index.tolist()
        ([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0], 2, [0, 1, 2, 3])
        >>> corrupt = torch.tensor([[1.0, 1.0, 1.0], [float("nan"), 1.0, 1.0]])
        >>> inputs, target = prepare_semi_supervised_batch(SemiSupervisedBatch(labeled, unlabeled=corrupt))
        >>> inputs[2:].tolist(), target.unlabeled_valid.tolist()
        ([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], [True, False])

    .. versionadded:: 0.3.0
        Documented and exported (it existed, undocumented, in ``ignite_pseudolabel.data``); ``views``,
        ``mix``, :class:`DenseViews`.
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
        target = SemiSupervisedTarget(y, move(pseudo), unlabeled_valid=valid)
        if mix is None:
            return torch.cat([x, x_p]), target
        return _mixed(x, x_p, target, mix(x_p))
    unlabeled = batch.unlabeled
    if views is not None and not isinstance(unlabeled, (Views, DenseViews)):
        # raw inputs, on the device now: their views (a one-element batch, as TensorDataset(x) gives, is
        # unwrapped; a RawBatch(inputs, sample_index) goes to `views` whole)
        unlabeled = views(move(unlabeled if isinstance(unlabeled, RawBatch) else _inputs_of_unlabeled(unlabeled)))
    source, student, index, valid, held_back = _unlabeled_parts(unlabeled, x, move)
    target = SemiSupervisedTarget(y, sample_index=index, unlabeled_valid=valid, held_back_targets=held_back)
    if teacher is not None:
        with torch.no_grad():
            target = target._replace(teacher_logits=teacher(source))
        source = None  # the sources are the teacher's logits, not rows of the forward pass
    elif source is student:
        if mix is not None:
            raise ValueError("Mixing the student's inputs needs pseudo-labels computed apart from them: give weak and "
                             "strong views, a teacher, or mined pseudo-labels")
        return torch.cat([x, student]), target
    else:
        target = target._replace(num_views=2)
    if mix is not None:
        return _mixed(x, student, target, mix(student), source)
    return torch.cat([x, student] if source is None else [x, source, student]), target


def _mixed(x: torch.Tensor, student: torch.Tensor, target: SemiSupervisedTarget,
           mixer: Callable[[torch.Tensor], torch.Tensor], source: torch.Tensor | None = None,
           ) -> tuple[torch.Tensor, SemiSupervisedTarget]:
    """The inputs with the student's rows mixed, and the target with every tensor aligned with them mixed
    alike (the valid mask made per pixel first); with weak-view rows (``source``), the mixer goes into
    the target for the loss to mix their predictions."""
    valid = target.unlabeled_valid
    if valid is not None and valid.ndim < student.ndim - 1:  # per sample -> per pixel
        valid = valid.view(*valid.shape, *([1] * (student.ndim - 1 - valid.ndim))).expand(
            valid.shape[0], *student.shape[2:])
    fields = {name: None if value is None else mixer(value) for name, value in (
        ("teacher_logits", target.teacher_logits), ("pseudo_labels", target.pseudo_labels),
        ("unlabeled_valid", valid), ("held_back_targets", target.held_back_targets))}
    target = target._replace(**fields, mix=mixer if source is not None else None)
    student = mixer(student)
    return torch.cat([x, student] if source is None else [x, source, student]), target

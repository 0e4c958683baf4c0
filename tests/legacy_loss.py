"""The loss and batch preparation as they were before the 0.3 reshaping (commit 237f1bf), frozen for comparison.

``tests/test_core_equivalence.py`` trains seeded runs with this and with the composed
``PseudoLabelLoss`` and asserts that every loss value and every weight are bit-identical. Only the
algorithm is kept (no argument checks, no publishing); the policy, alignment and fairness objects
are the package's own, whose maths the reshaping did not touch. Do not edit: it is the "before".
"""

from typing import Any

import torch
import torch.nn.functional as F
from ignite.utils import convert_tensor
from torch import nn

from ignite_pseudolabel._stats import finite_softmax
from ignite_pseudolabel.alignment import sharpen
from ignite_pseudolabel.batch import SemiSupervisedBatch, SemiSupervisedTarget, Views, zero_non_finite_rows
from ignite_pseudolabel.dense import cutmix, cutmix_boxes, decode_label_maps


def _broadcast_valid(valid, shape):
    if valid is None:
        return None
    return valid.view(*valid.shape, *([1] * (len(shape) - valid.ndim))).expand(tuple(shape))


def _masked_average(per_prediction, keep, valid):
    if valid is None:
        return (per_prediction * keep).mean()
    return (per_prediction * keep).sum() / valid.sum().clamp(min=1)


def masked_cross_entropy(logits, labels, mask, *, valid=None):
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    valid = _broadcast_valid(valid, mask.shape)
    keep = mask if valid is None else mask & valid
    per_prediction = F.cross_entropy(torch.where(keep.unsqueeze(1), logits, 0.0), labels, reduction="none")
    return _masked_average(per_prediction, keep, valid)


def masked_soft_cross_entropy(logits, targets, mask, *, valid=None):
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    valid = _broadcast_valid(valid, mask.shape)
    keep = mask if valid is None else mask & valid
    log_probs = torch.log_softmax(torch.where(keep.unsqueeze(1), logits, 0.0).float(), dim=1)
    per_prediction = -(torch.where(keep.unsqueeze(1), targets, 0.0) * log_probs).sum(dim=1)
    return _masked_average(per_prediction, keep, valid)


def _all_valid(*masks):
    given = [m for m in masks if m is not None]
    if not given:
        return None
    result = given[0]
    for mask in given[1:]:
        result = result & mask
    return result


def prepare_semi_supervised_batch(batch, device=None, non_blocking=False, use_second=True, teacher=None):
    def move(t):
        return convert_tensor(t, device=device, non_blocking=non_blocking)

    x, y = move(batch.labeled[0]), move(batch.labeled[1])
    if not use_second or (batch.unlabeled is None and batch.pseudo is None):
        return x, SemiSupervisedTarget(y)
    if batch.pseudo is not None:
        x_p, valid = zero_non_finite_rows(move(batch.pseudo[0]))
        return torch.cat([x, x_p]), SemiSupervisedTarget(y, move(batch.pseudo[1]), unlabeled_valid=valid)
    index = None
    unlabeled = batch.unlabeled
    if isinstance(unlabeled, Views):
        weak, strong, index = move(unlabeled.weak), move(unlabeled.strong), move(unlabeled.sample_index)
        (source, weak_valid), (student, strong_valid) = zero_non_finite_rows(weak), zero_non_finite_rows(strong)
        valid = _all_valid(weak_valid, strong_valid)
    else:
        unlabeled = unlabeled[0] if isinstance(unlabeled, (tuple, list)) else unlabeled
        student, valid = zero_non_finite_rows(move(unlabeled))
        source = student
    if teacher is not None:
        with torch.no_grad():
            teacher_logits = teacher(source)
        return torch.cat([x, student]), SemiSupervisedTarget(y, sample_index=index, teacher_logits=teacher_logits,
                                                             unlabeled_valid=valid)
    if source is student:
        return torch.cat([x, student]), SemiSupervisedTarget(y, sample_index=index, unlabeled_valid=valid)
    return torch.cat([x, source, student]), SemiSupervisedTarget(y, num_views=2, sample_index=index,
                                                                 unlabeled_valid=valid)


class LegacyPseudoLabelLoss(nn.Module):
    """The pre-0.3 ``PseudoLabelLoss`` algorithm: ``alpha`` is a callable here."""

    def __init__(self, alpha, policy=None, temperature=None, alignment=None, fairness=None, teacher=None,
                 held_back_targets=None, supervised_loss=F.cross_entropy):
        super().__init__()
        self.alpha, self.policy, self.temperature = alpha, policy, temperature
        self.alignment, self.fairness, self.supervised_loss = alignment, fairness, supervised_loss
        self.__dict__["teacher"] = teacher
        self.held_back_targets = held_back_targets
        self.components: dict = {}

    def prepare_batch(self, batch, device=None, non_blocking=False):
        return prepare_semi_supervised_batch(batch, device, non_blocking, use_second=self.alpha() != 0.0,
                                             teacher=self.teacher)

    def forward(self, y_pred, target):
        n_labeled = target.labels.shape[0]
        other = y_pred[n_labeled:]
        n_other = other.shape[0]
        supervised = self.supervised_loss(y_pred[:n_labeled], target.labels)
        accuracy = None
        fairness = None if self.fairness is None else torch.zeros((), device=y_pred.device)
        if n_other == 0:
            pseudo = mask_rate = torch.zeros((), device=y_pred.device)
        elif target.pseudo_labels is not None:
            usable = _broadcast_valid(target.unlabeled_valid, (n_other, *other.shape[2:]))
            mask = torch.isfinite(other.detach()).all(dim=1)
            mask = mask if usable is None else mask & usable
            pseudo = masked_cross_entropy(other, target.pseudo_labels, mask, valid=usable)
            mask_rate = mask.float().mean()
        else:
            if target.teacher_logits is not None:
                source, student = target.teacher_logits, other
            elif target.num_views == 2:
                source, student = other[: n_other // 2], other[n_other // 2:]
            else:
                source, student = other, other
            pseudo, mask, labels, fairness = self._online_term(source.detach(), student, target.sample_index,
                                                               target.unlabeled_valid)
            mask_rate = mask.float().mean()
            accuracy = self._accuracy(labels, mask, target.sample_index, target.held_back_targets, other.shape[1])
        self.components = {"supervised_loss": supervised.detach(), "pseudo_loss": pseudo.detach(),
                           "pseudo_mask_rate": mask_rate.detach(), "pseudo_accuracy": accuracy,
                           "fairness_loss": fairness}
        alpha = self.alpha()
        if alpha == 0.0 or n_other == 0:
            return supervised
        if self.fairness is not None and fairness is not None:
            pseudo = pseudo + self.fairness.weight * fairness
        return supervised + alpha * pseudo

    def _online_term(self, source, student, index, unlabeled_valid=None):
        num_classes = source.shape[1]
        shape = (source.shape[0], *source.shape[2:])
        usable = _broadcast_valid(unlabeled_valid, shape)
        probs, valid = finite_softmax(source.movedim(1, -1).reshape(-1, num_classes))
        if usable is not None:
            valid = valid & usable.reshape(-1)
        if self.alignment is not None:
            probs = self.alignment(probs, valid)
        labels = probs.argmax(dim=1)
        if self.policy is None:
            mask = valid
        else:
            row_index = index if index is not None and index.shape[0] == probs.shape[0] else None
            mask = self.policy(probs, valid, row_index) & valid
        labels, mask = labels.view(shape), mask.view(shape) & torch.isfinite(student.detach()).all(dim=1)
        fairness = None
        if self.fairness is not None:
            student_rows = student.movedim(1, -1).reshape(-1, num_classes)
            fairness = self.fairness(probs, valid, student_rows, mask.reshape(-1))
        if self.temperature is None:
            return masked_cross_entropy(student, labels, mask, valid=usable), mask, labels, fairness
        soft = sharpen(probs, self.temperature).view(*shape, num_classes).movedim(-1, 1)
        return masked_soft_cross_entropy(student, soft, mask, valid=usable), mask, labels, fairness

    def _accuracy(self, labels, mask, index, truth=None, num_classes=0):
        if truth is not None:
            used = mask & (truth >= 0) & (truth < num_classes)
            return ((labels == truth) & used).sum().float() / used.sum().float().clamp(min=1)
        if self.held_back_targets is None or index is None or labels.ndim != 1:
            return None
        correct = (labels == self.held_back_targets[index]) & mask
        return correct.sum().float() / mask.sum().float().clamp(min=1)


class LegacyDensePrepareBatch:
    """The pre-0.3 ``DensePrepareBatch`` (teacher or mined label maps; CutMix mixes the target here)."""

    def __init__(self, loss, cutmix_kwargs, generator, ignore_index=255):
        self.loss, self.cutmix, self.generator, self.ignore_index = loss, cutmix_kwargs, generator, ignore_index

    def __call__(self, batch: Any, device=None, non_blocking=False):
        dense = batch.unlabeled if batch.unlabeled is not None else None
        if dense is not None:
            batch = batch._replace(unlabeled=Views(dense.weak, dense.strong, dense.sample_index))
        x, target = self.loss.prepare_batch(batch, device, non_blocking)
        n_labeled = target.labels.shape[0]
        if x.shape[0] == n_labeled:
            return x, target
        if target.pseudo_labels is not None:
            labels, valid = decode_label_maps(target.pseudo_labels, self.ignore_index)
            target = target._replace(pseudo_labels=labels)
            held_back = None
        else:
            valid = dense.valid.bool()
            held_back = dense.held_back_targets.long() if dense.held_back_targets.numel() else None
        if target.unlabeled_valid is not None:
            per_sample = target.unlabeled_valid
            valid = valid & per_sample.view(*per_sample.shape, *([1] * (valid.ndim - per_sample.ndim)))
        if self.cutmix is not None:
            student = x[n_labeled:]
            boxes = cutmix_boxes(student.shape[0], (student.shape[-2], student.shape[-1]), device=x.device,
                                 generator=self.generator, **self.cutmix)
            x = torch.cat([x[:n_labeled], cutmix(student, boxes)])
            if target.teacher_logits is not None:
                target = target._replace(teacher_logits=cutmix(target.teacher_logits, boxes))
            if target.pseudo_labels is not None:
                target = target._replace(pseudo_labels=cutmix(target.pseudo_labels, boxes))
            valid = cutmix(valid, boxes)
            held_back = None if held_back is None else cutmix(held_back, boxes)
        return x, target._replace(unlabeled_valid=valid, held_back_targets=held_back)


__all__ = ["LegacyDensePrepareBatch", "LegacyPseudoLabelLoss", "SemiSupervisedBatch"]

"""Label sources: hard, soft with a temperature, aligned (with or without aligned targets)."""

import pytest
import torch

from ignite_pseudolabel import DistributionAlignment
from ignite_pseudolabel.labels import AlignedLabels, HardLabels, LabelSource, SoftLabels

PROBS = torch.tensor([[0.6, 0.4], [0.2, 0.8], [0.45, 0.55]])
VALID = torch.tensor([True, True, False])


def test_hard_labels_are_the_argmax_and_leave_the_probabilities():
    out = HardLabels()(PROBS, VALID)
    assert out.targets.tolist() == [0, 1, 1] and out.labels.tolist() == [0, 1, 1] and out.probs is PROBS


def test_soft_labels_are_sharpened_probabilities():
    out = SoftLabels(0.5)(PROBS, VALID)
    squared = PROBS**2
    assert torch.allclose(out.targets, squared / squared.sum(1, keepdim=True))
    assert out.labels.tolist() == [0, 1, 1] and out.probs is PROBS
    assert torch.allclose(SoftLabels(1.0)(PROBS, VALID).targets, PROBS)


def test_aligned_labels_update_the_alignment_with_valid_rows_only():
    alignment = DistributionAlignment(2, momentum=0.0)
    out = AlignedLabels(alignment, SoftLabels(0.5))(PROBS, VALID)
    assert torch.allclose(alignment.running, torch.tensor([0.4, 0.6]))  # the mean of the two valid rows
    aligned = PROBS * (0.5 / torch.tensor([0.4, 0.6]))
    aligned = aligned / aligned.sum(1, keepdim=True)
    assert torch.allclose(out.probs, aligned)
    squared = aligned**2
    assert torch.allclose(out.targets, squared / squared.sum(1, keepdim=True))
    raw = AlignedLabels(DistributionAlignment(2, momentum=0.0), targets_from_aligned=False)(PROBS, VALID)
    assert raw.targets.tolist() == [0, 1, 1] and torch.allclose(raw.probs, aligned)
    assert aligned.argmax(1).tolist() == [0, 1, 0]  # the third row's belief flips; its raw label does not


def test_validation_and_the_base_class():
    with pytest.raises(ValueError, match=r"temperature should be a finite number in \(0, 1\], but given 0.0"):
        SoftLabels(0.0)
    with pytest.raises(TypeError, match="alignment should be a DistributionAlignment, but given str"):
        AlignedLabels("uniform")
    with pytest.raises(TypeError, match="labels should be a LabelSource, but given function"):
        AlignedLabels(DistributionAlignment(2), lambda p, v: p)
    with pytest.raises(NotImplementedError):
        LabelSource()(PROBS, VALID)
    assert "temperature=0.5" in repr(SoftLabels(0.5))

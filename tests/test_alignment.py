import pytest
import torch

from ignite_pseudolabel import DistributionAlignment, sharpen


def test_alignment_by_hand_and_running_average():
    align = DistributionAlignment(2, target=torch.tensor([1.0, 3.0]), momentum=0.5)
    probs = torch.tensor([[0.6, 0.4], [0.8, 0.2]])
    out = align(probs, torch.tensor([True, True]))
    running = 0.5 * torch.tensor([0.5, 0.5]) + 0.5 * torch.tensor([0.7, 0.3])
    expected = probs * torch.tensor([0.25, 0.75]) / running
    expected = expected / expected.sum(1, keepdim=True)
    assert torch.allclose(out, expected) and torch.allclose(align.running, running)
    assert torch.allclose(out.sum(1), torch.ones(2))


def test_invalid_rows_do_not_move_the_running_average():
    align = DistributionAlignment(3, momentum=0.0)
    align(torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]), torch.tensor([True, False]))
    assert align.running.tolist() == pytest.approx([0.2, 0.3, 0.5])
    before = align.running.clone()
    align(torch.full((1, 3), 1 / 3), torch.tensor([False]))
    assert torch.equal(align.running, before)


@pytest.mark.parametrize("target", [torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0]), torch.tensor([1.0]),
                                    torch.tensor([1.0, float("nan")])])
def test_target_validation(target):
    with pytest.raises(ValueError, match="target should be 2 non-negative class frequencies"):
        DistributionAlignment(2, target=target)


def test_sharpen():
    probs = torch.tensor([[0.6, 0.3, 0.1]])
    assert torch.allclose(sharpen(probs, 1.0), probs)
    sharp = sharpen(probs, 0.5)
    assert torch.allclose(sharp, probs**2 / (probs**2).sum())
    assert sharp.argmax() == 0 and sharp[0, 0] > probs[0, 0]

import ignite.distributed as idist
import pytest
import torch

from ignite_pseudolabel import DistributionAlignment, PseudoLabelLoss
from ignite_pseudolabel.alignment import sharpen


def aligned_by_hand(probs, target, running):
    expected = probs * target / running
    return expected / expected.sum(1, keepdim=True)


def test_alignment_by_hand_and_running_average():
    align = DistributionAlignment(2, target=torch.tensor([1.0, 3.0]), momentum=0.5)
    target = torch.tensor([0.25, 0.75])
    probs = torch.tensor([[0.6, 0.4], [0.8, 0.2]])
    out = align(probs, torch.tensor([True, True]))
    # the first batch initialises the running average with its mean
    running = torch.tensor([0.7, 0.3])
    assert torch.allclose(out, aligned_by_hand(probs, target, running)) and torch.allclose(align.running, running)
    assert torch.allclose(out.sum(1), torch.ones(2)) and align.initialized.item()
    # then the exponential moving average
    probs = torch.tensor([[0.1, 0.9], [0.3, 0.7]])
    out = align(probs, torch.tensor([True, True]))
    running = 0.5 * running + 0.5 * torch.tensor([0.2, 0.8])
    assert torch.allclose(out, aligned_by_hand(probs, target, running)) and torch.allclose(align.running, running)


def test_alignment_acts_from_the_first_step_with_a_high_momentum():
    align = DistributionAlignment(4, momentum=0.999)
    probs = torch.tensor([0.7, 0.1, 0.1, 0.1]) + 0.05 * torch.randn(32, 4).abs()
    probs = probs / probs.sum(1, keepdim=True)  # skewed towards class 0
    out = align(probs, torch.ones(32, dtype=torch.bool))
    assert torch.allclose(align.running, probs.mean(0))
    # the aligned mean is close to the uniform target (a uniform start would have moved it by ~0.1%)
    assert (out - probs).abs().max() > 0.3
    assert torch.allclose(out.mean(0), torch.full((4,), 0.25), atol=0.05)


def test_invalid_rows_do_not_move_the_running_average():
    align = DistributionAlignment(3, momentum=0.0)
    align(torch.full((1, 3), 1 / 3), torch.tensor([False]))  # no valid row: does not initialise
    assert not align.initialized.item() and align.running.tolist() == pytest.approx([1 / 3] * 3)
    align(torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]), torch.tensor([True, False]))
    assert align.running.tolist() == pytest.approx([0.2, 0.3, 0.5]) and align.initialized.item()
    before = align.running.clone()
    align(torch.full((1, 3), 1 / 3), torch.tensor([False]))
    assert torch.equal(align.running, before) and align.initialized.item()


def test_state_dict_round_trip_resumes_exactly():
    batches = [torch.softmax(3 * torch.randn(8, 3), dim=1) for _ in range(4)]
    valid = torch.ones(8, dtype=torch.bool)
    reference = DistributionAlignment(3, momentum=0.9)
    expected = [reference(b, valid) for b in batches]
    first = DistributionAlignment(3, momentum=0.9)
    first(batches[0], valid)
    state = first.state_dict()
    assert set(state) == {"target", "running", "initialized"} and state["initialized"].item()
    resumed = DistributionAlignment(3, momentum=0.9)
    resumed.load_state_dict(state)
    for b, e in zip(batches[1:], expected[1:]):
        assert torch.equal(resumed(b, valid), e)
    assert torch.equal(resumed.running, reference.running)
    # a state dict saved before any valid batch keeps the next batch initialising
    fresh = DistributionAlignment(3, momentum=0.9)
    fresh.load_state_dict(DistributionAlignment(3, momentum=0.9).state_dict())
    fresh(batches[0], valid)
    assert torch.allclose(fresh.running, batches[0].mean(0))


def test_state_dict_of_an_older_version_without_the_flag_loads_as_initialised():
    old = {"alignment.target": torch.full((2,), 0.5), "alignment.running": torch.tensor([0.6, 0.4])}
    loss = PseudoLabelLoss(alignment=DistributionAlignment(2, momentum=0.5))
    loss.load_state_dict(old)  # strict
    assert loss.alignment.initialized.item()
    loss.alignment(torch.tensor([[0.8, 0.2]]), torch.tensor([True]))
    assert loss.alignment.running.tolist() == pytest.approx([0.7, 0.3])  # a moving average, not a restart


def test_batch_means_are_reduced_over_the_processes(monkeypatch):
    # a fake second process whose batch mean is [0.2, 0.8] with 2 rows; this one has [0.8, 0.2] with 2 rows
    calls = []

    def all_reduce(total):
        calls.append(total.clone())
        return total + torch.tensor([[0.4, 1.6], [2.0, 2.0]])

    monkeypatch.setattr(idist, "get_world_size", lambda: 2)
    monkeypatch.setattr(idist, "all_reduce", all_reduce)
    align = DistributionAlignment(2, momentum=0.999)
    align(torch.tensor([[0.9, 0.1], [0.7, 0.3]]), torch.tensor([True, True]))
    assert len(calls) == 1 and align.running.tolist() == pytest.approx([0.5, 0.5])


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


def test_sharpen_with_a_small_temperature_and_many_classes_does_not_underflow():
    probs = torch.softmax(torch.randn(16, 1000), dim=1)
    probs[0, 5] = 0.0  # log(0) = -inf is fine while the row has positive entries
    sharp = sharpen(probs, 0.01)
    assert torch.isfinite(sharp).all() and torch.allclose(sharp.sum(1), torch.ones(16))
    assert torch.equal(sharp.argmax(1), probs.argmax(1)) and sharp[0, 5] == 0
    assert (sharp.amax(1) > probs.amax(1)).all()
    # equal to p^(1/T) renormalised where that does not underflow
    small = torch.softmax(torch.randn(4, 10), dim=1)
    powered = small.double() ** (1 / 0.2)
    assert torch.allclose(sharpen(small, 0.2).double(), powered / powered.sum(1, keepdim=True), atol=1e-6)

"""The inference pass: its own engine over a sequential loader, predictions handed over once per pass."""

import math

import pytest
import torch
from ignite.engine import Events
from torch import nn
from torch.utils.data import DataLoader, Subset

from ignite_pseudolabel.inference import InferenceRunner, gather_predictions, shard_sampler


class Recording(nn.Module):
    """Identity on its inputs, remembering the mode, grad state and batch size it ran with."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled(), x.shape[0]))
        return x * self.scale


def argmax_encode(logits):
    return logits.argmax(1), logits.amax(1)


class Received:
    def __init__(self):
        self.passes = []

    def __call__(self, positions, labels, confidences):
        self.passes.append((positions, labels, confidences))


def test_runner_predicts_in_eval_mode_without_gradients_and_hands_over_one_pass():
    torch.manual_seed(0)
    data = torch.randn(7, 3)
    model, received = Recording(), Received()
    runner = InferenceRunner(model, argmax_encode, received)
    runner.run(DataLoader(data, batch_size=3))
    assert model.calls == [(False, False, 3), (False, False, 3), (False, False, 1)] and model.training
    (positions, labels, confidences), = received.passes
    assert positions.tolist() == list(range(7))
    assert torch.equal(labels, data.argmax(1)) and torch.equal(confidences, data.amax(1))
    assert runner.engine.state.iteration == 3


def test_positions_follow_the_loaders_sampler():
    data = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0], [4.0, 0.0]])
    received = Received()
    runner = InferenceRunner(nn.Identity(), argmax_encode, received)
    runner.run(DataLoader(data, batch_size=2, sampler=[3, 1, 2]))
    positions, labels, confidences = received.passes[0]
    assert positions.tolist() == [1, 2, 3]  # sorted by position
    assert labels.tolist() == [0, 1, 0] and confidences.tolist() == [2.0, 3.0, 4.0]


def test_non_finite_input_rows_are_zeroed_and_get_confidence_zero():
    data = torch.tensor([[1.0, 2.0], [math.nan, 5.0], [3.0, math.inf], [0.5, 0.0]])
    seen_inputs = []

    class Spy(nn.Module):
        def forward(self, x):
            seen_inputs.append(x.clone())
            return x + 1.0

    received = Received()
    InferenceRunner(Spy(), argmax_encode, received).run(DataLoader(data, batch_size=4))
    assert torch.equal(seen_inputs[0][1:3], torch.zeros(2, 2))  # zeroed before the forward pass
    _, labels, confidences = received.passes[0]
    assert confidences.tolist() == [3.0, 0.0, 0.0, 1.5]


def test_handlers_attached_later_see_the_pass_after_it_was_handed_over():
    received, order = Received(), []
    runner = InferenceRunner(nn.Identity(), argmax_encode, lambda *pass_: (received(*pass_), order.append("receive")))
    runner.engine.add_event_handler(Events.COMPLETED, lambda e: order.append(f"user {len(received.passes)}"))
    runner.engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: order.append("batch"))
    runner.run(DataLoader(torch.randn(4, 2), batch_size=2))
    assert order == ["batch", "batch", "receive", "user 1"]


def test_each_run_starts_from_empty_buffers_and_restores_the_mode_after_an_error():
    received = Received()
    model = Recording()
    runner = InferenceRunner(model, argmax_encode, received)
    runner.run(DataLoader(torch.randn(5, 2), batch_size=2))
    runner.run(DataLoader(torch.randn(5, 2), batch_size=4))
    assert [p[0].numel() for p in received.passes] == [5, 5]

    def refuse(logits):
        raise ValueError("refused")

    failing = InferenceRunner(model, refuse, received)
    with pytest.raises(ValueError, match="refused"):
        failing.run(DataLoader(torch.randn(2, 2)))
    assert model.training


def test_target_device_and_autocast():
    assert InferenceRunner(nn.Identity(), argmax_encode, Received()).target_device() == torch.device("cpu")
    assert InferenceRunner(nn.Linear(2, 2, device="meta"), argmax_encode, Received()).target_device().type == "meta"
    assert InferenceRunner(nn.Identity(), argmax_encode, Received(), device="cpu").target_device().type == "cpu"
    dtypes = []
    model = nn.Linear(2, 2)
    model.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    runner = InferenceRunner(model, lambda logits: argmax_encode(logits.float()), Received(),
                             amp_dtype=torch.bfloat16)
    runner.run(DataLoader(torch.randn(3, 2), batch_size=3))
    assert dtypes == [torch.bfloat16]


@pytest.mark.parametrize(
    "model, data, error, match",
    [
        (nn.Flatten(0), torch.randn(4, 3), ValueError, r"Miner expects the model to output \(N, C\) or \(N, C, d1, "
                                                         r"...\) logits, but given \(12,\)"),
        (nn.Identity(), torch.utils.data.TensorDataset(torch.randn(4, 3), torch.zeros(4)), TypeError,
         "Miner expects an inputs-only dataset, but its batches are a list of 2"),
    ],
)
def test_wrong_outputs_or_batches(model, data, error, match):
    with pytest.raises(error, match=match):
        InferenceRunner(model, argmax_encode, Received(), name="Miner").run(DataLoader(data, batch_size=4))


def test_rows_must_match_the_batch():
    class Drop(nn.Module):
        def forward(self, x):
            return x[1:]

    with pytest.raises(ValueError, match="The model returned 1 rows for a batch of 2 samples"):
        InferenceRunner(Drop(), argmax_encode, Received()).run(DataLoader(torch.randn(2, 3), batch_size=2))


def test_gather_predictions_sorts_and_drops_repeats_in_one_process():
    positions, labels, confidences = gather_predictions(
        torch.tensor([3, 0, 3, 1]), torch.tensor([[1, 1], [0, 0], [1, 1], [2, 2]]), torch.tensor([0.3, 0.0, 0.3, 0.1]))
    assert positions.tolist() == [0, 1, 3]
    assert labels.tolist() == [[0, 0], [2, 2], [1, 1]] and confidences.tolist() == pytest.approx([0.0, 0.1, 0.3])


def test_shard_sampler_is_sequential_in_one_process():
    assert shard_sampler(Subset(torch.zeros(5), [0, 1])) is None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"model": "net"}, TypeError, "model should be a torch.nn.Module, but given str"),
        ({"encode": 3}, TypeError, "encode should be callable, but given int"),
        ({"receive": None}, TypeError, "receive should be callable, but given NoneType"),
        ({"amp_dtype": "bf16"}, TypeError, "amp_dtype should be a torch.dtype, but given 'bf16'"),
    ],
)
def test_argument_validation(kwargs, error, match):
    args = {"model": nn.Identity(), "encode": argmax_encode, "receive": Received()}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        InferenceRunner(args.pop("model"), args.pop("encode"), args.pop("receive"), **args)


# ------------------------------------------------------------------ two gloo processes (pytest -m distributed)
def _gather_worker(local_rank, out_dir):
    import os

    import ignite.distributed as idist

    rank = idist.get_rank()
    sampler = shard_sampler(torch.zeros(5))
    # shards of different lengths; position 3 is predicted by both ranks (as DistributedSampler's padding)
    positions = torch.tensor([[4, 0, 2, 3], [3, 1]][rank])
    labels = torch.stack([positions * 10 + rank, positions]).T  # (n, 2): label rows carry the rank
    confidences = positions.float() / 10 + rank
    gathered = gather_predictions(positions, labels, confidences)
    torch.save({"sampler": list(sampler), "gathered": gathered}, os.path.join(out_dir, f"gathered_{rank}.pt"))


@pytest.mark.distributed
def test_gather_predictions_across_two_processes_keeps_every_position_once(tmp_path):
    import os

    import ignite.distributed as idist

    with idist.Parallel(backend="gloo", nproc_per_node=2, master_port=28500 + os.getpid() % 1000) as parallel:
        parallel.run(_gather_worker, str(tmp_path))
    results = [torch.load(tmp_path / f"gathered_{rank}.pt") for rank in range(2)]
    assert results[0]["sampler"] == [0, 2, 4] and results[1]["sampler"] == [1, 3, 0]  # padded with a repeat
    for result in results:
        positions, labels, confidences = result["gathered"]
        assert positions.tolist() == [0, 1, 2, 3, 4]
        assert labels[:, 0].tolist() == [0, 11, 20, 30, 40]  # position 3 from rank 0, which comes first
        assert confidences.tolist() == pytest.approx([0.0, 1.1, 0.2, 0.3, 0.4])

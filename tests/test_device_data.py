"""DeviceBatches: batches drawn by index from device-resident tensors; seeded passes, resume, mined pseudo-labels."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ignite_pseudolabel.batch_views import RawBatch
from ignite_pseudolabel.data import SemiSupervisedLoader
from ignite_pseudolabel.device_data import DeviceBatches
from ignite_pseudolabel.mining import PseudoLabelMiner


def test_batches_cover_every_row_once_per_pass_with_lengths_and_drop_last():
    x = torch.arange(10).view(10, 1)
    y = torch.arange(10) * 10
    batches = DeviceBatches(x, y, batch_size=4)
    assert len(batches) == 3 and batches.batch_size == 4 and batches.device == x.device
    got = list(batches)
    assert [len(b[0]) for b in got] == [4, 4, 2]
    rows = torch.cat([b[0] for b in got]).view(-1)
    assert sorted(rows.tolist()) == list(range(10)) and rows.tolist() != list(range(10))  # shuffled
    assert all(torch.equal(b[1], b[0].view(-1) * 10) for b in got)  # rows stay paired
    assert len(DeviceBatches(x, batch_size=4, drop_last=True)) == 2
    assert [b.view(-1).tolist() for b in DeviceBatches(x, batch_size=4, shuffle=False, drop_last=True)] == [
        [0, 1, 2, 3], [4, 5, 6, 7]]
    one = next(iter(DeviceBatches(x, batch_size=3, return_index=True)))
    assert isinstance(one, RawBatch) and torch.equal(one.inputs.view(-1), one.sample_index)


def test_validation():
    with pytest.raises(ValueError, match="needs at least one tensor"):
        DeviceBatches(batch_size=2)
    with pytest.raises(ValueError, match="same number of rows on the same device, but given 4 on cpu and 3 on cpu"):
        DeviceBatches(torch.zeros(4), torch.zeros(3), batch_size=2)
    with pytest.raises(TypeError, match=r"tensors\[0\] should be a tensor with a first \(sample\) dimension"):
        DeviceBatches([1, 2], batch_size=2)
    with pytest.raises(ValueError, match="Argument batch_size should be an integer >= 1, but given 0"):
        DeviceBatches(torch.zeros(4), batch_size=0)
    with pytest.raises(ValueError, match="return_index=True needs exactly one tensor"):
        DeviceBatches(torch.zeros(4), torch.zeros(4), batch_size=2, return_index=True)
    with pytest.raises(ValueError, match="at least one sample"):
        DeviceBatches(torch.zeros(0, 2), batch_size=2)


def test_distributed_sampler_gives_each_rank_its_shard():
    x = torch.arange(12)
    shards = []
    for rank in range(2):
        sampler = DistributedSampler(range(12), num_replicas=2, rank=rank, shuffle=True, seed=3)
        batches = DeviceBatches(x, batch_size=4, sampler=sampler)
        assert len(batches) == 2
        shards.append(torch.cat(list(batches)))
    assert sorted(torch.cat(shards).tolist()) == list(range(12))


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("own_generator", [True, False])
def test_draws_from_the_generators_exactly_as_a_dataloader(drop_last, own_generator):
    """Same batches, and every generator left where a DataLoader leaves it, batch after batch and pass after pass."""
    x = torch.arange(10)

    def draws(make):
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(1) if own_generator else None
        loader = make(generator)
        seen = []
        for _ in range(2):
            for batch in loader:
                index = batch.sample_index if isinstance(batch, RawBatch) else batch
                # the state of the generator(s) a shared stream would draw from next
                seen.append((index.tolist(), torch.get_rng_state(), generator.get_state() if generator else None))
        return seen

    dataloader = draws(lambda g: DataLoader(x, batch_size=4, shuffle=True, drop_last=drop_last, generator=g))
    device = draws(lambda g: DeviceBatches(x, batch_size=4, drop_last=drop_last, return_index=True, generator=g))
    assert len(dataloader) == len(device) == (4 if drop_last else 6)
    for (order, global_state, state), (order_, global_state_, state_) in zip(dataloader, device):
        assert order == order_ and torch.equal(global_state, global_state_)
        assert state is None or torch.equal(state, state_)


def order_of(loader, n):
    out = []
    for i, batch in enumerate(loader):
        out.append((batch.labeled[0].view(-1).tolist(), batch.unlabeled.sample_index.tolist()))
        if i + 1 == n:
            break
    return out


def make_loader(seed):
    x = torch.arange(20, dtype=torch.uint8).view(20, 1)
    labeled = DeviceBatches(x[:6], torch.zeros(6, dtype=torch.int64), batch_size=2)
    unlabeled = DeviceBatches(x[6:], batch_size=4, return_index=True)
    return SemiSupervisedLoader(labeled, unlabeled=unlabeled, seed=seed, epoch_length=10)


def test_loader_seed_makes_every_pass_a_function_of_the_seed_and_resume_continues_mid_pass():
    torch.manual_seed(0)
    first = order_of(make_loader(5), 10)
    torch.manual_seed(1)  # the global generator does not matter with a seed
    assert order_of(make_loader(5), 10) == first
    assert order_of(make_loader(6), 10) != first
    assert len({tuple(u) for _, u in first[:8]}) == 8  # 4 unlabeled batches a pass, reshuffled every pass
    loader = make_loader(5)
    order_of(loader, 6)  # inside the second unlabeled pass and the third labeled pass
    state = loader.state_dict()
    resumed = make_loader(5)
    resumed.load_state_dict(state)
    assert order_of(resumed, 4) == first[6:10]


def test_loader_seed_also_seeds_the_base_seed_draw_so_the_global_generator_is_untouched():
    # As for a DataLoader: with SemiSupervisedLoader(seed=...) every pass draws from the seeded generator only
    torch.manual_seed(0)
    before = torch.get_rng_state()
    order_of(make_loader(5), 10)  # 3 labeled and 4 unlabeled batches a pass: several passes of both
    assert torch.equal(torch.get_rng_state(), before)


def test_pseudo_loader_fn_draws_mined_rows_from_the_device_tensor():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (30, 1, 4, 4), dtype=torch.uint8)
    normalised = images.float() / 255  # what the miner predicts on (a deterministic view of the same samples)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    miner = PseudoLabelMiner(model, normalised, threshold=0.0, batch_size=8)
    raw = DeviceBatches(images, batch_size=4, return_index=True)
    labeled = DeviceBatches(images[:4], torch.zeros(4, dtype=torch.int64), batch_size=2)
    loader = SemiSupervisedLoader(labeled, pseudo=miner.dataset, loader_fn=raw.pseudo_loader_fn(batch_size=5))
    assert all(b.pseudo is None for b in loader)  # nothing mined yet: labeled-only batches
    miner.run()
    with torch.no_grad():
        expected = model(normalised).argmax(1)
    batches = [b.pseudo for b in loader]
    assert [len(x) for x, _ in batches] == [5, 5]
    for x, y in batches:
        assert x.dtype == torch.uint8
        rows = [int((images == row).flatten(1).all(1).nonzero()[0]) for row in x]
        assert torch.equal(y, expected[rows])
    with pytest.raises(ValueError, match="indexes a dataset of 30 samples, but these tensors hold 4"):
        labeled.pseudo_loader_fn()(miner.dataset)
    with pytest.raises(TypeError, match="expects the miner's PseudoLabeledDataset"):
        raw.pseudo_loader_fn()(images)

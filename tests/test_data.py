import functools

import pytest
import torch
from ignite.engine import Engine, Events
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from ignite_pseudolabel import PseudoLabeledDataset, SemiSupervisedLoader


def labeled_loader(n=8, batch_size=2, shuffle=False):
    return DataLoader(TensorDataset(torch.arange(float(n)).view(n, 1), torch.arange(n) % 2),
                      batch_size=batch_size, shuffle=shuffle)


def test_epoch_length_follows_the_labeled_loader_and_unlabeled_stream_cycles():
    unlabeled = DataLoader(torch.arange(5.0).view(5, 1), batch_size=2)  # 3 batches: [0,1] [2,3] [4]
    loader = SemiSupervisedLoader(labeled_loader(), unlabeled=unlabeled)
    assert len(loader) == 4
    seen = []
    engine = Engine(lambda e, b: seen.append((b.labeled[0][:, 0].tolist(), b.unlabeled[:, 0].tolist())))
    engine.run(loader, max_epochs=2)
    assert [lab for lab, _ in seen] == [[0, 1], [2, 3], [4, 5], [6, 7]] * 2
    # the unlabeled stream does not restart with the epoch: it continues, cycling when exhausted
    assert [u for _, u in seen] == [[0, 1], [2, 3], [4], [0, 1], [2, 3], [4], [0, 1], [2, 3]]
    assert loader.state_dict()["second"] == {"passes": 3, "offset": 2, "stale": False}


def test_every_unlabeled_pass_is_a_new_shuffle():
    unlabeled = DataLoader(torch.arange(40.0), batch_size=40, shuffle=True)
    loader = SemiSupervisedLoader(labeled_loader(4, 2), unlabeled=unlabeled)
    passes = [b.unlabeled.tolist() for b in loader] + [b.unlabeled.tolist() for b in loader]
    assert all(sorted(p) == list(range(40)) for p in passes)
    assert len({tuple(p) for p in passes}) == 4


def test_set_epoch_is_called_on_distributed_samplers_of_both_streams():
    data = torch.arange(8.0)
    sampler = DistributedSampler(data, num_replicas=2, rank=0, shuffle=True, seed=0)
    unlabeled = DataLoader(data, batch_size=2, sampler=sampler)  # 2 batches per pass
    lab_sampler = DistributedSampler(TensorDataset(data, data), num_replicas=2, rank=0, shuffle=True)
    labeled = DataLoader(TensorDataset(data, data), batch_size=4, sampler=lab_sampler)  # 1 batch per epoch
    loader = SemiSupervisedLoader(labeled, unlabeled=unlabeled)
    for _ in range(3):
        list(loader)
    assert sampler.epoch == 1 and lab_sampler.epoch == 2


def test_explicit_epoch_length_cycles_labeled_loader_across_epochs():
    loader = SemiSupervisedLoader(labeled_loader(6, 2), unlabeled=DataLoader(torch.zeros(4, 1), batch_size=2),
                                  epoch_length=2)
    first = [b.labeled[0][:, 0].tolist() for b in loader]
    second = [b.labeled[0][:, 0].tolist() for b in loader]
    assert first == [[0, 1], [2, 3]] and second == [[4, 5], [0, 1]]


def test_pseudo_stream_follows_mining_rounds_and_is_empty_before_the_first():
    pseudo = PseudoLabeledDataset(torch.arange(10.0).view(10, 1))
    loader = SemiSupervisedLoader(labeled_loader(4, 2), pseudo=pseudo,
                                  loader_fn=functools.partial(DataLoader, batch_size=3))
    assert [b.pseudo for b in loader] == [None, None]  # labeled-only batches until something is mined
    pseudo.update([1, 2, 3, 4], [0, 1, 0, 1])
    batches = [b.pseudo for b in loader]
    assert [x[:, 0].tolist() for x, _ in batches] == [[1, 2, 3], [4]]
    assert batches[0][1].tolist() == [0, 1, 0]
    pseudo.update([9], [1])  # a new round replaces the set: the stream restarts on it at once
    batches = [b.pseudo for b in loader]
    assert [x[:, 0].tolist() for x, _ in batches] == [[9], [9]]


def test_default_pseudo_loader_copies_the_labeled_batch_size():
    pseudo = PseudoLabeledDataset(torch.arange(10.0).view(10, 1), indices=range(10), labels=[0] * 10)
    loader = SemiSupervisedLoader(labeled_loader(4, 2), pseudo=pseudo)
    batch = next(iter(loader))
    assert batch.pseudo[0].shape == (2, 1) and batch.unlabeled is None


def test_state_dict_resumes_the_second_stream_mid_pass():
    unlabeled = DataLoader(torch.arange(6.0), batch_size=1)
    loader = SemiSupervisedLoader(labeled_loader(4, 2), unlabeled=unlabeled)
    list(loader)
    list(loader)  # 4 unlabeled items taken
    state = loader.state_dict()
    expected = [b.unlabeled.tolist() for b in loader]
    resumed = SemiSupervisedLoader(labeled_loader(4, 2), unlabeled=unlabeled)
    resumed.load_state_dict(state)
    assert [b.unlabeled.tolist() for b in resumed] == expected == [[4.0], [5.0]]
    with pytest.raises(ValueError, match="keys 'labeled' and 'second'"):
        resumed.load_state_dict({"labeled": {}})


def test_state_saved_right_after_a_mining_round_resumes_on_a_fresh_pass():
    pseudo = PseudoLabeledDataset(torch.arange(10.0).view(10, 1), indices=range(6), labels=[0] * 6)
    fn = functools.partial(DataLoader, batch_size=2)
    loader = SemiSupervisedLoader(labeled_loader(2, 2), pseudo=pseudo, loader_fn=fn)
    list(loader)
    pseudo.update([7, 8, 9], [1, 1, 1])  # mined at the end of the epoch, before the checkpoint
    state = loader.state_dict()
    assert state["second"]["stale"]
    pseudo2 = PseudoLabeledDataset(torch.arange(10.0).view(10, 1), indices=[7, 8, 9], labels=[1, 1, 1])
    resumed = SemiSupervisedLoader(labeled_loader(2, 2), pseudo=pseudo2, loader_fn=fn)
    resumed.load_state_dict(state)
    assert [b.pseudo[0][:, 0].tolist() for b in resumed] == [b.pseudo[0][:, 0].tolist() for b in loader] == [[7, 8]]


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({}, ValueError, "Exactly one of the arguments unlabeled"),
        ({"unlabeled": [1], "pseudo": [1]}, ValueError, "Exactly one of the arguments unlabeled"),
        ({"unlabeled": 3}, TypeError, "Argument unlabeled should be an iterable"),
        ({"unlabeled": []}, ValueError, "unlabeled should yield at least one batch"),
        ({"unlabeled": [1], "epoch_length": 0}, ValueError, "epoch_length should be an integer >= 1"),
        ({"unlabeled": [1], "loader_fn": len}, ValueError, "loader_fn is only used with pseudo"),
        ({"pseudo": DataLoader(PseudoLabeledDataset(torch.zeros(3), [0], [0]))}, ValueError,
         "should be the PseudoLabeledDataset itself"),
    ],
)
def test_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        SemiSupervisedLoader(labeled_loader(), **kwargs)


def test_labeled_loader_must_be_sized_or_epoch_length_given():
    with pytest.raises(TypeError, match="give epoch_length"):
        SemiSupervisedLoader(iter([1]), unlabeled=[1])
    with pytest.raises(ValueError, match="labeled should yield at least one batch"):
        SemiSupervisedLoader([], unlabeled=[1])


def test_resuming_mid_pass_leaves_the_global_generator_as_checkpointed():
    from ignite_pseudolabel import RNGState

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return torch.rand(1)  # an augmentation drawing from the global generator

    def make():
        return SemiSupervisedLoader(labeled_loader(4, 2), unlabeled=DataLoader(Noisy(), batch_size=2))

    torch.manual_seed(0)
    loader = make()
    list(loader)  # 2 unlabeled batches taken, mid-pass
    state, rng = loader.state_dict(), RNGState().state_dict()
    expected_batches = [b.unlabeled for b in loader]
    expected_next = torch.rand(3)

    resumed = make()
    resumed.load_state_dict(state)
    RNGState().load_state_dict(rng)
    got = [b.unlabeled for b in resumed]
    assert all(torch.equal(a, b) for a, b in zip(got, expected_batches))
    assert torch.equal(torch.rand(3), expected_next)


def test_a_complete_labeled_pass_is_not_replayed_on_resume():
    reads = []

    class Counting(TensorDataset):
        def __getitem__(self, i):
            reads.append(i)
            return super().__getitem__(i)

    labeled = DataLoader(Counting(torch.arange(4.0), torch.arange(4)), batch_size=2)
    loader = SemiSupervisedLoader(labeled, unlabeled=DataLoader(torch.zeros(4, 1), batch_size=2))
    list(loader)
    state = loader.state_dict()
    reads.clear()
    resumed = SemiSupervisedLoader(labeled, unlabeled=DataLoader(torch.zeros(4, 1), batch_size=2))
    resumed.load_state_dict(state)
    first = next(iter(resumed))
    assert first.labeled[0].tolist() == [0.0, 1.0] and reads == [0, 1]  # a new pass, nothing replayed


@pytest.mark.parametrize("mode", ["online", "views", "mined"])
def test_a_tensor_dataset_of_unlabeled_inputs_works_everywhere(mode):
    from ignite.engine import create_supervised_trainer

    from ignite_pseudolabel import PseudoLabelLoss, PseudoLabelMiner, WeakStrongViews

    torch.manual_seed(0)
    x_unlabeled = TensorDataset(torch.randn(12, 1))  # the usual way to hold unlabeled tensors
    model = torch.nn.Linear(1, 2)
    loss = PseudoLabelLoss(alpha=1.0)
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss,
                                        prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    if mode == "mined":
        miner = PseudoLabelMiner(model, x_unlabeled, threshold=0.0, batch_size=5)
        miner.attach(trainer)
        loader = SemiSupervisedLoader(labeled_loader(), pseudo=miner.dataset)
    else:
        data = x_unlabeled if mode == "online" else WeakStrongViews(x_unlabeled, lambda t: t, lambda t: -t)
        loader = SemiSupervisedLoader(labeled_loader(), unlabeled=DataLoader(data, batch_size=4))
    rows = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: rows.append(e.state.batch))
    trainer.run(loader, max_epochs=1)
    assert trainer.state.pseudo_mask_rate.item() == 1.0  # every unlabeled or mined prediction was used
    assert all(b.unlabeled is not None or b.pseudo is not None for b in rows)
    if mode == "mined":
        assert trainer.state.num_pseudo_labels == 12

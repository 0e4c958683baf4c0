import math
import warnings

import pytest
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from torch import nn

from ignite_pseudolabel import PseudoLabelMiner
from ignite_pseudolabel.mining import select_pseudo_labels


def logits_for(confidences, labels, num_classes=3):
    """Logits whose softmax has max probability `confidence` at class `label`."""
    rows = []
    for conf, label in zip(confidences, labels):
        rest = (1 - conf) / (num_classes - 1)
        probs = torch.full((num_classes,), rest, dtype=torch.float64)
        probs[label] = conf
        rows.append(probs.log())
    return torch.stack(rows).float()


class Counting(nn.Module):
    """Identity on logits, counting forward calls and remembering the mode and grad state it ran in."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return x * self.scale


# ------------------------------------------------------------------------------ select_pseudo_labels
def test_select_threshold_edges():
    conf = torch.tensor([0.99, 0.989999, 1.0, 0.5, math.nan])
    labels = torch.zeros(5, dtype=torch.long)
    assert select_pseudo_labels(conf, labels, 0.99).tolist() == [0, 2]
    assert select_pseudo_labels(conf, labels, 1.0).tolist() == [2]
    assert select_pseudo_labels(conf, labels, 0.9999999).tolist() == [2]


def test_select_empty_result():
    out = select_pseudo_labels(torch.tensor([0.1, 0.2]), torch.tensor([0, 1]), 0.99)
    assert out.numel() == 0 and out.dtype == torch.int64


def test_select_per_class_cap_keeps_the_most_confident_and_breaks_ties_by_position():
    conf = torch.tensor([0.91, 0.99, 0.95, 0.99, 0.97, 0.92, 0.99])
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 0])
    assert select_pseudo_labels(conf, labels, 0.9, max_per_class=2).tolist() == [1, 3, 4, 6]
    assert select_pseudo_labels(conf, labels, 0.9, max_per_class=1).tolist() == [1, 3]
    assert select_pseudo_labels(conf, labels, 0.9, max_per_class=10).tolist() == list(range(7))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"threshold": -0.1}, ValueError, r"threshold should be a finite number in \[0, 1\], but given -0.1"),
        ({"threshold": 0.5, "max_per_class": 0}, ValueError, "max_per_class should be an integer >= 1, but given 0"),
    ],
)
def test_select_argument_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        select_pseudo_labels(torch.rand(3), torch.zeros(3, dtype=torch.long), **kwargs)


def test_select_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="1-D of the same length"):
        select_pseudo_labels(torch.rand(3), torch.zeros(4, dtype=torch.long), 0.5)


# ------------------------------------------------------------------------------------ PseudoLabelMiner
def make_miner(**kwargs):
    conf = [0.999, 0.5, 0.995, 0.97, 0.999, 0.2, 0.991]
    labels = [0, 1, 2, 1, 2, 0, 0]
    data = logits_for(conf, labels)
    model = Counting()
    kwargs.setdefault("threshold", 0.99)
    return PseudoLabelMiner(model, data, batch_size=3, **kwargs), model, data


def test_miner_selects_confident_samples_with_positions_labels_and_confidences():
    miner, model, data = make_miner()
    pseudo = miner.run()
    assert miner.indices.tolist() == [0, 2, 4, 6]
    assert miner.labels.tolist() == [0, 2, 2, 0]
    assert torch.allclose(miner.confidences, torch.tensor([0.999, 0.995, 0.999, 0.991]), atol=1e-5)
    assert miner.all_confidences.shape == (7,)
    assert miner.class_counts.tolist() == [2, 0, 2]
    assert miner.rounds == 1 and miner.num_classes == 3
    # the view indexes the unlabeled dataset; it never copies it
    assert len(pseudo) == 4 and pseudo is miner.dataset
    x, y = pseudo[1]
    assert torch.equal(x, data[2]) and y == 2
    # inference ran in eval mode without gradients, batch by batch, and the mode is restored
    assert model.calls == [(False, False)] * 3 and model.training


def test_miner_per_class_cap_and_accuracy_against_held_back_labels():
    miner, _, _ = make_miner(max_per_class=1, held_back_targets=torch.tensor([0, 1, 1, 1, 2, 0, 0]))
    miner.run()
    assert miner.indices.tolist() == [0, 4]
    assert miner.accuracy == 1.0
    miner, _, _ = make_miner(held_back_targets=torch.tensor([0, 1, 1, 1, 2, 0, 0]))
    miner.run()
    assert miner.accuracy == 0.75


def test_miner_result_does_not_depend_on_batch_size():
    data = torch.randn(101, 5) * 4
    results = []
    for bs in (1, 7, 64, 500):
        miner = PseudoLabelMiner(nn.Identity(), data, threshold=0.9, batch_size=bs)
        miner.run()
        results.append((miner.indices, miner.labels))
    assert all(torch.equal(r[0], results[0][0]) and torch.equal(r[1], results[0][1]) for r in results)


def test_miner_accepting_nothing_warns_once_and_leaves_an_empty_set():
    miner, _, _ = make_miner(threshold=1.0)
    with pytest.warns(RuntimeWarning, match="accepted no sample in round 1 \\(threshold 1.0"):
        miner.run()
    assert len(miner.dataset) == 0 and miner.accuracy is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        miner.run()


def test_miner_never_accepts_non_finite_predictions():
    data = torch.tensor([[9.0, 0.0], [math.nan, 0.0], [math.inf, 0.0], [0.0, 9.0]])
    miner = PseudoLabelMiner(nn.Identity(), data, threshold=0.5)
    with pytest.warns(RuntimeWarning, match="2 of 4 samples had non-finite inputs or logits"):
        miner.run()
    assert miner.indices.tolist() == [0, 3] and miner.num_non_finite == 2


def test_attach_mines_on_the_chosen_event_and_publishes_on_the_trainer():
    miner, model, _ = make_miner(held_back_targets=torch.tensor([0, 1, 2, 1, 2, 0, 0]))
    trainer = Engine(lambda e, b: None)
    miner.attach(trainer, Events.STARTED | Events.EPOCH_COMPLETED(every=2))
    trainer.run([0], max_epochs=4)
    assert miner.rounds == 3  # start, epoch 2, epoch 4
    assert trainer.state.num_pseudo_labels == 4 and trainer.state.mined_accuracy == 1.0


def test_started_event_does_not_mine_again_after_a_resume(tmp_path):
    miner, _, _ = make_miner()
    trainer = Engine(lambda e, b: None)
    miner.attach(trainer)
    trainer.run([0], max_epochs=1)
    torch.save({"miner": miner.state_dict()}, tmp_path / "m.pt")

    resumed, model, _ = make_miner()
    Checkpoint.load_objects({"miner": resumed}, str(tmp_path / "m.pt"))
    trainer2 = Engine(lambda e, b: None)
    resumed.attach(trainer2)
    trainer2.run([0], max_epochs=1)
    assert model.calls == [] and resumed.rounds == 1
    assert resumed.indices.tolist() == [0, 2, 4, 6] and len(resumed.dataset) == 4
    assert trainer2.state.num_pseudo_labels == 4


def test_progress_bar_and_handlers_attach_to_the_inference_engine():
    miner, _, _ = make_miner()
    seen = []
    miner.engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.iteration))
    miner.run()
    assert seen == [1, 2, 3]


def test_train_dataset_view_applies_its_own_transform():
    miner, _, data = make_miner(train_dataset=[f"augmented-{i}" for i in range(7)])
    miner.run()
    assert miner.dataset[0] == ("augmented-0", 0) and miner.dataset[3] == ("augmented-6", 0)


def test_mode_is_restored_after_an_error():
    model = Counting()
    model.train()
    miner = PseudoLabelMiner(model, torch.randn(4, 3), num_classes=5)
    with pytest.raises(ValueError, match="The model outputs 3 classes, but num_classes=5"):
        miner.run()
    assert model.training


@pytest.mark.parametrize(
    "data, model, match, error",
    [
        (torch.randn(4, 3), nn.Flatten(0), r"\(N, C\) or \(N, C, d1, ...\) logits, but given \(12,\)", ValueError),
        (torch.utils.data.TensorDataset(torch.randn(4, 3), torch.zeros(4)), nn.Identity(),
         "inputs-only dataset, but its batches are a list of 2", TypeError),
    ],
)
def test_wrong_model_output_or_dataset_structure(data, model, match, error):
    with pytest.raises(error, match=match):
        PseudoLabelMiner(model, data).run()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"model": "m"}, TypeError, "model should be a torch.nn.Module"),
        ({"dataset": torch.zeros(0, 3)}, ValueError, "dataset should hold at least one sample"),
        ({"dataset": 5}, TypeError, "dataset should be a map-style dataset"),
        ({"threshold": 1.5}, ValueError, r"threshold should be a finite number in \[0, 1\], but given 1.5"),
        ({"threshold": -0.1}, ValueError, "threshold should be a finite number in"),
        ({"max_per_class": 0}, ValueError, "max_per_class should be an integer >= 1, but given 0"),
        ({"num_classes": 1}, ValueError, "num_classes should be an integer >= 2"),
        ({"batch_size": 0}, ValueError, "batch_size should be an integer >= 1"),
        ({"num_workers": -1}, ValueError, "num_workers should be an integer >= 0"),
        ({"amp_dtype": "bf16"}, TypeError, "amp_dtype should be a torch.dtype"),
        ({"train_dataset": torch.zeros(2, 3)}, ValueError, "train_dataset should have the same samples as dataset"),
        ({"held_back_targets": torch.zeros(3)}, ValueError, r"held_back_targets should have shape \(4,\)"),
    ],
)
def test_argument_validation(kwargs, error, match):
    args = {"model": nn.Identity(), "dataset": torch.zeros(4, 3)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        PseudoLabelMiner(**args)


def test_attach_twice_and_collisions():
    miner, _, _ = make_miner()
    trainer = Engine(lambda e, b: None)
    miner.attach(trainer)
    with pytest.raises(ValueError, match="already attached"):
        miner.attach(trainer)
    other, _, _ = make_miner()
    with pytest.raises(ValueError, match="'num_pseudo_labels' already exists"):
        other.attach(trainer)


def test_state_dict_round_trip_and_incompatible_configuration():
    miner, _, _ = make_miner()
    miner.run()
    state = miner.state_dict()
    assert all(isinstance(v, (torch.Tensor, int, float, type(None))) for v in state.values())
    fresh, _, _ = make_miner()
    fresh.load_state_dict(state)
    assert torch.equal(fresh.indices, miner.indices) and torch.equal(fresh.labels, miner.labels)
    assert fresh.rounds == 1 and fresh.dataset[0][1] == miner.dataset[0][1]
    other, _, _ = make_miner(threshold=0.9)
    with pytest.raises(ValueError, match="saved with threshold=0.99 into a miner with threshold=0.9"):
        other.load_state_dict(state)
    small = PseudoLabelMiner(nn.Identity(), torch.zeros(3, 3), threshold=0.99)
    with pytest.raises(ValueError, match="dataset_size=7"):
        small.load_state_dict(state)
    with pytest.raises(ValueError, match="Required state attribute 'indices' is absent"):
        fresh.load_state_dict({"labels": 1})


# ------------------------------------------------------------------- criteria and growing pseudo sets
def test_select_k_best_class_fraction_and_candidates():
    conf = torch.tensor([0.9, 0.8, 0.7, 0.95, 0.6, 0.99])
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    assert select_pseudo_labels(conf, labels, k_best=2).tolist() == [3, 5]
    assert select_pseudo_labels(conf, labels, 0.85, k_best=10).tolist() == [0, 3, 5]
    # top ceil(0.5 * 3) = 2 of each class
    assert select_pseudo_labels(conf, labels, class_fraction=0.5).tolist() == [0, 1, 3, 5]
    assert select_pseudo_labels(conf, labels, 0.85, class_fraction=0.5).tolist() == [0, 3, 5]
    candidates = torch.tensor([False, True, True, True, True, False])
    assert select_pseudo_labels(conf, labels, k_best=2, candidates=candidates).tolist() == [1, 3]
    assert select_pseudo_labels(torch.tensor([0.0, 0.5]), torch.tensor([0, 0]), k_best=5).tolist() == [1]
    with pytest.raises(ValueError, match="candidates should be a bool mask"):
        select_pseudo_labels(conf, labels, 0.5, candidates=torch.ones(6))


def test_class_fraction_keeps_classes_balanced_relative_to_their_size():
    conf = torch.rand(1000)
    labels = torch.cat([torch.zeros(900, dtype=torch.long), torch.ones(100, dtype=torch.long)])
    picked = select_pseudo_labels(conf, labels, class_fraction=0.2)
    assert torch.bincount(labels[picked]).tolist() == [180, 20]
    assert conf[picked][labels[picked] == 1].min() >= conf[900:].sort(descending=True).values[19]


def test_grow_mode_keeps_labels_records_rounds_and_stops_at_max_rounds():
    data = torch.tensor([[9.0, 0.0], [0.0, 9.0], [1.0, 0.0], [0.0, 1.0], [0.2, 0.0]])
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
    miner = PseudoLabelMiner(model, data, threshold=None, k_best=2, grow=True, max_rounds=2)
    trainer = Engine(lambda e, b: None)
    miner.attach(trainer, Events.EPOCH_COMPLETED)
    trainer.run([0], max_epochs=1)
    assert miner.indices.tolist() == [0, 1] and miner.accepted_round.tolist() == [1, 1, -1, -1, -1]
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))  # the model now disagrees on old samples
    trainer.run([0], max_epochs=3)
    assert miner.rounds == 2  # max_rounds
    assert miner.indices.tolist() == [0, 1, 2, 3]
    assert miner.labels.tolist() == [0, 1, 1, 0]  # old labels kept, new ones from round 2
    assert miner.accepted_round.tolist() == [1, 1, 2, 2, -1]
    assert len(miner.dataset) == 4 and miner.dataset[2][1] == 1


def test_replace_mode_records_the_current_round_only():
    miner, _, _ = make_miner()
    miner.run()
    miner.run()
    assert miner.accepted_round.tolist() == [2, -1, 2, -1, 2, -1, 2]


def test_miner_needs_a_criterion_and_checks_new_configuration_keys():
    with pytest.raises(ValueError, match="At least one of the arguments threshold, k_best or class_fraction"):
        PseudoLabelMiner(nn.Identity(), torch.zeros(3, 2), threshold=None)
    with pytest.raises(ValueError, match=r"class_fraction should be a finite number in \(0, 1\]"):
        PseudoLabelMiner(nn.Identity(), torch.zeros(3, 2), class_fraction=0)
    with pytest.raises(ValueError, match="max_rounds should be an integer >= 1"):
        PseudoLabelMiner(nn.Identity(), torch.zeros(3, 2), max_rounds=0)
    miner, _, _ = make_miner(grow=True)
    miner.run()
    state = miner.state_dict()
    assert state["accepted_round"].tolist() == [1, -1, 1, -1, 1, -1, 1]
    other, _, _ = make_miner(grow=False)
    with pytest.raises(ValueError, match="saved with grow=True into a miner with grow=False"):
        other.load_state_dict(state)
    same, _, _ = make_miner(grow=True)
    same.load_state_dict(state)
    assert torch.equal(same.accepted_round, miner.accepted_round)


def test_threshold_zero_accepts_every_finite_prediction():
    conf = torch.tensor([0.34, 0.0, 0.9, 0.5])  # 0.0: a non-finite prediction
    assert select_pseudo_labels(conf, torch.tensor([0, 1, 2, 0]), 0.0).tolist() == [0, 2, 3]
    data = torch.tensor([[0.1, 0.0], [math.nan, 0.0], [0.0, 0.2], [1.0, 1.0]])
    miner = PseudoLabelMiner(nn.Identity(), data, threshold=0.0)
    with pytest.warns(RuntimeWarning, match="1 of 4 samples had non-finite"):
        miner.run()
    assert miner.threshold == 0.0 and miner.indices.tolist() == [0, 2, 3]


def test_miner_accepts_a_tensor_dataset_of_inputs():
    x = torch.tensor([[9.0, 0.0], [0.0, 0.1], [0.0, 9.0]])
    miner = PseudoLabelMiner(nn.Identity(), torch.utils.data.TensorDataset(x), threshold=0.9, batch_size=2)
    pseudo = miner.run()
    assert miner.indices.tolist() == [0, 2] and miner.labels.tolist() == [0, 1]
    assert len(pseudo) == 2 and torch.equal(pseudo[1][0], x[2]) and pseudo[1][1] == 1  # the item is unwrapped


class NanToNum(nn.Module):
    """A model that would turn a corrupt input into a confident prediction."""

    def forward(self, x):
        return torch.nan_to_num(x, nan=50.0, posinf=50.0)


def test_samples_with_non_finite_inputs_are_never_accepted_nor_spread_to_their_batch():
    torch.manual_seed(0)
    x = torch.randn(8, 2) * 3
    x[2, 0], x[5, 1] = math.nan, math.inf
    miner = PseudoLabelMiner(NanToNum(), x, threshold=0.0, batch_size=4)
    with pytest.warns(RuntimeWarning, match="2 of 8 samples had non-finite inputs"):
        miner.run()
    assert miner.indices.tolist() == [0, 1, 3, 4, 6, 7] and miner.num_non_finite == 2
    assert miner.all_confidences[[2, 5]].eq(0).all()
    # A model that normalises with batch statistics in eval mode: the corrupt sample is zeroed before the
    # forward pass, so its batch's other samples are still predicted (instead of all becoming NaN).
    bn = nn.Sequential(nn.BatchNorm1d(2, track_running_stats=False), nn.Linear(2, 3))
    miner = PseudoLabelMiner(bn, x, threshold=0.0, batch_size=4)
    with pytest.warns(RuntimeWarning, match="2 of 8 samples"):
        miner.run()
    assert miner.indices.tolist() == [0, 1, 3, 4, 6, 7]


def test_miner_pins_host_memory_only_for_host_samples(monkeypatch):
    """Samples already on a device cannot be pinned: the miner's loader pins only host samples on CUDA."""
    from ignite_pseudolabel import mining

    seen = []

    class Recording(torch.utils.data.DataLoader):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs["pin_memory"])
            super().__init__(*args, **{**kwargs, "pin_memory": False})

    monkeypatch.setattr(mining, "DataLoader", Recording)
    model = torch.nn.Linear(3, 2)
    host = PseudoLabelMiner(model, torch.randn(4, 3), threshold=0.5, device="cuda")
    host._device = lambda: torch.device("cuda")  # no GPU needed: only the loader's construction is checked
    host._make_loader()
    on_device = PseudoLabelMiner(model, torch.randn(4, 3, device="meta"), threshold=0.5)
    on_device._device = lambda: torch.device("cuda")
    on_device._make_loader()
    assert seen == [True, False]
    assert mining._on_host((torch.zeros(1), 1)) and not mining._on_host(torch.zeros(1, device="meta"))


# States saved by the implementation before the miner was split into parts (0.3.0.dev, commit 237f1bf),
# written out by hand from its state_dict() of make_miner(...).run(): checkpoints saved then must load.
ORIGINAL_STATES = {
    "replace": ({}, {
        "indices": torch.tensor([0, 2, 4, 6]), "labels": torch.tensor([0, 2, 2, 0]),
        "confidences": torch.tensor([0.9989998936653137, 0.9950000047683716, 0.9990000128746033, 0.9909998774528503]),
        "accepted_round": torch.tensor([1, -1, 1, -1, 1, -1, 1]), "rounds": 1, "num_classes": 3, "dataset_size": 7,
        "threshold": 0.99, "max_per_class": None, "k_best": None, "class_fraction": None, "grow": False}),
    "grow": ({"grow": True, "k_best": 3, "threshold": None}, {
        "indices": torch.tensor([0, 2, 4]), "labels": torch.tensor([0, 2, 2]),
        "confidences": torch.tensor([0.9989998936653137, 0.9950000047683716, 0.9990000128746033]),
        "accepted_round": torch.tensor([1, -1, 1, -1, 1, -1, -1]), "rounds": 1, "num_classes": 3, "dataset_size": 7,
        "threshold": None, "max_per_class": None, "k_best": 3, "class_fraction": None, "grow": True}),
}


@pytest.mark.parametrize("name", sorted(ORIGINAL_STATES))
def test_a_state_saved_by_the_original_implementation_loads_and_is_saved_again_unchanged(name, tmp_path):
    kwargs, original = ORIGINAL_STATES[name]
    torch.save({"miner": original}, tmp_path / "old.pt")
    miner, model, _ = make_miner(**kwargs)
    trainer = Engine(lambda e, b: None)
    miner.attach(trainer)
    Checkpoint.load_objects({"miner": miner}, str(tmp_path / "old.pt"))
    assert miner.indices.tolist() == original["indices"].tolist() and miner.rounds == 1 and miner.num_classes == 3
    assert [miner.dataset[i][1] for i in range(len(miner.dataset))] == original["labels"].tolist()
    assert trainer.state.num_pseudo_labels == len(original["indices"])
    state = miner.state_dict()
    assert list(state) == list(original)  # the same keys, in the same order
    for key, value in original.items():
        assert torch.equal(state[key], value) if isinstance(value, torch.Tensor) else state[key] == value
    # and a fresh run of the same configuration saves what the original saved
    fresh, _, _ = make_miner(**kwargs)
    fresh.run()
    for key, value in fresh.state_dict().items():
        expected = original[key]
        assert torch.allclose(value, expected) if isinstance(value, torch.Tensor) else value == expected


def test_a_dense_state_saved_by_the_original_implementation_restores_label_maps():
    original = {  # PseudoLabelMiner(PixelModel(), 3 images of 2 x 2, threshold=0.9).run().state_dict() before the split
        "indices": torch.tensor([0, 1, 2]),
        "labels": torch.tensor([[[1, 255], [0, 0]], [[1, 1], [1, 2]], [[1, 1], [1, 1]]], dtype=torch.uint8),
        "confidences": torch.tensor([0.9160144925117493, 0.9740195870399475, 0.9924212694168091]),
        "accepted_round": torch.tensor([1, 1, 1]), "rounds": 1, "num_classes": 3, "dataset_size": 3,
        "threshold": 0.9, "max_per_class": None, "k_best": None, "class_fraction": None, "grow": False}
    miner = PseudoLabelMiner(nn.Identity(), torch.zeros(3, 1, 2, 2), threshold=0.9,
                             held_back_targets=torch.ones(3, 2, 2, dtype=torch.int64))
    miner.load_state_dict(original)
    assert miner.labels.dtype == torch.uint8 and miner.dataset[1][1].tolist() == [[1, 1], [1, 2]]
    assert miner.class_counts.tolist() == [2, 8, 1]  # pixels: the dense strategy was chosen by the maps
    assert miner.accuracy == pytest.approx(8 / 11)


# ------------------------------------------------- held_back_targets, mined_accuracy and the old names
TRUTH = torch.tensor([0, 1, 2, 1, 2, 0, 1])  # the miner of make_miner accepts [0, 2, 4, 6]; position 6 is wrong


def test_held_back_targets_enable_the_accuracy_published_as_mined_accuracy():
    miner, _, _ = make_miner(held_back_targets=TRUTH)
    assert torch.equal(miner.held_back_targets, TRUTH)
    assert miner.state_attributes == ("num_pseudo_labels", "mined_accuracy", "pseudo_label_accuracy")
    trainer = Engine(lambda e, b: None)
    miner.attach(trainer)
    assert trainer.state.num_pseudo_labels == 0 and trainer.state.mined_accuracy is None
    trainer.run([0], max_epochs=1)
    assert miner.accuracy == 0.75 and trainer.state.mined_accuracy == 0.75
    assert trainer.state.pseudo_label_accuracy == trainer.state.mined_accuracy  # the deprecated alias
    without, _, _ = make_miner()
    without.run()
    assert without.held_back_targets is None and without.accuracy is None


def test_true_labels_still_works_with_a_deprecation_warning_at_the_caller():
    with pytest.warns(DeprecationWarning, match="true_labels is deprecated .* use held_back_targets") as record:
        miner = PseudoLabelMiner(Counting(), logits_for([0.999, 0.2], [1, 0]), true_labels=torch.tensor([1, 0]))
    assert record[0].filename == __file__  # stacklevel: the warning points at the line that built the miner
    miner.run()
    assert torch.equal(miner.held_back_targets, torch.tensor([1, 0])) and miner.accuracy == 1.0
    with pytest.warns(DeprecationWarning, match="use held_back_targets") as record:
        assert torch.equal(miner.true_labels, torch.tensor([1, 0]))
    assert record[0].filename == __file__
    with pytest.warns(DeprecationWarning, match="use held_back_targets"):
        miner.true_labels = torch.tensor([0, 0])
    assert miner.held_back_targets.tolist() == [0, 0] and miner.accuracy == 0.0


def test_new_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        miner, _, _ = make_miner(held_back_targets=TRUTH)
        trainer = Engine(lambda e, b: None)
        miner.attach(trainer)
        trainer.run([0], max_epochs=1)
        assert trainer.state.mined_accuracy == 0.75 and miner.held_back_targets is not None


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"held_back_targets": torch.zeros(3)}, ValueError, r"held_back_targets should have shape \(4,\)"),
        ({"held_back_targets": torch.zeros(4), "true_labels": torch.zeros(4)}, ValueError,
         "held_back_targets and true_labels .* should not both be given"),
    ],
)
def test_held_back_targets_validation(kwargs, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(error, match=match):
            PseudoLabelMiner(nn.Identity(), torch.zeros(4, 3), **kwargs)

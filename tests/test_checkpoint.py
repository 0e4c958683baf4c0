import math
import os
import stat

import pytest
import torch
from ignite.base import Serializable
from ignite.engine import Engine, Events, create_supervised_trainer
from ignite.handlers import Checkpoint
from torch import nn

from ignite_pseudolabel import AlphaRamp, BestCheckpoint, BestValCheckpoint, ResumeCheckpoint


class FixedScores(Engine):
    """An 'evaluator' that reports a scripted accuracy on every run."""

    def __init__(self, scores, name="accuracy"):
        super().__init__(lambda e, b: None)
        self.scores = list(scores)
        self.add_event_handler(Events.COMPLETED, self._set)
        self.name = name

    def _set(self, engine):
        engine.state.metrics[self.name] = self.scores.pop(0)


def weights_trainer(model):
    """A trainer whose epoch e sets every weight to e, so saved files tell which epoch they hold."""
    def step(engine, batch):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(engine.state.epoch)
    return Engine(step)


def test_keeps_the_best_and_ties_go_to_the_latest(tmp_path):
    model = nn.Linear(2, 2)
    trainer = weights_trainer(model)
    evaluator = FixedScores([0.5, 0.7, 0.6, 0.7, 0.65])
    best = BestValCheckpoint(evaluator, model, tmp_path, data=[0])
    best.attach(trainer)
    trainer.run([0], max_epochs=5)
    assert best.best_score == pytest.approx(0.7)
    assert best.best_path == tmp_path / "best_model_4_accuracy=0.7000.pt"
    assert sorted(os.listdir(tmp_path)) == ["best_model_4_accuracy=0.7000.pt"]
    fresh = nn.Linear(2, 2)
    best.load_best(fresh)
    assert fresh.weight.eq(4).all()  # the later of the two 0.7 epochs


def test_min_mode_and_n_saved(tmp_path):
    model = nn.Linear(2, 2)
    trainer = weights_trainer(model)
    best = BestValCheckpoint(FixedScores([3.0, 1.0, 2.0, 0.5], name="loss"), model, tmp_path, data=[0],
                             metric_name="loss", mode="min", n_saved=2)
    best.attach(trainer)
    trainer.run([0], max_epochs=4)
    assert best.best_score == 0.5
    assert sorted(os.listdir(tmp_path)) == ["best_model_2_loss=-1.0000.pt", "best_model_4_loss=-0.5000.pt"]


def test_non_finite_scores_are_never_saved(tmp_path):
    model = nn.Linear(2, 2)
    best = BestValCheckpoint(FixedScores([math.nan, 0.2, math.nan]), model, tmp_path, data=[0])
    trainer = weights_trainer(model)
    best.attach(trainer)
    with pytest.warns(RuntimeWarning, match="accuracy = nan is not finite; nothing saved"):
        trainer.run([0], max_epochs=3)
    assert best.best_path.name == "best_model_2_accuracy=0.2000.pt"


def test_works_with_an_evaluator_run_by_the_user_and_several_objects(tmp_path):
    model, ema = nn.Linear(2, 2), nn.Linear(2, 2)
    evaluator = FixedScores([0.1, 0.2])
    trainer = weights_trainer(model)
    best = BestValCheckpoint(evaluator, {"model": model, "ema": ema}, tmp_path, filename_prefix="top")
    best.attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0]))
    trainer.run([0], max_epochs=2)
    assert best.best_path.name == "top_checkpoint_2_accuracy=0.2000.pt"
    fresh, fresh_ema = nn.Linear(2, 2), nn.Linear(2, 2)
    best.load_best({"model": fresh, "ema": fresh_ema})
    assert fresh.weight.eq(2).all()


def test_a_failed_save_keeps_the_previous_best_file(tmp_path, monkeypatch):
    model = nn.Linear(2, 2)
    trainer = weights_trainer(model)
    best = BestValCheckpoint(FixedScores([0.5, 0.9]), model, tmp_path, data=[0])
    best.attach(trainer)
    trainer.run([0], max_epochs=1)
    before = best.best_path

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    message = "failed \\(OSError: .*No space left.*the previous checkpoint files are intact"
    with pytest.raises(RuntimeError, match=message):
        trainer.run([0], max_epochs=2)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == [before.name]
    assert best.best_path == before and best.best_score == 0.5
    fresh = nn.Linear(2, 2)
    best.load_best(fresh)
    assert fresh.weight.eq(1).all()


def test_resume_restores_training_state_and_best_record(tmp_path):
    def build(scores, dirname=tmp_path):
        torch.manual_seed(0)
        model = nn.Linear(3, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        trainer = create_supervised_trainer(model, optimizer, nn.CrossEntropyLoss())
        ramp = AlphaRamp(1, 3)
        ramp.attach(trainer)
        best = BestValCheckpoint(FixedScores(scores), model, dirname, data=[0],
                                 resume_objects={"trainer": trainer, "model": model, "optimizer": optimizer,
                                                 "alpha": ramp})
        best.attach(trainer)
        return trainer, model, best

    data = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1])) for _ in range(3)]
    trainer, model, best = build([0.3, 0.9, 0.4])
    trainer.run(data, max_epochs=3)
    assert sorted(os.listdir(tmp_path)) == ["best_model_2_accuracy=0.9000.pt", "last_checkpoint_3.pt"]

    reference, ref_model, _ = build([0.3, 0.9, 0.4, 0.5, 0.95], tmp_path / "ref")
    reference.run(data, max_epochs=5)

    trainer2, model2, best2 = build([0.5, 0.95])
    assert best2.resume() == tmp_path / "last_checkpoint_3.pt"
    assert trainer2.state.epoch == 3 and best2.best_score == pytest.approx(0.9)
    trainer2.run(data, max_epochs=5)
    assert torch.equal(model2.weight, ref_model.weight)
    # 0.5 did not replace the 0.9 file; 0.95 did; only the newest resume file is kept
    assert sorted(os.listdir(tmp_path)) == ["best_model_5_accuracy=0.9500.pt", "last_checkpoint_5.pt", "ref"]


def test_resume_errors(tmp_path):
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="without resume_objects"):
        BestValCheckpoint(FixedScores([]), model, tmp_path).resume()
    best = BestValCheckpoint(FixedScores([]), model, tmp_path, resume_objects={"model": model})
    with pytest.raises(FileNotFoundError, match="No resume checkpoint"):
        best.resume()
    torch.save({"model": {"weight": torch.zeros(5, 5)}, "best_checkpoint": {"_saved": []}},
               tmp_path / "last_checkpoint_1.pt")
    with pytest.raises(RuntimeError, match="Could not resume from .*last_checkpoint_1.pt"):
        best.resume()
    (tmp_path / "last_checkpoint_2.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="Could not resume"):
        best.resume()


def test_tampered_checkpoint_is_refused_not_executed(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    model = nn.Linear(2, 2)
    best = BestValCheckpoint(FixedScores([]), model, tmp_path, resume_objects={"model": model})
    with open(tmp_path / "last_checkpoint_1.pt", "wb") as f:
        torch.save({"model": Evil()}, f, pickle_module=pickle)
    with pytest.raises(RuntimeError, match="Could not resume"):
        best.resume()
    assert not (tmp_path / "pwned").exists()


def test_load_best_before_any_save_and_missing_metric(tmp_path):
    model = nn.Linear(2, 2)
    best = BestValCheckpoint(FixedScores([0.1], name="acc"), model, tmp_path, data=[0])
    with pytest.raises(FileNotFoundError, match="no best checkpoint"):
        best.load_best()
    trainer = weights_trainer(model)
    best.attach(trainer)
    with pytest.raises(ValueError, match="metric 'accuracy' is not among the evaluator's metrics \\['acc'\\]"):
        trainer.run([0], max_epochs=1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"evaluator": "e"}, TypeError, "evaluator should be an ignite Engine"),
        ({"to_save": {}}, TypeError, "to_save should be a torch.nn.Module or a non-empty mapping"),
        ({"mode": "best"}, ValueError, "mode should be one of 'max', 'min', but given 'best'"),
        ({"metric_name": ""}, ValueError, "metric_name should be a non-empty string"),
        ({"n_saved": 0}, ValueError, "n_saved should be an integer >= 1, but given 0"),
        ({"filename_prefix": "last"}, ValueError, "should not be 'last'"),
        ({"resume_objects": {"best_checkpoint": 1}}, ValueError, "no key 'best_checkpoint'"),
    ],
)
def test_argument_validation(tmp_path, kwargs, error, match):
    args = {"evaluator": FixedScores([]), "to_save": nn.Linear(2, 2), "dirname": tmp_path}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        BestValCheckpoint(**args)


def test_attach_twice_raises(tmp_path):
    best = BestValCheckpoint(FixedScores([]), nn.Linear(2, 2), tmp_path)
    trainer = Engine(lambda e, b: None)
    best.attach(trainer)
    with pytest.raises(ValueError, match="already attached"):
        best.attach(trainer)


def test_state_dict_round_trip_through_ignite_checkpoint(tmp_path):
    model = nn.Linear(2, 2)
    trainer = weights_trainer(model)
    best = BestValCheckpoint(FixedScores([0.4, 0.8]), model, tmp_path, data=[0])
    best.attach(trainer)
    trainer.run([0], max_epochs=2)
    torch.save({"best": best.state_dict()}, tmp_path / "state.pt")
    fresh = BestValCheckpoint(FixedScores([]), model, tmp_path)
    Checkpoint.load_objects({"best": fresh}, str(tmp_path / "state.pt"))
    assert fresh.best_score == pytest.approx(0.8) and fresh.best_path == best.best_path


def test_best_step_is_the_step_of_the_kept_file_and_travels_with_the_state(tmp_path):
    model = nn.Linear(2, 2)
    trainer = weights_trainer(model)
    best = BestValCheckpoint(FixedScores([0.5, 0.7, 0.6, 0.7, 0.65]), model, tmp_path, data=[0], n_saved=2)
    assert best.best_step is None
    best.attach(trainer)
    trainer.run([0], max_epochs=5)
    assert best.best_step == 4 and best.best_path.name == "best_model_4_accuracy=0.7000.pt"
    state = best.state_dict()
    assert state["steps"] == {"best_model_2_accuracy=0.7000.pt": 2, "best_model_4_accuracy=0.7000.pt": 4}
    fresh = BestValCheckpoint(FixedScores([]), model, tmp_path)
    fresh.load_state_dict(state)
    assert fresh.best_step == 4 and fresh.best_score == pytest.approx(0.7)
    legacy = BestValCheckpoint(FixedScores([]), model, tmp_path)
    legacy.load_state_dict({"_saved": [(0.7, "best_model_4_accuracy=0.7000.pt")]})  # a 0.2 state: no steps
    assert legacy.best_step is None and legacy.best_path == best.best_path


def test_best_checkpoint_alone_on_an_iteration_event(tmp_path):
    model = nn.Linear(2, 2)
    trainer = Engine(lambda engine, batch: None)
    best = BestCheckpoint(FixedScores([0.1, 0.3, 0.2]), model, tmp_path, data=[0])
    best.attach(trainer, Events.ITERATION_COMPLETED(every=2))
    trainer.run([0] * 6)
    assert best.best_step == 4 and os.listdir(tmp_path) == ["best_model_4_accuracy=0.3000.pt"]
    with pytest.raises(ValueError, match="This BestCheckpoint is already attached to a trainer"):
        best.attach(trainer)


def test_the_split_handlers_are_serializable_through_ignite_checkpoint(tmp_path):
    model = nn.Linear(2, 2)
    trainer = weights_trainer(model)
    best = BestCheckpoint(FixedScores([0.4, 0.8]), model, tmp_path / "best", data=[0])
    resume = ResumeCheckpoint({"model": model}, tmp_path / "last")
    best.attach(trainer)
    resume.attach(trainer)
    trainer.run([0], max_epochs=2)
    assert isinstance(best, Serializable) and isinstance(resume, Serializable)
    assert os.listdir(tmp_path / "last") == ["last_checkpoint_2.pt"]  # one object: still the documented name
    saver = Checkpoint({"best": best, "resume": resume}, str(tmp_path / "state"), n_saved=1)
    saver(trainer)
    fresh_best = BestCheckpoint(FixedScores([]), model, tmp_path / "best")
    fresh_resume = ResumeCheckpoint({"model": model}, tmp_path / "last")
    Checkpoint.load_objects({"best": fresh_best, "resume": fresh_resume}, saver.last_checkpoint)
    assert (fresh_best.best_score, fresh_best.best_step) == (pytest.approx(0.8), 2)
    assert fresh_resume.state_dict() == resume.state_dict()
    with pytest.raises(ValueError, match="Required state attribute '_saved' is absent"):
        fresh_best.load_state_dict({"steps": {}})
    with pytest.raises(TypeError, match="to_save should be a non-empty mapping"):
        ResumeCheckpoint({}, tmp_path)


def test_resuming_from_a_file_elsewhere_leaves_it_in_place(tmp_path):
    model = nn.Linear(2, 2)
    trainer = weights_trainer(model)
    ResumeCheckpoint({"trainer": trainer, "model": model}, tmp_path / "a").attach(trainer)
    trainer.run([0], max_epochs=2)
    trainer2 = weights_trainer(model)
    resume = ResumeCheckpoint({"trainer": trainer2, "model": model}, tmp_path / "b")
    resume.attach(trainer2)
    assert resume.resume(tmp_path / "a" / "last_checkpoint_2.pt").name == "last_checkpoint_2.pt"
    trainer2.run([0], max_epochs=3)
    assert os.listdir(tmp_path / "a") == ["last_checkpoint_2.pt"]
    assert os.listdir(tmp_path / "b") == ["last_checkpoint_3.pt"]


def test_files_are_synced_before_the_rename_and_the_directory_after_it(tmp_path, monkeypatch):
    real_fsync, synced = os.fsync, []

    def spy(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        synced.append((kind, sorted(os.listdir(tmp_path))))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    model = nn.Linear(2, 2)
    trainer = weights_trainer(model)
    best = BestValCheckpoint(FixedScores([0.5, 0.9]), model, tmp_path, data=[0])
    best.attach(trainer)
    trainer.run([0], max_epochs=2)
    first, second = "best_model_1_accuracy=0.5000.pt", "best_model_2_accuracy=0.9000.pt"
    assert [(kind, [f for f in files if f.startswith("best_")]) for kind, files in synced] == [
        ("file", []), ("dir", [first]),  # the new file appears only after its data is on disk
        ("file", [first]), ("dir", [first, second]),  # the replaced file is removed after the new one is written
    ]
    assert os.listdir(tmp_path) == [second]

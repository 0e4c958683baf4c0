"""The kept model out of training (docs/howto/export.rst): a semi-supervised run on a stock trainer keeps its
EMA model with BestValCheckpoint; the best file loads into a fresh instance of the model's class, which
``torch.export`` exports; a process that never imports ignite_pseudolabel loads the program and predicts what the
trained model predicts."""

import subprocess
import sys

import torch
from ignite.engine import create_supervised_evaluator, create_supervised_trainer
from ignite.handlers import EMAHandler
from ignite.metrics import Accuracy
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ignite_pseudolabel import AlphaRamp, BestValCheckpoint, PseudoLabelLoss, SemiSupervisedLoader, WeakStrongViews

# Loads the exported program and predicts saved inputs with torch alone; fails if anything imported the library.
INFERENCE = """
import sys
import torch
program_path, inputs_path, outputs_path, threads = sys.argv[1:]
torch.set_num_threads(int(threads))
program = torch.export.load(program_path)
outputs = {name: program.module()(x) for name, x in torch.load(inputs_path, weights_only=True).items()}
torch.save(outputs, outputs_path)
assert "ignite_pseudolabel" not in sys.modules, "the inference process imported ignite_pseudolabel"
assert "ignite" not in sys.modules, "the inference process imported ignite"
"""


def make_model():
    """A tiny CNN with BatchNorm (whose mode export must get right); the class is all that inference needs."""
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(16, 3))


def images(n, generator):
    """``n`` 8 x 8 images of 3 classes: a bright 4 x 4 patch in the top-left, top-right or bottom corner, plus noise."""
    labels = torch.arange(n) % 3
    x = 0.3 * torch.randn(n, 1, 8, 8, generator=generator)
    for c, (row, col) in enumerate([(0, 0), (0, 4), (4, 2)]):
        x[labels == c, :, row:row + 4, col:col + 4] += 2.0
    return x, labels


def noise(scale):
    return lambda v: v + scale * torch.randn_like(v)


def train_and_keep_the_best(tmp_path):
    """A few steps of FixMatch with an EMA teacher; the EMA model and the student kept at the EMA's best score."""
    generator = torch.Generator().manual_seed(0)
    x, y = images(300, generator)
    labeled = DataLoader(TensorDataset(x[:30], y[:30]), batch_size=10, shuffle=True)
    validation = DataLoader(TensorDataset(x[30:90], y[30:90]), batch_size=60)
    unlabeled = DataLoader(WeakStrongViews(x[90:], noise(0.05), noise(0.3)), batch_size=30, shuffle=True,
                           drop_last=True)

    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    ema = EMAHandler(model, momentum=0.2)
    loss = PseudoLabelLoss(threshold=0.8, teacher=ema.ema_model)
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    ema.attach(trainer)
    AlphaRamp(t1=0, t2=0, alpha_f=1.0).attach(trainer)
    evaluator = create_supervised_evaluator(ema.ema_model, metrics={"accuracy": Accuracy()})
    best = BestValCheckpoint(evaluator, {"ema": ema.ema_model, "model": model}, tmp_path / "checkpoints",
                             data=validation)
    best.attach(trainer)
    trainer.run(SemiSupervisedLoader(labeled, unlabeled=unlabeled, epoch_length=4), max_epochs=3)
    return best, ema, model, validation, x


def test_the_kept_ema_model_exports_and_runs_without_the_library(tmp_path):
    best, ema, student, validation, x = train_and_keep_the_best(tmp_path)
    assert best.best_path is not None and best.best_score is not None
    saved = torch.load(best.best_path, weights_only=True)
    assert sorted(saved) == ["ema", "model"]  # two objects kept: one state_dict each

    # a fresh instance of the model's class, loaded without the library: the kept EMA model
    net = make_model()
    net.load_state_dict(saved["ema"])
    net.eval()
    check = create_supervised_evaluator(net, metrics={"accuracy": Accuracy()})
    assert check.run(validation).metrics["accuracy"] == best.best_score
    best.load_best()  # the training objects back at their best: the fresh model is the kept EMA model
    inputs = {"batch": x[200:237], "one": x[237:238]}  # batch sizes other than the export example's
    with torch.no_grad():
        expected = {name: net(v) for name, v in inputs.items()}
        for name, v in inputs.items():
            assert torch.equal(expected[name], ema.ema_model(v))
        assert not torch.equal(expected["batch"], student.eval()(inputs["batch"]))  # the EMA model, not the student

    # torch.export of the fresh model (eval mode, dynamic batch), saved to one file
    example = torch.randn(4, 1, 8, 8)
    program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    program_path = tmp_path / "model.pt2"
    torch.export.save(program, program_path)

    # a process that never imports ignite_pseudolabel (nor ignite) loads the program and predicts
    torch.save(inputs, tmp_path / "inputs.pt")
    done = subprocess.run([sys.executable, "-c", INFERENCE, str(program_path), str(tmp_path / "inputs.pt"),
                           str(tmp_path / "outputs.pt"), str(torch.get_num_threads())],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    outputs = torch.load(tmp_path / "outputs.pt", weights_only=True)
    for name in inputs:
        assert outputs[name].shape == expected[name].shape
        torch.testing.assert_close(outputs[name], expected[name])


def test_eval_mode_export_predicts_each_sample_independently_of_its_batch(tmp_path):
    # BatchNorm in train mode normalises with the batch's statistics; the exported eval-mode program must not
    net = make_model().eval()
    x, _ = images(12, torch.Generator().manual_seed(1))
    program = torch.export.export(net, (x[:4],), dynamic_shapes=({0: torch.export.Dim("batch")},)).module()
    before = {name: v.clone() for name, v in program.state_dict().items()}
    assert any("running_mean" in name for name in before)
    with torch.no_grad():
        torch.testing.assert_close(program(x)[:3], program(x[:3]))
    assert all(torch.equal(v, before[name]) for name, v in program.state_dict().items())  # no statistics updated


def test_a_train_mode_export_would_depend_on_the_batch():
    # the failure the eval() above prevents: a train-mode program normalises each batch with its own statistics
    x, _ = images(12, torch.Generator().manual_seed(1))
    program = torch.export.export(make_model().train(), (x[:4],),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},)).module()
    with torch.no_grad():
        assert not torch.allclose(program(x)[:3], program(x[:3]))

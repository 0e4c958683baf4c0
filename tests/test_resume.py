"""Kill -9 mid-ramp, after mining, and resume: the final weights equal an uninterrupted run's, bit for bit."""

import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parent / "resume_script.py"


def run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300)


def test_killed_and_resumed_run_ends_with_the_uninterrupted_run_weights(tmp_path):
    full = run(tmp_path / "full")
    assert full.returncode == 0, full.stderr
    # 3 iterations per epoch: iteration 14 is inside epoch 5, after mining rounds at epochs 2 and 4
    killed = run(tmp_path / "cut", "--kill-at-iteration", 14)
    assert killed.returncode == -9, killed.stderr
    checkpoints = sorted(p.name for p in (tmp_path / "cut" / "checkpoints").glob("last_*.pt"))
    assert checkpoints == ["last_checkpoint_4.pt"]
    assert not (tmp_path / "cut" / "final.pt").exists()
    resumed = run(tmp_path / "cut", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from last_checkpoint_4.pt at epoch 4" in resumed.stdout
    assert "after 2 rounds" in resumed.stdout and "alpha 1.0" not in resumed.stdout.split("resumed")[0]
    reference = torch.load(tmp_path / "full" / "final.pt")
    got = torch.load(tmp_path / "cut" / "final.pt")
    for name in reference:
        assert torch.equal(got[name], reference[name]), name
    assert full.stdout.splitlines()[-1] == resumed.stdout.splitlines()[-1]

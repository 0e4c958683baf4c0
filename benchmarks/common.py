"""Shared helpers of the performance benchmarks: models, timing, environment description, output.

Not a benchmark itself. The scripts next to it import it as ``from benchmarks import common``: run
them as modules from the repository root, ``python -m benchmarks.<script>``.

* :class:`Net`: the seed tutorial's CNN (from ``examples/mnist.py``, shared with the example);
  :class:`TinyNet`: a very small CNN for CPU runs where the model must not dominate;
  :func:`make_model` builds either.
* :func:`sync`, :func:`timed`: wall time of a callable, with a device synchronisation at the end of
  the timed region on CUDA.
* :func:`bf16_autocast_default`, :func:`run_engine`, ``POOL``: what the train-step benchmarks share.
* :func:`soft`: a call whose failure is recorded instead of raised (the GPU check's sections).
* :func:`environment`: versions, device name, thread count, git commit, command line.
* :func:`write_json`, :func:`print_table`, :func:`default_out`.
* :func:`argument_parser`, :func:`add_run_arguments`, :func:`require_positive`: the command line the
  timing benchmarks share.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import torch
from ignite.engine import Engine
from torch import nn

from examples.mnist import Net

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


# ---------------------------------------------------------------------------------------------- models


class TinyNet(nn.Module):
    """A very small CNN (one strided convolution, pooled to 4x4, one linear layer); any image size."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(4))
        self.classifier = nn.Linear(8 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


MODELS = ("net", "tiny")
POOL = 8  # distinct pre-built batches per stream of the train-step benchmarks, reused round-robin


def make_model(name: str, image_size: int = 28, num_classes: int = 10) -> nn.Module:
    """``net`` (the tutorial's ``Net``, 1x28x28 inputs only) or ``tiny`` (:class:`TinyNet`, any size)."""
    if name == "net":
        if image_size != 28:
            raise ValueError(f"The tutorial's Net takes 28x28 inputs only (its classifier is sized for them), but "
                             f"image size {image_size} was asked for: use --model tiny for other sizes")
        return Net(num_classes)
    if name == "tiny":
        return TinyNet(num_classes)
    raise ValueError(f"Unknown model {name!r}; expected one of {MODELS}")


# --------------------------------------------------------------------------------------------- running
def seed_everything(seed: int) -> None:
    """Seeds Python's, NumPy's and torch's (CPU and CUDA) generators."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed)
    except ImportError:  # pragma: no cover - NumPy ships with torch in practice
        pass
    torch.manual_seed(seed)  # also seeds every CUDA device


def resolve_device(name: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"Device {name!r} was asked for, but CUDA is not available here")
    return device


def sync(device: torch.device | str) -> None:
    """Waits for the device's queued work (a no-op on CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device | str) -> tuple[float, Any]:
    """``(seconds, fn())``: wall time of ``fn`` with a device synchronisation before and after."""
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def timed_with_peak(fn: Callable[[], Any], device: torch.device, peak: dict[str, int], name: str) -> float:
    """:func:`timed` seconds of ``fn``; on CUDA also raises ``peak[name]`` to the peak memory allocated during it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    seconds, _ = timed(fn, device)
    if device.type == "cuda":
        peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated(device))
    return seconds


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# ----------------------------------------------------------------------------------------- environment
@contextlib.contextmanager
def bf16_autocast_default(enabled: bool) -> Iterator[None]:
    """Makes ``torch.autocast("cuda")`` without a dtype (Ignite's ``amp_mode="amp"``) use bfloat16."""
    if not enabled:
        yield
        return
    previous = torch.get_autocast_dtype("cuda")
    torch.set_autocast_dtype("cuda", torch.bfloat16)
    try:
        yield
    finally:
        torch.set_autocast_dtype("cuda", previous)


def run_engine(engine: Engine, data: Any) -> None:
    """One epoch of ``engine`` over ``data`` (the timed unit of the train-step benchmarks)."""
    engine.run(data, max_epochs=1)


def soft(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, or ``{"error": ...}`` if it raises: one failure must not lose the rest."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - fail soft by design
        return {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def device_name(device: torch.device | str) -> str:
    """``torch.cuda.get_device_name`` on CUDA, else the processor and torch's thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:  # platform.processor() is often empty or just the architecture on Linux
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, {os.cpu_count()} logical CPUs"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: torch.device | str) -> dict[str, Any]:
    """Everything a reader needs to tell where a figure comes from."""
    import ignite

    device = torch.device(device)
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.executable).name, *sys.argv],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ignite": ignite.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "git_commit": _git_commit(),
    }
    try:
        import ignite_pseudolabel

        env["ignite_pseudolabel"] = ignite_pseudolabel.__version__
        env["ignite_pseudolabel_path"] = str(Path(ignite_pseudolabel.__file__).parent)
    except ImportError:
        env["ignite_pseudolabel"] = None
    try:
        import torchvision

        env["torchvision"] = torchvision.__version__
    except ImportError:
        env["torchvision"] = None
    if device.type == "cuda":
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
        props = torch.cuda.get_device_properties(device)
        env["device_memory_gib"] = round(props.total_memory / 2**30, 1)
    try:
        env["load_average"] = os.getloadavg()  # other processes on a shared machine skew CPU timings
    except OSError:
        pass
    return env


# ---------------------------------------------------------------------------------------- command line
def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of a script's docstring, showing the defaults."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def add_run_arguments(parser: argparse.ArgumentParser, out_default: str) -> None:
    """``--device``, ``--threads``, ``--seed`` and ``--out`` (``out_default`` describes its default)."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (None: torch's choice; 1 is steadier on a shared machine)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random data and the model weights")
    parser.add_argument("--out", default=None, help=f"result JSON (default {out_default})")


def start_report(benchmark: str, args: argparse.Namespace) -> tuple[torch.device, dict[str, Any]]:
    """Resolves ``args.device``, applies ``args.threads`` and starts the report (environment, arguments)."""
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict[str, Any] = {"benchmark": benchmark, "environment": environment(device), "arguments": vars(args)}
    print(f"device: {report['environment']['device_name']}", flush=True)
    return device, report


def require_positive(parser: argparse.ArgumentParser, what: str, *values: int) -> None:
    """Exits with a usage error naming ``what`` unless every value is at least 1."""
    if min(values) < 1:
        parser.error(f"{what} should be positive")


# ---------------------------------------------------------------------------------------------- output
def default_out(name: str) -> Path:
    """``benchmarks/results/<name>.json``."""
    return RESULTS_DIR / f"{name}.json"


def write_json(path: str | Path, report: dict[str, Any]) -> Path:
    """Writes ``report`` (creating the folder) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return path


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None) -> None:
    """A plain-text table of ``rows`` (dicts) with the given columns, right-aligned."""
    cells = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    if title:
        print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))
    sys.stdout.flush()

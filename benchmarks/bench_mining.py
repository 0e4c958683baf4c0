"""Mining benchmark: PseudoLabelMiner against a plain inference loop and against the seed tutorial's loop.

Part ``ratio`` (a): images/s of ``PseudoLabelMiner(model, dataset, threshold, batch_size=B).run()`` over
an unlabeled float tensor ``(N, 1, 28, 28)`` divided by images/s of the plain inference loop
``for x in DataLoader(dataset, batch_size=B): model(x)`` (``model.eval()``, ``torch.no_grad()``) over
the same data, model, batch size and device; on CUDA the timed region ends with a device
synchronisation. One warm-up pass over a few batches, then ``--repeats`` alternating measurements;
the medians are reported. Project target: ratio >= 0.97.

Part ``scaling`` (b): the seed tutorial's mining loop, reimplemented faithfully (``torch.cat`` of the
accepted images and labels inside the loop, every batch to the CPU and NumPy, copies of the
selected images), against ``PseudoLabelMiner`` for each ``--sizes`` N and ``--image-size``: seconds,
images/s, how time grows with N (the exponent ``log(t2/t1) / log(N2/N1)``: 1 is linear, 2 is
quadratic), the bytes each keeps as its result (ours: indices + labels + confidences; the
tutorial: the copied images + labels) and memory: the process's peak RSS increase, each
measurement in a fresh subprocess (``--worker``) so that it starts clean, and on CUDA
``torch.cuda.max_memory_allocated``. Images are stored as ``uint8`` and converted to float one
sample at a time (580,000 float images would be 1.8 GB); random weights give no confident
predictions, so the threshold is calibrated (on the first 4,096 images) to accept
``--accept-fraction`` of the set.

``--model auto`` (the default) uses the tutorial's ``Net`` for part (a); for part (b) it uses
``Net`` on CUDA and the very small ``TinyNet`` on CPU (and for image sizes other than 28, which
``Net`` cannot take): on two CPU cores ``Net`` predicts about 1,000 images/s, so one pass over
580,000 images would take about 10 minutes, and the comparison at scale would measure the model.

Usage:
    # everything with the defaults (part a: N=58,000 with Net; part b: 58,000 and 580,000 images). On
    # 2 CPU cores: part (a) 6 passes of about 1 minute; part (b) about 35 minutes, nearly all of it the
    # tutorial's loop at 580,000 images (quadratic in N); on a GPU, minutes.
    python -m benchmarks.bench_mining

    # part (a) only, the project's ratio
    python -m benchmarks.bench_mining --part ratio --n 58000 --model net

    # part (b) on CPU: tutorial loop vs ours at 58,000 and 580,000 images (--model tiny: see above)
    python -m benchmarks.bench_mining --part scaling --model tiny --sizes 58000 580000

    # part (b), shorter: ours alone at 580,000; both at smaller sizes and image sizes 28 and 56
    python -m benchmarks.bench_mining --part scaling --model tiny --sizes 58000 580000 --methods ours
    python -m benchmarks.bench_mining --part scaling --model tiny --sizes 14500 29000 --image-size 28 56

    # quick check of both parts
    python -m benchmarks.bench_mining --n 4000 --sizes 4000 40000 --model tiny --repeats 2

On a CPU shared with other work add ``--threads 1``: with torch's default of one thread per core,
every operator waits for a core the other processes hold, and small operators take milliseconds.

Output: tables on stdout and ``benchmarks/results/bench_mining_<device type>.json`` (or ``--out``):
``ratio`` (per-repeat and median seconds, images/s, the ratio and whether it meets 0.97),
``scaling`` (one row per method, image size and N) and ``scaling_exponents``, with the
environment (versions, device name, threads, git commit).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks import common
from ignite_pseudolabel import PseudoLabelMiner

TARGET_RATIO = 0.97
WORKER_MARK = "BENCH_MINING_WORKER_RESULT "
CALIBRATION_SAMPLES = 4096


class UInt8Images(Dataset):
    """``uint8`` images ``(N, C, H, W)`` returned one at a time as float tensors in [0, 1]."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].to(torch.float32).mul_(1 / 255)


def calibrate_threshold(model: torch.nn.Module, dataset: Any, fraction: float, batch_size: int,
                        device: torch.device) -> float:
    """The confidence threshold that accepts about ``fraction`` of the first images (not timed)."""
    n = min(len(dataset), CALIBRATION_SAMPLES)
    model.eval()
    confidences = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            x = torch.stack([dataset[i] for i in range(start, min(n, start + batch_size))]).to(device)
            confidences.append(torch.softmax(model(x).float(), dim=1).max(dim=1).values.cpu())
    threshold = float(torch.quantile(torch.cat(confidences), 1.0 - fraction))
    return min(max(threshold, 1e-6), 1.0)


# ---------------------------------------------------------------------------------- the methods timed
def plain_loop(model: torch.nn.Module, dataset: Any, batch_size: int, device: torch.device) -> None:
    """The reference: a plain inference loop, predictions discarded."""
    model.eval()
    with torch.no_grad():
        for x in DataLoader(dataset, batch_size=batch_size):
            model(x.to(device))


def tutorial_mining(model: torch.nn.Module, loader: DataLoader, device: torch.device,
                    pseudo_threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The seed tutorial's mining loop (method 2), as written there.

    Only change: its loader yielded ``(images, labels)`` and it read ``data[0]``; the unlabeled
    dataset here yields the images only.
    """
    pseudo_images = torch.tensor([], dtype=torch.float)
    pseudo_labels = torch.tensor([], dtype=torch.long)
    with torch.no_grad():
        for data in loader:
            model.eval()
            images = data.to(device)
            outputs = model(images)
            outputs = torch.nn.functional.softmax(outputs, dim=1)
            max_val, predicted = torch.max(outputs.detach(), 1)
            idx = np.where(max_val.cpu().numpy() >= pseudo_threshold)[0]
            if len(idx) > 0:
                pseudo_images = torch.cat((pseudo_images, images.cpu()[idx]), 0)
                pseudo_labels = torch.cat((pseudo_labels, predicted.cpu()[idx]), 0)
    return pseudo_images, pseudo_labels


# ------------------------------------------------------------------------------------- part (a): ratio
def run_ratio(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    model_name = "net" if args.model == "auto" else args.model
    common.seed_everything(args.seed)
    model = common.make_model(model_name).to(device)
    generator = torch.Generator().manual_seed(args.seed)
    data = torch.randn(args.n, 1, 28, 28, generator=generator)  # a plain float tensor: the miner accepts it
    threshold = calibrate_threshold(model, data, args.accept_fraction, args.batch_size, device)
    warm = data[: min(args.n, args.warmup_batches * args.batch_size)]
    plain_loop(model, warm, args.batch_size, device)
    PseudoLabelMiner(model, warm, threshold=threshold, batch_size=args.batch_size).run()

    seconds: dict[str, list[float]] = {"plain": [], "miner": []}
    accepted = None
    for r in range(args.repeats):
        order = ("plain", "miner") if r % 2 == 0 else ("miner", "plain")  # alternate against drift
        for what in order:
            if what == "plain":
                t, _ = common.timed(lambda: plain_loop(model, data, args.batch_size, device), device)
            else:
                miner = PseudoLabelMiner(model, data, threshold=threshold, batch_size=args.batch_size)
                t, _ = common.timed(miner.run, device)
                accepted = int(miner.indices.numel())
            seconds[what].append(t)
            print(f"  repeat {r + 1}/{args.repeats} {what:5s}: {t:8.2f} s  {args.n / t:10,.0f} images/s", flush=True)
    plain_s, miner_s = common.median(seconds["plain"]), common.median(seconds["miner"])
    ratio = plain_s / miner_s  # = (N / miner_s) / (N / plain_s)
    result = {
        "model": model_name,
        "n": args.n,
        "input_shape": [1, 28, 28],
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "threshold": threshold,
        "accepted": accepted,
        "plain_seconds": seconds["plain"],
        "miner_seconds": seconds["miner"],
        "plain_median_seconds": plain_s,
        "miner_median_seconds": miner_s,
        "plain_images_per_s": args.n / plain_s,
        "miner_images_per_s": args.n / miner_s,
        "per_repeat_ratios": [p / m for p, m in zip(seconds["plain"], seconds["miner"])],
        "ratio": ratio,
        # less sensitive to other processes slowing single passes down on a shared machine
        "ratio_of_fastest": min(seconds["plain"]) / min(seconds["miner"]),
        "target": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
    }
    rows = [{"method": "plain loop", "median s": plain_s, "images/s": args.n / plain_s,
             "all s": " ".join(f"{t:.2f}" for t in seconds["plain"])},
            {"method": "PseudoLabelMiner", "median s": miner_s, "images/s": args.n / miner_s,
             "all s": " ".join(f"{t:.2f}" for t in seconds["miner"])}]
    common.print_table(rows, ["method", "median s", "images/s", "all s"],
                       title=f"(a) mining throughput, {model_name}, N={args.n:,}, batch {args.batch_size}, {device}")
    print(f"ratio miner/plain images/s = {ratio:.4f} (medians; target >= {TARGET_RATIO}: "
          f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}); fastest passes: {result['ratio_of_fastest']:.4f}")
    return result


# ------------------------------------------------------------------------------- part (b): the worker
def _current_rss_bytes() -> int | None:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * resource.getpagesize()


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One measurement (one method, N and image size) in a fresh process; returns its row."""
    device = common.resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    common.seed_everything(args.seed)
    model = common.make_model(args.model, args.image_size[0]).to(device).eval()
    size = args.image_size[0]
    images = torch.randint(0, 256, (args.n, 1, size, size), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(args.seed))
    dataset = UInt8Images(images)
    threshold = calibrate_threshold(model, dataset, args.accept_fraction, args.batch_size, device)
    with torch.no_grad():  # warm-up of the model (first-call allocations, kernels)
        model(torch.stack([dataset[i] for i in range(min(args.n, args.batch_size))]).to(device))
    gc.collect()
    rss_before, peak_before = _current_rss_bytes(), _peak_rss_bytes()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    cuda_before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0

    row: dict[str, Any] = {"method": args.worker, "model": args.model, "image_size": size, "n": args.n,
                           "batch_size": args.batch_size, "threshold": threshold}
    if args.worker == "ours":
        miner = PseudoLabelMiner(model, dataset, threshold=threshold, batch_size=args.batch_size)
        seconds, _ = common.timed(miner.run, device)
        row["accepted"] = int(miner.indices.numel())
        row["result_bytes"] = miner.indices.nbytes + miner.labels.nbytes + miner.confidences.nbytes
        # also per-sample state the miner keeps for the whole set (not per accepted image)
        row["retained_bytes"] = row["result_bytes"] + miner.all_confidences.nbytes + miner.accepted_round.nbytes
    else:
        loader = DataLoader(dataset, batch_size=args.batch_size)
        seconds, (pseudo_images, pseudo_labels) = common.timed(
            lambda: tutorial_mining(model, loader, device, threshold), device)
        row["accepted"] = int(pseudo_labels.numel())
        row["result_bytes"] = pseudo_images.nbytes + pseudo_labels.nbytes
        row["retained_bytes"] = row["result_bytes"]
    peak_after = _peak_rss_bytes()
    row["seconds"] = seconds
    row["images_per_s"] = args.n / seconds
    row["rss_before_bytes"] = rss_before
    row["peak_rss_before_bytes"] = peak_before
    row["peak_rss_after_bytes"] = peak_after
    # ru_maxrss is the high-water mark of the whole process: an increase shows only when it rises above the
    # peak reached before (imports, data generation, calibration). Report the increase over the RSS at the
    # start; when it stayed below the earlier peak, only a bound is known.
    if rss_before is None:
        row["peak_rss_increase_bytes"] = row["peak_rss_increase_at_most_bytes"] = None
    elif peak_after <= peak_before:
        row["peak_rss_increase_bytes"], row["peak_rss_increase_at_most_bytes"] = None, peak_before - rss_before
    else:
        row["peak_rss_increase_bytes"], row["peak_rss_increase_at_most_bytes"] = peak_after - rss_before, None
    if device.type == "cuda":
        row["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        row["cuda_peak_increase_bytes"] = torch.cuda.max_memory_allocated(device) - cuda_before
    return row


def scaling_model(args: argparse.Namespace, device: torch.device, image_size: int) -> str:
    if args.model != "auto":
        return args.model
    return "net" if device.type == "cuda" and image_size == 28 else "tiny"


def run_scaling(args: argparse.Namespace, device: torch.device) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    for image_size in args.image_size:
        model_name = scaling_model(args, device, image_size)
        for n in args.sizes:
            for method in args.methods:
                for rep in range(args.scaling_repeats):
                    cmd = [sys.executable, "-m", "benchmarks.bench_mining", "--worker", method, "--n", str(n),
                           "--image-size", str(image_size), "--model", model_name, "--batch-size",
                           str(args.batch_size), "--accept-fraction", str(args.accept_fraction), "--device",
                           str(device), "--seed", str(args.seed)]
                    if args.threads:
                        cmd += ["--threads", str(args.threads)]
                    print(f"  {method:8s} image {image_size}x{image_size} N={n:,} ({model_name}) ...", end=" ",
                          flush=True)
                    try:
                        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.worker_timeout,
                                              cwd=common.REPO_ROOT)
                        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(WORKER_MARK)]
                        if proc.returncode != 0 or not lines:
                            raise RuntimeError(f"worker exited with {proc.returncode}: {proc.stderr.strip()[-2000:]}")
                        row = json.loads(lines[-1][len(WORKER_MARK):])
                    except (subprocess.TimeoutExpired, RuntimeError, json.JSONDecodeError) as e:
                        row = {"method": method, "model": model_name, "image_size": image_size, "n": n,
                               "error": f"{type(e).__name__}: {e}"}
                        print(row["error"], flush=True)
                    else:
                        print(f"{row['seconds']:.2f} s, {row['images_per_s']:,.0f} images/s, result "
                              f"{row['result_bytes'] / 2**20:.2f} MiB", flush=True)
                    row["repeat"] = rep
                    rows.append(row)
    exponents = scaling_exponents(rows)
    mib = 2**20
    table = []
    for row in rows:
        if "error" in row:
            table.append({"method": row["method"], "image": row["image_size"], "N": row["n"], "seconds": "error"})
            continue
        table.append({"method": row["method"], "model": row["model"], "image": row["image_size"], "N": row["n"],
                      "seconds": row["seconds"], "images/s": row["images_per_s"], "accepted": row["accepted"],
                      "result MiB": row["result_bytes"] / mib,
                      "result B/accepted": row["result_bytes"] / max(row["accepted"], 1),
                      "peak RSS +MiB": _peak_cell(row),
                      "CUDA peak +MiB": (row["cuda_peak_increase_bytes"] / mib
                                         if "cuda_peak_increase_bytes" in row else None)})
    columns = ["method", "model", "image", "N", "seconds", "images/s", "accepted", "result MiB",
               "result B/accepted", "peak RSS +MiB"]
    if device.type == "cuda":
        columns.append("CUDA peak +MiB")
    common.print_table(table, columns, title=f"(b) tutorial mining loop vs PseudoLabelMiner, batch {args.batch_size}, "
                                             f"{device}")
    if exponents:
        common.print_table(exponents, ["method", "image", "N1", "N2", "time x", "N x", "exponent"],
                           title="growth of the time with N (exponent 1: linear, 2: quadratic)")
    return rows, exponents


def _peak_cell(row: dict[str, Any]) -> Any:
    if row.get("peak_rss_increase_bytes") is not None:
        return row["peak_rss_increase_bytes"] / 2**20
    if row.get("peak_rss_increase_at_most_bytes") is not None:
        return f"<= {row['peak_rss_increase_at_most_bytes'] / 2**20:.1f}"
    return None


def scaling_exponents(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Between consecutive sizes, per method and image size: time ratio and log(t2/t1)/log(N2/N1)."""
    best: dict[tuple[str, int, int], float] = {}
    for row in rows:
        if "error" not in row:
            key = (row["method"], row["image_size"], row["n"])
            best[key] = min(best.get(key, math.inf), row["seconds"])
    out = []
    for method, image in sorted({(m, s) for m, s, _ in best}):
        sizes = sorted(n for m, s, n in best if (m, s) == (method, image))
        for n1, n2 in zip(sizes, sizes[1:]):
            t1, t2 = best[(method, image, n1)], best[(method, image, n2)]
            out.append({"method": method, "image": image, "N1": n1, "N2": n2, "time x": t2 / t1, "N x": n2 / n1,
                        "exponent": math.log(t2 / t1) / math.log(n2 / n1)})
    return out


# -------------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = common.argument_parser(__doc__)
    parser.add_argument("--part", choices=("ratio", "scaling", "all"), default="all",
                        help="(a) ratio to a plain inference loop, (b) scaling against the tutorial's loop, or both")
    parser.add_argument("--n", type=int, default=58000, help="(a) unlabeled images (the tutorial's unlabeled set size)")
    parser.add_argument("--repeats", type=int, default=3, help="(a) timed passes of each method (median reported)")
    parser.add_argument("--warmup-batches", type=int, default=4, help="(a) batches of the untimed warm-up pass")
    parser.add_argument("--sizes", type=int, nargs="+", default=[58000, 580000], help="(b) numbers of images N")
    parser.add_argument("--image-size", type=int, nargs="+", default=[28],
                        help="(b) image side(s): the result of ours must not grow with it")
    parser.add_argument("--methods", nargs="+", choices=("tutorial", "ours"), default=["tutorial", "ours"],
                        help="(b) methods to measure (the tutorial's loop is quadratic in N: about half an hour "
                             "at 580,000 images on 2 CPU cores)")
    parser.add_argument("--scaling-repeats", type=int, default=1, help="(b) fresh processes per measurement")
    parser.add_argument("--worker-timeout", type=float, default=3600.0, help="(b) seconds allowed per measurement")
    parser.add_argument("--model", choices=("auto", *common.MODELS), default="auto",
                        help="auto: net for (a); for (b) net on CUDA, tiny on CPU or for image sizes other than 28")
    parser.add_argument("--batch-size", type=int, default=256, help="inference batch size (the miner's default)")
    parser.add_argument("--accept-fraction", type=float, default=0.9,
                        help="share of the images the calibrated threshold accepts")
    common.add_run_arguments(parser, "benchmarks/results/bench_mining_<device>.json")
    parser.add_argument("--worker", choices=("ours", "tutorial"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0.0 < args.accept_fraction <= 1.0:
        parser.error("--accept-fraction should be in (0, 1]")
    common.require_positive(parser, "sizes, counts and batch sizes", args.n, args.batch_size, args.repeats,
                            *args.sizes, *args.image_size)
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.worker is not None:
        row = worker(args)
        print(WORKER_MARK + json.dumps(row), flush=True)
        return row
    device, report = common.start_report("bench_mining", args)
    out = Path(args.out) if args.out else common.default_out(f"bench_mining_{device.type}")
    if args.part in ("ratio", "all"):
        t, report["ratio"] = common.timed(lambda: run_ratio(args, device), device)
        report["ratio"]["wall_seconds"] = t
        common.write_json(out, report)
    if args.part in ("scaling", "all"):
        t, (report["scaling"], report["scaling_exponents"]) = common.timed(lambda: run_scaling(args, device), device)
        report["scaling_wall_seconds"] = t
    common.write_json(out, report)
    print(f"\nwritten: {out}")
    return report


if __name__ == "__main__":
    main()

"""One short GPU check of the package's performance claims, for a lent GPU machine (budget: minutes).

Runs, on the tutorial's ``Net`` (1x28x28 inputs) and a torchvision ResNet-18 (``num_classes=10``,
3x32x32 CIFAR-size inputs):

* ``sync``: that our steps make no per-batch host synchronisation, with
  ``torch.cuda.set_sync_debug_mode("error")``: the semi-supervised train step (stock
  ``create_supervised_trainer`` + ``PseudoLabelLoss``, with
  ``output_transform=lambda x, y, y_pred, loss: loss.detach()`` because the default one calls
  ``loss.item()``) around its timed iterations, in fp32, bf16, with a threshold and with pinned host
  batches copied with ``non_blocking=True``; and the miner's per-batch step (the debug mode is on
  from each ``ITERATION_STARTED`` to its ``ITERATION_COMPLETED``; the one synchronisation per round
  at the end is allowed). References: the supervised step (expected to pass), the tutorial's step
  (expected to fail: ``.item()`` every iteration) and the miner with ``non_blocking=False`` (its
  default is ``True``; expected to fail: a blocking host-to-device copy per batch). Pass/fail per
  component.
* ``train``: supervised vs semi-supervised vs the tutorial's two-forward step, fp32 vs bf16 autocast
  (``amp_mode="amp"``): ms/iteration, images/s, ``torch.cuda.max_memory_allocated``, the ratio
  semi/supervised (target <= 1.05). Reuses ``bench_train_step.py``.
* ``fixmatch``: a FixMatch iteration of the tutorial's ``Net`` (B 64 labeled + 3 x 64 unlabeled images,
  one forward pass over labeled + weak + strong rows) with per-image views (``WeakStrongViews`` in the
  ``DataLoader``) and with batched views (``DeviceBatches`` of ``uint8`` images on the GPU and
  ``BatchViews``), against the model alone on the same rows, fp32 and bf16 autocast; the views of one
  unlabeled batch alone, both ways. Targets: batched views >= 5x faster than per-image, the batched
  iteration <= 1.15x the model alone, views < 10 % of the iteration. Reuses
  ``fixmatch_step.measure_fixmatch``; the ``sync`` section checks the batched step too. Its per-image
  parts run on the host: about a minute in all, estimated from their CPU timings (not yet run on a GPU).
* ``mining``: ``PseudoLabelMiner`` fp32 vs ``amp_dtype=torch.bfloat16`` (and ``non_blocking=True``)
  against the plain inference loop in the same precision: images/s, peak memory, the ratio
  (target >= 0.97). Reuses ``bench_mining.py``.
* ``scaling``: the tutorial's mining loop vs ``PseudoLabelMiner`` with ``Net`` at 58,000 and 116,000
  images: seconds, images/s, result bytes, peak CUDA memory.

Every section and every component inside it is guarded: a failure is recorded as an error string and
the rest goes on. The JSON is rewritten after every section, so whatever ran survives a timeout.
Sections that would start after ``--budget-s`` seconds are skipped (recorded as such). Expected run
time on an H100: 2 to 4 minutes.

Usage:
    # on the GPU machine (the device tool collects $OUT)
    python -m benchmarks.gpu_check --out $OUT

    # here, without a GPU: the same code paths end to end with tiny sizes; CUDA-only parts skipped
    python -m benchmarks.gpu_check --cpu-smoke

Output: ``gpu_check.json`` in ``--out`` (default: ``$OUT`` when set, else ``benchmarks/results/``)
and a summary on stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmarks import bench_mining, bench_train_step, common, fixmatch_step
from benchmarks.sync_check import MODELS, section_sync
from ignite_pseudolabel import PseudoLabelMiner

SECTIONS = ("sync", "train", "fixmatch", "mining", "scaling")


def sizes(smoke: bool) -> SimpleNamespace:
    if smoke:
        return SimpleNamespace(labeled_batch=4, unlabeled_batch=4, small_batch=2, iterations=2, repeats=1, warmup=1,
                               fixmatch=dict(labeled_batch=4, mu=3, iterations=1, repeats=1, warmup=1),
                               sync_iterations=2, mining_n={"net": 128, "resnet18": 64}, mining_batch=32,
                               mining_repeats=1, scaling_model="tiny", scaling_sizes=[512, 1024])
    return SimpleNamespace(labeled_batch=128, unlabeled_batch=384, small_batch=64, iterations=50, repeats=3, warmup=10,
                           fixmatch=dict(labeled_batch=64, mu=3, iterations=20, repeats=3, warmup=5),
                           sync_iterations=20, mining_n={"net": 58000, "resnet18": 50000}, mining_batch=256,
                           mining_repeats=3, scaling_model="net", scaling_sizes=[58000, 116000])


def autocast(device: torch.device, dtype: torch.dtype | None) -> Any:
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


# ---------------------------------------------------------------------------------------------- train
def train_one(args: SimpleNamespace, device: torch.device, amp: bool, factory: Callable[[], nn.Module],
              shape: tuple[int, ...], label: str) -> dict[str, Any]:
    return bench_train_step.measure(args, device, amp, base=factory(), shape=shape, label=label)


def section_train(device: torch.device, sz: SimpleNamespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # the main batch sizes for both models, and the default 64 + 64 of bench_train_step.py for Net: a small
    # step, where a fixed per-iteration cost (kernel launches, Python) shows most
    configs = [(m, sz.labeled_batch, sz.unlabeled_batch, "") for m in MODELS]
    configs.append(("net", sz.small_batch, sz.small_batch, f"_b{sz.small_batch}+{sz.small_batch}"))
    for model_name, labeled_batch, unlabeled_batch, suffix in configs:
        factory, shape = MODELS[model_name]
        for amp in (False, True):
            key = f"{model_name}_{'bf16' if amp else 'fp32'}{suffix}"
            if amp and device.type != "cuda":
                out[key] = {"skipped": "CUDA-only: create_supervised_trainer(amp_mode='amp') autocasts on CUDA"}
                continue
            args = SimpleNamespace(labeled_batch=labeled_batch, unlabeled_batch=unlabeled_batch,
                                   iterations=sz.iterations, repeats=sz.repeats, warmup=sz.warmup, alpha=3.0,
                                   threshold=None, seed=0, model=model_name)
            out[key] = common.soft(train_one, args, device, amp, factory, shape, model_name)
    return out


# ------------------------------------------------------------------------------------------- fixmatch
def section_fixmatch(device: torch.device, sz: SimpleNamespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for amp in (False, True):
        key = f"net_{'bf16' if amp else 'fp32'}_b{sz.fixmatch['labeled_batch']}_mu{sz.fixmatch['mu']}"
        if amp and device.type != "cuda":
            out[key] = {"skipped": "CUDA-only: create_supervised_trainer(amp_mode='amp') autocasts on CUDA"}
            continue
        args = SimpleNamespace(**sz.fixmatch, threshold=None, seed=0, model="net", strength="fixmatch")
        out[key] = common.soft(fixmatch_step.measure_fixmatch, args, device, amp, common.Net())
    return out


# --------------------------------------------------------------------------------------------- mining
def _plain(model: nn.Module, data: Any, batch_size: int, device: torch.device, dtype: torch.dtype | None) -> None:
    model.eval()
    with torch.no_grad(), autocast(device, dtype):
        for x in DataLoader(data, batch_size=batch_size):
            model(x.to(device))


def _loader_only(data: Any, batch_size: int, device: torch.device) -> None:
    for x in DataLoader(data, batch_size=batch_size):
        x.to(device)


def mining_one(model_name: str, device: torch.device, sz: SimpleNamespace, dtype: torch.dtype | None) -> dict:
    factory, shape = MODELS[model_name]
    common.seed_everything(0)
    model = factory().to(device).eval()
    n, b = sz.mining_n[model_name], sz.mining_batch
    data = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))
    threshold = bench_mining.calibrate_threshold(model, data, 0.9, b, device)
    methods: dict[str, Callable[[], Any]] = {
        # the data loading alone (copies included, no model): the bound of both loops when the model is fast
        "loader_only": lambda: _loader_only(data, b, device),
        "plain": lambda: _plain(model, data, b, device, dtype),
        "miner": lambda: PseudoLabelMiner(model, data, threshold=threshold, batch_size=b, amp_dtype=dtype).run(),
        "miner_non_blocking": lambda: PseudoLabelMiner(model, data, threshold=threshold, batch_size=b,
                                                       amp_dtype=dtype, non_blocking=True).run(),
    }
    warm = data[: 4 * b]
    _plain(model, warm, b, device, dtype)
    PseudoLabelMiner(model, warm, threshold=threshold, batch_size=b, amp_dtype=dtype).run()
    seconds: dict[str, list[float]] = {m: [] for m in methods}
    peak: dict[str, int] = {}
    for r in range(sz.mining_repeats):
        for name in (methods if r % 2 == 0 else list(methods)[::-1]):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            t, _ = common.timed(methods[name], device)
            seconds[name].append(t)
            if device.type == "cuda":
                peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated(device))
    med = {m: common.median(s) for m, s in seconds.items()}
    return {
        "n": n, "input_shape": list(shape), "batch_size": b, "threshold": threshold,
        "seconds": seconds,
        "images_per_s": {m: n / t for m, t in med.items()},
        "cuda_max_memory_allocated_bytes": peak or None,
        "ratio": med["plain"] / med["miner"],
        "ratio_non_blocking": med["plain"] / med["miner_non_blocking"],
        "target": bench_mining.TARGET_RATIO,
        "meets_target": med["plain"] / med["miner"] >= bench_mining.TARGET_RATIO,
    }


def section_mining(device: torch.device, sz: SimpleNamespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for model_name in MODELS:
        for dtype in (None, torch.bfloat16):
            key = f"{model_name}_{'bf16' if dtype else 'fp32'}"
            out[key] = common.soft(mining_one, model_name, device, sz, dtype)
            r = out[key]
            if "error" in r:
                print(f"  mining {key}: {r['error']}", flush=True)
            else:
                ips = r["images_per_s"]
                print(f"  mining {key:15s} loader only {ips['loader_only']:10,.0f}  plain {ips['plain']:10,.0f}  "
                      f"miner {ips['miner']:10,.0f}  non_blocking {ips['miner_non_blocking']:10,.0f} images/s  "
                      f"ratio {r['ratio']:.3f}", flush=True)
    return out


# -------------------------------------------------------------------------------------------- scaling
def scaling_one(method: str, n: int, device: torch.device, sz: SimpleNamespace) -> dict[str, Any]:
    common.seed_everything(0)
    model = common.make_model(sz.scaling_model).to(device).eval()
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    dataset = bench_mining.UInt8Images(images)
    threshold = bench_mining.calibrate_threshold(model, dataset, 0.9, 256, device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
    if method == "ours":
        miner = PseudoLabelMiner(model, dataset, threshold=threshold, batch_size=256)
        t, _ = common.timed(miner.run, device)
        accepted = int(miner.indices.numel())
        result_bytes = miner.indices.nbytes + miner.labels.nbytes + miner.confidences.nbytes
    else:
        loader = DataLoader(dataset, batch_size=256)
        t, (imgs, labels) = common.timed(lambda: bench_mining.tutorial_mining(model, loader, device, threshold), device)
        accepted = int(labels.numel())
        result_bytes = imgs.nbytes + labels.nbytes
    row = {"method": method, "model": sz.scaling_model, "n": n, "seconds": t, "images_per_s": n / t,
           "accepted": accepted, "result_bytes": result_bytes}
    if device.type == "cuda":
        row["cuda_peak_increase_bytes"] = torch.cuda.max_memory_allocated(device) - before
    return row


def section_scaling(device: torch.device, sz: SimpleNamespace) -> dict[str, Any]:
    rows = []
    for n in sz.scaling_sizes:
        for method in ("tutorial", "ours"):
            row = common.soft(scaling_one, method, n, device, sz)
            row.setdefault("method", method)
            row.setdefault("n", n)
            rows.append(row)
            print(f"  scaling {method:8s} N={n:>7,}: " + (row["error"] if "error" in row else
                  f"{row['seconds']:.2f} s, {row['images_per_s']:,.0f} images/s, result "
                  f"{row['result_bytes'] / 2**20:.2f} MiB"), flush=True)
    return {"rows": rows, "exponents": bench_mining.scaling_exponents(
        [dict(r, image_size=28) for r in rows if "error" not in r])}


# ----------------------------------------------------------------------------------------------- main
def summary(report: dict[str, Any]) -> None:
    s = report["sections"]
    rows = []
    for key, r in (s.get("train") or {}).items():
        if isinstance(r, dict) and "methods" in r:
            m = r["methods"]
            rows.append({"train": key, "sup img/s": m["supervised"]["images_per_s"],
                         "semi img/s": m["semi"]["images_per_s"], "tutorial img/s": m["tutorial"]["images_per_s"],
                         "semi/sup time": r["ratio"], "<= 1.05": r["meets_target"]})
    if rows:
        common.print_table(rows, ["train", "sup img/s", "semi img/s", "tutorial img/s", "semi/sup time", "<= 1.05"],
                           title="train step")
    rows = []
    for key, r in (s.get("fixmatch") or {}).items():
        if isinstance(r, dict) and "methods" in r:
            ms = {m: 1000 * v["median_seconds_per_iteration"] for m, v in r["methods"].items()}
            rows.append({"fixmatch": key, "model ms": ms["model_only"], "per-image ms": ms["fixmatch_per_image"],
                         "batched ms": ms["fixmatch_batched"], "batched/model": r["fixmatch_batched_to_model_only"],
                         "views speedup": r["views_speedup"],
                         "views share %": 100 * r["views_share_of_batched_iteration"]})
    if rows:
        common.print_table(rows, ["fixmatch", "model ms", "per-image ms", "batched ms", "batched/model",
                                  "views speedup", "views share %"], title="FixMatch iteration (targets: <= 1.15, "
                                                                          ">= 5, < 10 %)")
    rows = []
    for key, r in (s.get("mining") or {}).items():
        if isinstance(r, dict) and "ratio" in r:
            rows.append({"mining": key, "loader img/s": r["images_per_s"]["loader_only"],
                         "plain img/s": r["images_per_s"]["plain"],
                         "miner img/s": r["images_per_s"]["miner"], "ratio": r["ratio"],
                         ">= 0.97": r["meets_target"], "ratio non_blocking": r["ratio_non_blocking"]})
    if rows:
        common.print_table(rows, ["mining", "loader img/s", "plain img/s", "miner img/s", "ratio", ">= 0.97",
                                  "ratio non_blocking"], title="mining")
    sync = s.get("sync") or {}
    if isinstance(sync, dict) and "skipped" not in sync and "error" not in sync:
        rows = [{"component": k, "result": "error" if "error" in v else ("pass" if v["passed"] else "fail"),
                 "expected": v["expected"]} for k, v in sync.items()]
        common.print_table(rows, ["component", "result", "expected"], title="no per-batch host synchronisation")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT") or str(common.RESULTS_DIR),
                        help="output folder ($OUT when set, else benchmarks/results)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run everything on CPU with tiny sizes (CUDA-only parts are skipped)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="sections that would start later than this many seconds are skipped")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out) / "gpu_check.json"
    if args.cpu_smoke:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # a smoke test of the code paths; one thread is steadier on a shared CPU
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        message = "no CUDA device: run on a GPU machine, or pass --cpu-smoke to check the script on CPU"
        print(message)
        common.write_json(out, {"benchmark": "gpu_check", "error": message,
                                "environment": common.environment("cpu")})
        return 2
    sz = sizes(args.cpu_smoke)
    report: dict[str, Any] = {"benchmark": "gpu_check", "cpu_smoke": args.cpu_smoke, "sizes": vars(sz),
                              "environment": common.soft(common.environment, device), "sections": {},
                              "section_seconds": {}}
    if device.type == "cuda":
        report["environment"]["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32,
                                         "cudnn": torch.backends.cudnn.allow_tf32}
    print(f"device: {report['environment'].get('device_name')}", flush=True)
    common.write_json(out, report)
    functions = {"sync": section_sync, "train": section_train, "fixmatch": section_fixmatch, "mining": section_mining,
                 "scaling": section_scaling}
    for name in args.sections:
        elapsed = time.perf_counter() - start
        if elapsed > args.budget_s:
            report["sections"][name] = {"skipped": f"time budget: {elapsed:.0f} s > {args.budget_s:.0f} s"}
            print(f"[{name}] skipped (time budget)", flush=True)
        else:
            print(f"[{name}] at {elapsed:.0f} s", flush=True)
            t0 = time.perf_counter()
            report["sections"][name] = common.soft(functions[name], device, sz)
            report["section_seconds"][name] = time.perf_counter() - t0
        common.write_json(out, report)
    report["total_seconds"] = time.perf_counter() - start
    common.write_json(out, report)
    common.soft(summary, report)
    print(f"\ntotal {report['total_seconds']:.0f} s; written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Paired differences between two sets of ``accuracy.py`` runs, seed by seed and evaluation by evaluation.

Two data paths (or any two settings) trained with the same seeds and ``--eval-steps`` are compared
seed by seed: for every evaluation step, the mean over the common seeds of ``B - A`` (test and
validation accuracy, mask rate) with its standard error, and the same for the summary figures (the
last evaluation, the mean of the last five, the best-validation model, the mean of all evaluations).
A single evaluation of a short run moves by a point or more between neighbouring steps, so one
checkpoint out of ten can differ by two or three standard errors by chance: the whole curve of
differences says whether a difference is systematic.

Usage (the Fashion-MNIST comparison of ``docs/performance.rst``)::

    python -m benchmarks.compare_runs \\
        benchmarks/results/accuracy_fashion-mnist_100_fixmatch_500steps_eval50_views-per-image.json \\
        benchmarks/results/accuracy_fashion-mnist_100_fixmatch_500steps_eval50_views-batch.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from benchmarks import common

SUMMARIES = ("last", "mean_of_last_5", "best_validation", "mean_of_all")


def _runs(path: str, method: str) -> dict[int, dict[str, Any]]:
    report = json.loads(Path(path).read_text())
    if method not in report["runs"]:
        raise SystemExit(f"{path} has no runs of method {method!r} (it has {sorted(report['runs'])})")
    return {run["seed"]: run for run in report["runs"][method]}


def _mean_se(values: list[float]) -> tuple[float, float]:
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return statistics.mean(values), se


def _summaries(run: dict[str, Any]) -> dict[str, float]:
    tests = [point["test_accuracy"] for point in run["curve"]]
    return {"last": tests[-1], "mean_of_last_5": statistics.mean(tests[-5:]),
            "best_validation": run["test_accuracy"], "mean_of_all": statistics.mean(tests)}


def compare(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """``b - a`` in accuracy points (and mask-rate points), per evaluation step and per summary figure."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise SystemExit("the two reports have no seed in common")
    for seed in seeds:
        steps_a, steps_b = ([p.get("step") for p in runs[seed]["curve"]] for runs in (a, b))
        if steps_a != steps_b or None in steps_a:
            raise SystemExit(f"seed {seed}: the runs were not evaluated at the same steps (use --eval-steps)")
    def at(run: dict[str, Any], i: int) -> dict[str, float]:
        point = run["curve"][i]
        return {"test": point["test_accuracy"], "val": point["val_accuracy"], "mask_rate": run["mask_rate"][i]}

    curve = []
    for i, point in enumerate(a[seeds[0]]["curve"]):
        row: dict[str, Any] = {"step": point["step"]}
        for name in ("test", "val", "mask_rate"):
            row[name], row[f"{name}_se"] = _mean_se([100 * (at(b[s], i)[name] - at(a[s], i)[name]) for s in seeds])
        curve.append(row)
    summary = {}
    for name in SUMMARIES:
        summary[name], summary[f"{name}_se"] = _mean_se(
            [100 * (_summaries(b[s])[name] - _summaries(a[s])[name]) for s in seeds])
    return {"seeds": seeds, "curve": curve, "summary": summary}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="accuracy.py report (the reference)")
    parser.add_argument("b", help="accuracy.py report compared with it (differences are b - a)")
    parser.add_argument("--method", default="fixmatch", help="the method compared (a key of the reports' runs)")
    parser.add_argument("--out", default=None, help="also write the differences to this JSON")
    args = parser.parse_args(argv)
    result = compare(_runs(args.a, args.method), _runs(args.b, args.method))
    columns = ["step", "test", "test_se", "val", "val_se", "mask_rate", "mask_rate_se"]
    common.print_table(result["curve"], columns, title=f"{args.method}: b - a over seeds {result['seeds']} "
                                                       "(points; mean and standard error)")
    common.print_table([result["summary"]], [c for name in SUMMARIES for c in (name, f"{name}_se")],
                       title="summary figures: b - a")
    if args.out:
        common.write_json(args.out, {"benchmark": "compare_runs", "a": args.a, "b": args.b, "method": args.method,
                                     **result})
    return result


if __name__ == "__main__":
    main()

"""The reports of ``benchmarks/accuracy.py``: summaries over seeds, curves, per-class tables and merges.

Pure functions of the JSON reports (no training): ``python -m benchmarks.accuracy --merge``, ``--plot`` and
``--class-table`` call them, and they can be called on committed reports, e.g.
``class_table(json.loads(Path("benchmarks/results/fashion_30min/accuracy_fashion-mnist_100_30min.json").read_text()))``.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import torch

from benchmarks import common

NUM_CLASSES = 10


def _mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for one value)."""
    return statistics.mean(values), (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else 0.0)


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per method: mean, SD and SE of the test accuracy over seeds, and the paired difference from the
    ``supervised`` control of the same seeds (mean, SE, and whether it is positive on every seed)."""
    control = {r["seed"]: r for r in runs.get("supervised", [])}
    summary = {}
    for method, results in runs.items():
        accs = [r["test_accuracy"] for r in results]
        mean, se = _mean_se(accs)
        row = {
            "test_accuracy_mean": mean,
            "test_accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
            "test_accuracy_se": se,
            **_mean_std("final_test_accuracy", [r.get("final_test_accuracy") for r in results]),
            "seeds": len(accs),
            "minutes_mean": statistics.mean(r["minutes"] for r in results),
            "steps_mean": statistics.mean(r["steps"] for r in results),
        }
        paired = [r["test_accuracy"] - control[r["seed"]]["test_accuracy"] for r in results if r["seed"] in control]
        if method != "supervised" and paired:
            diff, diff_se = _mean_se(paired)
            row.update(minus_control_mean=diff, minus_control_se=diff_se, minus_control_per_seed=paired,
                       above_control_on_every_seed=all(d > 0 for d in paired))
        summary[method] = row
    return summary


def _mean_std(name: str, values: list[Any]) -> dict[str, float]:
    """``{name_mean, name_std}`` of values recorded by every run (reports made before a field existed lack it)."""
    if not values or any(v is None for v in values):
        return {}
    return {f"{name}_mean": statistics.mean(values),
            f"{name}_std": statistics.stdev(values) if len(values) > 1 else 0.0}


def plot(report: dict[str, Any], path: str) -> None:
    """Test accuracy (validation accuracy when no test curve was recorded) against training minutes: a thin line
    per seed and the mean over seeds per method; the end of the warm start as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    runs = report["runs"]
    key = "test_accuracy" if all("test_accuracy" in p for rs in runs.values() for r in rs for p in r["curve"]) \
        else "val_accuracy"
    every: list[float] = []
    for i, (method, results) in enumerate(runs.items()):
        for r in results:
            ax.plot([p["minutes"] for p in r["curve"]], [100 * p[key] for p in r["curve"]], color=f"C{i}",
                    alpha=0.3, linewidth=0.8)
            every += [100 * p[key] for p in r["curve"]]
        length = min(len(r["curve"]) for r in results)
        minutes = [statistics.mean(r["curve"][k]["minutes"] for r in results) for k in range(length)]
        means = [100 * statistics.mean(r["curve"][k][key] for r in results) for k in range(length)]
        s = report["summary"][method]
        spread = f" ± {100 * s.get('test_accuracy_se', 0):.2f}" if len(results) > 1 else ""  # no SE from one run
        ax.plot(minutes, means, color=f"C{i}", linewidth=2,
                label=f"{method}: {100 * s['test_accuracy_mean']:.2f}{spread} % (n={len(results)})")
    ax.plot([], [], color="grey", alpha=0.3, linewidth=0.8, label="thin lines: each seed; thick: the mean")
    config = report["config"]
    if config.get("warm_start_minutes"):
        ax.axvline(config["warm_start_minutes"], color="grey", linestyle="--", linewidth=1,
                   label=f"end of the recipes' warm start ({config['warm_start_minutes']:g} min)")
        ax.text(config["warm_start_minutes"], ax.get_ylim()[0], " end of warm start", color="grey", fontsize=7,
                va="bottom")
    ax.set_xlabel("training minutes (evaluation time not counted)")
    ax.set_ylabel(f"{key.replace('_', ' ')} (%)")
    ax.set_title(f"{config['dataset']}, {10 * config['per_class']} labels, {config.get('model', 'net')} model; "
                 "legend: the best-validation model's test accuracy, mean ± SE", fontsize=9)
    if every:
        ax.set_ylim(max(min(every), max(every) - 25) - 1, max(every) + 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def class_table(report: dict[str, Any]) -> dict[str, Any]:
    """Per true class and method: the share of its unlabeled predictions used (their mean weight) and the accuracy
    of the pseudo-labels used, over the second half of each run's validations (the counts between the snapshot at
    the middle and the last one), pooled over the seeds. Printed as a table; returned as a dict."""
    table: dict[str, Any] = {}
    for method, runs in report["runs"].items():
        pooled = None
        for run in runs:
            snapshots = run.get("class_counts")
            if not snapshots:
                continue
            last, middle = torch.tensor(snapshots[-1]), torch.tensor(snapshots[len(snapshots) // 2])
            counts = last - middle if len(snapshots) > 1 else last
            pooled = counts if pooled is None else pooled + counts
        if pooled is not None:
            total, used, correct = pooled
            table[method] = {"mask_rate": (used / total.clamp(min=1)).tolist(),
                             "pseudo_label_accuracy": (correct / used.clamp(min=1e-9)).tolist()}
    print(f"{'method':<13} {'':<9} " + " ".join(f"{c:>5}" for c in range(NUM_CLASSES)))
    for method, row in table.items():
        for name, key in (("mask", "mask_rate"), ("accuracy", "pseudo_label_accuracy")):
            print(f"{method:<13} {name:<9} " + " ".join(f"{100 * v:>5.1f}" for v in row[key]))
    return table


def merge(paths: list[str], out: str, png: str) -> dict[str, Any]:
    """One report from several (same dataset and protocol; the runs are concatenated per method)."""
    if not out:
        raise SystemExit("--merge needs --out")
    reports = [json.loads(Path(path).read_text()) for path in paths]
    runs: dict[str, list[dict[str, Any]]] = {}
    for report in reports:
        for method, results in report["runs"].items():
            if results:  # a report of an interrupted run lists the methods it did not reach, with no runs
                runs.setdefault(method, []).extend(results)
    merged = {**reports[0], "command": [r["command"] for r in reports], "merged_from": paths,
              "summary": summarise(runs), "runs": runs}
    merged["config"] = {**reports[0]["config"], "seeds": sorted({r["seed"] for rs in runs.values() for r in rs})}
    common.write_json(out, merged)
    if png:
        plot(merged, png)
    for method, s in merged["summary"].items():
        print(f"{method:<13} {100 * s['test_accuracy_mean']:>8.2f} +- {100 * s['test_accuracy_std']:.2f} % (SD, "
              f"{s['seeds']} seeds)")
    return merged

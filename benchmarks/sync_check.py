"""The ``sync`` section of ``gpu_check.py``: no per-batch host synchronisation in our steps.

Each component runs a few iterations under ``torch.cuda.set_sync_debug_mode("error")`` (after an
unchecked warm-up) and passes if nothing synchronised: the semi-supervised step in fp32, bf16, with a
threshold and with pinned host batches, the FixMatch step on batched device views, the miner's
per-batch step; references that should pass (the supervised step) and fail (the tutorial's
``.item()`` per iteration, the miner's blocking copy). CUDA only; run through ``python -m
benchmarks.gpu_check``. Also holds :data:`MODELS`, the two models every section of the check uses.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

import torch
from ignite.engine import Events, create_supervised_trainer
from torch import nn

from benchmarks import bench_train_step, common, fixmatch_step
from ignite_pseudolabel import PseudoLabelLoss, PseudoLabelMiner, SemiSupervisedLoader

__all__ = ["MODELS", "section_sync", "sync_component"]


def resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(num_classes=10)


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "net": (lambda: common.Net(), (1, 28, 28)),
    "resnet18": (resnet18, (3, 32, 32)),
}


def _sync_error(fn: Callable[[], None], device: torch.device) -> str | None:
    """Runs ``fn`` with CUDA sync debug mode "error"; the error message if it synchronised."""
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
    except RuntimeError as e:
        return str(e).splitlines()[0][:400]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize(device)
    return None


def _semi_trainer(model: nn.Module, device: torch.device, *, amp: bool, threshold: float | None = None,
                  non_blocking: bool = False) -> Any:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = PseudoLabelLoss(threshold=threshold, alpha=3.0)
    trainer = create_supervised_trainer(model, optimizer, loss, device=device, non_blocking=non_blocking,
                                        prepare_batch=loss.prepare_batch, amp_mode="amp" if amp else None,
                                        output_transform=lambda x, y, y_pred, loss: loss.detach())
    loss.attach(trainer)
    return trainer


def _batches(shape: tuple[int, ...], n: int, k: int, device: torch.device, pinned: bool = False,
             labeled: bool = True) -> list:
    g = torch.Generator().manual_seed(k + n)
    out = []
    for _ in range(k):
        x = torch.randn(n, *shape, generator=g)
        y = torch.randint(0, 10, (n,), generator=g)
        if pinned:
            x, y = x.pin_memory(), y.pin_memory()
        else:
            x, y = x.to(device), y.to(device)
        out.append((x, y) if labeled else x)
    return out


def sync_component(kind: str, model_name: str, device: torch.device, sz: SimpleNamespace, *, amp: bool = False,
                   threshold: float | None = None, pinned: bool = False, miner_non_blocking: bool = True,
                   amp_dtype: torch.dtype | None = None) -> dict[str, Any]:
    factory, shape = MODELS[model_name]
    common.seed_everything(0)
    model = factory().to(device)
    k, bl, bu = sz.sync_iterations, sz.labeled_batch, sz.unlabeled_batch
    data: Any
    if kind == "semi":
        trainer = _semi_trainer(model, device, amp=amp, threshold=threshold, non_blocking=pinned)
        labeled = _batches(shape, bl, k, device, pinned)
        unlabeled = _batches(shape, bu, k, device, pinned, labeled=False)
        data = SemiSupervisedLoader(labeled, unlabeled=unlabeled)

        def run() -> None:
            trainer.run(data, max_epochs=1)
    elif kind == "supervised":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        trainer = create_supervised_trainer(model, optimizer, nn.CrossEntropyLoss(), device=device,
                                            amp_mode="amp" if amp else None,
                                            output_transform=lambda x, y, y_pred, loss: loss.detach())
        data = _batches(shape, bl + bu, k, device)

        def run() -> None:
            trainer.run(data, max_epochs=1)
    elif kind == "fixmatch_batched":  # device-resident uint8 images, views made on the GPU by BatchViews
        from ignite_pseudolabel.batch_views import BatchViews
        from ignite_pseudolabel.device_data import DeviceBatches

        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        views = BatchViews("digits", mean=(0.1307,), std=(0.3081,), strength="fixmatch", backend="kornia")
        loss = PseudoLabelLoss(0.95, alpha=1.0, views=views)
        trainer = create_supervised_trainer(model, optimizer, loss, device=device, prepare_batch=loss.prepare_batch,
                                            amp_mode="amp" if amp else None,
                                            output_transform=lambda x, y, y_pred, loss: loss.detach())
        loss.attach(trainer)
        images, labels = fixmatch_step.digit_images(4 * k * (bl + bu), 0)
        labeled_data = DeviceBatches(images[:k * bl].to(device), labels[:k * bl].to(device), batch_size=bl)
        unlabeled_data = DeviceBatches(images[k * bl:].to(device), batch_size=bu, return_index=True)
        data = SemiSupervisedLoader(labeled_data, unlabeled=unlabeled_data, seed=0)

        def run() -> None:
            trainer.run(data, max_epochs=1)
    elif kind == "tutorial":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        step = bench_train_step.tutorial_step_runner(model, optimizer, 3.0, amp, device)
        labeled = _batches(shape, bl, k, device)
        unlabeled = _batches(shape, bu, k, device, labeled=False)

        def run() -> None:
            step(labeled, unlabeled)
    elif kind == "miner":
        data = torch.randn(k * sz.mining_batch, *shape, generator=torch.Generator().manual_seed(0))
        miner = PseudoLabelMiner(model, data, threshold=0.5, batch_size=sz.mining_batch,
                                 non_blocking=miner_non_blocking, amp_dtype=amp_dtype)
        # Only the per-batch step is checked: the selection at the end of the round synchronises once.
        miner.engine.add_event_handler(Events.ITERATION_STARTED, lambda _: torch.cuda.set_sync_debug_mode("error"))
        miner.engine.add_event_handler(Events.ITERATION_COMPLETED,
                                       lambda _: torch.cuda.set_sync_debug_mode("default"))

        def run() -> None:
            miner.run()
    else:
        raise ValueError(kind)
    with common.bf16_autocast_default(amp):
        run()  # warm-up outside the check: first-call initialisation may synchronise
        error = _sync_error(run, device)
    return {"passed": error is None, "sync_error": error}


def section_sync(device: torch.device, sz: SimpleNamespace) -> dict[str, Any]:
    if device.type != "cuda":
        return {"skipped": "CUDA-only: torch.cuda.set_sync_debug_mode needs a CUDA device"}
    components: dict[str, tuple[str, dict[str, Any], str]] = {
        "semi_step_fp32[net]": ("net", {"kind": "semi"}, "pass"),
        "semi_step_bf16[net]": ("net", {"kind": "semi", "amp": True}, "pass"),
        "semi_step_threshold0.95[net]": ("net", {"kind": "semi", "threshold": 0.95}, "pass"),
        "semi_step_pinned_host_non_blocking[net]": ("net", {"kind": "semi", "pinned": True}, "pass"),
        "semi_step_fp32[resnet18]": ("resnet18", {"kind": "semi"}, "pass"),
        "semi_step_bf16[resnet18]": ("resnet18", {"kind": "semi", "amp": True}, "pass"),
        "fixmatch_batched_views_fp32[net]": ("net", {"kind": "fixmatch_batched"}, "pass"),
        "fixmatch_batched_views_bf16[net]": ("net", {"kind": "fixmatch_batched", "amp": True}, "pass"),
        "miner_batch_non_blocking_fp32[net]": ("net", {"kind": "miner"}, "pass"),
        "miner_batch_non_blocking_bf16[net]": ("net", {"kind": "miner", "amp_dtype": torch.bfloat16}, "pass"),
        "miner_batch_non_blocking_fp32[resnet18]": ("resnet18", {"kind": "miner"}, "pass"),
        "reference_supervised_step[net]": ("net", {"kind": "supervised"}, "pass"),
        "reference_tutorial_step[net]": ("net", {"kind": "tutorial"}, "fail"),
        "reference_miner_blocking_copy[net]": ("net", {"kind": "miner", "miner_non_blocking": False}, "fail"),
    }
    out: dict[str, Any] = {}
    for name, (model_name, kwargs, expected) in components.items():
        result = common.soft(sync_component, model_name=model_name, device=device, sz=sz, **kwargs)
        result["expected"] = expected
        if "passed" in result:
            result["as_expected"] = result["passed"] == (expected == "pass")
        out[name] = result
        status = "error" if "error" in result else ("pass" if result["passed"] else "FAIL")
        print(f"  sync {name:45s} {status:5s} (expected {expected})", flush=True)
    return out

"""TensorBoard monitoring of pseudo-labelling on top of Ignite's :class:`~ignite.handlers.TensorboardLogger`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import TensorboardLogger, global_step_from_engine

from ._validation import check_int
from .losses import STATE_ATTRIBUTES as LOSS_ATTRIBUTES
from .losses import PseudoLabelLoss
from .mining import PseudoLabelMiner

__all__ = ["attach_tensorboard", "log_mining"]


def log_mining(
    tb_logger: TensorboardLogger,
    miner: PseudoLabelMiner,
    trainer: Engine | None = None,
    *,
    tag: str = "pseudo",
    histogram: bool = True,
) -> None:
    """Logs every mining round of ``miner`` to TensorBoard.

    Scalars ``{tag}/num_labels``, ``{tag}/class_count/{c}`` for every class, ``{tag}/accuracy``
    (when the miner has held-back true labels) and ``{tag}/non_finite``; with ``histogram``, the
    histograms ``{tag}/confidence`` (every prediction) and ``{tag}/accepted_confidence``. The step is
    the trainer's epoch (or the round number without a trainer).

    Args:
        tb_logger: the logger.
        miner: the miner to watch.
        trainer: the trainer whose epoch is the global step.
        tag: prefix of the tags.
        histogram: also log confidence histograms.
    """
    if not isinstance(tb_logger, TensorboardLogger):
        raise TypeError(f"Argument tb_logger should be a TensorboardLogger, but given {type(tb_logger).__name__}")
    if not isinstance(miner, PseudoLabelMiner):
        raise TypeError(f"Argument miner should be a PseudoLabelMiner, but given {type(miner).__name__}")

    def write(_: Engine) -> None:
        step = trainer.state.epoch if trainer is not None else miner.rounds
        writer = tb_logger.writer
        writer.add_scalar(f"{tag}/num_labels", miner.indices.numel(), step)
        writer.add_scalar(f"{tag}/non_finite", miner.num_non_finite, step)
        for c, count in enumerate(miner.class_counts.tolist()):
            writer.add_scalar(f"{tag}/class_count/{c}", count, step)
        if miner.accuracy is not None:
            writer.add_scalar(f"{tag}/accuracy", miner.accuracy, step)
        if histogram and miner.all_confidences.numel() > 0:
            writer.add_histogram(f"{tag}/confidence", miner.all_confidences, step)
            if miner.confidences.numel() > 0:
                writer.add_histogram(f"{tag}/accepted_confidence", miner.confidences, step)

    # Registered on the miner's own engine after its selection handler, so the round is complete.
    miner.engine.add_event_handler(Events.COMPLETED, write)


def attach_tensorboard(
    tb_logger: TensorboardLogger,
    trainer: Engine,
    *,
    evaluators: Mapping[str, Engine] | None = None,
    miner: PseudoLabelMiner | None = None,
    log_every: int = 1,
    state_attributes: Sequence[str] | None = None,
    optimizer: Any = None,
    loss: PseudoLabelLoss | None = None,
) -> None:
    """Logs a pseudo-labelling run: training scalars, validation metrics and mining rounds.

    * every ``log_every`` iterations, tag ``train``: the trainer's output as ``train/loss`` (when it
      is a number), and the state attributes ``train/alpha``, ``train/supervised_loss``,
      ``train/pseudo_loss``, ``train/pseudo_mask_rate`` (those that exist when this is called:
      attach the loss and the ramp first), and ``train/pseudo_accuracy`` when ``loss`` has
      held-back targets;
    * with ``optimizer``, its learning rate as ``lr/group_0``, ...;
    * with ``loss``, the class-wise thresholds of its threshold policy as ``thresholds/{c}``;
    * for each ``evaluators`` entry ``name: engine``, all its metrics as ``{name}/{metric}`` when it
      completes, at the trainer's epoch;
    * with ``miner``, :func:`log_mining`.

    Values are converted to Python numbers only when they are logged, so logging every ``N``
    iterations costs one host synchronisation per ``N`` iterations.

    Args:
        tb_logger: an Ignite :class:`~ignite.handlers.TensorboardLogger`.
        trainer: the trainer.
        evaluators: evaluators by tag, e.g. ``{"validation": evaluator}``.
        miner: a :class:`~ignite_pseudolabel.PseudoLabelMiner` to log.
        log_every: iterations between two training logs, >= 1.
        state_attributes: trainer state attributes to log (default: see above).
        optimizer: an optimizer whose learning rate to log.
        loss: the trainer's :class:`~ignite_pseudolabel.PseudoLabelLoss`, to log its thresholds.
    """
    if not isinstance(tb_logger, TensorboardLogger):
        raise TypeError(f"Argument tb_logger should be a TensorboardLogger, but given {type(tb_logger).__name__}")
    if not isinstance(trainer, Engine):
        raise TypeError(f"Argument trainer should be an ignite Engine, but given {type(trainer).__name__}")
    log_every = check_int("log_every", log_every, minimum=1)

    def loss_of(output: Any) -> dict:
        return {"loss": output} if output is not None and not isinstance(output, (tuple, list, dict)) else {}

    if state_attributes is None:
        names = ["alpha", *LOSS_ATTRIBUTES]
        if loss is None or loss.held_back_targets is None:
            names.remove("pseudo_accuracy")
        state_attributes = [name for name in names if hasattr(trainer.state, name)]
    tb_logger.attach_output_handler(
        trainer,
        event_name=Events.ITERATION_COMPLETED(every=log_every),
        tag="train",
        output_transform=loss_of,
        state_attributes=list(state_attributes),
    )
    if loss is not None and loss.policy is not None:
        policy = loss.policy

        def log_thresholds(engine: Engine) -> None:
            for c, value in enumerate(policy.class_thresholds.tolist()):
                tb_logger.writer.add_scalar(f"thresholds/{c}", value, engine.state.iteration)

        trainer.add_event_handler(Events.ITERATION_COMPLETED(every=log_every), log_thresholds)
    if optimizer is not None:
        tb_logger.attach_opt_params_handler(trainer, Events.ITERATION_COMPLETED(every=log_every), optimizer)
    for name, evaluator in (evaluators or {}).items():
        tb_logger.attach_output_handler(
            evaluator,
            event_name=Events.COMPLETED,
            tag=name,
            metric_names="all",
            global_step_transform=global_step_from_engine(trainer),
        )
    if miner is not None:
        log_mining(tb_logger, miner, trainer)

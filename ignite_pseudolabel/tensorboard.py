"""TensorBoard monitoring of pseudo-labelling on top of Ignite's :class:`~ignite.handlers.TensorboardLogger`.

:class:`.MiningHandler` and :class:`.ThresholdsHandler` are Ignite logger handlers
(:class:`~ignite.handlers.base_logger.BaseHandler`), attached with ``tb_logger.attach(engine,
handler, event)`` like Ignite's ``OutputHandler``; :func:`attach_tensorboard` attaches them and
Ignite's own handlers for a whole run. The ``engine.state`` attributes it logs are those the
handlers say they publish (their ``state_attributes``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ignite.engine import Engine, Events
from ignite.handlers import TensorboardLogger, global_step_from_engine
from ignite.handlers.base_logger import BaseHandler

from ._validation import check_engine, check_int
from .losses import PseudoLabelLoss
from .mining import PseudoLabelMiner
from .schedules import AlphaRamp
from .thresholds import ThresholdPolicy

__all__ = ["MiningHandler", "ThresholdsHandler", "attach_tensorboard", "log_mining"]

GlobalStepTransform = Callable[[Engine, Any], int]


class _TaggedHandler(BaseHandler):
    """What the handlers below share: a tag, a ``global_step_transform`` and TensorboardLogger's writer."""

    def __init__(self, tag: str, global_step_transform: GlobalStepTransform | None) -> None:
        if not isinstance(tag, str):
            raise TypeError(f"Argument tag should be a string, but given {type(tag).__name__}")
        if global_step_transform is not None and not callable(global_step_transform):
            raise TypeError(f"Argument global_step_transform should be callable, but given "
                            f"{type(global_step_transform).__name__}")
        self.tag = tag
        self.global_step_transform = global_step_transform

    def _writer_and_step(self, engine: Engine, logger: Any, event_name: Any) -> tuple[Any, int]:
        if not isinstance(logger, TensorboardLogger):
            raise RuntimeError(f"Handler '{type(self).__name__}' works only with TensorboardLogger")
        transform = self.global_step_transform or self._default_step
        step = transform(engine, event_name)
        if not isinstance(step, int):
            raise TypeError(f"global_step must be int, got {type(step)}. Please check the output of "
                            "global_step_transform.")
        return logger.writer, step

    def _default_step(self, engine: Engine, event_name: Any) -> int:
        """The engine's counter of the event, as Ignite's ``OutputHandler``."""
        return engine.state.get_event_attrib_value(event_name)


class MiningHandler(_TaggedHandler):
    """Logs a mining round of a :class:`~ignite_pseudolabel.PseudoLabelMiner` to TensorBoard.

    Scalars ``{tag}/num_labels``, ``{tag}/class_count/{c}`` for every class, ``{tag}/accuracy``
    (when the miner has held-back true labels) and ``{tag}/non_finite``; with ``histogram``, the
    histograms ``{tag}/confidence`` (every prediction) and ``{tag}/accepted_confidence``. Attach it
    to the miner's own engine on ``Events.COMPLETED`` (after the miner's selection, so the round is
    complete): ``tb_logger.attach(miner.engine, MiningHandler(miner), Events.COMPLETED)``.

    Args:
        miner: the miner to watch.
        tag: prefix of the tags.
        histogram: also log confidence histograms.
        global_step_transform: ``fn(engine, event_name) -> int``, the step of the round, e.g.
            ``global_step_from_engine(trainer)`` for the trainer's epoch. Default: the round number
            (:attr:`~ignite_pseudolabel.PseudoLabelMiner.rounds`).

    Examples:
        >>> import tempfile, torch
        >>> from ignite.engine import Events
        >>> from ignite.handlers import TensorboardLogger
        >>> from ignite_pseudolabel import PseudoLabelMiner
        >>> miner = PseudoLabelMiner(torch.nn.Linear(2, 3), torch.randn(8, 2), threshold=0.1)
        >>> with tempfile.TemporaryDirectory() as logdir, TensorboardLogger(log_dir=logdir) as tb:
        ...     _ = tb.attach(miner.engine, MiningHandler(miner, histogram=False), Events.COMPLETED)
        ...     _ = miner.run()

    .. versionadded:: 0.3.0
    """

    def __init__(
        self,
        miner: PseudoLabelMiner,
        tag: str = "pseudo",
        histogram: bool = True,
        global_step_transform: GlobalStepTransform | None = None,
    ) -> None:
        if not isinstance(miner, PseudoLabelMiner):
            raise TypeError(f"Argument miner should be a PseudoLabelMiner, but given {type(miner).__name__}")
        super().__init__(tag, global_step_transform)
        self.miner = miner
        self.histogram = bool(histogram)

    def _default_step(self, engine: Engine, event_name: Any) -> int:
        return self.miner.rounds

    def __call__(self, engine: Engine, logger: TensorboardLogger, event_name: Any) -> None:
        writer, step = self._writer_and_step(engine, logger, event_name)
        miner, tag = self.miner, self.tag
        writer.add_scalar(f"{tag}/num_labels", miner.indices.numel(), step)
        writer.add_scalar(f"{tag}/non_finite", miner.num_non_finite, step)
        for c, count in enumerate(miner.class_counts.tolist()):
            writer.add_scalar(f"{tag}/class_count/{c}", count, step)
        if miner.accuracy is not None:
            writer.add_scalar(f"{tag}/accuracy", miner.accuracy, step)
        if self.histogram and miner.all_confidences.numel() > 0:
            writer.add_histogram(f"{tag}/confidence", miner.all_confidences, step)
            if miner.confidences.numel() > 0:
                writer.add_histogram(f"{tag}/accepted_confidence", miner.confidences, step)


class ThresholdsHandler(_TaggedHandler):
    """Logs the class-wise thresholds of a :class:`~ignite_pseudolabel.ThresholdPolicy` as ``{tag}/{c}``.

    Attach it to the trainer, e.g. ``tb_logger.attach(trainer, ThresholdsHandler(loss.policy),
    Events.ITERATION_COMPLETED(every=100))``. Reading the thresholds synchronises with the device
    once per call.

    Args:
        policy: the threshold policy (a :class:`~ignite_pseudolabel.PseudoLabelLoss`'s ``policy``).
        tag: prefix of the tags.
        global_step_transform: ``fn(engine, event_name) -> int``. Default: the engine's counter of
            the event (its iteration for iteration events), as Ignite's ``OutputHandler``.

    Examples:
        >>> import tempfile
        >>> from ignite.engine import Engine, Events
        >>> from ignite.handlers import TensorboardLogger
        >>> from ignite_pseudolabel import FixedThreshold
        >>> trainer = Engine(lambda engine, batch: None)
        >>> with tempfile.TemporaryDirectory() as logdir, TensorboardLogger(log_dir=logdir) as tb:
        ...     _ = tb.attach(trainer, ThresholdsHandler(FixedThreshold(0.9, num_classes=2)),
        ...                   Events.ITERATION_COMPLETED(every=2))
        ...     _ = trainer.run([0] * 4)

    .. versionadded:: 0.3.0
    """

    def __init__(
        self,
        policy: ThresholdPolicy,
        tag: str = "thresholds",
        global_step_transform: GlobalStepTransform | None = None,
    ) -> None:
        if not isinstance(policy, ThresholdPolicy):
            raise TypeError(f"Argument policy should be a ThresholdPolicy, but given {type(policy).__name__}")
        super().__init__(tag, global_step_transform)
        self.policy = policy

    def __call__(self, engine: Engine, logger: TensorboardLogger, event_name: Any) -> None:
        writer, step = self._writer_and_step(engine, logger, event_name)
        for c, value in enumerate(self.policy.class_thresholds.tolist()):
            writer.add_scalar(f"{self.tag}/{c}", value, step)


def log_mining(
    tb_logger: TensorboardLogger,
    miner: PseudoLabelMiner,
    trainer: Engine | None = None,
    *,
    tag: str = "pseudo",
    histogram: bool = True,
) -> None:
    """Logs every mining round of ``miner`` to TensorBoard with a :class:`.MiningHandler`.

    The step is the trainer's epoch (or the round number without a trainer).

    Args:
        tb_logger: the logger.
        miner: the miner to watch.
        trainer: the trainer whose epoch is the global step.
        tag: prefix of the tags.
        histogram: also log confidence histograms.
    """
    if not isinstance(tb_logger, TensorboardLogger):
        raise TypeError(f"Argument tb_logger should be a TensorboardLogger, but given {type(tb_logger).__name__}")
    if trainer is not None:
        check_engine("trainer", trainer)
    step = global_step_from_engine(trainer) if trainer is not None else None  # on COMPLETED: the trainer's epoch
    handler = MiningHandler(miner, tag=tag, histogram=histogram, global_step_transform=step)
    # Attached to the miner's own engine after its selection handler, so the round is complete.
    tb_logger.attach(miner.engine, handler, Events.COMPLETED)


def _default_state_attributes(trainer: Engine, loss: PseudoLabelLoss | None, ramp: AlphaRamp | None) -> list[str]:
    """What the ramp and the loss publish, as they say (their ``state_attributes``), that exists now."""
    if ramp is not None:
        names = list(ramp.state_attributes)
    elif loss is not None:
        names = [loss.alpha_name]  # the attribute the loss reads alpha from: the ramp's
    else:
        names = [AlphaRamp.default_param_name]
    if loss is not None:
        names += [name for name in loss.state_attributes if name not in names]
        if loss.held_back_targets is None:
            names.remove("pseudo_accuracy")
    else:
        names += [*PseudoLabelLoss.component_names, PseudoLabelLoss.fairness_component]
        names.remove("pseudo_accuracy")
    return [name for name in names if hasattr(trainer.state, name)]


def attach_tensorboard(
    tb_logger: TensorboardLogger,
    trainer: Engine,
    *,
    evaluators: Mapping[str, Engine] | None = None,
    miner: PseudoLabelMiner | None = None,
    log_every_iters: int = 1,
    state_attributes: Sequence[str] | None = None,
    optimizer: Any = None,
    loss: PseudoLabelLoss | None = None,
    ramp: AlphaRamp | None = None,
    log_every: int | None = None,
) -> None:
    """Logs a pseudo-labelling run: training scalars, validation metrics and mining rounds.

    * every ``log_every_iters`` iterations, tag ``train`` (Ignite's ``OutputHandler``): the
      trainer's output as ``train/loss`` (when it is a number), and the ``engine.state`` attributes
      that the ramp and the loss publish (those that exist when this is called: attach the loss
      and the ramp first): alpha as ``train/<param_name>`` (``train/alpha`` by default; the name
      comes from ``ramp``, else from ``loss.alpha_name``), ``train/supervised_loss``,
      ``train/pseudo_loss``, ``train/pseudo_mask_rate``, ``train/pseudo_non_finite_inputs`` (unlabeled
      samples left out because their inputs were not finite), ``train/fairness_loss`` when the loss has
      a fairness term, and ``train/pseudo_accuracy`` when ``loss`` has held-back targets;
    * with ``optimizer``, its learning rate as ``lr/group_0``, ...;
    * with ``loss``, the class-wise thresholds of its threshold policy as ``thresholds/{c}``
      (:class:`.ThresholdsHandler`);
    * for each ``evaluators`` entry ``name: engine``, all its metrics as ``{name}/{metric}`` when it
      completes, at the trainer's epoch;
    * with ``miner``, every mining round at the trainer's epoch (:class:`.MiningHandler`, see
      :func:`.log_mining`).

    Values are converted to Python numbers only when they are logged, so logging every ``N``
    iterations costs one host synchronisation per ``N`` iterations.

    Args:
        tb_logger: an Ignite :class:`~ignite.handlers.TensorboardLogger`.
        trainer: the trainer.
        evaluators: evaluators by tag, e.g. ``{"validation": evaluator}``.
        miner: a :class:`~ignite_pseudolabel.PseudoLabelMiner` to log.
        log_every_iters: iterations between two training logs, >= 1 (Ignite's name, as in
            ``ignite.contrib.engines.common.setup_tb_logging``).
        state_attributes: trainer state attributes to log (default: see above).
        optimizer: an optimizer whose learning rate to log.
        loss: the trainer's :class:`~ignite_pseudolabel.PseudoLabelLoss`: its components, its
            ``alpha_name`` and its thresholds.
        ramp: the trainer's :class:`~ignite_pseudolabel.AlphaRamp` (or another scheduler with
            ``state_attributes``), whose attribute to log as alpha.
        log_every: the former name of ``log_every_iters``, still accepted.

    Raises:
        TypeError: if ``tb_logger`` is not a ``TensorboardLogger`` or ``trainer`` not an ``Engine``.
        ValueError: if ``log_every_iters`` (or ``log_every``) is not an integer >= 1, or both are
            given with different values.

    .. versionchanged:: 0.3.0
        ``log_every_iters`` (``log_every`` stays as an alias), ``ramp``; alpha is logged under the
        name the ramp publishes (it was always ``alpha``).
    """
    if not isinstance(tb_logger, TensorboardLogger):
        raise TypeError(f"Argument tb_logger should be a TensorboardLogger, but given {type(tb_logger).__name__}")
    check_engine("trainer", trainer)
    if log_every is not None:
        log_every = check_int("log_every", log_every, minimum=1)
        if log_every_iters not in (1, log_every):
            raise ValueError(f"Arguments log_every_iters and log_every (its former name) should not both be given, "
                             f"but given {log_every_iters} and {log_every}")
        log_every_iters = log_every
    log_every_iters = check_int("log_every_iters", log_every_iters, minimum=1)
    if loss is not None and not isinstance(loss, PseudoLabelLoss):
        raise TypeError(f"Argument loss should be a PseudoLabelLoss, but given {type(loss).__name__}")
    if ramp is not None and not hasattr(ramp, "state_attributes"):
        raise TypeError(f"Argument ramp should be an AlphaRamp (a scheduler with state_attributes), but given "
                        f"{type(ramp).__name__}")
    every = Events.ITERATION_COMPLETED(every=log_every_iters)

    def loss_of(output: Any) -> dict:
        return {"loss": output} if output is not None and not isinstance(output, (tuple, list, dict)) else {}

    if state_attributes is None:
        state_attributes = _default_state_attributes(trainer, loss, ramp)
    tb_logger.attach_output_handler(
        trainer, event_name=every, tag="train", output_transform=loss_of, state_attributes=list(state_attributes))
    if loss is not None and loss.policy is not None:
        tb_logger.attach(trainer, ThresholdsHandler(loss.policy), every)
    if optimizer is not None:
        tb_logger.attach_opt_params_handler(trainer, every, optimizer)
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

"""Keep the best model by a validation metric, and the state to resume an interrupted run.

Two handlers over Ignite's :class:`~ignite.handlers.Checkpoint`, each ``Serializable``, and their
composition:

* :class:`BestCheckpoint` runs validation on the trainer's schedule (optionally) and keeps the best
  files;
* :class:`ResumeCheckpoint` writes what is needed to resume after every other handler of the
  trainer's event, and loads it back;
* :class:`BestValCheckpoint` is both, with one constructor.

Every file is written through :class:`~ignite.handlers.DiskSaver` (rank 0 only, atomic rename),
extended to sync the file and the directory to the disk and to remove replaced files only after
the new file is written.
"""

from __future__ import annotations

import copy
import math
import os
import re
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, Union

import torch
from ignite.base import Serializable
from ignite.engine import CallableEventWithFilter, Engine, Events, EventsList
from ignite.handlers import Checkpoint, DiskSaver, global_step_from_engine

from ._validation import check_attach, check_choice, check_engine, check_identifier, check_int

__all__ = ["BestCheckpoint", "BestValCheckpoint", "ResumeCheckpoint"]

_RESUME_FILE = re.compile(r"^last_checkpoint_(\d+)\.pt$")

Event = Union[Events, CallableEventWithFilter, EventsList]


class _SafeDiskSaver(DiskSaver):
    """A :class:`~ignite.handlers.DiskSaver` whose writes survive crashes and full disks.

    * Ignite's ``Checkpoint`` removes the file it replaces *before* writing the new one; if that
      write failed (a full disk, a crash) the previous best would be lost. Here removals wait until
      the next write has succeeded, and are dropped when it fails.
    * ``DiskSaver`` (``atomic=True``) writes to a temporary file in the same directory and renames
      it over the final name. Here the temporary file is also flushed to the disk (``fsync``) before
      the rename, and the directory after it: a crash at any point leaves either the complete old
      file or the complete new one.

    Everything else (which rank writes, the XLA path, the temporary file) is ``DiskSaver``'s.
    """

    def __init__(self, dirname: str | Path) -> None:
        super().__init__(dirname, atomic=True, create_dir=True, require_empty=False)
        self._replaced: list[str] = []

    def remove(self, filename: str) -> None:
        self._replaced.append(filename)  # removed once the next file is on disk

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        replaced, self._replaced = self._replaced, []
        super().__call__(checkpoint, filename, metadata)  # if it raises, the replaced files stay
        for name in replaced:
            if name != filename:
                try:
                    super().remove(name)
                except FileNotFoundError:
                    pass

    def _save_func(self, checkpoint: Mapping, path: Path, func: Callable) -> None:
        def save_and_sync(obj: Any, file: Any, **kwargs: Any) -> None:
            func(obj, file, **kwargs)
            if hasattr(file, "fileno"):  # the temporary file, before DiskSaver renames it
                file.flush()
                os.fsync(file.fileno())

        super()._save_func(checkpoint, path, save_and_sync)
        _fsync_directory(self.dirname)


def _fsync_directory(dirname: Path) -> None:
    """Makes a rename in ``dirname`` durable (POSIX; not possible on every platform)."""
    try:
        directory = os.open(dirname, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory)
    except OSError:
        pass
    finally:
        os.close(directory)


def _save_or_keep(checkpoint: Checkpoint, engine: Engine, dirname: Path) -> None:
    """Calls ``checkpoint``; if the write fails, its record is restored (the previous files are intact)."""
    record = checkpoint.state_dict()
    try:
        checkpoint(engine)
    except Exception as error:
        checkpoint.load_state_dict(record)
        raise RuntimeError(f"Saving a checkpoint to {dirname} failed ({type(error).__name__}: {error}); "
                           "the previous checkpoint files are intact") from error


def _events(event: Event) -> list:
    return list(event) if isinstance(event, EventsList) else [event]


def _newest_resume_file(dirname: Path) -> Path | None:
    found = [(int(m.group(1)), p) for p in dirname.glob("last_checkpoint_*.pt") if (m := _RESUME_FILE.match(p.name))]
    return max(found)[1] if found else None


class _TrainerCheckpoint(Serializable):
    """What both handlers share: an Ignite ``Checkpoint`` over a :class:`_SafeDiskSaver`, the trainer's
    counter as the step in the file names, and the checkpoint's record of its files (``_saved``) as
    their state."""

    _state_dict_all_req_keys = ("_saved",)

    def __init__(self, to_save: Mapping[str, Any], dirname: str | Path, **checkpoint_options: Any) -> None:
        self.to_save = dict(to_save)
        self.dirname = Path(dirname)
        self._trainer: Engine | None = None
        self._step_fn: Callable[[Engine, Any], int] | None = None
        self._checkpoint = Checkpoint(self.to_save, _SafeDiskSaver(self.dirname), global_step_transform=self._step,
                                      **checkpoint_options)

    def _follow(self, trainer: Engine, event: Event) -> None:
        """The attach guard, and the trainer's counter of ``event`` becomes the step."""
        check_attach(self, trainer, self._trainer, name="trainer")
        self._trainer = trainer
        self._step_fn = global_step_from_engine(trainer, custom_event_name=_events(event)[0])  # type: ignore[arg-type]

    def _step(self, engine: Engine, event: Any) -> int:
        """The trainer's epoch (or iteration, for an iteration event): the global step of a file."""
        if self._step_fn is None:
            raise RuntimeError(f"{type(self).__name__} is not attached: call attach(trainer) first")
        return int(self._step_fn(engine, event))

    def state_dict(self) -> OrderedDict:
        """The record of the files written (Ignite ``Checkpoint`` state: ``_saved``)."""
        return self._checkpoint.state_dict()

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restores the record of the files written.

        Raises:
            TypeError: if ``state_dict`` is not a mapping.
            ValueError: if it has no ``_saved`` record.
        """
        super().load_state_dict(state_dict)
        self._checkpoint.load_state_dict({"_saved": copy.deepcopy(list(state_dict["_saved"]))})


class BestCheckpoint(_TrainerCheckpoint):
    """Keeps the best model on disk by a validation metric, optionally running the validation.

    Built on Ignite's :class:`~ignite.handlers.Checkpoint` (``n_saved`` best files, written by rank
    0 only, atomically and synced to the disk). A score equal to the best so far replaces it
    (``greater_or_equal``), as the seed tutorial's ``>=`` does: the latest equally good model wins.
    A non-finite score is never saved (a warning says so). The files are
    ``{filename_prefix}_{name}_{step}_{metric_name}={score:.4f}.pt``, ``name`` being the key of
    ``to_save`` when it holds one object (``model`` for a bare module) and ``checkpoint`` otherwise;
    ``step`` is the trainer's epoch (or iteration, for iteration events); the score is negated for
    ``mode="min"``.

    Its state (:meth:`state_dict`) is the record of the kept files, their scores and steps: put it
    among the objects of a resume checkpoint so that a resumed run only replaces the best file with
    a better one.

    Args:
        evaluator: the engine computing the validation metrics.
        to_save: the model, or a mapping of objects with ``state_dict`` (e.g. ``{"model": model,
            "ema": ema_model}``), to keep at their best.
        dirname: directory of the files (created if needed).
        data: validation data; when given, the evaluator runs on it at the trainer's event. Leave it
            out if you run the evaluator yourself.
        metric_name: the evaluator metric to compare (default ``"accuracy"``).
        mode: ``"max"`` or ``"min"``: whether a larger or a smaller metric is better.
        filename_prefix: prefix of the files (default ``"best"``; not ``"last"``, which names the
            files of :class:`ResumeCheckpoint`).
        n_saved: how many best files to keep, >= 1.

    Examples:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> from ignite.engine import Engine, create_supervised_evaluator
        >>> from ignite.metrics import Accuracy
        >>> model = nn.Linear(2, 2)
        >>> evaluator = create_supervised_evaluator(model, metrics={"accuracy": Accuracy()})
        >>> val = [(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))]
        >>> trainer = Engine(lambda engine, batch: None)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     best = BestCheckpoint(evaluator, model, tmp, data=val)
        ...     best.attach(trainer)
        ...     _ = trainer.run([0], max_epochs=2)
        ...     best.best_step, best.best_path.name == f"best_model_2_accuracy={best.best_score:.4f}.pt"
        (2, True)

    .. versionadded:: 0.3.0
        The best-keeping half of :class:`BestValCheckpoint`.
    """

    def __init__(
        self,
        evaluator: Engine,
        to_save: torch.nn.Module | Mapping[str, Any],
        dirname: str | Path,
        *,
        data: Iterable | None = None,
        metric_name: str = "accuracy",
        mode: str = "max",
        filename_prefix: str = "best",
        n_saved: int = 1,
    ) -> None:
        check_engine("evaluator", evaluator)
        if isinstance(to_save, torch.nn.Module):
            to_save = {"model": to_save}
        if not isinstance(to_save, Mapping) or len(to_save) == 0:
            raise TypeError(f"Argument to_save should be a torch.nn.Module or a non-empty mapping of objects with "
                            f"state_dict, but given {type(to_save).__name__}")
        if not isinstance(metric_name, str) or not metric_name:
            raise ValueError(f"Argument metric_name should be a non-empty string, but given {metric_name!r}")
        check_choice("mode", mode, ("max", "min"))
        check_identifier("filename_prefix", filename_prefix)
        if filename_prefix == "last":
            raise ValueError("Argument filename_prefix should not be 'last', which names the resume checkpoints")
        n_saved = check_int("n_saved", n_saved, minimum=1)
        super().__init__(
            to_save,
            dirname,
            filename_prefix=filename_prefix,
            score_function=Checkpoint.get_default_score_fn(metric_name, 1.0 if mode == "max" else -1.0),
            score_name=metric_name,
            n_saved=n_saved,
            greater_or_equal=True,
        )
        self.evaluator = evaluator
        self.data = data
        self.metric_name = metric_name
        self.mode = mode
        self._steps: dict[str, int] = {}  # global step of every kept file

    def attach(self, trainer: Engine, event: Event = Events.EPOCH_COMPLETED) -> None:
        """Validates (when ``data`` was given) on ``event`` of ``trainer``, and saves when the evaluator completes.

        The trainer's counter of ``event`` (its epoch, or iteration) is the step in the file names.

        Raises:
            TypeError: if ``trainer`` is not an ``Engine``.
            ValueError: if this checkpointer is already attached.
        """
        self._follow(trainer, event)
        if self.data is not None:
            trainer.add_event_handler(event, self._validate)
        self.evaluator.add_event_handler(Events.COMPLETED, self._save)

    def _validate(self, trainer: Engine) -> None:
        self.evaluator.run(self.data)

    def _save(self, evaluator: Engine) -> None:
        metrics = evaluator.state.metrics
        if self.metric_name not in metrics:
            raise ValueError(f"{type(self).__name__}: metric {self.metric_name!r} is not among the evaluator's "
                             f"metrics {sorted(metrics)}; pass metric_name=one of them")
        value = float(metrics[self.metric_name])
        if not math.isfinite(value):
            warnings.warn(f"{type(self).__name__}: {self.metric_name} = {value} is not finite; nothing saved",
                          RuntimeWarning, stacklevel=2)
            return
        step = self._step(evaluator, Events.COMPLETED)
        before = set(self._kept())
        _save_or_keep(self._checkpoint, evaluator, self.dirname)
        kept = self._kept()
        self._steps = {name: self._steps.get(name, step) if name in before else step for name in kept}

    def _kept(self) -> list[str]:
        """File names of the kept files, worst first (Ignite's record)."""
        return [filename for _, filename in self._checkpoint.state_dict()["_saved"]]

    # ---------------------------------------------------------------------------------------- results
    @property
    def best_path(self) -> Path | None:
        """Path of the best file so far (``None`` before the first save)."""
        last = self._checkpoint.last_checkpoint
        return None if last is None else self.dirname / Path(last).name

    @property
    def best_score(self) -> float | None:
        """The best metric value so far (``None`` before the first save)."""
        saved = self._checkpoint.state_dict()["_saved"]
        if not saved:
            return None
        priority = float(saved[-1][0])
        return priority if self.mode == "max" else -priority

    @property
    def best_step(self) -> int | None:
        """The global step (the trainer's epoch, or iteration) of the best file so far.

        ``None`` before the first save, or when the record was restored from a state saved before
        0.3.0 (which did not hold the steps).
        """
        path = self.best_path
        return None if path is None else self._steps.get(path.name)

    def load_best(self, to_load: torch.nn.Module | Mapping[str, Any] | None = None) -> None:
        """Loads the best file into ``to_load`` (default: the objects of ``to_save``).

        Raises:
            FileNotFoundError: if nothing was saved yet.
        """
        if self.best_path is None:
            raise FileNotFoundError(f"{type(self).__name__} has saved no best checkpoint in {self.dirname} yet")
        if to_load is None:
            to_load = self.to_save
        elif isinstance(to_load, torch.nn.Module):
            to_load = {next(iter(self.to_save)): to_load} if len(self.to_save) == 1 else {"model": to_load}
        Checkpoint.load_objects(to_load, str(self.best_path))

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> OrderedDict:
        """The kept files with their scores (Ignite ``Checkpoint`` state, ``_saved``) and their ``steps``."""
        state = super().state_dict()
        state["steps"] = dict(self._steps)
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restores the record of the kept files (a state without ``steps`` leaves :attr:`best_step` ``None``).

        Raises:
            TypeError: if ``state_dict`` is not a mapping.
            ValueError: if it has no ``_saved`` record.
        """
        super().load_state_dict(state_dict)
        self._steps = {str(name): int(step) for name, step in dict(state_dict.get("steps", {})).items()}


class ResumeCheckpoint(_TrainerCheckpoint):
    """Writes ``last_checkpoint_{step}.pt`` with everything needed to resume, and loads it back.

    On the trainer's event (after every epoch by default) it saves ``to_save`` after every other
    handler of that event (a validation, a miner, a scheduler): the saved state is the state the
    next event starts from. Only the newest file is kept; the previous one is removed only once the
    new one is on disk (written by rank 0 only, atomically and synced to the disk). ``step`` is the
    trainer's epoch (or iteration, for iteration events).

    Its state (:meth:`state_dict`) is the record of the newest file, so that a resumed run removes
    the file it resumed from once it has written a newer one (:meth:`resume` sets it).

    Args:
        to_save: objects with ``state_dict`` to save for resuming, e.g. ``{"trainer": trainer,
            "model": model, "optimizer": optimizer, "alpha": ramp, "miner": miner, "rng": RNGState()}``.
        dirname: directory of the files (created if needed).

    Examples:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> from ignite.engine import Engine
        >>> model = nn.Linear(2, 2)
        >>> trainer = Engine(lambda engine, batch: None)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     ResumeCheckpoint({"trainer": trainer, "model": model}, tmp).attach(trainer)
        ...     _ = trainer.run([0], max_epochs=3)
        ...     fresh = Engine(lambda engine, batch: None)
        ...     path = ResumeCheckpoint({"trainer": fresh, "model": nn.Linear(2, 2)}, tmp).resume()
        ...     path.name, fresh.state.epoch
        ('last_checkpoint_3.pt', 3)

    .. versionadded:: 0.3.0
        The resume half of :class:`BestValCheckpoint`.
    """

    def __init__(self, to_save: Mapping[str, Any], dirname: str | Path) -> None:
        if not isinstance(to_save, Mapping) or len(to_save) == 0:
            raise TypeError(f"Argument to_save should be a non-empty mapping of objects with state_dict, but given "
                            f"{type(to_save).__name__}")
        super().__init__(to_save, dirname, filename_prefix="last", n_saved=1,
                         filename_pattern="{filename_prefix}_checkpoint_{global_step}.{ext}")

    def attach(self, trainer: Engine, event: Event = Events.EPOCH_COMPLETED) -> None:
        """Saves on ``event`` of ``trainer``, after every other handler of that event.

        The handler is added when the run starts (``Events.STARTED``), so that it comes after the
        handlers attached after this call too.

        Raises:
            TypeError: if ``trainer`` is not an ``Engine``.
            ValueError: if this checkpointer is already attached.
        """
        self._follow(trainer, event)
        trainer.add_event_handler(Events.STARTED, self._register, _events(event))

    def _register(self, trainer: Engine, events: list) -> None:
        for event in events:
            if not trainer.has_event_handler(self._save, event):
                trainer.add_event_handler(event, self._save)

    def _save(self, trainer: Engine) -> None:
        _save_or_keep(self._checkpoint, trainer, self.dirname)

    def find_last_checkpoint(self) -> Path | None:
        """The newest ``last_checkpoint_{step}.pt`` in ``dirname`` (``None`` if there is none)."""
        return _newest_resume_file(self.dirname)

    def resume(self, checkpoint: str | Path | None = None) -> Path:
        """Loads ``to_save`` from a resume checkpoint.

        Call it after building the trainer and handlers as for a new run and before ``trainer.run``;
        the run then continues from the saved epoch.

        Args:
            checkpoint: the file to load (default: :meth:`find_last_checkpoint`).

        Returns:
            The path loaded.

        Raises:
            FileNotFoundError: if there is no resume checkpoint.
            RuntimeError: if the file cannot be loaded into ``to_save`` (the message names it).
        """
        path = Path(checkpoint) if checkpoint is not None else self.find_last_checkpoint()
        if path is None or not path.is_file():
            raise FileNotFoundError(f"No resume checkpoint {'in ' + str(self.dirname) if path is None else path}")
        try:
            Checkpoint.load_objects(self.to_save, str(path))
        except Exception as error:
            raise RuntimeError(f"Could not resume from {path}: {type(error).__name__}: {error}") from error
        if path.resolve().parent == self.dirname.resolve():  # replaced by the next file, as if written here
            match = re.search(r"_(\d+)\.pt$", path.name)
            self._checkpoint.load_state_dict({"_saved": [(int(match.group(1)) if match else 0, path.name)]})
        return path


class BestValCheckpoint(BestCheckpoint):
    """Runs validation on the trainer's schedule, keeps the best model on disk, and writes the resume state.

    A :class:`BestCheckpoint` that, with ``resume_objects``, also holds a :class:`ResumeCheckpoint`
    (:attr:`resume_checkpoint`) writing to the same directory, with this checkpointer's own state
    among the saved objects. Use those two directly to keep the best model only, or to resume only.
    Files in ``dirname``:

    * ``{filename_prefix}_{name}_{step}_{metric_name}={score:.4f}.pt``: the best model(s), see
      :class:`BestCheckpoint`. :attr:`best_path` gives the current one, :attr:`best_step` its step.
    * ``last_checkpoint_{step}.pt`` (only with ``resume_objects``): everything needed to resume,
      written after every other handler of the event has run, the previous one removed only once the
      new one is on disk. :meth:`resume` loads it.

    Args:
        evaluator: the engine computing the validation metrics.
        to_save: the model, or a mapping of objects with ``state_dict``, to keep at their best.
        dirname: directory of the checkpoint files (created if needed).
        data: validation data, run by the evaluator at the trainer's event (``None``: run it yourself).
        metric_name: the evaluator metric to compare (default ``"accuracy"``).
        mode: ``"max"`` or ``"min"``: whether a larger or a smaller metric is better.
        filename_prefix: prefix of the best files (default ``"best"``).
        n_saved: how many best files to keep.
        resume_objects: objects to save for resuming, e.g. ``{"trainer": trainer, "model": model,
            "optimizer": optimizer, "alpha": ramp, "miner": miner}``. This checkpointer's own state
            (the best files, their scores and steps) is added as ``"best_checkpoint"``.

    Examples:
        >>> import tempfile, torch
        >>> from torch import nn
        >>> from ignite.engine import Engine, create_supervised_evaluator
        >>> from ignite.metrics import Accuracy
        >>> def build(dirname):
        ...     model = nn.Linear(2, 2)
        ...     trainer = Engine(lambda engine, batch: None)
        ...     evaluator = create_supervised_evaluator(model, metrics={"accuracy": Accuracy()})
        ...     validation = [(torch.randn(4, 2), torch.tensor([0, 1, 0, 1]))]
        ...     best = BestValCheckpoint(evaluator, model, dirname, data=validation,
        ...                              resume_objects={"trainer": trainer, "model": model})
        ...     best.attach(trainer)
        ...     return trainer, best
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     trainer, best = build(tmp)
        ...     _ = trainer.run([0], max_epochs=2)  # interrupted after epoch 2
        ...     trainer, best = build(tmp)  # later: the same objects, then resume
        ...     best.resume().name, trainer.state.epoch, best.best_path.name.startswith("best_model_")
        ('last_checkpoint_2.pt', 2, True)

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.3.0
        A :class:`BestCheckpoint` with a :class:`ResumeCheckpoint`; ``Serializable``; :attr:`best_step`.
    """

    def __init__(
        self,
        evaluator: Engine,
        to_save: torch.nn.Module | Mapping[str, Any],
        dirname: str | Path,
        *,
        resume_objects: Mapping[str, Any] | None = None,
        **best: Any,
    ) -> None:
        bad_resume = not isinstance(resume_objects, Mapping) or "best_checkpoint" in resume_objects
        if resume_objects is not None and bad_resume:
            raise ValueError("Argument resume_objects should be a mapping of objects with state_dict and no key "
                             f"'best_checkpoint' (added automatically), but given {resume_objects!r}")
        super().__init__(evaluator, to_save, dirname, **best)
        self.resume_objects = dict(resume_objects) if resume_objects is not None else None
        #: the :class:`ResumeCheckpoint` of ``resume_objects`` and this checkpointer (``None`` without them)
        self.resume_checkpoint: ResumeCheckpoint | None = None
        if resume_objects is not None:
            self.resume_checkpoint = ResumeCheckpoint({**resume_objects, "best_checkpoint": self}, dirname)

    def attach(self, trainer: Engine, event: Event = Events.EPOCH_COMPLETED) -> None:
        """Validates (when ``data`` was given) and saves the best files and the resume file on ``event`` of ``trainer``.

        Raises:
            TypeError: if ``trainer`` is not an ``Engine``.
            ValueError: if this checkpointer is already attached.
        """
        super().attach(trainer, event)
        if self.resume_checkpoint is not None:
            self.resume_checkpoint.attach(trainer, event)

    def find_last_checkpoint(self) -> Path | None:
        """The newest ``last_checkpoint_{step}.pt`` in ``dirname`` (``None`` if there is none)."""
        return _newest_resume_file(self.dirname)

    def resume(self, checkpoint: str | Path | None = None) -> Path:
        """Loads ``resume_objects`` and the best files' record from ``checkpoint`` (default: the newest
        resume file), returns its path: :meth:`ResumeCheckpoint.resume`.

        Raises:
            ValueError: if no ``resume_objects`` were given; otherwise as :meth:`ResumeCheckpoint.resume`.
        """
        if self.resume_checkpoint is None:
            raise ValueError("BestValCheckpoint was created without resume_objects: nothing to resume")
        return self.resume_checkpoint.resume(checkpoint)

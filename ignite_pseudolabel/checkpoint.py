"""Keep the best model by a validation metric, and the state to resume an interrupted run."""

from __future__ import annotations

import copy
import math
import os
import re
import tempfile
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import CallableEventWithFilter, Engine, Events, EventsList
from ignite.handlers import Checkpoint, DiskSaver, global_step_from_engine

from ._validation import check_choice, check_identifier, check_int

__all__ = ["BestValCheckpoint"]


class _SafeDiskSaver(DiskSaver):
    """A :class:`~ignite.handlers.DiskSaver` whose writes survive crashes and full disks.

    * Ignite's ``Checkpoint`` removes the file it replaces *before* writing the new one; if that
      write failed (a full disk, a crash) the previous best would be lost. Here removals wait until
      the next write has succeeded.
    * Each file is written to a temporary file in the same directory, flushed to the disk
      (``fsync``) and renamed over its final name, then the directory entry is synced: a crash at
      any point leaves either the complete old file or the complete new one.

    Only ``save_on_rank`` (rank 0) writes, as in Ignite.
    """

    def __init__(self, dirname: str | Path) -> None:
        super().__init__(dirname, atomic=True, create_dir=True, require_empty=False)
        self.pending_removals: list[str] = []

    def remove(self, filename: str) -> None:
        self.pending_removals.append(filename)

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        if idist.get_rank() == self.save_on_rank:
            self._write(checkpoint, self.dirname / filename)
            for name in self.pending_removals:
                if name != filename:
                    (self.dirname / name).unlink(missing_ok=True)
        self.pending_removals = []

    def _write(self, checkpoint: Mapping, path: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dirname, prefix=".partial_", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        try:  # make the rename itself durable (POSIX; not possible on every platform)
            directory = os.open(self.dirname, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(directory)
        except OSError:
            pass
        finally:
            os.close(directory)


class BestValCheckpoint:
    """Runs validation on the trainer's schedule and keeps the best model on disk.

    Built on Ignite's :class:`~ignite.handlers.Checkpoint` (atomic writes, ``n_saved`` best files,
    written by rank 0 only). A score equal to the best so far replaces it (``greater_or_equal``), as
    the seed tutorial's ``>=`` does: the latest equally good model wins. A non-finite score is never
    saved (a warning says so).

    Files in ``dirname``:

    * ``{filename_prefix}_{name}_{step}_{metric_name}={score:.4f}.pt``: the best model(s), ``name``
      being the key of ``to_save`` when it holds one object (``model`` for a bare module) and
      ``checkpoint`` otherwise; ``step`` is the trainer's epoch (or iteration, for iteration events);
      the score is negated for ``mode="min"``. :attr:`best_path` gives the current one.
    * ``last_checkpoint_{step}.pt`` (only with ``resume_objects``): everything needed to resume,
      written after every other handler of the event has run, the previous one removed only once the
      new one is on disk. :meth:`resume` loads it.

    Args:
        evaluator: the engine computing the validation metrics.
        to_save: the model, or a mapping of objects with ``state_dict`` (e.g. ``{"model": model,
            "ema": ema_model}``), to keep at their best.
        dirname: directory of the checkpoint files (created if needed).
        data: validation data; when given, the evaluator runs on it at the trainer's event. Leave it
            out if you run the evaluator yourself.
        metric_name: the evaluator metric to compare (default ``"accuracy"``).
        mode: ``"max"`` or ``"min"``: whether a larger or a smaller metric is better.
        filename_prefix: prefix of the best files (default ``"best"``).
        n_saved: how many best files to keep.
        resume_objects: objects to save for resuming, e.g. ``{"trainer": trainer, "model": model,
            "optimizer": optimizer, "alpha": ramp, "miner": miner}``. This checkpointer's own state is
            added as ``"best_checkpoint"``.

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
        ...     best = BestValCheckpoint(evaluator, model, tmp, data=val)
        ...     best.attach(trainer)
        ...     _ = trainer.run([0], max_epochs=2)
        ...     best.best_path.name.startswith("best_model_")
        True

    .. versionadded:: 0.1.0
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
        resume_objects: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(evaluator, Engine):
            raise TypeError(f"Argument evaluator should be an ignite Engine, but given {type(evaluator).__name__}")
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
        bad_resume = not isinstance(resume_objects, Mapping) or "best_checkpoint" in resume_objects
        if resume_objects is not None and bad_resume:
            raise ValueError("Argument resume_objects should be a mapping of objects with state_dict and no key "
                             f"'best_checkpoint' (added automatically), but given {resume_objects!r}")
        self.evaluator = evaluator
        self.to_save = dict(to_save)
        self.dirname = Path(dirname)
        self.data = data
        self.metric_name = metric_name
        self.mode = mode
        self.resume_objects = dict(resume_objects) if resume_objects is not None else None
        self._trainer: Engine | None = None
        self._step_fn: Any = None
        self._saver = _SafeDiskSaver(self.dirname)
        self._best = Checkpoint(
            self.to_save,
            self._saver,
            filename_prefix=filename_prefix,
            score_function=Checkpoint.get_default_score_fn(metric_name, 1.0 if mode == "max" else -1.0),
            score_name=metric_name,
            n_saved=n_saved,
            global_step_transform=self._global_step,
            greater_or_equal=True,
        )
        self._last: Checkpoint | None = None
        if self.resume_objects is not None:
            self._last = Checkpoint(
                {**self.resume_objects, "best_checkpoint": self},
                _SafeDiskSaver(self.dirname),
                filename_prefix="last",
                n_saved=1,
                global_step_transform=self._global_step,
            )

    # --------------------------------------------------------------------------------------- wiring
    def attach(
        self,
        trainer: Engine,
        event: Events | CallableEventWithFilter | EventsList = Events.EPOCH_COMPLETED,
    ) -> None:
        """Validates (when ``data`` was given) and saves on ``event`` of ``trainer``.

        Raises:
            ValueError: if this checkpointer is already attached.
        """
        if not isinstance(trainer, Engine):
            raise TypeError(f"Argument trainer should be an ignite Engine, but given {type(trainer).__name__}")
        if self._trainer is not None:
            raise ValueError("This BestValCheckpoint is already attached to a trainer")
        self._trainer = trainer
        first = list(event)[0] if isinstance(event, EventsList) else event
        self._step_fn = global_step_from_engine(trainer, custom_event_name=first)  # type: ignore[arg-type]
        if self.data is not None:
            trainer.add_event_handler(event, self._validate)
        self.evaluator.add_event_handler(Events.COMPLETED, self._save_best)
        if self._last is not None:
            # Registered when the run starts so that it comes after every other handler of `event`
            # (a miner, a scheduler): the saved state is the state the next event starts from.
            def register(engine: Engine) -> None:
                if not engine.has_event_handler(self._save_last, event):
                    engine.add_event_handler(event, self._save_last)

            trainer.add_event_handler(Events.STARTED, register)

    def _global_step(self, engine: Engine, event: Any) -> int:
        if self._step_fn is None:
            raise RuntimeError("BestValCheckpoint is not attached: call attach(trainer) first")
        return int(self._step_fn(engine, event))

    def _validate(self, trainer: Engine) -> None:
        self.evaluator.run(self.data)

    def _save_best(self, evaluator: Engine) -> None:
        metrics = evaluator.state.metrics
        if self.metric_name not in metrics:
            raise ValueError(f"BestValCheckpoint: metric {self.metric_name!r} is not among the evaluator's metrics "
                             f"{sorted(metrics)}; pass metric_name=one of them")
        value = float(metrics[self.metric_name])
        if not math.isfinite(value):
            warnings.warn(f"BestValCheckpoint: {self.metric_name} = {value} is not finite; nothing saved",
                          RuntimeWarning, stacklevel=2)
            return
        self._save(self._best, evaluator)

    def _save_last(self, trainer: Engine) -> None:
        self._save(self._last, trainer)  # type: ignore[arg-type]

    @staticmethod
    def _save(checkpoint: Checkpoint, engine: Engine) -> None:
        saved = list(checkpoint._saved)
        try:
            checkpoint(engine)
        except Exception as error:
            checkpoint._saved = saved  # the previous files are still on disk: keep tracking them
            checkpoint.save_handler.pending_removals = []  # type: ignore[attr-defined]
            where = checkpoint.save_handler.dirname  # type: ignore[attr-defined]
            raise RuntimeError(f"Saving a checkpoint to {where} failed ({type(error).__name__}: {error}); "
                               "the previous checkpoint files are intact") from error

    # ---------------------------------------------------------------------------------------- results
    @property
    def best_path(self) -> Path | None:
        """Path of the best file so far (``None`` before the first save)."""
        last = self._best.last_checkpoint
        return None if last is None else self.dirname / Path(last).name

    @property
    def best_score(self) -> float | None:
        """The best metric value so far (``None`` before the first save)."""
        if not self._best._saved:
            return None
        priority = float(self._best._saved[-1].priority)
        return priority if self.mode == "max" else -priority

    def load_best(self, to_load: torch.nn.Module | Mapping[str, Any] | None = None) -> None:
        """Loads the best file into ``to_load`` (default: the objects of ``to_save``).

        Raises:
            FileNotFoundError: if nothing was saved yet.
        """
        if self.best_path is None:
            raise FileNotFoundError(f"BestValCheckpoint has saved no best checkpoint in {self.dirname} yet")
        if to_load is None:
            to_load = self.to_save
        elif isinstance(to_load, torch.nn.Module):
            to_load = {next(iter(self.to_save)): to_load} if len(self.to_save) == 1 else {"model": to_load}
        Checkpoint.load_objects(to_load, str(self.best_path))

    def find_last_checkpoint(self) -> Path | None:
        """The newest ``last_checkpoint_{step}.pt`` in ``dirname`` (``None`` if there is none)."""
        pattern = re.compile(r"^last_checkpoint_(\d+)\.pt$")
        found = [(int(m.group(1)), p) for p in self.dirname.glob("last_checkpoint_*.pt")
                 if (m := pattern.match(p.name))]
        return max(found)[1] if found else None

    def resume(self, checkpoint: str | Path | None = None) -> Path:
        """Loads ``resume_objects`` (and this checkpointer's state) from a resume checkpoint.

        Call it after building the trainer and handlers as for a new run and before ``trainer.run``;
        the run then continues from the saved epoch.

        Args:
            checkpoint: the file to load (default: :meth:`find_last_checkpoint`).

        Returns:
            The path loaded.

        Raises:
            ValueError: if no ``resume_objects`` were given.
            FileNotFoundError: if there is no resume checkpoint.
        """
        if self._last is None:
            raise ValueError("BestValCheckpoint was created without resume_objects: nothing to resume")
        path = Path(checkpoint) if checkpoint is not None else self.find_last_checkpoint()
        if path is None or not path.is_file():
            raise FileNotFoundError(f"No resume checkpoint {'in ' + str(self.dirname) if path is None else path}")
        try:
            Checkpoint.load_objects(self._last.to_save, str(path))
        except Exception as error:
            raise RuntimeError(f"Could not resume from {path}: {type(error).__name__}: {error}") from error
        self._last._saved = [Checkpoint.Item(int(self._global_step_of(path)), path.name)]
        return path

    @staticmethod
    def _global_step_of(path: Path) -> int:
        m = re.search(r"_(\d+)\.pt$", path.name)
        return int(m.group(1)) if m else 0

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> OrderedDict:
        """The list of best files and their scores (Ignite ``Checkpoint`` state)."""
        return self._best.state_dict()

    def load_state_dict(self, state_dict: Mapping) -> None:
        self._best.load_state_dict(copy.deepcopy(dict(state_dict)))

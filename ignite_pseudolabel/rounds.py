"""The pseudo-labeled set of a miner, round after round: replace or grow, and its resumable state."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from ignite.base import Serializable

from ._validation import optional_int
from .datasets import PseudoLabeledDataset

__all__ = ["MiningRounds"]


class MiningRounds(Serializable):
    """The accepted pseudo-labels of a :class:`~ignite_pseudolabel.PseudoLabelMiner`, round after round.

    Each :meth:`record` is a round: by default its accepted samples replace the set; with
    ``grow=True`` they are added to it (as in scikit-learn's ``SelfTrainingClassifier``: an accepted
    sample keeps the label it was accepted with, and :meth:`candidates` excludes it from later
    rounds). ``accepted_round`` records the round in which each sample's current label was
    accepted, and ``dataset`` (the :class:`~ignite_pseudolabel.PseudoLabeledDataset` that training
    reads) is updated after every round and every :meth:`load_state_dict`.

    :meth:`state_dict` holds the set and the configuration it was mined with; :meth:`load_state_dict`
    refuses a state saved with another configuration, for another number of samples or classes.

    Args:
        dataset: the pseudo-labeled view to keep up to date, empty at first; its ``dataset`` holds
            the samples that can be pseudo-labeled (positions ``0 .. len(dataset.dataset) - 1``).
        grow: add each round's accepted samples to the set instead of replacing it.
        max_rounds: after this many rounds :attr:`due` is ``False`` (default: no limit).
        num_classes: the number of classes of the labels, or ``None`` until it is known.
        config: further configuration (name -> value) saved with the state, that a state must match
            to be loaded (e.g. the selection criteria).

    Attributes:
        indices: positions of the accepted samples, sorted (a CPU tensor).
        labels: pseudo-labels (or label maps) of the accepted samples, in the order of ``indices``.
        confidences: confidences of the accepted samples, in the order of ``indices``.
        accepted_round: for every sample, the round (from 1) in which its current pseudo-label was
            accepted, -1 if it has none.
        rounds: rounds recorded so far.

    Raises:
        TypeError, ValueError: if ``dataset`` is not a ``PseudoLabeledDataset`` or ``max_rounds`` or
            ``num_classes`` is out of range.

    Examples:
        >>> rounds = MiningRounds(PseudoLabeledDataset(torch.arange(4.0)), grow=True)
        >>> rounds.record(torch.tensor([2]), torch.tensor([1]), torch.tensor([0.9]))
        >>> rounds.candidates(torch.arange(4)).tolist()
        [True, True, False, True]
        >>> rounds.record(torch.tensor([0]), torch.tensor([0]), torch.tensor([0.8]))
        >>> rounds.indices.tolist(), rounds.labels.tolist(), rounds.accepted_round.tolist(), len(rounds.dataset)
        ([0, 2], [0, 1], [2, -1, 1, -1], 2)

    .. versionadded:: 0.3.0
    """

    _state_dict_all_req_keys = ("indices", "labels", "confidences", "rounds", "accepted_round", "dataset_size")

    def __init__(
        self,
        dataset: PseudoLabeledDataset,
        *,
        grow: bool = False,
        max_rounds: int | None = None,
        num_classes: int | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(dataset, PseudoLabeledDataset):
            raise TypeError(f"Argument dataset should be a PseudoLabeledDataset, but given {type(dataset).__name__}")
        self.dataset = dataset
        self.grow = bool(grow)
        self.max_rounds = optional_int("max_rounds", max_rounds, minimum=1)
        self.num_classes = optional_int("num_classes", num_classes, minimum=2)
        self.config = dict(config or {})
        self.size = len(dataset.dataset)  # type: ignore[arg-type]
        self.rounds = 0
        self.accepted_round = torch.full((self.size,), -1, dtype=torch.int64)
        self.indices = self.labels = torch.empty(0, dtype=torch.int64)
        self.confidences = torch.empty(0)

    @property
    def due(self) -> bool:
        """Whether another round may run (fewer than ``max_rounds`` so far)."""
        return self.max_rounds is None or self.rounds < self.max_rounds

    def candidates(self, positions: torch.Tensor) -> torch.Tensor | None:
        """Which of ``positions`` a round may accept: those without a label when growing, else all (``None``)."""
        return self.accepted_round[positions] < 0 if self.grow else None

    def record(self, indices: torch.Tensor, labels: torch.Tensor, confidences: torch.Tensor) -> None:
        """Records a round that accepted the samples at ``indices`` (sorted) with these labels and confidences."""
        self.rounds += 1
        if self.grow:
            merged = torch.cat([self.indices, indices])
            order = torch.argsort(merged)
            self._set(merged[order], torch.cat([self.labels, labels])[order],
                      torch.cat([self.confidences, confidences])[order])
        else:
            self.accepted_round.fill_(-1)
            self._set(indices, labels, confidences)
        self.accepted_round[indices] = self.rounds

    def _set(self, indices: torch.Tensor, labels: torch.Tensor, confidences: torch.Tensor) -> None:
        self.indices, self.labels, self.confidences = indices, labels, confidences
        self.dataset.update(indices, labels)

    def state_dict(self) -> OrderedDict:
        """The accepted set, the rounds and the configuration (tensors and plain Python only)."""
        return OrderedDict(
            indices=self.indices.clone(),
            labels=self.labels.clone(),
            confidences=self.confidences.clone(),
            accepted_round=self.accepted_round.clone(),
            rounds=self.rounds,
            num_classes=self.num_classes,
            dataset_size=self.size,
            **self.config,
            grow=self.grow,
        )

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restores the accepted set and the rounds (and the number of classes, when the state knows it).

        Raises:
            ValueError: if a required key is absent, or the state was saved for another number of
                samples or classes, growth mode or ``config``.
        """
        super().load_state_dict(state_dict)
        expected = {**self.config, "grow": self.grow, "dataset_size": self.size}
        if self.num_classes is not None:
            expected["num_classes"] = self.num_classes
        for name, value in expected.items():
            if name in state_dict and state_dict[name] != value:
                raise ValueError(f"Cannot load a PseudoLabelMiner state saved with {name}={state_dict[name]!r} into "
                                 f"a miner with {name}={value!r}: the checkpoint comes from another configuration")
        if state_dict.get("num_classes") is not None:
            self.num_classes = int(state_dict["num_classes"])
        self._set(torch.as_tensor(state_dict["indices"]), torch.as_tensor(state_dict["labels"]),
                  torch.as_tensor(state_dict["confidences"]))
        self.accepted_round = torch.as_tensor(state_dict["accepted_round"]).clone()
        self.rounds = int(state_dict["rounds"])

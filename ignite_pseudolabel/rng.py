"""The global random number generators' states, as a checkpointable object."""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from ignite.base import Serializable

__all__ = ["RNGState"]


class RNGState(Serializable):
    """Saves and restores the states of Python's, NumPy's and torch's global generators (CPU and CUDA).

    Put it among the objects you checkpoint for resuming (e.g. ``BestValCheckpoint(...,
    resume_objects={..., "rng": RNGState()})``): dropout, random augmentations and shuffles that
    draw from the global generators then continue exactly as in an uninterrupted run. The state
    holds tensors and plain Python values only, so it loads with ``torch.load(weights_only=True)``.
    CUDA states are restored only on a machine with the same number of CUDA devices.

    Generators of your own (e.g. the ``generator`` of a shuffling ``DataLoader``, as PyTorch's notes on
    reproducibility advise) are saved and restored too when given as ``generators``: without them, a
    run resumed from a checkpoint shuffles its next epoch from the generator's initial seed, not from
    where the interrupted run had got to.

    Args:
        generators: ``torch.Generator`` objects whose states to save and restore as well, in this order.

    Raises:
        TypeError: if ``generators`` holds anything but ``torch.Generator`` objects.

    Examples:
        >>> import torch
        >>> state = RNGState().state_dict()
        >>> first = torch.rand(2)
        >>> RNGState().load_state_dict(state)
        >>> torch.equal(torch.rand(2), first)
        True
        >>> shuffle = torch.Generator().manual_seed(0)
        >>> state = RNGState(generators=[shuffle]).state_dict()
        >>> order = torch.randperm(5, generator=shuffle)
        >>> RNGState(generators=[shuffle]).load_state_dict(state)
        >>> torch.equal(torch.randperm(5, generator=shuffle), order)
        True

    .. versionadded:: 0.2.0
    .. versionchanged:: 0.3.0
        ``generators``.
    """

    _state_dict_all_req_keys = ("python", "numpy", "torch")

    def __init__(self, generators: Iterable[torch.Generator] = ()) -> None:
        self.generators = tuple(generators)
        for i, generator in enumerate(self.generators):
            if not isinstance(generator, torch.Generator):
                raise TypeError(f"Argument generators should hold torch.Generator objects, but given "
                                f"{type(generator).__name__} at position {i}")

    def state_dict(self) -> OrderedDict:
        version, internal, gauss = random.getstate()
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        state = OrderedDict(
            python=[version, list(internal), gauss],
            numpy=[kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
            torch=torch.get_rng_state(),
        )
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        if self.generators:
            state["generators"] = [generator.get_state() for generator in self.generators]
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restores the generators.

        Raises:
            ValueError: if a required part is missing, or the state holds a different number of
                ``generators`` than this object was given.
        """
        super().load_state_dict(state_dict)
        saved = state_dict.get("generators", [])
        if len(saved) != len(self.generators):
            raise ValueError(f"The state holds {len(saved)} generator states, but this RNGState was given "
                             f"{len(self.generators)} generators: give the same generators as when it was saved")
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, torch.as_tensor(keys).numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(torch.as_tensor(state_dict["torch"], dtype=torch.uint8))
        cuda = state_dict.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        for generator, generator_state in zip(self.generators, saved):
            generator.set_state(torch.as_tensor(generator_state, dtype=torch.uint8))

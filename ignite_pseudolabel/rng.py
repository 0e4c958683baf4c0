"""The global random number generators' states, as a checkpointable object."""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Mapping

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

    Examples:
        >>> import torch
        >>> state = RNGState().state_dict()
        >>> first = torch.rand(2)
        >>> RNGState().load_state_dict(state)
        >>> torch.equal(torch.rand(2), first)
        True

    .. versionadded:: 0.2.0
    """

    _state_dict_all_req_keys = ("python", "numpy", "torch")

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
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restores the generators.

        Raises:
            ValueError: if a required part is missing.
        """
        super().load_state_dict(state_dict)
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        kind, keys, pos, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((kind, torch.as_tensor(keys).numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(torch.as_tensor(state_dict["torch"], dtype=torch.uint8))
        cuda = state_dict.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)

"""RNGState: the global generators and the user's own generators, saved and restored for exact resume."""

import io
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ignite_pseudolabel.rng import RNGState


def test_global_generators_are_restored_and_the_state_loads_with_weights_only():
    state = RNGState().state_dict()
    expected = (random.random(), np.random.rand(), torch.rand(3))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    RNGState().load_state_dict(torch.load(buffer, weights_only=True))
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])


def epochs(loader, n):
    return [[batch.tolist() for batch in loader] for _ in range(n)]


def make_loader(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(torch.arange(12), batch_size=4, shuffle=True, generator=generator), generator


@pytest.mark.parametrize("with_generator", [True, False])
def test_a_dataloader_generator_resumes_its_shuffle_only_when_given(with_generator):
    loader, _ = make_loader()
    uninterrupted = epochs(loader, 2)

    loader, generator = make_loader()
    first = epochs(loader, 1)
    saved = RNGState(generators=[generator] if with_generator else []).state_dict()  # the checkpoint after epoch 1

    loader, generator = make_loader()  # a new process: the loader is built again from its seed
    RNGState(generators=[generator] if with_generator else []).load_state_dict(saved)
    resumed = first + epochs(loader, 1)
    assert (resumed == uninterrupted) is with_generator  # without it, epoch 2 repeats epoch 1's shuffle
    assert with_generator or resumed[1] == resumed[0]


def test_generators_are_validated():
    with pytest.raises(TypeError, match="generators should hold torch.Generator objects, but given int at position 1"):
        RNGState(generators=[torch.Generator(), 3])
    state = RNGState(generators=[torch.Generator()]).state_dict()
    with pytest.raises(ValueError, match="holds 1 generator states, but this RNGState was given 0 generators"):
        RNGState().load_state_dict(state)
    earlier = RNGState().state_dict()
    torch.rand(1)
    with pytest.raises(ValueError, match="holds 0 generator states, but this RNGState was given 2"):
        RNGState(generators=[torch.Generator(), torch.Generator()]).load_state_dict(earlier)
    assert not torch.equal(torch.get_rng_state(), earlier["torch"])  # the refused state restored nothing

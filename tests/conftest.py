import random

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def seed_everything():
    """Every test starts from the same seeds of every random source."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True, scope="session")
def limit_threads():
    torch.set_num_threads(min(2, torch.get_num_threads()))

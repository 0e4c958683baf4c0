import math

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from ignite_pseudolabel import Views, WeakStrongViews, weak_strong_transforms
from ignite_pseudolabel.augment import FixMatchCutout, FixMatchRandAugment
from ignite_pseudolabel.view_options import STRENGTHS


def test_digits_views_have_no_flips_and_normalise():
    weak, strong = weak_strong_transforms("digits", mean=(0.5,), std=(0.5,))
    for t in (weak, strong):
        assert not any(isinstance(step, (v2.RandomHorizontalFlip, v2.RandomVerticalFlip)) for step in t.transforms)
    image = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    out = weak(image)
    assert out.dtype == torch.float32 and out.shape == (1, 28, 28)
    assert out.max().item() == pytest.approx(1.0)  # (1 - 0.5) / 0.5


def test_natural_views_flip_crop_and_cutout():
    weak, strong = weak_strong_transforms("natural", size=32, mean=(0.5,) * 3, std=(0.5,) * 3, cutout=0.5,
                                          strength="torchvision")
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
    with pytest.raises(ValueError, match="strength should be one of 'fixmatch', 'fixmatch-torchvision', 'torchvision', "
                                         "but given 'usb'"):
        weak_strong_transforms("digits", strength="usb")
    with pytest.raises(ValueError, match=r"magnitude should be an integer in \[0, 30\], but given 31"):
        weak_strong_transforms("digits", magnitude=31, strength="fixmatch-torchvision")
    with pytest.raises(ValueError, match="magnitude is for strength='torchvision' or 'fixmatch-torchvision' .* but "
                                         "given 10"):
        weak_strong_transforms("digits", magnitude=10)  # strength="fixmatch": USB's fixed ranges
    with pytest.raises(ValueError, match=r"num_ops should be an integer"):
        FixMatchRandAugment(num_ops=-1)
    with pytest.raises(ValueError, match=r"fraction should be a finite number in \(0, 1\]"):
        FixMatchCutout(0.0)
    with pytest.raises(ValueError, match="Argument value should be a finite number"):
        FixMatchCutout(0.5, value=float("nan"))


def erased_square(out):
    """Side of the square of pixels that are 0 in every channel (no other pixel value maps to 0 here)."""
    zero = (out == 0).all(0)
    rows, cols = zero.any(1).nonzero(), zero.any(0).nonzero()
    if rows.numel() == 0:
        return 0
    h, w = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert h == w and zero.sum() == h * w and zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()
    return int(h)


def test_fixmatch_torchvision_strength_always_cuts_out_a_square_of_uniform_side():
    # with mean = std = 0.5, a uint8 pixel never normalises to exactly 0: zeros are the erased patch
    weak, strong = weak_strong_transforms("natural", size=32, mean=(0.5,) * 3, std=(0.5,) * 3, num_ops=3,
                                          strength="fixmatch-torchvision")
    image = torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
    sides = []
    for _ in range(200):
        out = strong(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        sides.append(erased_square(out))
    assert min(sides) >= 1 and max(sides) == 16  # always applied; side up to half the image
    assert sum(s <= 4 for s in sides) > 20 and sum(s >= 12 for s in sides) > 40  # uniform side, not area
    assert weak(image).shape == (3, 32, 32)


def test_fixmatch_torchvision_strength_draws_a_magnitude_per_operation_and_is_seeded():
    _, strong = weak_strong_transforms("digits", num_ops=3, magnitude=30, strength="fixmatch-torchvision")
    augment = strong.transforms[1]
    assert len(augment.transforms) == 3
    for choice in augment.transforms:
        assert isinstance(choice, v2.RandomChoice)
        assert sorted(t.magnitude for t in choice.transforms) == list(range(31))
        assert all(t.num_ops == 1 for t in choice.transforms)
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    torch.manual_seed(5)
    first = [strong(image) for _ in range(3)]
    torch.manual_seed(5)
    again = [strong(image) for _ in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1])
    # the largest magnitude bounds the draws; cutout=0 leaves no erasing
    _, strong = weak_strong_transforms("digits", magnitude=5, cutout=0.0, strength="fixmatch-torchvision")
    assert [t.magnitude for t in strong.transforms[1].transforms[0].transforms] == list(range(6))
    assert not any(isinstance(t, (v2.RandomErasing, v2.RandomChoice)) for t in strong.transforms)


def test_torchvision_strength_is_unchanged():
    _, strong = weak_strong_transforms("digits", strength="torchvision")
    augment, erase = strong.transforms[1], strong.transforms[-1]
    assert isinstance(augment, v2.RandAugment) and (augment.num_ops, augment.magnitude) == (2, 10)
    assert isinstance(erase, v2.RandomErasing) and erase.p == 1.0 and erase.scale == (0.0001, 0.25)
    for strength in STRENGTHS:
        _, trivial = weak_strong_transforms("digits", policy="trivialaugment", strength=strength)
        assert isinstance(trivial.transforms[1], v2.TrivialAugmentWide)


def test_default_strength_is_usbs_randaugment_and_cutout():
    _, strong = weak_strong_transforms("digits", mean=(0.5,), std=(0.5,))
    augment, erase = strong.transforms[1], strong.transforms[-1]
    assert isinstance(augment, FixMatchRandAugment) and augment.num_ops == 2  # FixMatch's N = 2 (USB: 3)
    assert isinstance(erase, FixMatchCutout) and erase.cutout.fraction == 0.5 and erase.value == 0.0
    _, strong = weak_strong_transforms("digits", cutout=0.0)
    assert not any(isinstance(t, FixMatchCutout) for t in strong.transforms)
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    torch.manual_seed(5)
    first = [strong(image) for _ in range(3)]
    torch.manual_seed(5)
    assert all(torch.equal(a, strong(image)) for a in first)  # seeded by torch's global generator


def test_fixmatch_randaugment_applies_the_drawn_operations_with_torchvisions_functions(monkeypatch):
    """Each drawn (operation, value) reaches torchvision's functional with that value, in order."""
    from ignite_pseudolabel import augment as module

    calls = []

    def spy(name):
        original = getattr(module.F, name)

        def call(image, *args, **kwargs):
            calls.append((name, args, kwargs))
            return original(image, *args, **kwargs)
        return call

    for name in ("adjust_brightness", "posterize", "rotate", "affine", "solarize", "adjust_sharpness"):
        monkeypatch.setattr(module.F, name, spy(name))
    image = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    augment = FixMatchRandAugment()
    operations = [("brightness", 0.3), ("posterize", 5.0), ("rotate", -12.5), ("translate_y", -8.0),
                  ("solarize", 0.5), ("solarize", 256 / 255), ("sharpness", 0.9), ("shear_x", 0.3)]
    augment.transform(image, {"operations": operations})
    assert calls[:5] == [("adjust_brightness", (0.3,), {}), ("posterize", (), {"bits": 5}),
                         ("rotate", (), {"angle": -12.5, "interpolation": v2.InterpolationMode.NEAREST}),
                         ("affine", (), {"angle": 0.0, "translate": [0, -8], "scale": 1.0, "shear": [0.0, 0.0],
                                         "interpolation": v2.InterpolationMode.NEAREST}),
                         ("solarize", (), {"threshold": 127.5})]
    # a threshold above white (USB's range reaches 256 grey levels) inverts nothing: no call
    assert [name for name, _, _ in calls[5:]] == ["adjust_sharpness", "affine"]
    assert calls[6][2]["shear"][0] == pytest.approx(math.degrees(math.atan(0.3))) and calls[6][2]["center"] == [0, 0]


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

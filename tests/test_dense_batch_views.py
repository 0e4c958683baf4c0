"""DenseBatchViews: pixel-aligned weak/strong views, valid masks and held-back maps of whole raw batches on their
device; the crop, jitter and blur draws; seeding; the segmentation recipe on a stock trainer."""

from collections import Counter

import pytest
import torch
from ignite.engine import create_supervised_trainer
from torch import nn

from ignite_pseudolabel import SemiSupervisedLoader
from ignite_pseudolabel.batch import RawBatch
from ignite_pseudolabel.dense import DensePrepareBatch, DenseViews
from ignite_pseudolabel.dense_batch_views import DenseBatchViews
from ignite_pseudolabel.device_data import DeviceBatches
from ignite_pseudolabel.losses import PseudoLabelLoss

IGNORE = 255
SIDE = 28


def coordinates(n, side=SIDE):
    """``(n, 2, side, side)`` uint8 images whose pixels encode their own row and column (x 8, + 8: never 0)."""
    grid = torch.arange(1, side + 1, dtype=torch.uint8) * 8
    image = torch.stack([grid.view(-1, 1).expand(side, side), grid.view(1, -1).expand(side, side)])
    return image.expand(n, -1, -1, -1).contiguous()


def source_of(weak):
    """The source (row, column) of every pixel of weak views of :func:`coordinates` images; -1 in the padding."""
    return (weak * 255 / 8).round().long() - 1


def label_map(n, side=SIDE):
    """Held-back maps whose label at (r, c) is (r * side + c) % 200: a pixel's label says where it came from."""
    index = torch.arange(side * side).view(side, side) % 200
    return index.expand(n, -1, -1).contiguous()


def _chi_square_is_plausible(counts, cells):
    """Pearson's statistic against the uniform distribution over ``cells``, within 5 standard deviations of its mean."""
    total = sum(counts.values())
    assert set(counts) <= set(cells), set(counts) - set(cells)  # no draw outside the support
    statistic = sum((counts[cell] - total / len(cells)) ** 2 / (total / len(cells)) for cell in cells)
    df = len(cells) - 1
    return statistic < df + 5 * (2 * df) ** 0.5


def test_weak_strong_valid_and_held_back_stay_aligned_for_one_draw():
    views = DenseBatchViews(held_back_targets=label_map(64), brightness=0.5, contrast=0.5, blur_p=0.0,
                            generator=torch.Generator().manual_seed(0))
    out = views(RawBatch(coordinates(64), torch.arange(64)))
    assert isinstance(out, DenseViews) and out.sample_index.tolist() == list(range(64))
    source = source_of(out.weak)
    rows, cols = source[:, 0], source[:, 1]
    inside = (rows >= 0) & (cols >= 0)
    assert torch.equal(out.valid, inside)  # valid exactly where the pixel came from the image
    assert torch.equal(out.held_back_targets[inside], (rows * SIDE + cols)[inside] % 200)  # the label moved with it
    assert (out.held_back_targets[~inside] == IGNORE).all() and (~inside).any()
    # the strong view is a per-image monotone function of the weak view's pixel at the same place (brightness and
    # contrast with factors >= 0): sorting one image's weak pixels sorts its strong pixels
    for weak, strong in zip(out.weak[:, 1].flatten(1), out.strong[:, 1].flatten(1)):
        order = weak.argsort(stable=True)
        assert (strong[order].diff() >= 0).all()
    assert not torch.equal(out.strong, out.weak)
    # without photometric changes the strong view is the weak view, pixel for pixel
    plain = DenseBatchViews(brightness=0.0, contrast=0.0, blur_p=0.0)(coordinates(8))
    assert torch.equal(plain.strong, plain.weak) and plain.sample_index is None


def test_padding_is_zero_and_invalid_and_no_maps_give_an_empty_held_back():
    images = torch.randint(1, 256, (32, 3, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = DenseBatchViews(padding=4)(RawBatch(images, torch.arange(32)))
    assert out.weak.dtype == out.strong.dtype == torch.float32 and out.valid.dtype == torch.bool
    assert torch.equal((out.weak == 0).all(1), ~out.valid)  # the images have no zero: zeros are the padding
    assert (~out.valid).any() and out.valid.any()
    assert out.held_back_targets.shape == (32, 0) and out.held_back_targets.numel() == 0  # what DensePrepareBatch tests
    smaller = DenseBatchViews(8, padding=0)(images)
    assert smaller.weak.shape == (32, 3, 8, 8) and smaller.valid.all()


@pytest.mark.parametrize("flip", [False, True])
def test_crop_offsets_and_flips_are_uniform(flip):
    """torchvision's RandomCrop(28, padding=4): the crop starts at one of 9 x 9 offsets, uniformly (and flips with
    probability 1/2); the centre pixel shows the source pixel (14 + dy, 14 + dx), mirrored when flipped."""
    n = 8100 if flip else 4050
    weak = DenseBatchViews(flip=flip, generator=torch.Generator().manual_seed(2))(coordinates(n)).weak
    source = source_of(weak[:, :, 14, 14])
    mirrored = (source_of(weak[:, 1, 14, 15]) < source[:, 1]) if flip else torch.zeros(n, dtype=torch.bool)
    column = torch.where(mirrored, SIDE - 1 - source[:, 1], source[:, 1])
    draws = Counter(zip(mirrored.tolist(), (source[:, 0] - 14).tolist(), (column - 14).tolist()))
    cells = [(f, dy, dx) for f in ((False, True) if flip else (False,)) for dy in range(-4, 5) for dx in range(-4, 5)]
    assert _chi_square_is_plausible(draws, cells)


def test_jitter_and_blur_draw_as_torchvision_and_give_its_images():
    """Factors uniform in [0.5, 1.5], blur with probability 1/2 and sigma uniform in [0.1, 1.5]; at the drawn
    parameters the strong view is torchvision's ColorJitter (in the drawn order) and GaussianBlur on uint8."""
    from torchvision.transforms.v2 import functional as F

    views = DenseBatchViews(generator=torch.Generator().manual_seed(3))
    images = torch.randint(0, 256, (4000, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    params = views.draw(images)
    for values, low, high in ((params.brightness, 0.5, 1.5), (params.contrast, 0.5, 1.5), (params.sigma, 0.1, 1.5)):
        bins = ((values - low) / (high - low) * 10).floor().long()
        assert _chi_square_is_plausible(Counter(bins.tolist()), list(range(10)))
    for flags in (params.blur, params.brightness_first):
        assert _chi_square_is_plausible(Counter(flags.tolist()), [False, True])

    sub = views.draw(images[:40])
    weak = views.geometry(images[:40], sub)
    strong = views.photometric(weak.float() / 255, sub)
    expected = []
    for i in range(40):
        image = weak[i]
        jitter = [(F.adjust_brightness, float(sub.brightness[i])), (F.adjust_contrast, float(sub.contrast[i]))]
        for fn, factor in (jitter if sub.brightness_first[i] else jitter[::-1]):
            image = fn(image, factor)
        expected.append(F.gaussian_blur(image, [3, 3], [float(sub.sigma[i])] * 2) if sub.blur[i] else image)
    differ = ((strong * 255).round() - torch.stack(expected).float()).abs()
    # each step's 8-bit grid is torchvision's; a value on a rounding edge may differ by a grey level or two
    assert differ.max() <= 2 and (differ > 1).float().mean() <= 0.001 and (differ > 0).float().mean() <= 0.01


def test_no_host_synchronisation_and_everything_on_the_batch_device():
    # a meta tensor has no data: any read on the host (.item(), bool(), .tolist(), .cpu()) raises, and mixing it
    # with a tensor made elsewhere (a constant on the CPU) raises too
    views = DenseBatchViews(held_back_targets=label_map(8), cutout=0.5, mean=(0.5, 0.5), std=(0.2, 0.2))
    out = views(RawBatch(coordinates(8).to("meta"), torch.arange(8, device="meta")))
    assert all(t.device.type == "meta" for t in out) and out.held_back_targets.shape == (8, SIDE, SIDE)


def test_one_generator_seeds_every_draw_and_leaves_the_global_ones_alone():
    images = torch.randint(0, 256, (16, 3, 20, 20), dtype=torch.uint8)
    views = DenseBatchViews(flip=True, cutout=0.5, generator=torch.Generator().manual_seed(5))
    state = torch.get_rng_state()
    first = views(images)
    assert torch.equal(torch.get_rng_state(), state)  # nothing drawn from torch's global generator
    torch.rand(100)  # whatever the global generator does in between
    views.generator.manual_seed(5)
    again = views(images)
    assert all(torch.equal(a, b) for a, b in zip(first[:3], again[:3]))
    assert not torch.equal(views(images).weak, first.weak)
    # without a generator: the default generator of the batch's device, seeded by torch.manual_seed
    default = DenseBatchViews()
    torch.manual_seed(6)
    first = default(images)
    torch.manual_seed(6)
    assert torch.equal(default(images).strong, first.strong)


def test_argument_validation():
    with pytest.raises(ValueError, match=r"Argument padding should be an integer >= 0, but given -1"):
        DenseBatchViews(padding=-1)
    with pytest.raises(ValueError, match=r"Argument brightness should be a finite number in \[0, inf\), but given -0"):
        DenseBatchViews(brightness=-0.1)
    with pytest.raises(ValueError, match=r"Argument blur_p should be a finite number in \[0, 1\], but given 2"):
        DenseBatchViews(blur_p=2)
    with pytest.raises(ValueError, match="Argument blur_kernel should be an odd integer >= 1, but given 4"):
        DenseBatchViews(blur_kernel=4)
    with pytest.raises(ValueError, match=r"Argument blur_sigma should be \(smallest, largest\), but given \(2.0, 1"):
        DenseBatchViews(blur_sigma=(2.0, 1.0))
    with pytest.raises(ValueError, match="Arguments mean and std should both be None or have the same length"):
        DenseBatchViews(mean=(0.5,))
    with pytest.raises(ValueError, match=r"held_back_targets should hold one label map per image \(M, H, W\), but "
                                         r"given shape \(4, 4\)"):
        DenseBatchViews(held_back_targets=torch.zeros(4, 4))
    with pytest.raises(TypeError, match="Argument generator should be a torch.Generator or None, but given int"):
        DenseBatchViews(generator=0)
    views = DenseBatchViews(held_back_targets=label_map(4))
    with pytest.raises(ValueError, match=r"DenseBatchViews expects raw uint8 images of shape \(N, C, H, W\)"):
        views(torch.zeros(2, 1, SIDE, SIDE))
    with pytest.raises(ValueError, match="needs the images' positions: give it RawBatch"):
        views(coordinates(2))
    with pytest.raises(ValueError, match=r"The crop of 40 x 40 pixels does not fit in the padded input of 36 x 36"):
        DenseBatchViews(40)(coordinates(2))


def test_stock_trainer_runs_the_dense_recipe_on_device_batches():
    """The documented use: DeviceBatches(return_index=True) + DenseBatchViews in front of DensePrepareBatch."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    masks = torch.randint(0, 3, (12, 8, 8))
    model, teacher = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(1, 3, 3, padding=1)
    loss = PseudoLabelLoss(0.34, alpha=1.0, teacher=teacher, supervised_loss=nn.CrossEntropyLoss(ignore_index=IGNORE))
    views = DenseBatchViews(padding=2, held_back_targets=masks[4:])
    prepare = DensePrepareBatch(loss, cutmix=True)

    def prepare_batch(batch, device=None, non_blocking=False):
        if isinstance(batch.unlabeled, RawBatch):  # raw uint8 images on the device: their pixel-aligned views
            batch = batch._replace(unlabeled=views(batch.unlabeled))
        return prepare(batch, device, non_blocking)

    labeled = DeviceBatches(images[:4].float() / 255, masks[:4], batch_size=4)
    unlabeled = DeviceBatches(images[4:], batch_size=4, return_index=True)
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss,
                                        prepare_batch=prepare_batch)
    loss.attach(trainer)
    trainer.run(SemiSupervisedLoader(labeled, unlabeled=unlabeled), max_epochs=3)
    assert 0 < trainer.state.pseudo_mask_rate.item() <= 1  # per valid pixel: every one passes 0.34 > 1 / 3
    assert 0 <= trainer.state.pseudo_accuracy.item() <= 1  # measured against the held-back maps
    assert torch.isfinite(torch.tensor(trainer.state.output))


def test_the_loss_makes_the_dense_views_on_the_device_and_cutmix_mixes_them():
    """``PseudoLabelLoss(views=DenseBatchViews(...))``: raw batches become DenseViews in prepare_batch (no wrapper),
    labeled uint8 images become floats without geometry (their masks travel in the labels)."""
    from ignite.engine import create_supervised_trainer
    from torch import nn

    from ignite_pseudolabel import DeviceBatches, PseudoLabelLoss, SemiSupervisedLoader
    from ignite_pseudolabel.dense import DensePrepareBatch

    torch.manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 12, 12), dtype=torch.uint8)
    masks = (images[:, 0] > 128).long()
    views = DenseBatchViews(padding=2, held_back_targets=masks, generator=torch.Generator().manual_seed(1))
    assert torch.equal(views.weak(images[:2]), images[:2].float() / 255)
    model = nn.Conv2d(1, 2, 3, padding=1)
    loss = PseudoLabelLoss(0.0, alpha=1.0, views=views)
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss,
                                        prepare_batch=DensePrepareBatch(loss, cutmix={"p": 1.0}))
    loss.attach(trainer)
    data = SemiSupervisedLoader(DeviceBatches(images[:8], masks[:8], batch_size=4),
                                unlabeled=DeviceBatches(images[8:], batch_size=8, return_index=True))
    state = trainer.run(data, max_epochs=2)
    assert state.iteration == 4 and torch.isfinite(state.pseudo_loss)
    assert float(state.pseudo_mask_rate) == 1.0  # threshold 0: every valid pixel; the padding does not count
    assert 0 <= float(state.pseudo_accuracy) <= 1  # against the moved held-back maps

"""Dense (segmentation) semantics: ignore index, valid masks, aligned views, CutMix of labels, mined label maps."""

import pytest
import torch
import torch.nn.functional as F
from ignite.engine import create_supervised_trainer
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from ignite_pseudolabel import SemiSupervisedLoader
from ignite_pseudolabel.batch import SemiSupervisedBatch, SemiSupervisedTarget
from ignite_pseudolabel.dense import (
    DensePrepareBatch,
    DenseViews,
    DenseWeakStrongViews,
    cutmix,
    cutmix_boxes,
    decode_label_maps,
    encode_label_maps,
)
from ignite_pseudolabel.losses import PseudoLabelLoss
from ignite_pseudolabel.mining import PseudoLabelMiner
from ignite_pseudolabel.thresholds import FlexMatchThreshold, FreeMatchThreshold

IGNORE = 255


class PixelModel(nn.Module):
    """Logits of class c at a pixel = -(x - c / 2)^2 * 20: a per-pixel function (no context), so mixing the
    inputs and mixing the logits must agree exactly."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.register_buffer("centres", torch.arange(num_classes).float().view(1, -1, 1, 1) / 2)

    def forward(self, x):
        return -((x[:, :1] - self.centres) ** 2) * 20


# ------------------------------------------------------------------------------------ supervised ignore index
def test_supervised_term_honours_the_labels_ignore_index():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[0, :2] = IGNORE
    loss_fn = PseudoLabelLoss(alpha=1.0, supervised_loss=nn.CrossEntropyLoss(ignore_index=IGNORE))
    value = loss_fn(logits, SemiSupervisedTarget(labels))
    kept = labels != IGNORE
    by_hand = F.cross_entropy(logits.movedim(1, -1)[kept], labels[kept])
    assert torch.allclose(value, by_hand)
    value.backward()
    assert logits.grad.movedim(1, -1)[~kept].eq(0).all() and logits.grad.movedim(1, -1)[kept].ne(0).any()


# -------------------------------------------------------------------------------------------- valid masks
def test_pseudo_term_is_averaged_over_valid_pixels_and_padding_is_never_used():
    torch.manual_seed(0)
    logits = torch.randn(3, 3, 4, 4) * 3
    logits.requires_grad_(True)
    valid = torch.ones(2, 4, 4, dtype=torch.bool)
    valid[0, :, :1] = False  # padding of a crop: one column of the first unlabeled image
    target = SemiSupervisedTarget(torch.zeros(1, 4, 4, dtype=torch.long), unlabeled_valid=valid)
    loss_fn = PseudoLabelLoss(0.5, alpha=1.0, supervised_loss=lambda p, y: p.sum() * 0.0)
    value = loss_fn(logits, target)
    unlabeled = logits.detach()[1:]
    confidence, labels = unlabeled.softmax(1).max(1)
    used = (confidence >= 0.5) & valid
    per_pixel = F.cross_entropy(unlabeled, labels, reduction="none")
    assert torch.allclose(value, (per_pixel * used).sum() / valid.sum())
    value.backward()
    assert logits.grad[1].movedim(0, -1)[~valid[0]].eq(0).all()
    # padded pixels may hold anything, NaN included
    poisoned = logits.detach().clone()
    poisoned[1, :, :, 0] = float("nan")
    assert torch.allclose(loss_fn(poisoned, target), value)
    assert loss_fn.components["pseudo_non_finite_inputs"].item() == 0  # padding is not a corrupt sample


# ----------------------------------------------------------------------------------------------- views
def test_weak_and_strong_views_share_the_geometry_and_masks_follow_it():
    torch.manual_seed(0)
    truth = torch.randint(0, 3, (5, 12, 12), dtype=torch.uint8)
    images = (truth * 60 + 40).unsqueeze(1)  # every pixel > 0, its value encodes its class
    geometric = v2.Compose([v2.RandomAffine(degrees=0, translate=(0.3, 0.3)), v2.RandomHorizontalFlip()])
    views = DenseWeakStrongViews(images, geometric, lambda image: 255 - image, held_back_targets=truth)
    moved = 0
    for i in range(len(views)):
        weak, strong, valid, index, held_back = views[i]
        assert index == i and valid.dtype == torch.bool and valid.shape == (12, 12)
        assert torch.equal(strong, 255 - weak)  # same pixels at the same places
        assert torch.equal(valid, weak[0] > 0)  # exactly the padded pixels are invalid
        assert torch.equal(held_back[valid], ((weak[0][valid] - 40) // 60).to(held_back.dtype))
        assert held_back[~valid].eq(IGNORE).all()
        moved += int((~valid).sum() > 0)
    assert moved > 0  # the geometry did move pixels
    plain = DenseWeakStrongViews(images, None, v2.ColorJitter(0.5), v2.ToDtype(torch.float32, scale=True))[0]
    assert plain.valid.all() and plain.held_back_targets.numel() == 0 and plain.weak.dtype == torch.float32


def test_dense_views_argument_validation():
    images = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    with pytest.raises(TypeError, match="Argument photometric should be a callable"):
        DenseWeakStrongViews(images, None, 3)
    with pytest.raises(ValueError, match=r"Argument held_back_targets should hold one label map per image \(2"):
        DenseWeakStrongViews(images, None, lambda x: x, held_back_targets=torch.zeros(3, 4, 4))
    with pytest.raises(TypeError, match="inputs-only"):
        DenseWeakStrongViews([(images[0], 1)], None, lambda x: x)[0]


# ---------------------------------------------------------------------------------------------- CutMix
def test_cutmix_boxes_sizes_probability_and_determinism():
    boxes = cutmix_boxes(400, (20, 30), p=0.5, area=(0.1, 0.3), ratio=0.5, generator=torch.Generator().manual_seed(0))
    area = boxes.flatten(1).float().mean(1)
    mixed = area > 0
    assert 0.4 < mixed.float().mean() < 0.6
    assert area[mixed].min() > 0.07 and area[mixed].max() < 0.35  # rounding of the sides only
    rows, cols = boxes.any(2).sum(1)[mixed], boxes.any(1).sum(1)[mixed]
    assert torch.equal(rows * cols, boxes.flatten(1).sum(1)[mixed])  # one rectangle each
    again = cutmix_boxes(400, (20, 30), p=0.5, area=(0.1, 0.3), ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(boxes, again)
    assert not cutmix_boxes(8, (5, 5), p=0.0).any()
    with pytest.raises(ValueError, match=r"Argument p should be a finite number in \[0, 1\], but given 1.5"):
        cutmix_boxes(2, (4, 4), p=1.5)
    with pytest.raises(ValueError, match="Argument area should be"):
        cutmix_boxes(2, (4, 4), area=(0.5, 0.1))
    with pytest.raises(ValueError, match="Expected boxes of shape"):
        cutmix(torch.zeros(2, 1, 4, 4), torch.zeros(2, 4, 5, dtype=torch.bool))


def _dense_batch(n_unlabeled=6, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, 3, (n_unlabeled, size, size), generator=g)
    weak = truth.float().unsqueeze(1) / 2 + 0.15 * torch.randn(n_unlabeled, 1, size, size, generator=g)
    valid = torch.rand(n_unlabeled, size, size, generator=g) > 0.2
    views = DenseViews(weak, weak.clone(), valid, torch.arange(n_unlabeled), torch.where(valid, truth, IGNORE))
    labeled = (torch.rand(2, 1, size, size, generator=g), torch.randint(0, 3, (2, size, size), generator=g))
    return SemiSupervisedBatch(labeled, unlabeled=views), truth


def test_cutmix_mixes_images_pseudo_labels_valid_and_held_back_masks_alike():
    batch, _ = _dense_batch()
    teacher = PixelModel()
    loss_fn = PseudoLabelLoss(0.9, alpha=1.0, teacher=teacher)
    prepare = DensePrepareBatch(loss_fn, cutmix={"p": 1.0}, generator=torch.Generator().manual_seed(1))
    x, target = prepare(batch)
    student = x[2:]
    assert not torch.equal(student, batch.unlabeled.strong)  # mixed
    # the teacher's logits were mixed exactly as the student's inputs: the pseudo-labels sit on their pixels
    assert torch.allclose(target.teacher_logits, teacher(student), atol=1e-5)
    # valid and held-back maps went through the same boxes: compare with mixing the originals by those boxes
    moved = (student != batch.unlabeled.strong).any(1)  # inside a box (where the partner's pixel differs)
    partner = torch.roll(torch.arange(6), -1)
    assert torch.equal(target.unlabeled_valid[moved], batch.unlabeled.valid[partner][moved])
    assert torch.equal(target.held_back_targets[moved], batch.unlabeled.held_back_targets[partner][moved])
    assert torch.equal(target.unlabeled_valid[~moved], batch.unlabeled.valid[~moved])
    assert torch.equal(x[:2], batch.labeled[0])  # the labeled rows are never mixed


def test_online_cutmix_of_two_views_in_one_pass_needs_no_teacher():
    """UniMatch's online CutMix: the strong rows are mixed in prepare_batch, the weak rows' predictions in the
    loss (the boxes travel in the target), so each pseudo-label sits on the pixel it describes.
    (Until 0.3 this combination raised ValueError: CutMix needed a teacher.)"""
    batch, _ = _dense_batch()
    model = PixelModel()
    prepare = DensePrepareBatch(PseudoLabelLoss(alpha=1.0), cutmix={"p": 1.0},
                                generator=torch.Generator().manual_seed(1))
    x, target = prepare(batch)
    assert x.shape[0] == 2 + 12 and target.num_views == 2 and target.mix is not None
    weak, student = x[2:8], x[8:]
    assert torch.equal(weak, batch.unlabeled.weak)  # the weak rows go through the model unmixed
    assert not torch.equal(student, batch.unlabeled.strong)
    # the loss mixes the weak predictions with the same boxes: a per-pixel model gives the student's logits
    assert torch.allclose(target.mix(model(weak)), model(student), atol=1e-5)
    moved = (student != batch.unlabeled.strong).any(1)
    partner = torch.roll(torch.arange(6), -1)
    assert torch.equal(target.unlabeled_valid[moved], batch.unlabeled.valid[partner][moved])
    x, target = DensePrepareBatch(PseudoLabelLoss(alpha=1.0))(batch)  # without CutMix: weak + strong rows
    assert x.shape[0] == 2 + 12 and target.num_views == 2 and target.unlabeled_valid.shape == (6, 8, 8)
    plain = SemiSupervisedBatch(batch.labeled, unlabeled=batch.unlabeled.weak)  # Lee: the rows are their own source
    with pytest.raises(ValueError, match="needs pseudo-labels computed apart from them"):
        prepare(plain)


def test_prepare_batch_argument_validation_and_labeled_only_batches():
    loss_fn = PseudoLabelLoss(alpha=0.0)
    with pytest.raises(TypeError, match="Argument loss should be a PseudoLabelLoss"):
        DensePrepareBatch(object())
    with pytest.raises(TypeError, match="Argument cutmix should be a dict"):
        DensePrepareBatch(loss_fn, cutmix=0.5)
    with pytest.raises(ValueError, match="Argument p should be"):
        DensePrepareBatch(loss_fn, cutmix={"p": -1.0})
    batch, _ = _dense_batch()
    x, target = DensePrepareBatch(loss_fn, cutmix=True)(batch)  # alpha 0: the unlabeled part is left out
    assert x.shape[0] == 2 and target.unlabeled_valid is None


# ------------------------------------------------------------------------------ per-pixel rate and accuracy
def test_per_pixel_mask_rate_and_pseudo_accuracy_against_held_back_maps():
    batch, truth = _dense_batch(seed=3)
    teacher = PixelModel()
    loss_fn = PseudoLabelLoss(0.9, alpha=1.0, teacher=teacher)
    x, target = DensePrepareBatch(loss_fn)(batch)
    loss_fn(teacher(x), target)
    confidence, labels = teacher(batch.unlabeled.weak).softmax(1).max(1)
    used = (confidence >= 0.9) & batch.unlabeled.valid
    # per valid pixel (as UniMatch; issue #22: it was divided by all pixels, padding included, against the docs)
    assert torch.allclose(loss_fn.components["pseudo_mask_rate"], used.sum() / batch.unlabeled.valid.sum())
    assert loss_fn.components["pseudo_mask_rate"] > used.float().mean()
    expected = ((labels == truth) & used).sum() / used.sum()
    assert 0.5 < expected < 1.0  # some pseudo-labels are wrong: the test can fail
    assert torch.allclose(loss_fn.components["pseudo_accuracy"], expected)


# ---------------------------------------------------------------------------------- class-wise thresholds
def test_freematch_thresholds_per_pixel_see_only_valid_pixels():
    batch, _ = _dense_batch(seed=4)
    teacher = PixelModel()
    dense_loss = PseudoLabelLoss(FreeMatchThreshold(3, momentum=0.5), alpha=1.0, teacher=teacher)
    x, target = DensePrepareBatch(dense_loss)(batch)
    dense_loss(teacher(x), target)
    # the same policy on the valid pixels as (M, C) rows
    rows = teacher(batch.unlabeled.weak).movedim(1, -1)[batch.unlabeled.valid]
    reference = FreeMatchThreshold(3, momentum=0.5)
    reference(rows.softmax(1), torch.ones(rows.shape[0], dtype=torch.bool))
    assert torch.allclose(dense_loss.policy.class_thresholds, reference.class_thresholds)
    assert not torch.allclose(reference.class_thresholds, reference.class_thresholds[0])  # class-wise


def test_flexmatch_is_per_sample_only():
    batch, _ = _dense_batch()
    loss_fn = PseudoLabelLoss(FlexMatchThreshold(num_classes=3, num_unlabeled=6), alpha=1.0, teacher=PixelModel())
    x, target = DensePrepareBatch(loss_fn)(batch)
    with pytest.raises(ValueError, match=r"works on \(N, C\) predictions only, one per sample"):
        loss_fn(PixelModel()(x), target)


# ------------------------------------------------------------------------------------------ label maps
def test_label_map_encoding():
    logits = torch.tensor([[[[5.0, 0.0, float("nan")]], [[0.0, 0.1, 0.0]]]])
    maps, confidence = encode_label_maps(logits, threshold=0.9)
    assert maps.dtype == torch.uint8 and maps.tolist() == [[[0, IGNORE, IGNORE]]]
    assert confidence.tolist() == [0.0]  # a non-finite pixel: the image is never mined
    labels, valid = decode_label_maps(maps)
    assert labels.dtype == torch.int64 and labels.tolist() == [[[0, 0, 0]]] and valid.tolist() == [[[True, False,
                                                                                                      False]]]
    assert encode_label_maps(torch.zeros(1, 300, 2, 2), ignore_index=300)[0].dtype == torch.int32
    with pytest.raises(ValueError, match=r"Argument ignore_index should not be a class \(>= 2\), but given 1"):
        encode_label_maps(torch.zeros(1, 2, 2, 2), ignore_index=1)
    with pytest.raises(ValueError, match="Expected dense logits"):
        encode_label_maps(torch.zeros(3, 2))


def test_miner_mines_label_maps_and_the_loss_uses_them():
    torch.manual_seed(0)
    truth = torch.randint(0, 3, (6, 5, 5))
    images = truth.float().unsqueeze(1) / 2 + 0.2 * torch.randn(6, 1, 5, 5)
    images[4] = 0.25  # halfway between classes 0 and 1 everywhere: no confident pixel
    miner = PseudoLabelMiner(PixelModel(), images, threshold=0.9, held_back_targets=truth, batch_size=4)
    pseudo = miner.run()
    assert 4 not in miner.indices.tolist() and len(pseudo) == 5
    maps = miner.labels
    assert maps.dtype == torch.uint8 and maps.shape == (5, 5, 5)
    labelled = maps != IGNORE
    assert 0 < labelled.float().mean() < 1
    by_hand = ((maps.long() == truth[miner.indices]) & labelled).sum() / labelled.sum()
    assert 0.5 < by_hand < 1 and miner.accuracy == pytest.approx(float(by_hand))
    assert miner.class_counts.sum() == labelled.sum() and miner.class_counts.shape == (3,)
    image, label_map = pseudo[0]
    assert torch.equal(image, images[miner.indices[0]]) and torch.equal(label_map, maps[0])
    # round trip through the state
    other = PseudoLabelMiner(PixelModel(), images, threshold=0.9)
    other.load_state_dict(miner.state_dict())
    assert torch.equal(other.labels, maps) and torch.equal(other.dataset[2][1], pseudo[2][1])
    # k_best: the images of highest mean pixel confidence
    best = PseudoLabelMiner(PixelModel(), images, threshold=0.9, k_best=2)
    best.run()
    _, confidence = encode_label_maps(PixelModel()(images), 0.9)
    assert best.indices.tolist() == sorted(torch.argsort(confidence, descending=True)[:2].tolist())
    with pytest.raises(ValueError, match="do not apply to dense"):
        PseudoLabelMiner(PixelModel(), images, threshold=0.9, max_per_class=2).run()
    # the loss trains on the confident pixels only, averaged over them
    batch = next(iter(SemiSupervisedLoader([(images[:1], truth[:1])], pseudo=pseudo,
                                           loader_fn=lambda d: DataLoader(d, batch_size=5))))
    loss_fn = PseudoLabelLoss(alpha=1.0, supervised_loss=lambda p, y: p.sum() * 0.0)
    x, target = DensePrepareBatch(loss_fn)(batch)
    assert target.pseudo_labels.dtype == torch.int64 and target.unlabeled_valid.sum() == labelled.sum()
    logits = torch.randn(x.shape[0], 3, 5, 5)
    value = loss_fn(logits, target)
    per_pixel = F.cross_entropy(logits[1:], target.pseudo_labels, reduction="none")
    assert torch.allclose(value, per_pixel[target.unlabeled_valid].mean())


# --------------------------------------------------------------------------------------- on the trainer
def test_stock_trainer_runs_the_dense_recipe():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (12, 1, 8, 8), dtype=torch.uint8)
    masks = torch.randint(0, 3, (12, 8, 8))
    masks[:, 0] = IGNORE
    model = nn.Conv2d(1, 3, 3, padding=1)
    teacher = nn.Conv2d(1, 3, 3, padding=1)
    loss_fn = PseudoLabelLoss(0.34, alpha=1.0, teacher=teacher,
                              supervised_loss=nn.CrossEntropyLoss(ignore_index=IGNORE))
    views = DenseWeakStrongViews(images, v2.RandomCrop(8, padding=2), v2.ColorJitter(0.5),
                                 v2.ToDtype(torch.float32, scale=True), held_back_targets=masks)
    labeled = [(images[:4].float() / 255, masks[:4])]
    data = SemiSupervisedLoader(labeled, unlabeled=DataLoader(views, batch_size=4, shuffle=True))
    trainer = create_supervised_trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), loss_fn,
                                        prepare_batch=DensePrepareBatch(loss_fn, cutmix=True))
    loss_fn.attach(trainer)
    trainer.run(data, max_epochs=3)
    assert 0 < trainer.state.pseudo_mask_rate.item() <= 1  # per valid pixel: every one passes 0.34 > 1 / 3
    assert 0 <= trainer.state.pseudo_accuracy.item() <= 1
    assert torch.isfinite(torch.tensor(trainer.state.output))


def test_online_cutmix_loss_by_hand_on_a_tiny_tensor():
    import functools
    import math

    # two unlabeled 1x2 images, two classes; box: pixel 1 of sample 0 and pixel 0 of sample 1 come from the partner
    weak = torch.tensor([[[2.0, 0.0]], [[0.0, 2.0]]]).unsqueeze(0)  # (1, C, 1, 2): sample 0
    weak = torch.cat([weak, torch.tensor([[[0.0, 0.1]], [[3.0, 0.0]]]).unsqueeze(0)])  # sample 1
    student = torch.zeros(2, 2, 1, 2, requires_grad=True)
    labeled = torch.zeros(1, 2, 1, 2)
    boxes = torch.tensor([[[False, True]], [[True, False]]])
    target = SemiSupervisedTarget(torch.zeros(1, 1, 2, dtype=torch.long), num_views=2,
                                  mix=functools.partial(cutmix, boxes=boxes))
    loss_fn = PseudoLabelLoss(0.6, alpha=1.0)
    value = loss_fn(torch.cat([labeled, weak, student]), target)
    # mixed sources: sample 0 = [2, 0] | [0.1, 0] (partner's), sample 1 = [2, 0] (partner's) | [0.1, 0]
    # labels 0 everywhere; confident (0.88 >= 0.6) at pixel 0 only; the student's zeros give ln 2 there
    assert loss_fn.components["pseudo_loss"].item() == pytest.approx(2 * math.log(2) / 4)
    assert loss_fn.components["pseudo_mask_rate"].item() == pytest.approx(0.5)
    assert value.item() == pytest.approx(math.log(2) + 2 * math.log(2) / 4)
    unmixed = PseudoLabelLoss(0.6, alpha=1.0)
    unmixed(torch.cat([labeled, weak, student]), target._replace(mix=None))  # 3 confident pixels of 4
    assert unmixed.components["pseudo_loss"].item() == pytest.approx(3 * math.log(2) / 4)

"""The miner's selection strategies: whole samples by class, label maps, and the choice between them."""

import math

import pytest
import torch

from ignite_pseudolabel import mining
from ignite_pseudolabel.label_maps import encode_label_maps
from ignite_pseudolabel.selection import AutoSelection, ClassSelection, DenseSelection, select_pseudo_labels

IGNORE = 255


def class_logits():
    """Five predictions of three classes: confidences about 0.98, 0.58, 0.99, 0.9999, NaN."""
    return torch.tensor([[5.0, 1.0, 0.0], [0.0, 1.0, 0.7], [0.0, 0.0, 5.3], [10.0, 0.0, 0.0], [math.nan, 0.0, 0.0]])


def dense_logits():
    """Three images of 1 x 2 pixels, two classes: confident / one confident pixel / none."""
    return torch.tensor([
        [[[6.0, 5.0]], [[0.0, 0.0]]],
        [[[0.0, 0.1]], [[4.0, 0.0]]],
        [[[0.1, 0.0]], [[0.0, 0.1]]],
    ])


def test_select_pseudo_labels_is_still_importable_from_mining():
    assert mining.select_pseudo_labels is select_pseudo_labels


def test_class_selection_encodes_selects_counts_and_measures():
    selection = ClassSelection(0.95)
    labels, confidences = selection.encode(class_logits())
    assert labels.tolist()[:4] == [0, 1, 2, 0] and confidences[4] == 0  # NaN logits: confidence 0
    keep = selection.select(labels, confidences)
    assert keep.tolist() == [0, 2, 3]
    assert selection.class_counts(labels[keep], num_classes=4).tolist() == [2, 0, 1, 0]
    assert selection.accuracy(labels[keep], torch.tensor([0, 2, 1]), num_classes=3) == pytest.approx(2 / 3)
    assert selection.criteria == {"threshold": 0.95, "max_per_class": None, "k_best": None, "class_fraction": None}


def test_class_selection_applies_every_criterion_and_the_candidates():
    labels, confidences = ClassSelection().encode(class_logits())
    assert ClassSelection(0.9, max_per_class=1).select(labels, confidences).tolist() == [2, 3]
    assert ClassSelection(k_best=2).select(labels, confidences).tolist() == [2, 3]
    assert ClassSelection(class_fraction=0.5).select(labels, confidences).tolist() == [1, 2, 3]
    candidates = torch.tensor([True, True, True, False, True])
    assert ClassSelection(0.9).select(labels, confidences, candidates).tolist() == [0, 2]
    # the strategy is select_pseudo_labels with its criteria
    assert torch.equal(ClassSelection(0.5, k_best=3).select(labels, confidences),
                       select_pseudo_labels(confidences, labels, 0.5, k_best=3))


def test_dense_selection_thresholds_pixels_and_accepts_images_with_a_labelled_pixel():
    selection = DenseSelection(0.9)
    maps, confidences = selection.encode(dense_logits())
    assert maps.dtype == torch.uint8
    assert maps.tolist() == [[[0, 0]], [[1, IGNORE]]] + [[[IGNORE, IGNORE]]]
    assert torch.equal(confidences, encode_label_maps(dense_logits(), 0.9)[1])
    keep = selection.select(maps, confidences)
    assert keep.tolist() == [0, 1]
    assert selection.class_counts(maps[keep], num_classes=3).tolist() == [2, 1, 0]  # pixels, not images
    truth = torch.tensor([[[0, 1]], [[1, 0]]])
    assert selection.accuracy(maps[keep], truth, num_classes=2) == pytest.approx(2 / 3)  # 2 of 3 labelled pixels
    # pixels whose true value is not a class are not counted
    assert selection.accuracy(maps[keep], torch.tensor([[[0, 7]], [[1, 0]]]), num_classes=2) == 1.0


def test_dense_selection_k_best_and_candidates_choose_whole_images():
    maps, confidences = DenseSelection(0.5).encode(dense_logits())
    assert DenseSelection(0.5, k_best=1).select(maps, confidences).tolist() == [0]
    assert DenseSelection(0.5).select(maps, confidences, torch.tensor([False, True, True])).tolist() == [1, 2]
    maps, confidences = DenseSelection(0.9).encode(dense_logits())
    assert DenseSelection(0.9).select(maps, confidences, torch.tensor([False, True, True])).tolist() == [1]


def test_auto_selection_is_chosen_once_by_the_first_logits():
    auto = AutoSelection(ClassSelection(0.9))
    assert auto.strategy is None
    assert auto.class_counts(torch.empty(0, dtype=torch.int64), 3).tolist() == [0, 0, 0]  # classes until then
    maps, _ = auto.encode(dense_logits())
    assert isinstance(auto.strategy, DenseSelection) and maps.ndim == 3
    chosen = auto.strategy
    with pytest.raises(ValueError, match="Expected dense logits"):  # the choice holds
        auto.encode(class_logits())
    assert auto.strategy is chosen
    classes = AutoSelection(ClassSelection(0.9, k_best=2))
    labels, confidences = classes.encode(class_logits())
    assert classes.strategy is classes.classes and classes.select(labels, confidences).tolist() == [2, 3]


def test_auto_selection_restored_label_maps_choose_the_dense_strategy():
    auto = AutoSelection(ClassSelection(0.9), ignore_index=7)
    auto.restore(torch.tensor([1, 0]))  # labels of whole samples tell nothing yet
    assert auto.strategy is None
    auto.restore(torch.zeros(2, 3, 3, dtype=torch.uint8))
    assert isinstance(auto.strategy, DenseSelection) and auto.strategy.ignore_index == 7


def test_auto_selection_refuses_class_criteria_for_label_maps():
    auto = AutoSelection(ClassSelection(0.9, max_per_class=2))
    with pytest.raises(ValueError, match="do not apply to dense"):
        auto.encode(dense_logits())
    assert auto.strategy is None


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: ClassSelection(1.5), ValueError, r"threshold should be a finite number in \[0, 1\], but given 1.5"),
        (lambda: ClassSelection(max_per_class=0), ValueError, "max_per_class should be an integer >= 1, but given 0"),
        (lambda: ClassSelection(k_best=2.5), TypeError, "k_best should be an integer"),
        (lambda: ClassSelection(class_fraction=0), ValueError, r"class_fraction should be a finite number in \(0, 1\]"),
        (lambda: DenseSelection(-0.1), ValueError, "threshold should be a finite number"),
        (lambda: DenseSelection(0.9, k_best=0), ValueError, "k_best should be an integer >= 1"),
        (lambda: DenseSelection(0.9, ignore_index=-1), ValueError, "ignore_index should be an integer >= 0"),
        (lambda: AutoSelection(ClassSelection(max_per_class=3)), ValueError,
         "At least one of the arguments threshold, k_best or class_fraction"),
        (lambda: AutoSelection(0.9), TypeError, "classes should be a ClassSelection, but given float"),
        (lambda: AutoSelection(ClassSelection(0.9), ignore_index="x"), TypeError, "ignore_index should be an integer"),
    ],
)
def test_argument_validation(make, error, match):
    with pytest.raises(error, match=match):
        make()

"""The matching rules of ``batchlabel report`` on hand-made masks: thresholds, ties, one final object overlapping two
predictions, box-only objects, and the per-label tallies they feed."""

from __future__ import annotations

import numpy as np
import pytest

from batchlabel.formats.coco_rle import mask_to_coco_rle
from batchlabel.report.matching import RegionObject, iou_matrix, match_task
from batchlabel.report.metrics import Scope

SIZE = (40, 40)


def rect_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """(H, W) bool mask of the pixel rectangle [x1, x2) x [y1, y2) on a 40 x 40 image."""
    mask = np.zeros(SIZE, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def masked(label: str, mask: np.ndarray) -> RegionObject:
    ys, xs = np.nonzero(mask)
    box = (float(xs.min()), float(ys.min()), float(xs.max() + 1 - xs.min()), float(ys.max() + 1 - ys.min()))
    return RegionObject(label, mask_to_coco_rle(mask), box)


def boxed(label: str, x1: float, y1: float, x2: float, y2: float) -> RegionObject:
    return RegionObject(label, None, (x1, y1, x2 - x1, y2 - y1))


BASE = rect_mask(0, 0, 20, 20)  # 400 px


@pytest.mark.parametrize(
    ("final_mask", "final_label", "outcome", "iou"),
    [
        (BASE, "cat", "accepted", 1.0),
        (rect_mask(0, 0, 20, 19), "cat", "accepted", 380 / 400),  # exactly 0.95: accepted
        (rect_mask(0, 0, 20, 18), "cat", "edited", 360 / 400),
        (rect_mask(0, 0, 20, 10), "cat", "edited", 0.5),  # exactly 0.5: still matched
        (rect_mask(0, 0, 20, 9), "cat", "deleted", 0.0),  # 0.45: not matched
        (BASE, "person", "relabeled", 1.0),
        (rect_mask(0, 0, 20, 12), "person", "relabeled", 240 / 400),
    ],
)
def test_one_prediction_one_final_object(final_mask: np.ndarray, final_label: str, outcome: str, iou: float) -> None:
    match = match_task([masked("cat", BASE)], [masked(final_label, final_mask)])
    (result,) = match.predictions
    assert (result.outcome, result.label) == (outcome, "cat")
    assert result.iou == pytest.approx(iou)
    assert match.added == (() if outcome != "deleted" else (final_label,))


def test_a_final_object_overlapping_two_predictions_is_matched_once() -> None:
    whole = rect_mask(0, 0, 20, 20)
    left = rect_mask(0, 0, 12, 20)  # IoU 0.6 with the whole
    right = rect_mask(10, 0, 20, 20)  # IoU 0.5 with the whole
    match = match_task([masked("cat", right), masked("cat", left)], [masked("cat", whole)])
    assert [(p.outcome, round(p.iou, 3), p.final_index) for p in match.predictions] == [
        ("deleted", 0.0, None), ("edited", 0.6, 0)
    ]
    assert match.added == ()


def test_ties_go_to_the_same_label_then_to_the_earlier_prediction() -> None:
    final = masked("cat", BASE)
    same_mask_other_label = masked("person", BASE)
    match = match_task([same_mask_other_label, masked("cat", BASE)], [final])
    assert [p.outcome for p in match.predictions] == ["deleted", "accepted"]  # same label wins the tie
    match = match_task([masked("cat", BASE), masked("cat", BASE)], [final])
    assert [p.outcome for p in match.predictions] == ["accepted", "deleted"]  # then the earlier prediction


def test_each_prediction_takes_the_final_object_it_overlaps_most_whatever_its_label() -> None:
    prediction = masked("cat", BASE)
    weaker_same_label = masked("cat", rect_mask(0, 0, 20, 11))  # IoU 0.55
    stronger_other_label = masked("dog", rect_mask(0, 0, 20, 19))  # IoU 0.95
    match = match_task([prediction], [weaker_same_label, stronger_other_label])
    assert [(p.outcome, p.final_label) for p in match.predictions] == [("relabeled", "dog")]
    assert match.added == ("cat",)


def test_box_only_objects_use_box_iou() -> None:
    prediction_mask = rect_mask(0, 0, 20, 20)
    matrix = iou_matrix([masked("cat", prediction_mask), boxed("cat", 0, 0, 20, 20)],
                        [boxed("cat", 0, 0, 20, 10), masked("cat", rect_mask(0, 0, 20, 20) & ~rect_mask(5, 5, 15, 15))])
    # mask vs box: the mask's bbox; box vs mask: the mask's bbox (box IoU 1.0 despite the hole); mask vs mask: exact
    assert matrix == pytest.approx(np.array([[0.5, 300 / 400], [0.5, 1.0]]))
    match = match_task([boxed("cat", 0, 0, 20, 20), boxed("person", 30, 30, 40, 40)],
                       [boxed("cat", 0, 0, 20, 19.5), boxed("cat", 25, 25, 30, 30)])
    assert [(p.outcome, round(p.iou, 4)) for p in match.predictions] == [("accepted", 0.975), ("deleted", 0.0)]
    (edited,) = match_task([boxed("cat", 0, 0, 20, 20)], [boxed("cat", 1, 1, 20, 20)]).predictions
    assert (edited.outcome, round(edited.iou, 4)) == ("edited", 0.9025)
    assert match.added == ("cat",)


def test_no_predictions_or_no_final_objects() -> None:
    assert match_task([], [masked("cat", BASE)]).added == ("cat",)
    (deleted,) = match_task([masked("cat", BASE)], []).predictions
    assert (deleted.outcome, deleted.iou) == ("deleted", 0.0)


def test_scope_tallies_counts_and_mean_iou_with_deleted_as_zero() -> None:
    scope = Scope()
    predicted = [masked("cat", BASE), masked("cat", rect_mask(25, 25, 35, 35)), masked("person", BASE)]
    final = [masked("cat", rect_mask(0, 0, 20, 18)), masked("person", rect_mask(22, 0, 30, 8))]
    scope.add_predicted(predicted, reviewed=True)
    scope.add_predicted([masked("cat", BASE)], reviewed=False)
    scope.add_match(match_task(predicted, final))
    labels = scope.to_json(requests_known=False)["labels"]
    # the final cat (IoU 0.9 with both the cat and the person prediction) goes to the same-label cat prediction
    assert {k: labels["cat"][k] for k in ("predicted", "reviewed", "accepted", "edited", "relabeled", "deleted",
                                          "added")} == {"predicted": 3, "reviewed": 2, "accepted": 0, "edited": 1,
                                                        "relabeled": 0, "deleted": 1, "added": 0}
    assert labels["cat"]["mean_iou"] == pytest.approx((0.9 + 0.0) / 2)
    assert (labels["person"]["deleted"], labels["person"]["added"], labels["person"]["mean_iou"]) == (1, 1, 0.0)
    assert sum(scope.to_json(requests_known=False)["iou_histogram"]["counts"]) == 3

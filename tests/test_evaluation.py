"""MEGC 2020 evaluation (SPEC 8) on hand-computed cases."""

from __future__ import annotations

import json

import pytest

from spotnet import EvalInterval as I
from spotnet import SpotnetError, evaluate, iou, match_video, read_intervals_csv, write_intervals_csv
from spotnet.evaluation import average_precision


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 4), (4, 8), 1 / 9),  # touching: one shared frame, 5 + 5 - 1 = 9 in the union
        ((0, 4), (5, 8), 0.0),  # adjacent, no shared frame
        ((0, 4), (0, 4), 1.0),
        ((2, 3), (0, 9), 2 / 10),  # nested
        ((0, 0), (0, 0), 1.0),  # single frames
        ((0, 3), (0, 1), 0.5),
    ],
)
def test_iou(a, b, expected):
    # Exact: both sides are the same ratio of small integers computed in one division.
    assert iou(a, b) == expected
    assert iou(b, a) == expected


def test_iou_of_exactly_half_is_a_tp_and_below_is_not():
    assert match_video([(0, 3)], [(0, 1)]) == [True]  # IoU 2/4
    assert match_video([(0, 4)], [(0, 1)]) == [False]  # IoU 2/5


def test_two_predictions_on_one_gt():
    r = evaluate([I("v", 10, 19, "macro", 0.9), I("v", 11, 20, "macro", 0.8)], [I("v", 10, 19, "macro")])
    m = r.macro
    assert (m.tp, m.fp, m.fn) == (1, 1, 0)
    assert (m.precision, m.recall) == (0.5, 1.0)
    assert m.f1 == pytest.approx(2 / 3, rel=1e-15)  # 2PR/(P+R) in float64


def test_no_fallback_to_second_best_gt():
    # Second prediction's best GT (A, IoU 9/11) is taken; B would give 3/17 anyway, and the
    # rule never falls back: FP.
    assert match_video([(0, 9), (1, 10)], [(0, 9), (8, 17)]) == [True, False]


def test_counts_use_temporal_order():
    # Given out of order: (10, 19) comes first in time and takes the GT, (11, 20) is the FP.
    flags = match_video([(10, 19), (11, 20)], [(10, 19)])
    assert flags == [True, False]
    r = evaluate([I("v", 11, 20, "micro", 0.9), I("v", 10, 19, "micro", 0.1)], [I("v", 10, 19, "micro")])
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (1, 1, 0)


def test_no_predictions():
    r = evaluate([], [I("a", 0, 9, "macro"), I("b", 5, 9, "macro")])
    m = r.macro
    assert (m.tp, m.fp, m.fn, m.precision, m.recall, m.f1, m.ap50_95) == (0, 0, 2, 0.0, 0.0, 0.0, 0.0)


def test_video_without_ground_truth_is_all_fp():
    r = evaluate([I("a", 0, 9, "macro", 0.5), I("b", 0, 9, "macro", 0.4)], [I("a", 0, 9, "macro")])
    assert (r.macro.tp, r.macro.fp, r.macro.fn) == (1, 1, 0)


def test_nothing_at_all():
    r = evaluate([], [])
    assert r.overall.tp == r.overall.fp == r.overall.fn == 0
    assert r.overall.f1 == 0.0 and r.overall.ap50_95 == 0.0


def test_types_are_separate_and_overall_pools():
    pred = [I("v", 0, 9, "macro", 0.9), I("v", 30, 39, "macro", 0.8), I("v", 50, 52, "micro", 0.7)]
    gt = [I("v", 0, 9, "macro"), I("v", 50, 52, "macro"), I("v", 70, 72, "micro")]
    r = evaluate(pred, gt)
    assert (r.macro.tp, r.macro.fp, r.macro.fn) == (1, 1, 1)  # the micro guess does not hit macro GT
    assert (r.micro.tp, r.micro.fp, r.micro.fn) == (0, 1, 1)
    o = r.overall
    assert (o.tp, o.fp, o.fn) == (1, 2, 2)
    assert o.precision == 1 / 3 and o.recall == 1 / 3
    assert o.f1 == pytest.approx(1 / 3, rel=1e-15)  # float64 rounding of 2PR/(P+R)


def test_ap_hand_computed():
    # Ranked TP (0.9), FP (0.8), TP (0.7) with 2 GT at every threshold (IoUs are 1 or 0):
    # P = 1, 1/2, 2/3; R = 1/2, 1/2, 1. Envelope 1, 2/3, 2/3 -> AP = .5 * 1 + .5 * 2/3 = 5/6.
    pred = [I("v", 0, 9, "macro", 0.9), I("v", 50, 59, "macro", 0.8), I("v", 20, 29, "macro", 0.7)]
    gt = [I("v", 0, 9, "macro"), I("v", 20, 29, "macro")]
    assert evaluate(pred, gt).macro.ap50_95 == pytest.approx(5 / 6, rel=1e-12)  # float64 sums


def test_ap_threshold_sweep_counts_equality():
    # IoU((0, 2), (0, 3)) = 3/4 exactly: a TP for thresholds .50 .. .75 (six of ten), so AP = 0.6.
    r = evaluate([I("v", 0, 2, "micro", 1.0)], [I("v", 0, 3, "micro")])
    assert r.micro.ap50_95 == pytest.approx(0.6, rel=1e-12)  # mean of ten 0/1 values in float64


def test_ap_matches_in_score_order():
    # GT (10, 19). Early (10, 19) scored .2 has IoU 1, late (11, 20) scored .9 has IoU 9/11 = .818.
    # Thresholds .50 .. .80 (7): the .9 one takes the GT first -> ranking TP, FP -> AP 1.
    # Thresholds .85 .. .95 (3): .9 is an FP, .2 a TP -> P = 0, 1/2 at R = 0, 1 -> AP .5.
    # Mean (7 * 1 + 3 * .5) / 10 = .85. The counts still use temporal order (1 TP, 1 FP).
    r = evaluate([I("v", 10, 19, "macro", 0.2), I("v", 11, 20, "macro", 0.9)], [I("v", 10, 19, "macro")])
    assert r.macro.ap50_95 == pytest.approx(0.85, rel=1e-12)  # float64 mean
    assert (r.macro.tp, r.macro.fp) == (1, 1)


def test_average_precision_pools_unmatched_gt():
    # One TP out of 4 GT -> recall step .25 at precision 1.
    assert average_precision([0.5], [True], 4) == 0.25
    assert average_precision([], [], 4) == 0.0
    assert average_precision([0.5], [False], 0) == 0.0


def test_ap_is_none_without_scores():
    r = evaluate([I("v", 0, 9, "macro")], [I("v", 0, 9, "macro")])
    assert r.macro.ap50_95 is None and r.overall.ap50_95 is None
    assert r.micro.ap50_95 == 0.0  # no micro GT and no micro predictions
    assert r.macro.tp == 1


def test_to_dict_and_table():
    r = evaluate([I("v", 0, 9, "macro", 0.9)], [I("v", 0, 9, "macro"), I("w", 0, 2, "micro")])
    d = json.loads(json.dumps(r.to_dict()))
    assert set(d) == {"macro", "micro", "overall"}
    assert set(d["macro"]) == {"tp", "fp", "fn", "precision", "recall", "f1", "ap50_95"}
    lines = r.format_table().splitlines()
    assert lines[0].split() == ["TP", "FP", "FN", "P", "R", "F1", "AP@[.5:.95]"]
    assert lines[2].split() == ["Macro", "1", "0", "0", "1.0000", "1.0000", "1.0000", "1.0000"]
    assert lines[3].split() == ["Micro", "0", "0", "1", "0.0000", "0.0000", "0.0000", "0.0000"]
    assert lines[4].split()[0] == "Overall"


@pytest.mark.parametrize(
    ("pred", "match"),
    [
        (I("v", 5, 4, "macro"), "onset <= offset"),
        (I("v", -1, 4, "macro"), "0 <= onset"),
        (I("v", 0, 4, "meso"), "type should be 'macro' or 'micro'"),
        (I("v", 0, 4, "macro", float("nan")), "score should be finite"),
    ],
)
def test_evaluate_rejects(pred, match):
    with pytest.raises(SpotnetError, match=match):
        evaluate([pred], [])


def test_csv_roundtrip_is_one_based(tmp_path):
    path = tmp_path / "p.csv"
    write_intervals_csv(path, [I("s15/0101", 0, 4, "macro", 0.25), I("v2", 9, 9, "micro")])
    text = path.read_text().splitlines()
    assert text == ["video,onset,offset,type,score", "s15/0101,1,5,macro,0.25", "v2,10,10,micro,"]
    assert read_intervals_csv(path) == [I("s15/0101", 0, 4, "macro", 0.25), I("v2", 9, 9, "micro", None)]


def test_csv_without_score_column_and_extra_columns(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("subject,video,onset,apex,offset,type\ns1,a,3,4,7,Macro\n")
    assert read_intervals_csv(path) == [I("a", 2, 6, "macro")]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("video,onset,type\na,1,macro\n", "missing offset"),
        ("", "no header"),
        ("video,onset,offset,type\na,5,3,macro\n", "onset <= offset.*line 2"),
        ("video,onset,offset,type\na,0,3,macro\n", "1 <= onset"),
        ("video,onset,offset,type\na,x,3,macro\n", "integers"),
        ("video,onset,offset,type\na,1,3,meso\n", "type should be 'macro' or 'micro'"),
        ("video,onset,offset,type,score\na,1,3,micro,high\n", "score should be a number"),
        ("video,onset,offset,type,score\na,1,3,micro,nan\n", "score should be finite"),
    ],
)
def test_csv_rejects(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(SpotnetError, match=match):
        read_intervals_csv(path)


def test_csv_missing_file(tmp_path):
    with pytest.raises(SpotnetError, match="no such file"):
        read_intervals_csv(tmp_path / "absent.csv")


def test_equal_ious_take_the_last_ground_truth():
    """Two ground-truth intervals equally good for a prediction: the released code's matcher
    (``np.argsort(iou)[::-1]``, SOFTNet_Spotting.ipynb's MeanAveragePrecision2d) takes the last.
    Prediction (0, 9) has IoU 0.8 with both (0, 7) and (2, 9); taking the last leaves (0, 7) to
    the second prediction, so both are TPs (taking the first would make the second an FP)."""
    assert iou((0, 9), (0, 7)) == iou((0, 9), (2, 9)) == 0.8
    assert match_video([(0, 9), (0, 7)], [(0, 7), (2, 9)]) == [True, True]
    assert match_video([(0, 9), (0, 7)], [(2, 9), (0, 7)]) == [True, False]
    # zero IoU never matches, whatever the order
    assert match_video([(50, 60)], [(0, 7), (2, 9)]) == [False]


def test_ap_released_ranking_ignores_scores():
    """``ap_ranking="released"``: every interval confidence 0 (as the notebook), so AP follows the
    intervals' order, not their scores. By hand: GT (0, 9) and (40, 49); spotted (0, 9) score
    0.1 (TP at every threshold) and (20, 29) score 0.9 (FP). Ranked by score: precision 0 then
    1/2 at recall 1/2, AP = 0.25. In temporal order: precision 1 at recall 1/2, AP = 0.5."""
    gt = [I("v", 0, 9, "micro"), I("v", 40, 49, "micro")]
    pred = [I("v", 0, 9, "micro", 0.1), I("v", 20, 29, "micro", 0.9)]
    assert evaluate(pred, gt).micro.ap50_95 == pytest.approx(0.25)
    released = evaluate(pred, gt, ap_ranking="released")
    assert released.micro.ap50_95 == pytest.approx(0.5)
    assert (released.micro.tp, released.micro.f1) == (evaluate(pred, gt).micro.tp, evaluate(pred, gt).micro.f1)
    # it needs no scores
    unscored = [I(it.video, it.onset, it.offset, it.type) for it in pred]
    assert evaluate(unscored, gt).micro.ap50_95 is None
    assert evaluate(unscored, gt, ap_ranking="released").micro.ap50_95 == pytest.approx(0.5)
    with pytest.raises(SpotnetError, match="ap_ranking should be one of score, released, got 'coco'"):
        evaluate(pred, gt, ap_ranking="coco")

"""The promotion gate's rule: worse by more than TOLERANCE, false alarms by more than a photo."""

from __future__ import annotations

from pipeline.promote import TOLERANCE, key_metrics, regressions

SERVED = {
    "pothole mask mAP50": 0.400,
    "graffiti box mAP50": 0.476,
    "box mAP50-95 (all)": 0.182,
    "false alarms on negative photos": 3 / 152,
}


def test_a_better_candidate_with_one_more_false_alarm_photo_passes() -> None:
    # v7 against v6 on the frozen split: every mAP up, 4 photos of 152 with a detection vs 3
    cand = dict(SERVED) | {"pothole mask mAP50": 0.423, "false alarms on negative photos": 4 / 152}
    assert regressions(cand, SERVED, negatives=152) == []
    # without the photo count the rate's plain tolerance applies, and one photo exceeds it
    assert regressions(cand, SERVED) == ["false alarms on negative photos: 0.026 vs 0.020 served"]


def test_two_more_false_alarm_photos_or_a_lower_map_refuse() -> None:
    cand = dict(SERVED) | {"false alarms on negative photos": 5 / 152}
    assert regressions(cand, SERVED, negatives=152) == [
        "false alarms on negative photos: 0.033 vs 0.020 served"
    ]
    # on a large negative set a photo is less than TOLERANCE: TOLERANCE rules
    many = dict(SERVED) | {"false alarms on negative photos": 3 / 152 + 2 * TOLERANCE}
    assert regressions(many, SERVED, negatives=10_000) != []
    worse_map = dict(SERVED) | {"graffiti box mAP50": 0.476 - TOLERANCE - 0.001}
    assert regressions(worse_map, SERVED, negatives=152) == [
        "graffiti box mAP50: 0.470 vs 0.476 served"
    ]
    # a metric one side lacks is not compared
    assert regressions({"pothole mask mAP50": 0.1}, {}, negatives=152) == []


def test_key_metrics_reads_an_evaluation_report() -> None:
    report = {
        "all": {
            "box_map50_95": 0.2,
            "false_alarm_rate": 0.05,
            "negative_images": 20,
            "classes": {"pothole": {"mask_map50": 0.5}, "graffiti": {"box_map50": 0.4}},
        }
    }
    assert key_metrics(report) == {
        "pothole mask mAP50": 0.5,
        "graffiti box mAP50": 0.4,
        "box mAP50-95 (all)": 0.2,
        "false alarms on negative photos": 0.05,
    }

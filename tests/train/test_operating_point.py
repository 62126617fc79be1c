"""An image autoencoder's operating point: the balanced threshold, and the shipped casting
autoencoder's calibration measured again on the real casting validation split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import DATA, ROOT
from train.operating_point import balanced_threshold, figures_at, operating_thresholds

CASTING_AE = ROOT / "models" / "weights" / "casting_ae"


def test_the_balanced_threshold_is_the_middle_of_the_best_cuts():
    normal, defects = np.array([0.0, 1.0, 2.0, 3.0]), np.array([4.0, 5.0])
    assert balanced_threshold(normal, defects) == 3.5       # between the classes
    # One false alarm for a defect more is worth it: flagging >= 2.25 catches all three
    # (balanced accuracy 7/8) where >= 3.5 catches two of three with none (5/6)
    assert balanced_threshold(normal, np.array([2.5, 4.0, 5.0])) == 2.25
    # Two cuts equally good (flag both defects and two normal images, or one and none)
    normal, defects = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.5, 5.0])
    t = balanced_threshold(normal, defects)
    assert t in (1.25, 4.0)
    assert figures_at(t, normal, defects)["balanced_accuracy"] == 0.75


def test_the_false_alarm_cap_holds_where_the_best_cut_would_break_it():
    rng = np.random.default_rng(0)
    normal, defects = rng.normal(0, 1, 1000), rng.normal(1.5, 1, 1000)
    free = balanced_threshold(normal, defects)
    assert figures_at(free, normal, defects)["false_alarm_rate"] > 0.1
    capped = balanced_threshold(normal, defects, cap=0.05)
    assert figures_at(capped, normal, defects)["false_alarm_rate"] <= 0.05
    assert capped > free
    with pytest.raises(ValueError, match="false_alarm_cap is a share"):
        balanced_threshold(normal, defects, cap=1.5)
    with pytest.raises(ValueError, match="needs normal and defective values"):
        balanced_threshold(normal, defects[:0])


def test_operating_thresholds_refuse_defects_without_defective_images():
    normal = {"peak": np.arange(10.0)}
    with pytest.raises(ValueError, match="threshold_by defects needs defective images"):
        operating_thresholds("defects", normal, {"peak": np.arange(5.0)}, {}, 0.01, 0.1)
    with pytest.raises(ValueError, match="threshold_by must be one of"):
        operating_thresholds("youden", normal, {}, {}, 0.01, 0.1)


def test_the_shipped_casting_autoencoder_records_its_operating_point():
    meta = json.loads(CASTING_AE.with_suffix(".json").read_text())
    cal, config = meta["calibration"], meta["provenance"]["config"]
    assert cal["operating_point"]["by"] == config["threshold_by"]
    assert cal["selection"]["by"].startswith("real defective") == (config["rule_by"] == "defects")
    rule = cal["rule"]
    at = cal["validation"]["at_threshold"][rule]
    assert cal["validation"]["real_defect_auc"][rule] >= 0.98
    assert at["accuracy"] >= 0.95


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_shipped_casting_autoencoder_meets_its_operating_point_on_validation():
    """``vadstream evaluate --split val`` on the real casting validation split (575 good,
    752 defective parts) at the shipped threshold: the figures the calibration recorded,
    accuracy at least 0.95 and AUC at least 0.98."""
    from train.evaluate_images import evaluate_images

    cal = json.loads(CASTING_AE.with_suffix(".json").read_text())["calibration"]
    result, _ = evaluate_images(CASTING_AE, DATA / "casting" / "train", split="val")
    assert result["images"] == 1327 and result["rule"] == cal["rule"]
    recorded = cal["validation"]["at_threshold"][cal["rule"]]
    assert result["accuracy"] == pytest.approx(recorded["accuracy"])
    assert result["recall"] == pytest.approx(recorded["recall"])
    assert result["accuracy"] >= 0.95 and result["image_auc"] >= 0.98

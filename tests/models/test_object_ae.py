"""The object-centric appearance family: its crop grid, its region finding on real Ped2
frames (deterministic: the same boxes whatever the batch, and under ONNX Runtime), its
scorer (a frame's score is its worst moving object's, whose box the map marks) and its
ONNX export."""

import json

import mxnet as mx
import numpy as np
import onnxruntime as ort
import pytest

from models import InputContract, WeightsMeta, get_family, get_model, save_weights
from models.export import export_onnx, read_export
from models.object_ae.family import ObjectScorer
from models.object_ae.network import crop_centres
from models.object_ae.regions import RegionFinder, box_cells
from models.scoring import ScorerConfig
from stream.capture.frames import load_clip
from tests.conftest import PED2, ROOT
from train.config import load_train_config

ARGS = {"size": 128, "window": 8, "crop": 32, "step": 8, "channels": [4, 4, 4], "code": 8}
CONTRACT = InputContract(size=128)


def _net(seed: int = 0):
    mx.random.seed(seed)
    net = get_model("object_ae", **ARGS)
    net.initialize(mx.init.Xavier())
    return net


def _windows(clip: str, starts: list[int]) -> np.ndarray:
    """Windows of a real (normal) Ped2 training clip."""
    frames = load_clip(PED2 / "Train" / clip, CONTRACT, count=max(starts) + 8)
    return np.stack([frames[s:s + 8] for s in starts])


def _weights(tmp_path, threshold: float = 50.0):
    net = _net()
    net(mx.nd.zeros((1, 8, 128, 128)))
    meta = WeightsMeta(model="object_ae", model_args=ARGS, window=8, contract=CONTRACT,
                       calibration={"rule": "object", "rules": ["object"],
                                    "thresholds": {"object": threshold}, "error_scale": 1000.0})
    return save_weights(net, meta, tmp_path / "oae").with_suffix("")


def test_the_networks_crop_grid_is_the_crops_cut_in_numpy():
    net = _net()
    x = _windows("Train001", [0, 40])
    crops = net.crops(mx.nd, net.channels(mx.nd, mx.nd.array(x))).asnumpy()
    g = net.grid
    assert g == 13 and crops.shape == (2 * g * g, 3, 32, 32)
    cells = [np.arange(g * g), np.array([0, 14, g * g - 1])]
    cut = net.crop_inputs(x, cells)
    np.testing.assert_array_equal(cut[:g * g], crops[:g * g])
    np.testing.assert_array_equal(cut[g * g:], crops[g * g + cells[1]])
    # the crop at grid cell (1, 1) is the frame's pixels 8..40 on both axes
    np.testing.assert_array_equal(crops[14, 0], x[0, -1, 8:40, 8:40])


def test_regions_are_the_same_in_any_batch_and_find_the_walkers_of_a_real_frame():
    net = _net()
    net.hybridize()
    x = _windows("Train001", [0, 30, 60])
    finder = RegionFinder()
    g2 = net.grid ** 2
    together = net(mx.nd.array(x)).asnumpy()[:, 0, g2:].reshape(3, 128, 128)
    for i in range(3):
        alone = net(mx.nd.array(x[i:i + 1])).asnumpy()[0, 0, g2:].reshape(128, 128)
        np.testing.assert_array_equal(alone, together[i])
        boxes = finder.boxes(together[i], 255.0)
        np.testing.assert_array_equal(boxes, finder.boxes(alone.copy(), 255.0))
        # the NumPy motion map the training loss reads is the network's, exactly
        np.testing.assert_array_equal(np.abs(x[i, :-1] - x[i, -1]).max(axis=0), alone)
        assert len(boxes) >= 2           # Train001 is a crowded walkway
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    still = np.repeat(x[:1, -1:], 8, axis=1)       # nothing moves: nothing found
    motion = net(mx.nd.array(still)).asnumpy()[0, 0, g2:].reshape(128, 128)
    assert len(finder.boxes(motion, 255.0)) == 0


def test_the_error_of_the_appearance_channel_alone_comes_from_the_same_weights():
    net = _net()
    x = _windows("Train002", [10])
    both = net(mx.nd.array(x)).asnumpy()
    alone = get_model("object_ae", **{**ARGS, "error_channels": 1},
                      params=net.collect_params())(mx.nd.array(x)).asnumpy()
    g2 = net.grid ** 2
    crops = net.crops(mx.nd, net.channels(mx.nd, mx.nd.array(x)))
    squared = np.square((net.ae(crops) - crops).asnumpy())
    np.testing.assert_allclose(both[0, 0, :g2], squared.mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(alone[0, 0, :g2], squared[:, 0].mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_array_equal(alone[0, 0, g2:], both[0, 0, g2:])
    with pytest.raises(ValueError, match="error_channels must be 3"):
        get_model("object_ae", **{**ARGS, "error_channels": 2})


def test_a_box_is_scored_by_the_crops_centred_in_it_or_the_nearest_one():
    centres = crop_centres(128, 32, 8)                # 16, 24, ..., 112
    assert list(box_cells(np.array([20, 30, 30, 34]), centres)) == [2 * 13 + 1]
    assert list(box_cells(np.array([0, 0, 5, 5]), centres)) == [0]
    assert sorted(box_cells(np.array([15, 15, 26, 26]), centres)) == [0, 1, 13, 14]


def test_a_frames_score_is_its_worst_objects_and_the_map_marks_its_box(tmp_path):
    scorer = ObjectScorer(threshold=5.0, size=128, crop=32, step=8, pixel_scale=255.0)
    errors = np.zeros((13, 13), np.float32)
    errors[2, 1] = 9.0                        # under the first object
    errors[9, 9] = 3.0                        # under the second
    motion = np.zeros((128, 128), np.float32)
    motion[28:40, 20:30] = 0.5                # two moving blobs, 127 grey levels
    motion[84:100, 86:96] = 0.5
    output = np.r_[errors.ravel(), motion.ravel()][None]
    s = scorer.score(output, np.zeros((1, 128, 128), np.float32))
    assert s.score[0] == 9.0 and s.anomalous[0] and s.error[0] == 2
    assert s.mask[0, 28:40, 20:30].all() and s.mask[0].sum() == 12 * 10
    assert s.map[0, 90, 90] == 3.0
    ignore = np.zeros((128, 128), bool)
    ignore[20:45, 15:35] = True               # the worst object is in an ignored area
    s = scorer.score(output, np.zeros((1, 128, 128), np.float32), ignore=ignore)
    assert s.score[0] == 3.0 and not s.anomalous[0] and s.error[0] == 1
    with pytest.raises(ValueError, match="16553 values per frame"):
        scorer.score(output[:, :-1], np.zeros((1, 128, 128), np.float32))


def test_the_family_is_scored_by_its_object_rule_only(tmp_path):
    from models.weights import read_meta
    weights = _weights(tmp_path)
    meta = read_meta(weights)
    family = get_family("object_ae")
    assert family.rules(meta) == ("object",) and family.temporal(meta).scorable == 1
    with pytest.raises(ValueError, match="scored by rule object"):
        family.check_rule(meta, "peak")
    scorer = family.scorer(meta, {}, ScorerConfig())
    assert scorer.threshold == 50.0 and scorer.scale == 1000.0
    with pytest.raises(ValueError, match="window of at least 5"):
        get_model("object_ae", **{**ARGS, "window": 3})
    with pytest.raises(ValueError, match="multiple of 8 and of the step"):
        get_model("object_ae", **{**ARGS, "crop": 20})


@pytest.mark.timeout(180)
def test_the_export_gives_mxnets_output_and_the_same_regions_on_real_frames(tmp_path):
    weights = _weights(tmp_path)
    onnx_path, json_path = export_onnx(weights, tmp_path / "out" / "oae")
    model, meta, _, sidecar = read_export(json_path)
    from models.weights import load_weights
    net, _ = load_weights(weights)
    x = _windows("Train003", [40, 41, 80])
    want = net(mx.nd.array(x)).asnumpy()
    got = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(
        None, {"data": x})[0]
    assert got.shape == want.shape == (3, 1, 13 * 13 + 128 * 128)
    assert sidecar["output"]["shape"] == [None, 1, 13 * 13 + 128 * 128]
    np.testing.assert_allclose(got, want, atol=2e-4, rtol=2e-4)
    scorer = get_family("object_ae").scorer(meta, {}, ScorerConfig())
    for g, w, frames in zip(got, want, x, strict=True):
        a, b = scorer.score(g, frames[-1:]), scorer.score(w, frames[-1:])
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.error[0] == b.error[0] > 0
        assert a.score[0] == pytest.approx(b.score[0], rel=1e-4)
    assert meta.model == "object_ae" and json.loads(json_path.read_text())["opset"] == 13


def test_the_ped2_config_holds_three_clips_out_and_builds_the_network():
    job = load_train_config(ROOT / "configs" / "ped2_object_ae.yaml")
    assert job.model == "object_ae" and job.training.val_clips == 3
    assert job.contract.size == job.model_args["size"] == 128
    net = get_model(job.model, **job.model_args)
    assert net.grid == 13 and get_family("object_ae").window(job.model_args) == 8


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_vadstream_train_trains_the_family_from_the_shipped_config(tmp_path):
    """`vadstream train --config` on a file extending configs/ped2_object_ae.yaml (tiny
    network, one short epoch, three real clips): weights the family scores with its rule."""
    import yaml

    from models import load_weights
    from tests.conftest import ROOT, tiny_dataset, vadstream_run

    data = tiny_dataset(tmp_path / "data")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "extends": str(ROOT / "configs" / "ped2_object_ae.yaml"),
        "data": {"root": str(data), "out": str(tmp_path / "w")},
        "model": {"size": 64, "window": 5, "crop": 16, "step": 8, "channels": [4, 4, 4],
                  "code": 8},
        "training": {"epochs": 1, "batch_size": 4, "windows_per_epoch": 8, "val_clips": 1}}))
    done = vadstream_run("train", "--config", str(config), "--device", "cpu", timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    _, meta = load_weights(tmp_path / "w", mx.cpu())
    assert meta.model == "object_ae" and meta.window == 5
    assert meta.calibration["rule"] == "object" and meta.calibration["thresholds"]["object"] > 0

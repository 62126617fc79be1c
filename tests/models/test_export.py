"""ONNX export of every family's inference form: the exported graph, run by onnxruntime,
gives MXNet's outputs on real frames; the sidecar carries what scoring needs; frame AUC
on a real Ped2 clip with its ground truth moves by less than 0.002."""

import json

import mxnet as mx
import numpy as np
import onnxruntime as ort
import pytest
from mxnet.gluon import HybridBlock

from models import InputContract, WeightsMeta, get_family, get_model, save_weights
from models.export import ExportError, export_onnx, input_names, network_to_onnx, read_export
from models.scoring import ScorerConfig
from models.weights import WEIGHTS_DIR, load_calibration_arrays, load_weights
from stream.capture.frames import load_clip
from stream.detector.engine import Engine
from tests.conftest import PED2, vadstream_run
from train.evaluate import find_gt_file
from train.metrics import frame_labels, parse_gt, roc_auc_eer
from train.offline import score_clip

#: Largest difference allowed between onnxruntime's and MXNet's outputs: both run fp32
#: convolutions whose sums are ordered differently (measured: 3e-6 on the STAE's 0..1
#: frames, 4e-5 on the CAM's logits).
TOLERANCE = 2e-4
#: Families without shipped weights: tiny untrained networks (their ops are what matters).
UNTRAINED = {
    "stacked_ae": ({"window": 3, "channels": [4, 4, 4], "size": 99}, 3),
    "ssim_ae": ({"size": 64, "channels": 4, "code": 4}, 1),
}


def _untrained(name, tmp_path):
    args, window = UNTRAINED[name]
    mx.random.seed(0)
    net = get_model(name, **args)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, window, args["size"], args["size"])))
    meta = WeightsMeta(model=name, model_args=args, window=window,
                       contract=InputContract(size=args["size"]))
    return save_weights(net, meta, tmp_path / name).with_suffix("")


def _weights(name, tmp_path):
    return WEIGHTS_DIR / name if (WEIGHTS_DIR / f"{name}.json").is_file() else \
        _untrained(name, tmp_path)


def _real_windows(meta, n=2):
    """``n`` windows of real Ped2 frames under the weights' input contract."""
    clip = load_clip(PED2 / "Test" / "Test002", meta.contract, start=90,
                     count=meta.window + n - 1)
    return np.stack([clip[i:i + meta.window] for i in range(n)])


def _session(onnx_bytes):
    return ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", ["ped2_predictor", "ped2_stae", "casting_cam", "cracks_ae",
                                  "stacked_ae", "ssim_ae"])
def test_the_exported_inference_form_gives_mxnets_outputs_on_real_frames(name, tmp_path):
    weights = _weights(name, tmp_path)
    onnx_path, json_path = export_onnx(weights, tmp_path / "out" / name)
    model, meta, arrays, sidecar = read_export(json_path)
    trained, loaded = load_weights(weights)
    nets = get_family(loaded.model).inference(trained, loaded, mx.cpu())
    x = _real_windows(meta, n=3)
    want = nets[max(nets)](mx.nd.array(x)).asnumpy()
    got = _session(model).run(None, {"data": x})[0]
    assert got.shape == want.shape == (3, *sidecar["output"]["shape"][1:])
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=TOLERANCE)
    # The sidecar: what the detector needs to score the output, with no .params
    assert meta.to_dict() == loaded.to_dict() and meta.contract == loaded.contract
    assert sidecar["input"]["shape"] == [None, meta.window, *meta.contract.shape]
    assert sidecar["opset"] == 13 and sidecar["onnx"] == onnx_path.name
    want_arrays = load_calibration_arrays(weights, loaded)
    assert arrays.keys() == want_arrays.keys()
    for key, value in want_arrays.items():
        np.testing.assert_array_equal(arrays[key], value)


@pytest.mark.timeout(120)
def test_the_stae_tail_network_exports_too(tmp_path):
    onnx_path, _ = export_onnx(WEIGHTS_DIR / "ped2_stae", tmp_path / "tail", outputs=6)
    model, meta, _, sidecar = read_export(onnx_path)
    assert sidecar["output"]["frames"] == 6
    trained, _ = load_weights(WEIGHTS_DIR / "ped2_stae")
    tail = get_family("stae").inference(trained, meta, mx.cpu(), 6)[6]
    x = _real_windows(meta, n=1)
    np.testing.assert_allclose(_session(model).run(None, {"data": x})[0],
                               tail(mx.nd.array(x)).asnumpy(), atol=TOLERANCE)
    with pytest.raises(ExportError, match=r"networks for \[1\] output frames per window, "
                                          "not 3"):
        export_onnx(WEIGHTS_DIR / "ped2_predictor", tmp_path / "p", outputs=3)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("name", "decode"), [("ped2_stae", 6), ("ped2_predictor", None)])
def test_a_splits_networks_export_with_several_inputs_and_outputs_in_order(name, decode):
    """Encoder reuse's networks (``ModelFamily.split``) under onnxruntime: the encoder on
    real frames (the predictor's has five outputs, and a second input, each frame's
    predecessor), each temporal network on the MXNet encoder's features of real windows
    (the predictor's has five inputs), MXNet's outputs at batches other than the exported
    one."""
    weights = WEIGHTS_DIR / name
    trained, meta = load_weights(weights)
    split = get_family(meta.model).split(trained, meta, mx.cpu(), decode)
    windows = _real_windows(meta, n=2)
    frames = [windows.reshape(-1, *meta.contract.shape)]
    if split.previous:                # each frame's predecessor; a window's first, itself
        frames.append(np.concatenate([windows[:, :1], windows[:, :-1]], axis=1)
                      .reshape(frames[0].shape))
    model = network_to_onnx(split.encoder, *[(1, *meta.contract.shape)] * len(frames))
    names = input_names(len(frames))
    assert [i.name for i in model.graph.input] == names
    got = _session(model.SerializeToString()).run(None, dict(zip(names, frames, strict=True)))
    want = split.encoder(*(mx.nd.array(f) for f in frames))
    want = [w.asnumpy() for w in (want if isinstance(want, (list, tuple)) else [want])]
    assert len(got) == len(want) == len(split.groups)
    for g, w, group in zip(got, want, split.groups, strict=True):
        assert g.shape == w.shape == (len(frames[0]), *group.shape)
        np.testing.assert_allclose(g, w, atol=TOLERANCE, rtol=TOLERANCE)
    features = [w.reshape(len(windows), meta.window, *w.shape[1:])[:, list(g.positions)]
                for w, g in zip(want, split.groups, strict=True)]
    for frames_out, net in split.temporal.items():
        model = network_to_onnx(net, *((1, *f.shape[1:]) for f in features))
        names = input_names(len(features))
        assert [i.name for i in model.graph.input] == names
        got = _session(model.SerializeToString()).run(None, dict(zip(names, features,
                                                                     strict=True)))
        want = net(*(mx.nd.array(f) for f in features)).asnumpy()
        assert got[0].shape == want.shape == (2, *get_family(meta.model).output_shape(
            meta, frames_out))
        np.testing.assert_allclose(got[0], want, atol=TOLERANCE, rtol=TOLERANCE)


class _Sorted(HybridBlock):
    """A network with an op MXNet's ONNX converter has no translation for (a plug-in
    family could have one)."""

    def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's F convention
        return F.sort(x, axis=1)


def test_an_op_without_an_onnx_translation_is_named():
    with pytest.raises(ExportError, match="cannot convert this network: .*op type sort"):
        network_to_onnx(_Sorted(), (1, 3, 8, 8))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_frame_auc_on_a_real_clip_moves_less_than_0_002_under_onnxruntime():
    """The default predictor on Ped2 Test002 (the bike, 86 of 180 frames anomalous): the
    engine's network under each backend, scored by the weights' calibrated rule."""
    weights = WEIGHTS_DIR / "ped2_predictor"
    clip = PED2 / "Test" / "Test002"
    labels = frame_labels(180, parse_gt(find_gt_file(clip.parent))[2])
    aucs, scores = {}, {}
    for backend in ("mxnet", "onnxruntime"):
        engine = Engine(weights, "cpu", "fp32", max_batch=4, backend=backend)
        meta = engine.meta
        scorer = get_family(meta.model).scorer(meta, load_calibration_arrays(weights, meta),
                                               ScorerConfig())
        frames = load_clip(clip, meta.contract)
        s = score_clip(engine.net, frames, meta.window, 1, scorer, mx.cpu())
        scored = ~np.isnan(s["score"])
        scores[backend] = s["score"][scored]
        aucs[backend], _ = roc_auc_eer(labels[scored], s["score"][scored])
    assert aucs["mxnet"] > 0.8        # it separates the bike: not a model flagging everything
    assert abs(aucs["onnxruntime"] - aucs["mxnet"]) < 0.002
    np.testing.assert_allclose(scores["onnxruntime"], scores["mxnet"], rtol=1e-3, atol=1e-3)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_vadstream_export_writes_the_model_and_its_sidecar(tmp_path):
    out = vadstream_run("export", "--model", "casting_cam", "--format", "onnx", "--out",
                        str(tmp_path / "cam"), timeout=100)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "cam.onnx").stat().st_size > 10_000
    sidecar = json.loads((tmp_path / "cam.json").read_text())
    assert sidecar["weights"]["model"] == "cam" and sidecar["arrays"] is None
    assert sidecar["weights"]["calibration"]["rule"] == "probability"
    bad = vadstream_run("export", "--model", "ped2_predictor", "--outputs", "3", "--out",
                        str(tmp_path / "p"), timeout=100)
    assert bad.returncode == 2
    assert "not 3; pass one of those" in bad.stderr and "Traceback" not in bad.stderr

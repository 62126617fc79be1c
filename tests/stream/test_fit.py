"""A capture that fits its frames to the model (``vadstream capture --fit``, a stream's
``fit: true``): the detector's network sees the very pixels it would have made itself,
from a real capture process over a real socket, on real Ped2 frames."""

import cv2
import numpy as np
import pytest
import zmq

from models.contract import read_contract
from models.weights import read_meta
from stream.apps.supervisor import capture_command
from stream.capture.frames import list_frames
from stream.defaults import WEIGHTS
from stream.pipeline import StreamConfig, load_pipeline
from stream.wire.protocol import Frame, decode_message
from tests.conftest import PED2, ROOT, stop, vadstream

CLIP = PED2 / "Test" / "Test001"


def test_fitted_frames_give_the_network_the_same_input():
    """``fit`` then ``preprocess`` equals ``preprocess`` of the source frame, bit for bit:
    the capture's work is the detector's own first steps."""
    contract = read_contract(WEIGHTS)
    assert contract == read_meta(WEIGHTS).contract       # read without MXNet, the same
    for path in list_frames(CLIP)[:5]:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        fitted = contract.fit(frame)
        assert fitted.dtype == np.uint8 and fitted.shape == contract.shape
        np.testing.assert_array_equal(contract.preprocess(fitted), contract.preprocess(frame))
        assert contract.fit(fitted) is fitted             # a fitted frame passes as it is


def test_a_contract_is_read_only_from_weights_that_record_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_contract(tmp_path / "nothing")
    (tmp_path / "bare.json").write_text('{"model": "stae"}')
    with pytest.raises(ValueError, match="no input contract"):
        read_contract(tmp_path / "bare")


def test_a_stream_that_fits_passes_its_model_to_its_capture():
    own = capture_command(StreamConfig(id="a", source=str(CLIP), fit=True, model="m/x"),
                          "tcp://127.0.0.1:1", "m/default")
    assert own[own.index("--fit") + 1] == "m/x"
    default = capture_command(StreamConfig(id="a", source=str(CLIP), fit=True),
                              "tcp://127.0.0.1:1", "m/default")
    assert default[default.index("--fit") + 1] == "m/default"
    assert "--fit" not in capture_command(StreamConfig(id="a", source=str(CLIP)),
                                          "tcp://127.0.0.1:1", "m/default")
    with pytest.raises(ValueError, match="mask"):
        StreamConfig(id="a", source=str(CLIP), fit=True, mask=(((0, 0), (9, 0), (9, 9)),))


@pytest.mark.timeout(120)
def test_a_fitting_capture_sends_the_models_pixels():
    """A real ``vadstream capture --fit`` into a real PULL socket: grey frames at the
    contract's size, each the fit of the source frame it names."""
    contract = read_contract(WEIGHTS)
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    proc = vadstream("capture", "--source", str(CLIP), "--stream-id", "fit",
                     "--connect", f"tcp://127.0.0.1:{port}", "--fps", "0", "--fit", str(WEIGHTS))
    try:
        paths = list_frames(CLIP)
        got = []
        while len(got) < 6:
            assert pull.poll(60_000), "no frame from the capture within 60 s"
            message = decode_message(pull.recv_multipart())
            if isinstance(message, Frame):
                got.append(message)
        for message in got:
            assert message.image.shape == contract.shape and message.image.dtype == np.uint8
            source = cv2.imread(str(paths[message.frame - 1]), cv2.IMREAD_COLOR)
            np.testing.assert_array_equal(message.image, contract.fit(source))
    finally:
        stop(proc)
        pull.close(0)
        context.term()


def test_the_32_camera_config_fits_every_stream():
    """``configs/pipeline_32.yaml`` (docs/results/bench.md's 32-camera run) loads: 32 Ped2
    test clips at 10 fps, each capture fitting its frames."""
    pipeline = load_pipeline(ROOT / "configs" / "pipeline_32.yaml")
    assert len(pipeline.streams) == 32 and len({s.id for s in pipeline.streams}) == 32
    assert all(s.fit and s.fps == 10 and s.loop for s in pipeline.streams)
    assert pipeline.detector.backend == "onnxruntime"

"""The detector's control channel: per-stream threshold, detection, model and ignore masks
changed while it runs, with a real detector, real sockets and real Ped2 frames."""

import threading

import cv2
import numpy as np
import pytest

from models.scoring import ScorerConfig
from stream.capture.frames import list_frames
from stream.config import ConfigError
from stream.defaults import WEIGHTS
from stream.detector.allowed import THRESHOLD_RANGE
from stream.detector.config import DetectorConfig
from stream.detector.events import EventConfig
from stream.detector.loop import Detector
from stream.detector.settings import check_polygons, ignore_map
from stream.pipeline import load_pipeline
from stream.wire.control import ControlClient, ControlError
from stream.wire.protocol import decode_message, encode_eos, encode_frame
from stream.wire.subscriber import Subscriber
from tests.conftest import (
    ANY_PORT,
    PED2,
    push_socket,
    until_eos,
    wait_for_status,
    wait_subscribed,
)

TOPICS = ["score.", "eos.", "status", "alert."]
#: Where the synthetic intruder walks: a bright square along the top of the frame.
PATH = [[0, 0], [360, 0], [360, 90], [0, 90]]


def _intruder_clip(n: int = 40) -> list[np.ndarray]:
    """Real normal Ped2 frames (a quiet stretch of Train004) with a bright 28-pixel
    square sweeping across the top."""
    frames = []
    for i, path in enumerate(list_frames(PED2 / "Train" / "Train004")[:n]):
        image = cv2.imread(str(path))
        x = 10 + 8 * i
        image[30:58, x:x + 28] = 255
        frames.append(image)
    return frames


@pytest.fixture(scope="module")
def detector(tmp_path_factory, tiny_weights):
    """The shipped default model, its control endpoint on a free port; the tiny weights'
    folder allowed beside the shipped ones."""
    tmp = tmp_path_factory.mktemp("control")
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control=ANY_PORT,
                                  device="cpu", precision="fp32", max_batch=4,
                                  model_dirs=(str(WEIGHTS.parent), str(tiny_weights.parent)),
                                  status_interval=0.2, events_db=str(tmp / "events.db")),
                   ScorerConfig(), EventConfig(open_frames=2, close_frames=2))
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    sub = Subscriber(det.endpoints["publish"], TOPICS)
    push = push_socket(det.endpoints["bind"])
    control = ControlClient(det.endpoints["control"], timeout_s=60)
    try:
        wait_subscribed(sub, TOPICS, 30)
        yield det, sub, push, control
    finally:
        control.close()
        push.close(linger=0)
        sub.close()
        stop.set()
        thread.join(60)
        assert not thread.is_alive()


def _play(sub, push, stream: str, frames: list[np.ndarray]) -> list:
    """Send ``frames`` as ``stream`` and its end; every message up to its ``eos``."""
    for i, image in enumerate(frames):
        push.send_multipart(encode_frame(stream, i, 1.0 + i, image))
    push.send_multipart(encode_eos(stream))
    return until_eos(sub, stream)


def _starts(got, stream):
    return [m.payload for m in got if m.topic == f"alert.{stream}"
            and m.payload["type"] == "start"]


def _scores(got, stream):
    return [m.payload for m in got if m.topic == f"score.{stream}"]


@pytest.mark.timeout(300)
def test_a_mask_over_the_intruder_suppresses_its_event_and_one_elsewhere_does_not(detector):
    det, sub, push, control = detector
    frames = _intruder_clip()
    seen = _play(sub, push, "open", frames)
    assert _starts(seen, "open"), "the intruder raised no event without a mask"
    assert "open" not in det.settings   # streams no one changed keep no settings behind
    state = control.set_mask("masked", [PATH])
    assert state["mask"] == [[[float(x), float(y)] for x, y in PATH]]
    masked = _play(sub, push, "masked", frames)
    assert not _starts(masked, "masked")
    control.set_mask("elsewhere", [[[0, 150], [360, 150], [360, 240], [0, 240]]])
    elsewhere = _play(sub, push, "elsewhere", frames)
    assert _starts(elsewhere, "elsewhere")
    peak = max(s["scores"]["score"] for s in _scores(seen, "open"))
    assert max(s["scores"]["score"] for s in _scores(masked, "masked")) < 0.5 * peak
    assert control.state()["streams"]["masked"]["mask"]


@pytest.mark.timeout(300)
def test_threshold_and_detection_change_live_and_show_in_status(detector):
    det, sub, push, control = detector
    frames = _intruder_clip(30)
    calibrated = det.default.scorer.threshold
    quiet = calibrated * THRESHOLD_RANGE   # the highest the calibration allows
    state = control.set_threshold("quiet", quiet)
    assert state["threshold"] == quiet and state["calibrated_threshold"] == calibrated
    assert state["threshold_override"] is True
    got = _play(sub, push, "quiet", frames[:20])
    assert not _starts(got, "quiet")
    assert {s["threshold"] for s in _scores(got, "quiet")} == {quiet}
    # Back to the calibrated threshold: the same frames raise their event again.
    assert control.set_threshold("quiet", None)["threshold"] == calibrated
    got = _play(sub, push, "quiet", frames)
    assert _starts(got, "quiet") and _starts(got, "quiet")[0]["threshold"] == calibrated

    control.set_detect("paused", False)
    for i, image in enumerate(frames[:12]):
        push.send_multipart(encode_frame("paused", i, 1.0 + i, image))
    status = wait_for_status(sub, lambda s: s["streams"].get("paused", {}).get("paused") == 12,
                             what="12 paused frames")
    assert status["streams"]["paused"]["detect"] is False
    assert status["streams"]["paused"]["scored"] == 0
    control.set_detect("paused", True)
    got = _play(sub, push, "paused", frames[:12])
    assert _scores(got, "paused"), "no frame scored after detection was switched back on"


@pytest.mark.timeout(300)
def test_a_stream_moves_to_other_weights_while_running(detector, tiny_weights):
    det, sub, push, control = detector
    frames = _intruder_clip(12)
    before = _scores(_play(sub, push, "swap", frames), "swap")
    assert {s["rule"] for s in before} == {det.default.scorer.rule}
    control.set_threshold("swap", 5.0)   # on the old model's scale
    state = control.set_model("swap", str(tiny_weights))
    assert state["model"] == str(tiny_weights)
    # The override was for the old model: the new one starts from its own calibration.
    assert state["threshold_override"] is False
    assert state["threshold"] == state["calibrated_threshold"] != 5.0
    after = _scores(_play(sub, push, "swap", frames), "swap")
    assert {s["rule"] for s in after} == {"area"}   # the tiny weights' calibrated rule
    status = wait_for_status(sub, lambda s: "swap" in s["streams"] or True)
    assert any(m["weights"] == str(tiny_weights) for m in status["models"])
    control.set_model("swap", "")
    assert control.state()["streams"]["swap"]["model"] == det.default.weights


def test_bad_requests_are_refused_with_what_to_send(detector):
    det, _, _, control = detector
    with pytest.raises(ControlError, match="unknown command 'explode'"):
        control.request("explode")
    with pytest.raises(ControlError, match="finite number"):
        control.set_threshold("cam", "high")
    with pytest.raises(ControlError, match="stream id"):
        control.set_threshold("bad id!", 1.0)
    with pytest.raises(ControlError, match=r"\[x, y\] point"):
        control.set_mask("cam", [[[0, 0], [1, "a"], [2, 2]]])
    with pytest.raises(ControlError, match="cannot load"):
        control.set_model("cam", "/no/such/weights")
    assert control.state()["streams"]   # still answering


def test_ignore_map_covers_the_polygon_at_model_resolution():
    ignore = ignore_map(((((0.0, 0.0), (180.0, 0.0), (180.0, 240.0), (0.0, 240.0))),),
                        (240, 360, 3), 64)
    assert ignore[:, :31].all() and not ignore[:, 33:].any()


def test_stream_masks_and_thresholds_in_the_pipeline_config(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text("streams:\n  - id: cam\n    source: x.mp4\n    threshold: 5\n"
                      "    detect: false\n    mask: [[[0, 0], [10, 0], [10, 10]]]\n")
    stream = load_pipeline(config).streams[0]
    assert stream.threshold == 5.0 and stream.detect is False
    assert stream.mask == (((0.0, 0.0), (10.0, 0.0), (10.0, 10.0)),)
    config.write_text("streams:\n  - id: cam\n    source: x.mp4\n    mask: [[[0, 0], [10, 0]]]\n")
    with pytest.raises(ConfigError, match=r"mask\[0\] must be 3"):
        load_pipeline(config)


def test_points_beyond_int32_drawing_are_refused_and_a_large_one_still_covers():
    # 1e10 wrapped around in OpenCV's int32 drawing: the mask covered nothing, and drawing
    # it stalled the detector's loop for seconds per polygon.
    for x in (1e10, 2**31 + 5, 10**400, float("inf")):
        with pytest.raises(ValueError, match="source pixels from 0 to 65536"):
            check_polygons([[[0, 0], [x, 0], [0, x]]])
    big = check_polygons([[[0, 0], [65536, 0], [0, 65536]]])
    assert ignore_map(big, (240, 360, 3), 64).all()


@pytest.mark.timeout(180)
def test_frames_sent_before_a_model_swap_keep_their_settings_whatever_changes_next(
        tiny_weights, tmp_path):
    # The swap ends the stream; its frames are scored later, on the old model. A threshold
    # (or mask) set for the new model meanwhile must not decide them.
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control="", device="cpu",
                                  precision="fp32", max_batch=4,
                                  model_dirs=(str(tiny_weights.parent),),
                                  events_db=str(tmp_path / "events.db")),
                   ScorerConfig(), EventConfig(open_frames=2, close_frames=2))
    try:
        decided = []
        emit = det.tracking.frame
        det.tracking.frame = lambda f: (decided.append(f.threshold), emit(f))[1]
        for i, image in enumerate(_intruder_clip(det.default.window + 4)):
            det.accept(decode_message(encode_frame("swap", i, 1.0 + i, image)))
        det.controls.model("swap", str(tiny_weights))
        det.controls.threshold("swap", 123.0)   # the tiny weights' calibrated: 30
        det.controls.mask("swap", [PATH])
        det.flush()
        assert decided and set(decided) == {det.default.scorer.threshold}
        assert det.controls.describe("swap")["threshold"] == 123.0
    finally:
        det.close()


@pytest.mark.timeout(120)
def test_a_camera_key_bound_to_its_streams_cannot_control_the_detector(tiny_weights, tmp_path):
    # curve_streams binds a camera's key to its own streams: over the control channel it
    # could otherwise switch detection off (or mask out) every other camera.
    from stream.wire.security import CurveClient, make_keys

    make_keys(tmp_path / "keys", ["server", "cam", "admin"])
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    for name in ("cam", "admin"):
        (allowed / f"{name}.key").write_bytes((tmp_path / "keys" / f"{name}.key").read_bytes())
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control=ANY_PORT,
                                  model=str(tiny_weights), device="cpu", precision="fp32",
                                  events_db="", curve_allowed=str(allowed),
                                  curve_secret_key=str(tmp_path / "keys" / "server.key_secret"),
                                  curve_streams={"cam": ["cam"]}))
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    server = str(tmp_path / "keys" / "server.key")
    try:
        with ControlClient(det.endpoints["control"], 60,
                           curve=CurveClient(str(tmp_path / "keys" / "cam.key_secret"),
                                             server)) as camera:
            with pytest.raises(ControlError, match="curve_streams"):
                camera.set_detect("door", False)
        with ControlClient(det.endpoints["control"], 60,
                           curve=CurveClient(str(tmp_path / "keys" / "admin.key_secret"),
                                             server)) as admin:
            assert admin.set_detect("door", False)["detect"] is False
    finally:
        stop.set()
        thread.join(60)
    assert det.settings_for("door").detect is False


@pytest.fixture
def offline(tiny_weights, tmp_path):
    """A detector with no sockets to speak of, whose allowed model folder holds the tiny
    weights; the same weights are also copied outside it."""
    import shutil

    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    for folder in (allowed, outside):
        folder.mkdir()
        for suffix in (".params", ".json"):
            shutil.copy(tiny_weights.with_suffix(suffix), folder)
    det = Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control="", device="cpu",
                                  precision="fp32", model=str(tiny_weights), events_db="",
                                  model_dirs=(str(allowed),)))
    try:
        yield det, allowed / tiny_weights.stem, outside / tiny_weights.stem
    finally:
        det.close()


def test_models_load_only_from_allowed_folders_and_refusals_reveal_nothing(offline):
    det, allowed, outside = offline
    from stream.wire.control import RequestError

    messages = {}
    for name, path in {"passwd": "/etc/passwd", "missing": "/etc/no-such-weights-here",
                       "outside": str(outside), "escape": f"{allowed.parent}/allowed/../"
                                                          f"outside/{outside.name}"}.items():
        with pytest.raises(RequestError, match="allowed model folder") as err:
            det.controls.model("cam", path)
        messages[name] = str(err.value).replace(repr(path), "NAME")
    # missing, forbidden, existing and not: one text
    assert len(set(messages.values())) == 1, messages
    assert "cam" not in det.stream_models
    assert det.controls.model("cam", str(allowed))["model"] == str(allowed)


def test_a_model_is_loaded_once_and_released_when_no_stream_uses_it(offline):
    det, allowed, _ = offline
    det.controls.model("a", str(allowed))
    det.controls.model("b", str(allowed) + ".params")   # the same weights, by their file
    assert det.stream_models["a"] is det.stream_models["b"]
    assert len(det.runtimes) == 2
    det.controls.model("a", "")
    assert len(det.runtimes) == 2           # b still uses it
    det.controls.end("b")
    assert [r.weights for r in det.runtimes.values()] == [det.default.weights]


def test_thresholds_stay_within_what_the_calibration_makes_sensible(offline):
    det, _, _ = offline
    calibrated = det.default.scorer.threshold
    for bad in (1e308, calibrated * THRESHOLD_RANGE * 1.01, calibrated / THRESHOLD_RANGE / 2,
                -1.0, 0.0):
        with pytest.raises(ValueError, match="outside .* calibrated"):
            det.controls.threshold("cam", bad)
    with pytest.raises(ValueError, match="finite number"):
        det.controls.threshold("cam", float("inf"))
    for good in (calibrated * THRESHOLD_RANGE, calibrated / THRESHOLD_RANGE, None):
        assert det.controls.threshold("cam", good)["threshold"] == (good or calibrated)
    with pytest.raises(ValueError, match="outside"):
        det.controls.configure("new", threshold=1e308)
    assert "new" not in det.stream_models


def test_a_configured_threshold_beyond_the_calibration_stops_the_start(tiny_weights):
    from stream.pipeline import StreamConfig

    with pytest.raises(ValueError, match="stream cam: threshold 1e\\+308 is outside"):
        Detector(DetectorConfig(bind=ANY_PORT, publish=ANY_PORT, control="", device="cpu",
                                precision="fp32", model=str(tiny_weights), events_db=""),
                 streams=[StreamConfig(id="cam", source="x.mp4", threshold=1e308)])

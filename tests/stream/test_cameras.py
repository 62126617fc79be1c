"""The supervisor's streams file: checked like the config, kept in step with the cameras."""

import pytest
import yaml

from stream.apps.cameras import Cameras, entry
from stream.config import ConfigError
from stream.pipeline import StreamConfig, load_pipeline


def _cameras(tmp_path, streams_file: str, streams=()) -> Cameras:
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"supervisor": {"streams_file": streams_file},
                                      "streams": list(streams)}))
    return Cameras(supervisor=None, pipeline=load_pipeline(config))


def test_a_bad_streams_file_names_the_file_and_the_key(tmp_path):
    kept = tmp_path / "cameras.yaml"
    kept.write_text(yaml.safe_dump([{"id": "a", "source": "0", "fsp": 5}]))
    with pytest.raises(ConfigError, match=r"cameras.yaml: \[0\]: unknown key 'fsp'"):
        _cameras(tmp_path, str(kept)).start()
    kept.write_text(yaml.safe_dump([{"id": "a", "source": "0"}]))
    with pytest.raises(ConfigError, match="'a' is also under streams:"):
        _cameras(tmp_path, str(kept), [{"id": "a", "source": "1"}]).start()


def test_the_streams_file_round_trips_the_added_cameras(tmp_path):
    kept = tmp_path / "cameras.yaml"
    cameras = _cameras(tmp_path, str(kept))
    cameras.start()                       # no file yet: no cameras
    assert cameras.added == {} and not kept.exists()
    door = StreamConfig(id="door", source="rtsp://10.0.0.7/s", threshold=40.0,
                        mask=[[[0, 0], [10, 0], [10, 10]]])
    cameras.added["door"] = door
    cameras.save()
    assert yaml.safe_load(kept.read_text()) == [entry(door)]
    again = _cameras(tmp_path, str(kept))
    again.start()
    assert again.added == {"door": door} and again.pending == {"door": True}


@pytest.mark.timeout(60)
def test_a_restarted_detector_is_told_a_configured_camera_added_again_with_new_settings(
        tmp_path):
    # `add` of a config camera that was removed: "back, as now asked". A restarted detector
    # reads the config's settings, so it must be told the new ones like any added camera.
    import threading
    import types

    from stream.wire.control import ControlServer
    from tests.conftest import reserve_port, wait_for

    told = []
    port = reserve_port()
    detector = ControlServer(f"tcp://127.0.0.1:{port}",
                             {"configure": lambda **args: told.append(args) or {}})
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "detector": {"control": f"tcp://127.0.0.1:{port}"},
        "streams": [{"id": "door", "source": "a.mp4"}, {"id": "yard", "source": "b.mp4"}]}))
    running = types.SimpleNamespace(captures={"door": None, "yard": None})   # both captured
    cameras = Cameras(supervisor=running, pipeline=load_pipeline(config))
    cameras.configured["door"] = StreamConfig(id="door", source="a.mp4", threshold=40.0)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            if detector.socket.poll(50):
                detector.serve_pending()
    server = threading.Thread(target=serve)
    server.start()
    try:
        cameras.detector_restarted()
        wait_for(lambda: cameras.resync() or not cameras.pending, 30, "the resync")
    finally:
        stop.set()
        server.join(10)
        detector.close()
    assert [(t["stream"], t["threshold"]) for t in told] == [("door", 40.0)]

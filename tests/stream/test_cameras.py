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

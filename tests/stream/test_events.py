import pytest

from stream.config import ConfigError
from stream.detector.events import EventConfig, EventTracker, FrameVerdict
from stream.pipeline import load_pipeline


def feed(tracker, pattern, start=0):
    alerts = []
    for i, flag in enumerate(pattern):
        seq = start + i
        alerts += tracker.update(FrameVerdict(seq, 100.0 + seq / 10, flag == "x",
                                              float(seq if flag == "x" else 0), [[seq, 0, 1, 1]]))
    return alerts


def test_opens_after_open_frames_and_closes_after_close_frames():
    t = EventTracker("cam", threshold=5.0, open_frames=3, close_frames=2, update_every=0)
    alerts = feed(t, "xx.x.xxx.x..x")
    assert [a["type"] for a in alerts] == ["start", "end"]
    start, end = alerts
    assert start["start_seq"] == 5 and start["start_ts"] == pytest.approx(100.5)
    assert start["end_seq"] is None and start["end_ts"] is None
    assert end["id"] == start["id"]
    assert end["end_seq"] == 9 and end["end_ts"] == pytest.approx(100.9)
    assert end["peak_score"] == 9.0 and end["threshold"] == 5.0 and end["frames"] == 4
    assert end["boxes"] == [[9, 0, 1, 1]]  # boxes of the peak frame


def test_short_runs_never_open():
    t = EventTracker("cam", threshold=1.0, open_frames=3, close_frames=2)
    assert feed(t, "xx.xx.x.xx.") == []


def test_updates_while_open_and_forced_close():
    t = EventTracker("cam", threshold=1.0, open_frames=1, close_frames=5, update_every=2)
    alerts = feed(t, "xxxxx")
    assert [a["type"] for a in alerts] == ["start", "update", "update"]
    assert {a["id"] for a in alerts} == {alerts[0]["id"]}
    end = t.close()
    assert end["type"] == "end" and end["end_seq"] == 4 and t.close() is None


def test_each_event_gets_its_own_id():
    t = EventTracker("cam", threshold=1.0, open_frames=1, close_frames=1, update_every=0)
    alerts = feed(t, "x.x.")
    assert [a["type"] for a in alerts] == ["start", "end", "start", "end"]
    assert alerts[0]["id"] != alerts[2]["id"]


def test_alerts_carry_the_documented_keys():
    t = EventTracker("cam", threshold=1.0, open_frames=1)
    (start,) = feed(t, "x")
    for key in ("type", "id", "stream", "start_seq", "start_ts", "end_seq", "end_ts", "score",
                "peak_score", "threshold", "boxes"):
        assert key in start


def test_bad_hysteresis_is_refused():
    with pytest.raises(ValueError, match="open_frames and close_frames must be >= 1"):
        EventTracker("cam", 1.0, open_frames=0)


def test_max_frames_1_makes_every_anomalous_frame_its_own_event():
    t = EventTracker("belt", threshold=0.5, open_frames=1, close_frames=1, update_every=0,
                     max_frames=1)
    alerts = feed(t, ".xx.x")
    assert [a["type"] for a in alerts] == ["start", "end"] * 3
    ids = [a["id"] for a in alerts]
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[4] == ids[5]
    assert len(set(ids)) == 3
    for start, end in zip(alerts[::2], alerts[1::2], strict=True):
        assert start["end_seq"] is None
        assert end["start_seq"] == end["end_seq"] == start["start_seq"]
        assert end["frames"] == 1
    assert [a["start_seq"] for a in alerts[::2]] == [1, 2, 4]
    assert t.open_event is None and t.close() is None


def test_max_frames_ends_a_long_run_and_the_next_frames_open_a_new_event():
    t = EventTracker("cam", threshold=1.0, open_frames=2, close_frames=2, update_every=0,
                     max_frames=3)
    alerts = feed(t, "xxxxxxx..")
    assert [a["type"] for a in alerts] == ["start", "end", "start", "end"]
    first_end, second_start, second_end = alerts[1], alerts[2], alerts[3]
    assert (first_end["start_seq"], first_end["end_seq"], first_end["frames"]) == (0, 2, 3)
    assert second_start["start_seq"] == 3 and second_start["id"] != first_end["id"]
    # frames 3..5 fill the second event, frame 6 opens a third run one short of opening
    assert (second_end["start_seq"], second_end["end_seq"], second_end["frames"]) == (3, 5, 3)


def test_max_frames_0_is_no_limit():
    t = EventTracker("cam", threshold=1.0, open_frames=1, close_frames=1, update_every=0)
    assert [a["type"] for a in feed(t, "x" * 50)] == ["start"]


def test_max_frames_below_open_frames_is_refused():
    with pytest.raises(ValueError, match="max_frames must be 0 .no limit. or at least"):
        EventTracker("cam", 1.0, open_frames=3, max_frames=2)
    with pytest.raises(ValueError, match="max_frames"):
        EventConfig(max_frames=-1)


def test_max_frames_is_a_config_key(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text("events:\n  open_frames: 1\n  close_frames: 1\n  max_frames: 1\n")
    assert load_pipeline(config).events == EventConfig(open_frames=1, close_frames=1,
                                                       max_frames=1)
    config.write_text("events:\n  max_frame: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'max_frame'.*max_frames"):
        load_pipeline(config)


def test_detect_flags_replace_the_config_events(tmp_path):
    from stream.apps.cli import build_parser
    from stream.apps.flags import overrides_from_args

    config = tmp_path / "p.yaml"
    config.write_text("events:\n  open_frames: 2\n  close_frames: 4\n")
    args = build_parser().parse_args(["detect", "--config", str(config), "--open-frames", "1",
                                      "--max-frames", "1"])
    pipe = load_pipeline(args.config, events=overrides_from_args(args, EventConfig))
    assert pipe.events == EventConfig(open_frames=1, close_frames=4, max_frames=1)

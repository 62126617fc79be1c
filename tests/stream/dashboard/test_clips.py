"""Frames around events: some before, all during (up to a cap), some after, in a budget."""

import pytest

from stream.dashboard.clips import EventClips
from stream.wire.topics import AlertMessage, OverlayMessage


def _overlay(clips, seq, size=10, stream="cam"):
    clips.on_overlay(OverlayMessage(stream=stream, seq=seq, ts=float(seq), anomalous=False,
                                    score=float(seq), boxes=[], jpeg=bytes(size)))


def _alert(kind, event_id, stream="cam"):
    end = kind == "end"
    return AlertMessage(type=kind, id=event_id, stream=stream, start_seq=0, start_ts=0.0,
                        end_seq=1 if end else None, end_ts=1.0 if end else None, seq=1, ts=1.0,
                        score=9.0, peak_score=9.0, peak_seq=1, threshold=5.0, frames=2,
                        boxes=[])


def test_a_clip_holds_frames_before_during_and_after_its_event():
    clips = EventClips(before=3, after=2)
    for seq in range(10):
        _overlay(clips, seq)
    clips.on_alert(_alert("start", "e1"))          # published before frame 10's overlay
    for seq in range(10, 14):
        _overlay(clips, seq)
    clips.on_alert(_alert("end", "e1"))
    for seq in range(14, 20):
        _overlay(clips, seq)
    clip = clips.clips["e1"]
    assert [f.seq for f in clip.frames] == [7, 8, 9, 10, 11, 12, 13, 14, 15]
    assert not clip.recording and clips.frame("e1", 12).seq == 12
    assert clips.frame("e1", 3) is None and clips.frame("nope", 1) is None


def test_long_events_are_capped_and_old_clips_make_way_within_the_budget():
    clips = EventClips(before=0, after=0, max_frames=5, budget_mb=90 / 2**20)  # 90 bytes
    clips.on_alert(_alert("start", "long"))
    for seq in range(8):
        _overlay(clips, seq)
    clips.on_alert(_alert("end", "long"))
    assert len(clips.clips["long"].frames) == 5 and clips.clips["long"].truncated
    clips.on_alert(_alert("start", "next"))
    for seq in range(8, 14):
        _overlay(clips, seq)
    assert "long" not in clips.clips                # 50 + 50 bytes > 90: the oldest went
    assert [f.seq for f in clips.clips["next"].frames] == [8, 9, 10, 11, 12]


def test_streams_are_kept_apart_and_an_ended_stream_closes_its_clip():
    clips = EventClips(before=1, after=5)
    _overlay(clips, 0, stream="a")
    _overlay(clips, 0, stream="b")
    clips.on_alert(_alert("start", "ea", stream="a"))
    _overlay(clips, 1, stream="b")
    _overlay(clips, 1, stream="a")
    clips.on_eos("a")
    _overlay(clips, 2, stream="a")
    assert [f.seq for f in clips.clips["ea"].frames] == [0, 1]


def test_settings_are_checked():
    with pytest.raises(ValueError, match="max_frames"):
        EventClips(max_frames=0)

"""Conveyor-line inspection live: cast parts of both classes, mixed, through real capture,
detector and subscriber processes on a tiny trained CAM classifier; one event per flagged
part, its heat map on the overlay; and ``vadstream demo --conveyor``."""

import json
import subprocess

import cv2
import mxnet as mx
import numpy as np
import pytest

from models import InputContract, get_family, load_calibration_arrays, load_weights
from models.scoring import ScorerConfig
from stream.capture.frames import list_frames
from stream.wire.subscriber import Subscriber
from tests.conftest import (
    DATA,
    Lines,
    start_detector,
    stop,
    vadstream,
    vadstream_run,
    wait_subscribed,
)

CASTING = DATA / "casting" / "train"
CLASSES = ("def_front", "ok_front")


def _link_parts(root, per_class, skip=0):
    """``root/<class>/`` of links to real cast parts: every 7th image from ``skip`` on."""
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for path in list_frames(CASTING / name)[skip::7][:per_class]:
            (root / name / path.name).symlink_to(path)
    return root


@pytest.fixture(scope="module")
def tiny_cam(tmp_path_factory):
    """A CAM classifier trained one epoch on 16 + 16 real parts (32×32, a few seconds)."""
    from train.image_trainer import ImageTrainConfig, train_images

    root = tmp_path_factory.mktemp("cam")
    data = _link_parts(root / "parts", 16)
    return train_images(data, root / "cam", "cam", {"size": 32, "channels": 4, "blocks": 3},
                        InputContract(size=32, mean=0.5, std=0.25),
                        ImageTrainConfig(epochs=1, batch_size=16), limit=16)


def _offline(weights, paths):
    """Each part's defect probability, scored offline by the family's own scorer."""
    net, meta = load_weights(weights)
    family = get_family(meta.model)
    form = family.inference(net, meta, mx.cpu())[1]
    scorer = family.scorer(meta, load_calibration_arrays(weights, meta), ScorerConfig())
    out = []
    for path in paths:
        x = meta.contract.preprocess(cv2.imread(str(path), cv2.IMREAD_COLOR))  # as captured
        y = form(mx.nd.array(x[None, None])).asnumpy()
        out.append(float(scorer.score(y[:, 0], x[None]).score[0]))
    return np.asarray(out)


def _split_threshold(probabilities):
    """A threshold in the widest gap among the middle half of the values: about half the
    parts flagged, none within a hair of the threshold."""
    v = np.sort(probabilities)
    n = len(v)
    lo, hi = n // 4, max(n // 4 + 1, 3 * n // 4)
    i = max(range(lo, hi), key=lambda k: v[k + 1] - v[k])
    assert v[i + 1] - v[i] > 1e-4, f"the tiny model scores the parts alike: {v}"
    return float((v[i] + v[i + 1]) / 2)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_parts_of_both_classes_are_scored_live_one_event_per_flagged_part(tiny_cam, tmp_path):
    belt = _link_parts(tmp_path / "belt", 6, skip=3)        # parts the model never saw
    files = {(c, i + 1): p for c in CLASSES for i, p in enumerate(list_frames(belt / c))}
    keys = sorted(files)
    threshold = _split_threshold(_offline(tiny_cam, [files[k] for k in keys]))
    config = tmp_path / "conveyor.yaml"
    config.write_text(f"scorer:\n  threshold: {threshold}\n")
    proc, bound = start_detector(
        tmp_path / "ready.json", "--config", str(config), "--model", str(tiny_cam),
        "--device", "cpu", "--precision", "fp32", "--stride", "1",
        "--events-db", str(tmp_path / "events.sqlite3"),
        "--open-frames", "1", "--close-frames", "1", "--max-frames", "1", "--update-every", "0")
    topics = [f"{kind}.belt" for kind in ("score", "overlay", "alert", "eos")]
    sub = vadstream("subscribe", "--connect", bound["publish"],
                    *(a for t in topics for a in ("--topic", t)),
                    "--save-overlays", str(tmp_path / "ov"), stdout=subprocess.PIPE, text=True)
    cap = None
    try:
        with Subscriber(bound["publish"], ["status"]) as probe:
            wait_subscribed(probe, topics, 60)
        cap = vadstream("capture", "--source", str(belt), "--stream-id", "belt", "--connect",
                        bound["bind"], "--fps", "20")
        lines, out = [], Lines(sub.stdout)
        while not lines or lines[-1]["topic"] != "eos.belt":
            line = out.next(120, "the next message from vadstream subscribe")
            assert line is not None, f"vadstream subscribe ended (code {sub.poll()})"
            lines.append(json.loads(line))
        assert cap.wait(60) == 0
    finally:
        for p in (cap, sub, proc):
            if p is not None:
                stop(p)
    assert proc.returncode == 0
    scores = [m for m in lines if m["topic"] == "score.belt"]
    alerts = [m for m in lines if m["topic"] == "alert.belt"]
    overlays = {m["seq"]: m for m in lines if m["topic"] == "overlay.belt"}
    # every part scored once, by the classifier's rule and the configured threshold
    assert sorted((s["clip"], s["frame"]) for s in scores) == keys
    assert {s["rule"] for s in scores} == {"probability"}
    assert all(s["threshold"] == pytest.approx(threshold) for s in scores)
    # both classes come mixed down the belt, not one after the other
    clips = [s["clip"] for s in scores]
    assert clips != sorted(clips) and clips != sorted(clips, reverse=True)
    # live verdicts are the offline ones, part by part
    offline = dict(zip(keys, _offline(tiny_cam, [files[k] for k in keys]), strict=True))
    flagged = [s for s in scores if s["anomalous"]]
    assert 0 < len(flagged) < len(scores)
    for s in scores:
        assert s["scores"]["score"] == pytest.approx(offline[(s["clip"], s["frame"])], abs=1e-4)
        assert s["anomalous"] == (offline[(s["clip"], s["frame"])] >= threshold)
    # each flagged part is its own event: a start and an end on that one frame
    assert [a["type"] for a in alerts] == ["start", "end"] * len(flagged)
    for s, start, end in zip(flagged, alerts[::2], alerts[1::2], strict=True):
        assert start["id"] == end["id"]
        assert start["start_seq"] == end["start_seq"] == end["end_seq"] == s["seq"]
        assert (end["clip"], end["frame"], end["frames"]) == (s["clip"], s["frame"], 1)
    assert len({a["id"] for a in alerts}) == len(flagged)
    # a flagged part's overlay carries the heat map (colour over the grey part); a good
    # one's is the part itself, grey but for its label
    for s in scores:
        image = cv2.imread(str(tmp_path / "ov" / f"belt_{s['seq']:08d}.jpg"))
        source = cv2.imread(str(files[(s["clip"], s["frame"])]))
        assert image.shape == source.shape == (300, 300, 3)
        body = image[60:].astype(int)                 # below the label
        colour = np.abs(body - body.mean(axis=2, keepdims=True)).mean()
        if s["anomalous"]:
            assert colour > 20 and np.abs(body - source[60:]).mean() > 10
        else:
            assert colour < 5
        assert overlays[s["seq"]]["anomalous"] == s["anomalous"]


def test_conveyor_sample_holds_validation_parts_only(tiny_cam, tmp_path):
    from models import read_meta
    from stream.apps.conveyor import conveyor_sample, validation_parts
    from train.images import load_image_set, split_indices

    meta = read_meta(tiny_cam)
    images = load_image_set(meta.provenance["data"], InputContract(size=32))
    train, val = split_indices(images.labels, meta.provenance["split"]["val_share"],
                               meta.provenance["split"]["seed"])
    trained = {images.paths[i].resolve() for i in train}
    expected = {images.paths[i].resolve() for i in val}
    assert {p.resolve() for v in validation_parts(meta).values() for p in v} == expected
    out = conveyor_sample(tiny_cam, tmp_path / "parts", parts=4)
    linked = {p.resolve() for c in CLASSES for p in list_frames(out / c)}
    assert all(len(list_frames(out / c)) >= 1 for c in CLASSES)
    assert linked <= expected and not linked & trained and len(linked) == 4


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_demo_conveyor_runs_the_preset(tiny_cam, tmp_path):
    summary = tmp_path / "s.json"
    done = vadstream_run("demo", "--conveyor", "--model", str(tiny_cam), "--no-dashboard",
                         "--fps", "0", "--parts", "6", "--device", "cpu", "--precision", "fp32",
                         "--video", str(tmp_path / "v.mp4"), "--json", str(summary),
                         timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "-> detector -> alerts" in done.stdout
    data = json.loads(summary.read_text())
    assert data["frames"] == 6
    alerts = data["alerts"]
    assert [a["type"] for a in alerts] == ["start", "end"] * (len(alerts) // 2)
    for start, end in zip(alerts[::2], alerts[1::2], strict=True):
        assert start["id"] == end["id"] and end["start_seq"] == end["end_seq"]
        assert end["frames"] == 1


@pytest.mark.slow
def test_demo_conveyor_without_weights_says_how_to_train_them(tmp_path):
    done = vadstream_run("demo", "--conveyor", "--model", str(tmp_path / "casting_cam"),
                         "--no-dashboard", timeout=60)
    assert done.returncode != 0
    assert "not found; train them with `vadstream train --config configs/casting_cam.yaml`" \
        in done.stderr

"""Calibrate a model's motion gate (:mod:`stream.detector.gate`) on normal training clips
and store it in the weights' metadata as ``calibration["gate"]``.

Still windows are made from real training frames: a frame held for a window and a half,
with independent uniform noise of amplitude ``level / 32`` (0-255 scale) added to every
frame, so that a window's motion (the largest 4×4 sum of its frames' change) is at most
``level``. Each is scored by the real network and the weights' own scorer, as live. The
bound is the largest measured motion of the noise levels at which every still window
scored at most ``threshold − margin·|threshold|``, capped at half the quietest motion of
any window of the normal clips themselves (there, someone always walks: such motion is
never still). The gated score is the largest rule value any still window within the bound
reached.

Usage: ``python -m train.gate calibrate WEIGHTS TRAIN_FOLDER [--write]``; and
``python -m train.gate verify WEIGHTS SOURCE...`` runs the live detector (in-process, real
sockets) on each clip folder or video with the gate off and on and reports whether every
frame's decision is equal and the share of frames gated.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import zmq

from models.registry import get_family
from models.scoring import ScorerConfig
from models.weights import load_calibration_arrays, load_weights, weights_paths
from stream.capture.frames import list_frames, load_clip
from stream.defaults import STRIDE
from stream.detector.config import DetectorConfig
from stream.detector.gate import window_motion
from stream.detector.loop import Detector
from stream.wire.protocol import encode_eos, encode_frame
from stream.wire.subscriber import Subscriber
from train.offline import score_clip

#: Noise levels tried (the largest 4×4 sum of change they allow, 0-255 scale).
LEVELS = (0.0, 8.0, 16.0, 32.0, 64.0, 96.0, 128.0, 192.0, 256.0)
#: Share of |threshold| a still window's score must stay below the threshold by.
MARGIN = 0.5


def clip_motions(x: np.ndarray, window: int, pixel_scale: float) -> np.ndarray:
    """Every window's motion in a clip (windows starting at each frame)."""
    return np.array([window_motion(x[s:s + window], pixel_scale)
                     for s in range(len(x) - window + 1)])


def calibrate(weights: str | Path, clips: list[Path], bases: int = 2, seed: int = 0) -> dict:
    """The gate of ``weights`` from normal ``clips`` (see the module docstring).

    Args:
        weights: Weights stem.
        clips: Normal training clip folders.
        bases: Frames of each clip held still (evenly spaced).
        seed: Of the noise.

    Returns:
        ``calibration["gate"]``: ``bound``, ``score`` and how they were derived.

    Raises:
        ValueError: If even a noiseless still window scores within the margin.
    """
    net, meta = load_weights(weights, mx.cpu())
    family = get_family(meta.model)
    scorer = family.scorer(meta, load_calibration_arrays(weights, meta), ScorerConfig())
    window, scale = meta.window, meta.contract.pixel_scale
    limit = scorer.threshold - MARGIN * abs(scorer.threshold)
    rng = np.random.default_rng(seed)
    still: list[tuple[float, float]] = []   # (motion, highest score) per still clip
    quietest = np.inf
    for folder in clips:
        x = load_clip(folder, meta.contract)
        quietest = min(quietest, float(clip_motions(x, window, scale).min()))
        for index in np.linspace(0, len(x) - 1, bases).astype(int):
            for level in LEVELS:
                a = level / 32 / scale
                held = x[index] + rng.uniform(-a, a, (window + window // 2, *x.shape[1:]))
                held = held.astype(np.float32)
                scores = score_clip(net, held, window, 1, scorer, mx.cpu())["score"]
                still.append((float(clip_motions(held, window, scale).max()),
                              float(np.nanmax(scores))))
    motions, scores = np.array(still).T
    failing = motions[scores > limit]
    passing = motions[motions < (failing.min() if len(failing) else np.inf)]
    if not len(passing):
        raise ValueError(f"{weights}: a still window scores above {limit:g} (the threshold "
                         f"{scorer.threshold:g} less its margin): no gate")
    bound = min(float(passing.max()), quietest / 2)
    return {"bound": round(bound, 3), "score": float(scores[motions <= bound].max()),
            "rule": scorer.rule, "threshold": scorer.threshold, "margin": MARGIN,
            "still_windows": int(len(still)), "clips": [f.name for f in clips],
            "quietest_normal_motion": quietest,
            "method": "largest motion (4x4 sum of frame change, 0-255) of still training "
                      "frames with noise at which every still window scored at most "
                      "threshold - margin*|threshold|, capped at half the quietest motion "
                      "of the normal clips; score: the highest still score within it"}


def read_source(source: str | Path) -> list[np.ndarray]:
    """The frames of a clip folder or a video file (BGR)."""
    source = Path(source)
    if source.is_dir():
        return [cv2.imread(str(p)) for p in list_frames(source)]
    capture, frames = cv2.VideoCapture(str(source)), []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    if not frames:
        raise ValueError(f"{source}: no frames read; give a clip folder or a video file")
    return frames


def live_scores(weights: str | Path, frames: list[np.ndarray], gate: str | float,
                stride: int = STRIDE, timeout: float = 600) -> list[dict]:
    """Every ``score`` message the live detector (in-process, real loopback sockets,
    fp32 on the CPU) publishes for ``frames`` sent as one stream under ``gate``.

    Raises:
        TimeoutError: If the stream's end is not reported within ``timeout`` seconds.
    """
    det = Detector(DetectorConfig(bind="tcp://127.0.0.1:*", publish="tcp://127.0.0.1:*",
                                  control="", model=str(weights), device="cpu",
                                  precision="fp32", stride=stride, events_db="",
                                  gate=gate))
    stop = threading.Event()
    thread = threading.Thread(target=det.run, args=(stop,))
    thread.start()
    sub = Subscriber(det.endpoints["publish"], ["score.cam", "eos.cam", "status"])
    push = zmq.Context.instance().socket(zmq.PUSH)
    live: list[dict] = []
    end = time.monotonic() + timeout

    def read() -> bool:
        if time.monotonic() > end:
            raise TimeoutError(f"the detector did not end stream cam in {timeout} s")
        m = sub.recv()
        if m is not None and m.topic == "score.cam":
            live.append(m.payload)
        return m is not None and m.topic == "eos.cam"
    try:
        while not (m := sub.recv()) or m.topic != "status":   # subscribed
            read()
        push.connect(det.endpoints["bind"])
        for i, image in enumerate(frames):
            push.send_multipart(encode_frame("cam", i, 1.0 + i, image))
            while i - (live[-1]["seq"] if live else 0) > 16:   # never overrun the ring
                read()
        push.send_multipart(encode_eos("cam"))
        while not read():
            pass
    finally:
        push.close(linger=0)
        sub.close()
        stop.set()
        thread.join(30)
    return live


def verify(weights: str | Path, source: str | Path, gate: str | float = "auto",
           stride: int = STRIDE, head: int | None = None, hold: int = 0) -> dict:
    """Live decisions on ``source`` with the gate off and with ``gate``: equal or not,
    and the share of scored frames gated.

    Args:
        weights: Weights stem.
        source: Clip folder or video file.
        gate: ``detector.gate`` for the gated run.
        stride: The detector's stride.
        head: Only the first ``head`` frames (None: all).
        hold: Then the last of them repeated this many times (a still stretch).
    """
    frames = read_source(source)[:head]
    frames += frames[-1:] * hold
    off = live_scores(weights, frames, "off", stride)
    on = live_scores(weights, frames, gate, stride)
    gated = {s["seq"] for s in on if s.get("gated")}
    return {"source": Path(source).name, "frames": len(frames), "scored": len(on),
            "same_frames": [s["seq"] for s in off] == [s["seq"] for s in on],
            "equal": [(s["seq"], s["anomalous"]) for s in off]
            == [(s["seq"], s["anomalous"]) for s in on],
            "anomalous": sum(s["anomalous"] for s in off),
            "gated": sum(s.get("gated", False) for s in on),
            "gated_share": round(sum(s.get("gated", False) for s in on) / max(1, len(on)), 4),
            # what the network scored the frames the gate skipped
            "highest_ungated_score_of_gated": max(
                (s["scores"]["score"] for s in off if s["seq"] in gated), default=None)}


def main(argv: list[str] | None = None) -> None:
    """``python -m train.gate calibrate|verify ...`` (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m train.gate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    cal = sub.add_parser("calibrate", help="derive the gate on normal training clips")
    cal.add_argument("weights")
    cal.add_argument("train", help="folder of normal training clip folders")
    cal.add_argument("--write", action="store_true",
                     help="store the gate in the weights' metadata")
    ver = sub.add_parser("verify", help="live decisions with the gate off and on")
    ver.add_argument("weights")
    ver.add_argument("sources", nargs="+", help="clip folders or video files")
    ver.add_argument("--gate", default="auto")
    ver.add_argument("--stride", type=int, default=STRIDE)
    ver.add_argument("--head", type=int, help="only the first HEAD frames of each source")
    ver.add_argument("--hold", type=int, default=0,
                     help="then its last frame repeated HOLD times (a still stretch)")
    args = parser.parse_args(argv)
    if args.command == "verify":
        for source in args.sources:
            print(json.dumps(verify(args.weights, source, args.gate, args.stride, args.head,
                                    args.hold)), flush=True)
        return
    clips = sorted(p for p in Path(args.train).iterdir() if p.is_dir())
    gate = calibrate(args.weights, clips)
    print(json.dumps(gate, indent=2))
    if args.write:
        path = weights_paths(args.weights)[1]
        meta = json.loads(path.read_text())
        meta["calibration"]["gate"] = gate
        path.write_text(json.dumps(meta, indent=2) + "\n")


if __name__ == "__main__":
    main()

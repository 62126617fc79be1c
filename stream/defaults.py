"""The one home of each default that several commands share: endpoints, files, folders.

Nothing heavy is imported here (no MXNet, no OpenCV), so ``vadstream serve``,
``capture`` and ``subscribe`` read these without loading a model.
"""

from __future__ import annotations

from pathlib import Path

#: The repository (or install) root: the folder holding ``models/`` and ``stream/``.
ROOT = Path(__file__).resolve().parents[1]

#: Where captures push frames and the detector's PULL socket binds.
FRAMES_ENDPOINT = "tcp://127.0.0.1:5555"
#: Where the detector publishes its topics and subscribers connect.
TOPICS_ENDPOINT = "tcp://127.0.0.1:5556"

#: Where the detector answers control requests (``detector.control``).
CONTROL_ENDPOINT = "tcp://127.0.0.1:5557"
#: Where ``vadstream run``'s supervisor answers camera requests (``supervisor.control``).
SUPERVISOR_ENDPOINT = "tcp://127.0.0.1:5558"

#: The shipped weights. ``models.weights.DEFAULT_WEIGHTS`` is the models-side definition
#: (``models`` imports nothing of ``stream``); this is the same path without importing
#: MXNet, and a test keeps the two equal.
WEIGHTS = ROOT / "models" / "weights" / "ped2_predictor"
#: How far a threshold may move from its model's calibrated one, either way (a factor):
#: wide enough for any tuning a scene needs, narrow enough that no setting silently
#: means "never alert" (a threshold above every score) or "always alert".
THRESHOLD_RANGE = 100.0
#: The shipped STAE weights (``models.weights.STAE_WEIGHTS``): the model whose FLOP count
#: ``vadstream bench --model`` can set against the machine's peak.
STAE_WEIGHTS = ROOT / "models" / "weights" / "ped2_stae"

#: Frames between a stream's windows: the detector's default (``detector.stride``) and the
#: stride a training config calibrates for (``data.stride``), and the one assumed for
#: weights whose calibration recorded none.
STRIDE = 5

#: The data sets beside the repository: ``../shared/data``.
DATA_ROOT = ROOT.parent / "shared" / "data"
#: The UCSD Ped2 root (its ``Train/`` and ``Test/`` clips) under :data:`DATA_ROOT`.
PED2 = DATA_ROOT / "UCSDped2"

#: The detector's events store (SQLite), relative to the directory vadstream runs in.
EVENTS_DB = "events.sqlite3"

#: ``HOST:PORT`` the dashboard (``vadstream serve``) listens on.
DASHBOARD_HTTP = "127.0.0.1:8080"

#: Seconds between two status lines of ``vadstream subscribe`` on a console, by default.
STATUS_EVERY_S = 30.0

#: The network's precisions (``detector.precision``; see ``stream.detector.precision``).
PRECISIONS = ("auto", "fp32", "bf16", "int8")
#: The network's runtimes (``detector.backend``; see ``stream.detector.engine``).
BACKENDS = ("mxnet", "onnxruntime")

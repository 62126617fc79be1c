"""CURVE: only clients with an admitted key can push frames or read topics."""

import shutil
import time

from stream.wire.security import CurveClient
from stream.wire.subscriber import Subscriber
from tests.conftest import PED2, free_port, stop, vadstream, vadstream_run, wait_for


def test_only_admitted_keys_push_frames_and_read_alerts(tiny_weights, tmp_path):
    keys = tmp_path / "keys"
    made = vadstream_run("keys", "--dir", str(keys), "--name", "server", "--name", "client",
                         "--name", "intruder")
    assert made.returncode == 0, made.stderr
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(keys / "client.key", allowed)
    bind, publish = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    det = vadstream("detect", "--model", str(tiny_weights), "--bind", bind, "--publish", publish,
                    "--device", "cpu", "--precision", "fp32", "--stride", "2",
                    "--events-db", str(tmp_path / "e.db"),
                    "--curve-secret-key", str(keys / "server.key_secret"),
                    "--curve-allowed", str(allowed))
    server = str(keys / "server.key")
    good = CurveClient(str(keys / "client.key_secret"), server)
    bad = CurveClient(str(keys / "intruder.key_secret"), server)
    try:
        with Subscriber(publish, ["status", "score.", "alert."], curve=good) as ok_sub, \
                Subscriber(publish, [""], curve=bad) as bad_sub, \
                Subscriber(publish, [""]) as plain_sub:
            wait_for(lambda: (m := ok_sub.recv()) is not None and m.topic == "status", 60,
                     "status for the admitted subscriber")
            intruder = vadstream("capture", "--source", str(PED2 / "Test" / "Test001"),
                                 "--stream-id", "intruder", "--connect", bind, "--fps", "0",
                                 "--curve-key", str(keys / "intruder.key_secret"),
                                 "--curve-server", server)
            plain = vadstream("capture", "--source", str(PED2 / "Test" / "Test001"),
                              "--stream-id", "plain", "--connect", bind, "--fps", "0")
            intruder.wait(60)
            plain.wait(60)
            time.sleep(1.5)
            seen = set()
            while (m := ok_sub.recv(300)) is not None:
                seen.add(m.payload.get("stream"))
                if m.topic == "status":
                    seen.update(m.payload["streams"])
            assert "intruder" not in seen and "plain" not in seen
            friend = vadstream("capture", "--source", str(PED2 / "Test" / "Test001"),
                               "--stream-id", "friend", "--connect", bind, "--fps", "30",
                               "--curve-key", str(keys / "client.key_secret"),
                               "--curve-server", server)
            wait_for(lambda: (m := ok_sub.recv()) is not None and m.topic == "score.friend",
                     60, "scores of the admitted capture")
            wait_for(lambda: (m := ok_sub.recv()) is not None and m.topic == "alert.friend",
                     60, "alerts for the admitted subscriber")
            stop(friend)
            assert bad_sub.recv(500) is None and plain_sub.recv(500) is None
    finally:
        stop(det)

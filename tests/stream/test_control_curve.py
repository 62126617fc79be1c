"""CURVE end to end on the control endpoints: a real `vadstream run` with CURVE on (keys
made here), the dashboard's write API adding a camera and changing it through the
supervisor's and the detector's CURVE endpoints, and clients without keys left unanswered."""

import dataclasses
import shutil
import threading

import pytest
import yaml

from stream.dashboard.app import run_serve
from stream.dashboard.config import ServeConfig
from stream.wire.control import ControlClient, NoReplyError
from stream.wire.security import CurveClient, make_keys
from tests.conftest import PED2, reserve_port, stop, vadstream, wait_for
from tests.conftest import call_json as _call

pytestmark = pytest.mark.slow   # starts processes


def _answers(endpoint: str, curve: CurveClient | None) -> bool:
    with ControlClient(endpoint, timeout_s=1, curve=curve) as client:
        try:
            return "streams" in client.state()
        except NoReplyError:
            return False


@pytest.mark.timeout(300)
def test_the_write_api_works_through_curve_on_vadstream_run(tiny_weights, tmp_path):
    keys = tmp_path / "keys"
    make_keys(keys, ["server", "dashboard", "supervisor", "stranger"])
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    for name in ("dashboard", "supervisor"):
        shutil.copy(keys / f"{name}.key", allowed)
    bind, publish, control, supervisor = (f"tcp://127.0.0.1:{reserve_port()}"
                                          for _ in range(4))
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "detector": {"bind": bind, "publish": publish, "control": control,
                     "model": str(tiny_weights), "device": "cpu", "precision": "fp32",
                     "stride": 2, "status_interval": 0.5,
                     "events_db": str(tmp_path / "events.sqlite3"),
                     "curve_secret_key": str(keys / "server.key_secret"),
                     "curve_allowed": str(allowed)},
        "supervisor": {"control": supervisor, "restart_delay": 0.2,
                       "curve_key": str(keys / "supervisor.key_secret"),
                       "curve_server": str(keys / "server.key")},
        "streams": []}))
    dashboard = CurveClient(str(keys / "dashboard.key_secret"), str(keys / "server.key"))
    stranger = CurveClient(str(keys / "stranger.key_secret"), str(keys / "server.key"))
    with open(tmp_path / "run.log", "w") as err:
        run = vadstream("run", "--config", str(config), stderr=err)
    stopping = threading.Event()
    urls: list[str] = []
    serve = ServeConfig(connect=publish, http="127.0.0.1:0", control=control,
                        supervisor=supervisor, events_db=str(tmp_path / "events.sqlite3"),
                        curve_key=dashboard.secret_key, curve_server=dashboard.server_key)
    server = threading.Thread(target=run_serve, args=(serve, stopping, urls.append))
    server.start()
    try:
        wait_for(lambda: _answers(control, dashboard), 120, "the detector over CURVE")
        wait_for(lambda: _answers(supervisor, dashboard), 60, "the supervisor over CURVE")
        # Neither endpoint answers a client without keys, nor one with keys not admitted.
        for endpoint in (control, supervisor):
            assert not _answers(endpoint, None)
            assert not _answers(endpoint, stranger)

        base = wait_for(lambda: urls, 30, "the dashboard to listen")[0].rstrip("/")
        entry = {"id": "curved", "source": str(PED2 / "Test" / "Test001"), "fps": 20,
                 "loop": True, "threshold": 40.0}
        # The supervisor (asked over CURVE) tells the detector (over CURVE, its own key).
        status, added = _call("POST", f"{base}/api/streams", entry)
        assert status == 200, added
        assert added["running"] and added["detector"]["threshold"] == 40.0
        status, body = _call("POST", f"{base}/api/streams/curved/threshold", {"value": 50.0})
        assert status == 200 and body["threshold"] == 50.0, body
        status, body = _call("GET", f"{base}/api/cameras")
        assert status == 200 and [c["id"] for c in body["streams"]] == ["curved"]
        status, body = _call("DELETE", f"{base}/api/streams/curved")
        assert status == 200, body
        assert run.poll() is None
    finally:
        stopping.set()
        server.join(30)
        stop(run, 30)


def test_the_supervisor_warns_when_its_endpoint_is_beyond_loopback_without_curve(caplog):
    from stream.apps.supervisor import control_server
    from stream.pipeline import SupervisorConfig, load_pipeline

    pipeline = dataclasses.replace(load_pipeline(None),
                                   supervisor=SupervisorConfig(control="tcp://0.0.0.0:*"))
    with caplog.at_level("WARNING", logger="stream.apps.supervisor"):
        auth, server = control_server(pipeline, {"state": dict})
    server.close()
    assert auth is None
    assert any("unauthenticated" in r.getMessage() and "CURVE" in r.getMessage()
               for r in caplog.records)


def test_supervisor_curve_needs_both_keys():
    from stream.pipeline import SupervisorConfig

    with pytest.raises(ValueError, match="curve_server"):
        SupervisorConfig(curve_key="supervisor.key_secret")

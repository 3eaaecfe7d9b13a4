"""examples/embedded: an app that depends on the WebRTCServerKit library, with its own password lookup, its
own join hook and its own Hummingbird application serving its page next to the mounted signaling endpoint."""
import json
import os
import socket
import urllib.request
from pathlib import Path

import pytest

from conftest import RELAY_MAX, RELAY_MIN, ROOT, free_port, turn_server_args
from test_browser_example import chrome, dump, wait_for_calls
from test_turn_udp_interop import _signaling_login

EXAMPLE = Path(os.environ.get("EMBEDDED_EXAMPLE_BINARY", ROOT / ".build-embedded" / "debug" / "embedded-app"))


@pytest.fixture
def app(start_server):
    turn_port, app_port = free_port(), free_port(socket.SOCK_STREAM)
    s = start_server(*turn_server_args(turn_port, "--turn.allow_peers", "127.0.0.1", "--signaling.static_dir", "none",
                                       "--app-port", str(app_port), "--pages", str(ROOT / "examples" / "simple")),
                     binary=EXAMPLE, wait_for=("TURN relay", "app listening"))
    s.signaling_port = app_port  # the app's own port serves signaling: nothing else listens for it
    return s


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return r.status, r.read().decode()


def test_its_own_lookup_decides_the_login_and_its_port_serves_its_page_and_the_operations_routes(app):
    assert "log in as 'demo'" not in app.output, "a lookup given in code is a way to log in: no demo login"
    assert "signaling listening" not in app.output, "mounted: the service binds no signaling port of its own"
    answer = _signaling_login(app.signaling_port, "alice", "wonderland")
    assert answer["event"] == "authenticated", answer
    assert any(u.startswith("turn:") for entry in answer["data"]["ice_servers"] for u in entry["urls"]), answer
    assert _signaling_login(app.signaling_port, "alice", "wrong")["event"] == "unauthorized"
    assert _signaling_login(app.signaling_port, "mallory", "wonderland")["event"] == "unauthorized"
    status, page = get(app.signaling_port, "/")
    assert status == 200 and "An app with webrtc-server inside" in page
    assert get(app.signaling_port, "/healthz") == (200, "ok\n")
    status, metrics = get(app.signaling_port, "/metrics")
    assert status == 200 and 'webrtc_auth_lookups_total{result="found"}' in metrics, metrics[:2000]


def test_two_chromium_pages_call_each_other_relay_only_and_its_hook_sees_them_join(app):
    browsers, state = [], []
    try:
        for user, password in (("alice", "wonderland"), ("bob", "the-builder")):
            b = chrome()
            browsers.append(b)
            b.get(f"http://127.0.0.1:{app.signaling_port}/room/embedded?user={user}&password={password}"
                  "&relay=1&ice=udp&autojoin=1")
        state = wait_for_calls(browsers, others=1)
        for s in state:
            assert s["relayOnly"] is True and len(s["peers"]) == 1, state
            peer = s["peers"][0]
            assert peer["connectionState"] == "connected" and peer["framesDecoded"] > 10, state
            assert peer["localCandidateType"] == "relay", state
            host, port = peer["localAddress"].rsplit(":", 1)
            assert host == "127.0.0.1" and RELAY_MIN <= int(port) <= RELAY_MAX, f"not the embedded server's relay: {state}"
        joined = [(e["peer"]["username"], e["room"]) for e in json.loads(get(app.signaling_port, "/joins")[1])["events"]
                  if e["kind"] == "joined"]
        assert ("alice", "embedded") in joined and ("bob", "embedded") in joined, joined
    except Exception:
        dump(browsers, state, app.output)
        raise
    finally:
        for b in browsers:
            b.quit()

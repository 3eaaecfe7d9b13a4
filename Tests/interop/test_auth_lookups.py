"""Password lookups configuration names (auth.sqlite, auth.http_lookup): a coturn user database written
by coturn's own turnadmin, and an app backend over HTTP that answers slowly."""
import hashlib
import http.server
import hmac
import json
import socket
import threading
import time

import pytest
import stun

from conftest import free_port, require_tool, turn_server_args
from test_turn_udp_interop import CLIENTS, MESSAGES, _signaling_login, assert_no_loss, run_uclient

REALM = "lookup.test"


def turnadmin(*args: str):
    import subprocess
    out = subprocess.run([require_tool("turnadmin"), *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def relays(port: int, peer: int, user: str, password: str, clients: int = CLIENTS, messages: int = MESSAGES) -> str:
    return run_uclient("-u", user, "-w", password, "-e", "127.0.0.1", "-r", str(peer), "-p", str(port),
                       "-m", str(clients), "-n", str(messages), "127.0.0.1", timeout=120)


def refused(output: str) -> bool:
    return "Cannot complete Allocation" in output and "Total lost packets" not in output


def wait_until(condition, timeout: float, what: str):
    """Polls `condition` (the lookup cache's TTL is time passing: there is no event to wait for)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture(params=["sqlite", "postgresql"])
def user_db(request, tmp_path):
    """A coturn user database of each kind, empty: (the server's setting, turnadmin's database option)."""
    if request.param == "sqlite":
        db = tmp_path / "turndb"
        yield ("--auth.sqlite", str(db)), ("-b", str(db))
    else:
        pg = request.getfixturevalue("postgres")
        yield ("--auth.postgresql", pg.url), ("-e", pg.conninfo)


def test_a_coturn_user_database_serves_both_halves_and_follows_turnadmin(start_server, turn_peer, user_db):
    setting, database = user_db
    turnadmin("-a", *database, "-u", "carol", "-r", REALM, "-p", "secret")
    port = free_port()
    server = start_server(*turn_server_args(port, "--realm", REALM, *setting, "--auth.lookup_cache_ttl", "1",
                                            "--turn.allow_peers", "127.0.0.1", "--auth.throttle_free_failures", "0",
                                            "--auth.block_after", "0"))
    assert "log in as 'demo'" not in server.output, "a lookup is a configured credential"
    assert_no_loss(relays(port, turn_peer, "carol", "secret"))
    assert refused(relays(port, turn_peer, "carol", "wrong", clients=1, messages=5))
    assert _signaling_login(server.signaling_port, "carol", "secret")["event"] == "authenticated"
    assert _signaling_login(server.signaling_port, "carol", "wrong")["event"] != "authenticated"
    # Added while running: accepted (the unknown answer expires from the cache within its TTL).
    assert _signaling_login(server.signaling_port, "dave", "pw")["event"] != "authenticated"
    turnadmin("-a", *database, "-u", "dave", "-r", REALM, "-p", "pw")
    wait_until(lambda: _signaling_login(server.signaling_port, "dave", "pw")["event"] == "authenticated", 10, "dave accepted")
    assert_no_loss(relays(port, turn_peer, "dave", "pw", clients=2, messages=200), clients=2, messages=200)
    # Removed while running: refused after the TTL, by both halves.
    turnadmin("-d", *database, "-u", "carol", "-r", REALM)
    wait_until(lambda: _signaling_login(server.signaling_port, "carol", "secret")["event"] != "authenticated", 10, "carol refused")
    assert refused(relays(port, turn_peer, "carol", "secret", clients=1, messages=5))


def test_a_missing_database_stops_the_start_with_one_clear_line(start_server, tmp_path, postgres):
    with pytest.raises(pytest.fail.Exception) as failed:
        start_server(*turn_server_args(free_port(), "--auth.sqlite", str(tmp_path / "nowhere.db")))
    assert "auth.sqlite: cannot read" in str(failed.value)
    with pytest.raises(pytest.fail.Exception) as failed:
        start_server(*turn_server_args(free_port(), "--auth.postgresql", postgres.url.replace("/coturn?", "/nowhere?")))
    assert "auth.postgresql: cannot query" in str(failed.value) and "nowhere" in str(failed.value)


class Backend(http.server.BaseHTTPRequestHandler):
    """The app's backend: checks the signature, answers erin at once and slow after 500 ms."""
    secret = b"backend-key"
    users = {"erin": "fast-pw", "slow": "slow-pw"}
    asked: list = []
    slow_asked = threading.Event()
    slow_answered = threading.Event()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(self.headers.get("X-Webrtc-Signature", ""), expected):
            self.send_response(403)
            self.end_headers()
            return
        question = json.loads(body)
        Backend.asked.append(question)
        if question["username"] == "slow":
            Backend.slow_asked.set()
            time.sleep(0.5)
            Backend.slow_answered.set()
        password = self.users.get(question["username"])
        if password is None:
            self.send_response(404)
            self.end_headers()
            return
        answer = json.dumps({"password": password}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def backend():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Backend.asked = []
    Backend.slow_asked.clear()
    Backend.slow_answered.clear()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_a_slow_http_lookup_holds_up_nobody_else(start_server, turn_peer, backend):
    port = free_port()
    server = start_server(*turn_server_args(port, "--realm", REALM, "--auth.users", "alice=wonder",
                                            "--auth.http_lookup", f"http://127.0.0.1:{backend}/lookup",
                                            "--auth.http_lookup_secret", Backend.secret.decode(),
                                            "--turn.allow_peers", "127.0.0.1"))
    results = {}

    def slow_client():
        results["slow"] = relays(port, turn_peer, "slow", "slow-pw", clients=2, messages=50)

    # While the backend holds the slow user's lookup (500 ms), the server answers other clients.
    thread = threading.Thread(target=slow_client)
    thread.start()
    assert Backend.slow_asked.wait(30)
    binding, _ = stun.request(0x0001)
    assert stun.exchange(port, binding)["type"] == 0x0101
    assert not Backend.slow_answered.is_set(), "answered while the lookup was still under way"
    alice = relays(port, turn_peer, "alice", "wonder")
    thread.join(timeout=120)
    assert_no_loss(alice)
    assert_no_loss(results["slow"], clients=2, messages=50)
    assert any(q["username"] == "slow" and q["realm"] == REALM for q in Backend.asked)
    assert _signaling_login(server.signaling_port, "erin", "fast-pw")["event"] == "authenticated"
    assert _signaling_login(server.signaling_port, "nobody", "x")["event"] != "authenticated"

"""examples/simple in real headless Chromium: browsers in one room, relay-only through our TURN, and
reconnecting by themselves when the server restarts."""
import shutil
import socket
import time

import pytest

from conftest import RELAY_MAX, RELAY_MIN, free_port, make_certificate, turn_server_args


def chrome(ignore_certificate_errors=False):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    driver_path = shutil.which("chromedriver")
    browser_path = shutil.which("chromium")
    if not driver_path or not browser_path:
        pytest.fail("chromium and chromium-driver (Debian) are not installed; scripts/test.sh installs them", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--use-fake-device-for-media-stream",
                 "--use-fake-ui-for-media-stream", "--autoplay-policy=no-user-gesture-required", "--mute-audio"):
        options.add_argument(flag)
    if ignore_certificate_errors:
        options.add_argument("--ignore-certificate-errors")  # the test's own TURN certificate
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=options)


def dump(browsers, state, server_output):
    """What a failing browser test prints: the pages' state, their console, the server's log."""
    for s in state:
        print("state:", s)
    for b in browsers:
        for entry in b.get_log("browser")[-30:]:
            print("browser:", entry["message"])
    print(server_output[-3000:])


def summaries(driver):
    return driver.execute_async_script("const done = arguments[arguments.length - 1]; webrtcSummary().then(done);")


def wait_for_calls(browsers, others, sessions=1, timeout=60):
    """Polls the browsers' own stats (there is no event to wait on from here) until each has `others`
    peers decoding video, in its `sessions`-th signaling session; returns the last summaries."""
    deadline = time.monotonic() + timeout
    while True:
        state = [summaries(b) for b in browsers]
        if all(s["sessions"] == sessions and len(s["peers"]) == others
               and all(p["framesDecoded"] > 10 and p["localCandidateType"] for p in s["peers"]) for s in state):
            return state
        if time.monotonic() > deadline:
            return state
        time.sleep(0.5)


@pytest.fixture
def server(start_server, tmp_path):
    port, tls_port = free_port(), free_port(socket.SOCK_STREAM)
    cert, key = make_certificate(tmp_path)
    s = start_server(*turn_server_args(port, "--auth.users", "alice=pw,bob=pw,carol=pw",
                                       # Both browsers relay on this host, so their peers are 127.0.0.1.
                                       "--turn.allow_peers", "127.0.0.1", "--turn.tls_port", str(tls_port),
                                       "--turn.tls_cert", str(cert), "--turn.tls_key", str(key)))
    s.turn_port, s.tls_port = port, tls_port
    return s


@pytest.mark.parametrize("users,ice,protocol", [
    (("alice", "bob"), "udp", "udp"),
    (("alice", "bob", "carol"), "udp", "udp"),
    (("alice", "bob"), "turns", "tls"),
], ids=["two-over-udp", "mesh-of-three", "two-over-turns"])
def test_chromium_peers_play_each_others_video_relayed_through_our_turn(server, users, ice, protocol):
    browsers = []
    others = len(users) - 1
    state = []
    try:
        for user in users:
            b = chrome(ignore_certificate_errors=protocol == "tls")
            browsers.append(b)
            b.get(f"http://127.0.0.1:{server.signaling_port}/room/browser-test?user={user}&password=pw&relay=1"
                  f"&ice={ice}&autojoin=1")
        state = wait_for_calls(browsers, others)
        for s in state:
            assert s["relayOnly"] is True
            assert len(s["peers"]) == others, state
            for peer in s["peers"]:
                assert peer["connectionState"] == "connected", state
                assert peer["framesDecoded"] > 10, state
                assert peer["localCandidateType"] == "relay", state
                assert peer["relayProtocol"] == protocol, state
                host, port = peer["localAddress"].rsplit(":", 1)
                assert host == "127.0.0.1" and RELAY_MIN <= int(port) <= RELAY_MAX, f"not our relay: {state}"
            urls = [u for entry in s["iceServers"] for u in entry["urls"]]
            expected = (f"turn:127.0.0.1:{server.turn_port}?transport=udp" if ice == "udp"
                        else f"turns:127.0.0.1:{server.tls_port}?transport=tcp")
            assert urls == [expected], s["iceServers"]
    except Exception:
        for s in state:
            print("state:", s["myId"], s.get("received"),
                  [(p["peer"], p["connectionState"], p.get("signalingState"), p.get("iceGatheringState"), p["framesDecoded"])
                   for p in s["peers"]])
        for b in browsers:
            for entry in b.get_log("browser")[-30:]:
                print("browser:", entry["message"])
        print(server.output[-3000:])
        raise
    finally:
        for b in browsers:
            b.quit()


def test_chromium_peers_reconnect_and_call_again_after_a_server_restart(start_server):
    """The server is stopped (SIGTERM: `shutdown`, then the sockets close) and started again on the same
    ports: both pages reconnect by themselves, get new peer ids and call each other again through the new
    server's relays."""
    turn_port, signaling_port = free_port(), free_port(socket.SOCK_STREAM)
    args = turn_server_args(turn_port, "--auth.users", "alice=pw,bob=pw", "--turn.allow_peers", "127.0.0.1",
                            "--signaling.port", str(signaling_port))
    first = start_server(*args)
    browsers, state, second = [], [], None
    try:
        for user in ("alice", "bob"):
            b = chrome()
            browsers.append(b)
            b.get(f"http://127.0.0.1:{signaling_port}/room/restart?user={user}&password=pw&relay=1&ice=udp&autojoin=1")
        state = wait_for_calls(browsers, others=1)
        assert all(s["sessions"] == 1 and s["peers"] and s["peers"][0]["framesDecoded"] > 10 for s in state), state
        ids_before = {s["myId"] for s in state}

        assert first.stop() == 0
        second = start_server(*args)
        state = wait_for_calls(browsers, others=1, sessions=2)
        ids_after = [s["myId"] for s in state]
        assert not ids_before & set(ids_after), state
        for s, other in ((state[0], ids_after[1]), (state[1], ids_after[0])):
            assert s["sessions"] == 2 and s["received"].get("shutdown") == 1, s
            [peer] = s["peers"]
            assert peer["peer"] == other, state
            assert peer["connectionState"] == "connected" and peer["framesDecoded"] > 10, state
            assert peer["localCandidateType"] == "relay", state
            assert RELAY_MIN <= int(peer["localAddress"].rsplit(":", 1)[1]) <= RELAY_MAX, state
    except Exception:
        dump(browsers, state, (second or first).output)
        raise
    finally:
        for b in browsers:
            b.quit()


class CuttingProxy:
    """A TCP proxy the test owns, between the pages and the signaling port: `cut()` resets every
    connection through it (RST both ways, no WebSocket close frame), as a network change does."""

    def __init__(self, upstream_port):
        import threading
        self.upstream = upstream_port
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.pairs = []
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            with self.lock:
                self.pairs.append((client, server))
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def cut(self):
        import struct
        with self.lock:
            pairs, self.pairs = self.pairs, []
        for pair in pairs:
            for s in pair:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = RST
                try:
                    s.shutdown(socket.SHUT_RD)  # wakes the pipe thread blocked in recv (sends nothing)
                except OSError:
                    pass
                s.close()

    def close(self):
        self.running = False
        self.listener.close()
        self.cut()


def frames_decoded(browser):
    return summaries(browser)["peers"][0]["framesDecoded"]


def test_chromium_call_survives_a_cut_signaling_connection_and_the_page_resumes(start_server):
    """Two pages in a relay-only call; the proxy in front of one page's signaling is reset (no close
    frame). The call's video keeps decoding through the gap, the page resumes with the same peer id, and a
    message sent after the resume arrives."""
    turn_port = free_port()
    server = start_server(*turn_server_args(turn_port, "--auth.users", "alice=pw,bob=pw", "--turn.allow_peers", "127.0.0.1"))
    proxy = CuttingProxy(server.signaling_port)
    browsers, state = [], []
    try:
        for user, port in (("alice", server.signaling_port), ("bob", proxy.port)):
            b = chrome()
            browsers.append(b)
            b.get(f"http://127.0.0.1:{port}/room/resume?user={user}&password=pw&relay=1&ice=udp&autojoin=1")
        state = wait_for_calls(browsers, others=1)
        alice, bob = browsers
        ids = [s["myId"] for s in state]
        assert all(s["peers"] and s["peers"][0]["framesDecoded"] > 10 for s in state), state

        before = frames_decoded(alice)
        proxy.cut()
        # Through the gap (the page waits 1 s before reconnecting): alice hears bob is away, not gone, and
        # bob's video keeps arriving over the relay.
        deadline = time.monotonic() + 10
        while summaries(alice)["received"].get("peer_away", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert summaries(alice)["received"].get("peer_away") == 1, summaries(alice)
        # The video goes on decoding (the page reconnects only after a second; the relay never stopped).
        while frames_decoded(alice) <= before + 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        during = frames_decoded(alice)
        assert during > before + 10, "video stopped when signaling was cut"
        while summaries(bob)["resumes"] == 0 and time.monotonic() < deadline + 10:
            time.sleep(0.2)
        after_bob = summaries(bob)
        assert after_bob["resumes"] == 1 and after_bob["sessions"] == 1, after_bob
        assert after_bob["myId"] == ids[1], after_bob
        assert summaries(alice).get("received", {}).get("left", 0) == 0
        assert frames_decoded(alice) > during
        # A message after the resume: bob's page sends alice one through the resumed session.
        bob.execute_script(f"socket.send(JSON.stringify({{event: 'after-resume', to: '{ids[0]}', data: {{}}}}))")
        deadline = time.monotonic() + 10
        while summaries(alice)["received"].get("after-resume", 0) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert summaries(alice)["received"].get("after-resume") == 1
        [peer] = summaries(alice)["peers"]
        assert peer["connectionState"] == "connected" and peer["peer"] == ids[1]
    except Exception:
        dump(browsers, state, server.output)
        raise
    finally:
        for b in browsers:
            b.quit()
        proxy.close()

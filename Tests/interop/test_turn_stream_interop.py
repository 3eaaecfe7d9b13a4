"""TURN over TCP and TLS driven by coturn's turnutils_uclient; certificate reload on SIGHUP."""
import shutil
import signal
import socket
import ssl
import time

import pytest

from conftest import RELAY_MAX, RELAY_MIN, free_port, make_certificate, turn_server_args
import stun
from test_turn_udp_interop import CLIENTS, MESSAGES, assert_no_loss, run_uclient


@pytest.fixture
def server(start_server, tmp_path):
    port, tls_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    cert, key = make_certificate(tmp_path)
    s = start_server(*turn_server_args(port, "--auth.users", "alice=wonderland", "--turn.allow_peers", "127.0.0.1",
                                       "--turn.tls_port", str(tls_port), "--turn.tls_cert", str(cert),
                                       "--turn.tls_key", str(key)))
    s.port, s.tls_port = port, tls_port
    return s


@pytest.mark.parametrize("mode", [[], ["-s"]], ids=["channel", "send-indication"])
def test_uclient_over_tcp_loses_nothing(server, turn_peer, mode):
    assert f"port={server.port} transport=tcp" in server.output
    out = run_uclient("-t", *mode, "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1", "-r", str(turn_peer),
                      "-p", str(server.port), "-m", str(CLIENTS), "-n", str(MESSAGES), "127.0.0.1")
    assert_no_loss(out)


def test_uclient_over_tls_loses_nothing(server, turn_peer):
    out = run_uclient("-t", "-S", "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1", "-r", str(turn_peer),
                      "-p", str(server.tls_port), "-m", str(CLIENTS), "-n", str(MESSAGES), "127.0.0.1")
    assert_no_loss(out)


def test_tls_listener_is_off_without_a_certificate_and_says_how_to_turn_it_on(start_server):
    port = free_port()
    s = start_server(*turn_server_args(port))
    assert "TURN over TLS is off: set turn.tls_cert and turn.tls_key" in s.output, s.output
    assert "transport=tls" not in s.output


def tls_connect(port):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # which certificate is served is what this test looks at
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn = context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert conn.version() in ("TLSv1.2", "TLSv1.3")
    return conn


def read_exactly(conn, n):
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def binding_over(conn):
    message, tid = stun.request(0x0001)
    conn.sendall(message)
    header = read_exactly(conn, 20)
    body = read_exactly(conn, int.from_bytes(header[2:4], "big"))
    reply = stun.parse(header + body)
    assert reply["tid"] == tid and reply["type"] == 0x0101, reply  # Binding success response


def served_certificate(conn):
    return conn.getpeercert(binary_form=True)


def der(path):
    return ssl.PEM_cert_to_DER_cert(path.read_text())


def wait_for_log(server, text, timeout=10):
    deadline = time.monotonic() + timeout
    while text not in server.output:
        assert time.monotonic() < deadline, f"no '{text}' in the log:\n{server.output}"
        time.sleep(0.05)  # the server's log is the event; this polls our copy of it


def rotating_certificates(directory):
    """Two certificate pairs, and the two files a server is pointed at, holding the first pair."""
    first, second = make_certificate(directory, "first"), make_certificate(directory, "second")
    cert, key = directory / "cert.pem", directory / "key.pem"
    install(first, cert, key)
    return first, second, cert, key


def install(pair, cert, key):
    shutil.copy(pair[0], cert)
    shutil.copy(pair[1], key)


def test_sighup_rereads_the_certificate_without_dropping_connections(start_server, tmp_path):
    (first_cert, first_key), (second_cert, second_key), cert, key = rotating_certificates(tmp_path)
    port, tls_port = free_port(socket.SOCK_STREAM), free_port(socket.SOCK_STREAM)
    s = start_server(*turn_server_args(port, "--turn.tls_port", str(tls_port), "--turn.tls_cert", str(cert),
                                       "--turn.tls_key", str(key)))
    old = tls_connect(tls_port)
    assert served_certificate(old) == der(first_cert)

    install((second_cert, second_key), cert, key)
    s.proc.send_signal(signal.SIGHUP)
    wait_for_log(s, "TLS certificate reloaded")
    new = tls_connect(tls_port)
    assert served_certificate(new) == der(second_cert)
    binding_over(old)  # the connection made before the reload still works
    binding_over(new)

    # A key that does not belong to the certificate: logged, and the second pair stays in use.
    shutil.copy(first_key, key)
    s.proc.send_signal(signal.SIGHUP)
    wait_for_log(s, "TLS certificate not reloaded")
    assert served_certificate(tls_connect(tls_port)) == der(second_cert)
    binding_over(old)


@pytest.mark.parametrize("transport", [[], ["-t"]], ids=["udp", "tcp"])
def test_uclient_over_ipv6_with_an_ipv6_relay_and_peer_loses_nothing(start_server, ipv6_peer, transport):
    port = free_port(socket.SOCK_STREAM)
    s = start_server("--turn.listen", "127.0.0.1,::1", "--turn.port", str(port), "--turn.relay_port_min", str(RELAY_MIN),
                     "--turn.relay_port_max", str(RELAY_MAX), "--auth.users", "alice=wonderland", "--turn.allow_peers", "::1")
    assert "address=::1" in s.output and "relayed-address6=::1" in s.output, s.output
    out = run_uclient(*transport, "-x", "-u", "alice", "-w", "wonderland", "-e", "::1", "-r", str(ipv6_peer),
                      "-p", str(port), "-m", str(CLIENTS), "-n", str(MESSAGES), "::1")
    assert_no_loss(out)


def test_uclient_rfc6062_tcp_relay_loses_nothing(server):
    """-T: TCP allocations (RFC 6062) in client-to-client mode: Connect from one relay to the other,
    ConnectionAttempt on the other side, ConnectionBind data connections on both."""
    out = run_uclient("-T", "-u", "alice", "-w", "wonderland", "-e", "127.0.0.1", "-p", str(server.port),
                      "-m", str(CLIENTS), "-n", str(MESSAGES), "127.0.0.1")
    assert_no_loss(out)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # offering TLS 1.0/1.1 is the point
def test_tls_below_1_2_is_refused(server):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        context.set_ciphers("DEFAULT@SECLEVEL=0")  # let the client offer TLS 1.0/1.1 at all
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", server.tls_port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            context.wrap_socket(raw, server_hostname="127.0.0.1")
    assert tls_connect(server.tls_port).version() in ("TLSv1.2", "TLSv1.3")

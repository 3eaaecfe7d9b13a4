"""The executable's configuration: embedded defaults, file < environment < flags, clear errors."""
import subprocess

import pytest

from conftest import BINARY, free_port, turn_server_args
import stun


def run_binary(*args, env=None, timeout=30):
    import os
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("WEBRTC_SERVER_")}
    full_env.update(env or {})
    return subprocess.run([str(BINARY), *args], capture_output=True, text=True, timeout=timeout, env=full_env)


def test_starts_on_embedded_defaults_without_any_file(start_server):
    s = start_server(embedded_defaults=True)
    assert "address=0.0.0.0" in s.output and "port=3478" in s.output, s.output
    assert "port=8080" in s.output and "signaling listening" in s.output, s.output
    assert stun.unauthenticated_allocate(3478)["realm"] == "webrtc-server"


def test_file_then_environment_then_flags(start_server, tmp_path):
    file_port, env_port = free_port(), free_port()
    config = tmp_path / "server.yaml"
    config.write_text(f"realm: from-file\nturn:\n  listen: [127.0.0.1]\n  port: {file_port}\n")
    s = start_server("--config", str(config))
    assert stun.unauthenticated_allocate(file_port)["realm"] == "from-file"
    s.stop()
    s = start_server("--config", str(config), env={"WEBRTC_SERVER_REALM": "from-env", "WEBRTC_SERVER_TURN_PORT": str(env_port)})
    assert stun.unauthenticated_allocate(env_port)["realm"] == "from-env"
    s.stop()
    s = start_server("--config", str(config), "--realm", "from-flag", env={"WEBRTC_SERVER_REALM": "from-env"})
    assert stun.unauthenticated_allocate(file_port)["realm"] == "from-flag"


@pytest.mark.parametrize("args,env,key", [
    (["--turn.port", "http"], {}, "turn.port"),
    (["--turn.relay_port_min", "60000", "--turn.relay_port_max", "50000"], {}, "turn.relay_port_min"),
    (["--turn.allow_peers", "300.1.1.1"], {}, "turn.allow_peers"),
    (["--no-such-option", "1"], {}, "--no-such-option"),
    ([], {"WEBRTC_SERVER_TURN_MAX_LIFETIME": "-5"}, "turn.max_lifetime"),
    ([], {"WEBRTC_SERVER_NO_SUCH_KEY": "1"}, "WEBRTC_SERVER_NO_SUCH_KEY"),
    (["--log_level", "loud"], {}, "log_level"),
    (["--signaling.duplicate_username", "maybe"], {}, "signaling.duplicate_username"),
    (["--signaling.tls_cert", "/nonexistent.pem", "--signaling.tls_key", "/nonexistent.key"], {}, "signaling.tls_cert"),
    (["--signaling.tls_cert", "/etc/hostname"], {}, "signaling.tls_key"),
    (["--webhook.url", "ftp://example.org/"], {}, "webhook.url"),
    ([], {"WEBRTC_SERVER_SIGNALING_AUTH_TIMEOUT": "soon"}, "signaling.auth_timeout"),
    (["--signaling.static_dir", "/nonexistent"], {}, "signaling.static_dir"),
])
def test_invalid_option_exits_nonzero_with_one_line_naming_it(args, env, key):
    done = run_binary(*args, env=env)
    assert done.returncode != 0
    lines = [l for l in (done.stderr + done.stdout).splitlines() if l.strip()]
    assert len(lines) == 1, lines
    assert key in lines[0], lines


def test_unreadable_config_file_is_one_line_too(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("turn: [unclosed\n")
    for args in (["--config", str(bad)], ["--config", str(tmp_path / "missing.yaml")]):
        done = run_binary(*args)
        lines = [l for l in (done.stderr + done.stdout).splitlines() if l.strip()]
        assert done.returncode != 0 and len(lines) == 1 and "config" in lines[0], lines


def test_sigterm_stops_the_server_cleanly(start_server):
    port = free_port()
    s = start_server(*turn_server_args(port))
    assert s.stop() == 0
    assert "stopped" in s.output


def open_files_limit(pid):
    """(soft, hard) RLIMIT_NOFILE of a running process, from /proc."""
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files line")


def test_open_files_limit_is_raised_to_the_hard_limit_and_a_short_one_is_named(start_server):
    """A shell on a stock box starts the server with a soft limit of 1 024 descriptors: it raises that to
    the hard limit, and says so when even the hard limit is short of what its limits can need."""
    import resource

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 4096))

    s = start_server(*turn_server_args(free_port()), preexec_fn=low_limit)
    assert open_files_limit(s.proc.pid) == (4096, 4096)
    assert "open files limit raised to the hard limit" in s.output and "from=256 to=4096" in s.output, s.output
    assert "open files limit 4096 is below the 30100 that signaling.max_connections and turn.max_allocations" \
        in s.output, s.output
    s.stop()

    s = start_server(*turn_server_args(free_port(), "--signaling.max_connections", "2000", "--turn.max_allocations",
                                       "1000"), preexec_fn=low_limit)
    assert open_files_limit(s.proc.pid) == (4096, 4096)
    assert "is below the" not in s.output, s.output
    s.stop()

    # TURN only: signaling connections are not counted, nor named.
    s = start_server(*turn_server_args(free_port(), "--signaling.enabled", "false", "--turn.max_allocations", "5000"),
                     preexec_fn=low_limit, wait_for=("TURN relay", "admin listening"))
    assert "open files limit 4096 is below the 5100 that turn.max_allocations can need" in s.output, s.output
    assert "signaling.max_connections" not in s.output, s.output


def test_the_readme_metrics_table_is_the_declared_list():
    """The README's metrics table must be exactly what the code declares (one list, three outputs)."""
    import re
    from conftest import ROOT
    from test_operations import run_binary
    generated = run_binary("--print-metrics-table")
    assert generated.returncode == 0, generated.stderr
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- metrics-table: [^\n]*-->\n(.*?)<!-- end of metrics-table -->", readme, re.S)
    assert found, "the README lost its metrics-table markers"
    assert found.group(1) == generated.stdout, "README metrics table differs from webrtc-server --print-metrics-table"

"""firewall.sh inside a network namespace this test creates (never the host's own rules)."""
import os
import shutil
import subprocess
import uuid

import pytest

from conftest import BINARY, ROOT, make_certificate

SCRIPT = ROOT / "firewall.sh"


@pytest.fixture
def netns():
    for tool in ("ip", "iptables", "ip6tables"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (Debian packages iproute2, iptables); scripts/test.sh installs them",
                        pytrace=False)
    name = f"wrtc-fw-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


def inside(ns, *command, check=True):
    return subprocess.run(["ip", "netns", "exec", ns, *command], capture_output=True, text=True, check=check)


def rules(ns):
    return {tool: inside(ns, tool, "-S").stdout for tool in ("iptables", "ip6tables")}


def firewall(ns, *args):
    done = inside(ns, "bash", str(SCRIPT), "--binary", str(BINARY), *args, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_rules_follow_the_configuration_and_a_second_run_adds_nothing(netns, tmp_path):
    cert, key = make_certificate(tmp_path)
    config = ["--signaling.port", "8443", "--turn.port", "3479", "--turn.tls_port", "5350", "--turn.tls_cert", str(cert),
              "--turn.tls_key", str(key), "--turn.relay_port_min", "50000", "--turn.relay_port_max", "50999"]
    before = rules(netns)
    firewall(netns, *config)
    after = rules(netns)
    for tool in ("iptables", "ip6tables"):
        chain = [line for line in after[tool].splitlines() if line.startswith("-A WEBRTC-SERVER")]
        opened = sorted((line.split("-p ")[1].split()[0], line.split("--dport ")[1].split()[0]) for line in chain)
        assert opened == sorted([("tcp", "8443"), ("udp", "3479"), ("tcp", "3479"), ("tcp", "5350"),
                                 ("udp", "50000:50999")]), after[tool]
        assert all(line.endswith("-j ACCEPT") for line in chain)
        assert after[tool].count("-A INPUT -j WEBRTC-SERVER") == 1, after[tool]
        assert after[tool] != before[tool]

    firewall(netns, *config)
    assert rules(netns) == after  # idempotent

    firewall(netns, "--remove")
    assert rules(netns) == before
    firewall(netns, "--remove")  # removing again is fine too
    assert rules(netns) == before


def test_dry_run_prints_the_rules_and_changes_nothing(netns):
    before = rules(netns)
    out = firewall(netns, "--dry-run")
    assert rules(netns) == before
    assert "iptables -A WEBRTC-SERVER -p udp -m udp --dport 3478" in out, out
    assert "ip6tables -A WEBRTC-SERVER -p udp -m udp --dport 49152:65535" in out, out
    assert "--dport 8080" in out and "5349" not in out, out  # no TLS listener without a certificate
    assert "ip6tables -I INPUT -j WEBRTC-SERVER" in out


def test_without_tcp_or_signaling_those_ports_stay_closed(netns):
    firewall(netns, "--turn.tcp", "false", "--signaling.enabled", "false")
    chain = [l for l in rules(netns)["iptables"].splitlines() if l.startswith("-A WEBRTC-SERVER")]
    assert [l.split("-p ")[1].split()[0] for l in chain] == ["udp", "udp"], chain

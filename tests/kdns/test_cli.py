"""The kdns command line: the agreed flags parse, and bad values fail with a message naming the flag."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from control.cli_support import add_common
from kdns.cli import COMMAND, wait_for_first_sync

AGREED = (
    "--api-server http://192.168.56.10:6443 --listen 192.168.56.10 --port 53 --cluster-domain cluster.local "
    "--resolv-conf /var/lib/pocketkube/nodes/control-plane/resolv.conf --health-port 9153 --ttl 30"
).split()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pocket kdns")
    add_common(parser)
    COMMAND.add_arguments(parser)
    return parser.parse_args(argv)


def test_agreed_command_line_parses_with_defaults_for_the_rest() -> None:
    args = parse(AGREED)
    assert (args.listen, args.port, args.ttl, args.health_port) == ("192.168.56.10", 53, 30, 9153)
    assert args.service_cluster_ip_range == "10.96.0.0/12"
    assert args.cluster_cidr == "10.244.0.0/16"
    assert args.recursion_networks.split(",")[:3] == ["10.244.0.0/16", "10.96.0.0/12", "192.168.56.0/24"]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--ttl", "5000", "--ttl 5000"),
        ("--port", "70000", "--port 70000"),
        ("--listen", "dns.local", "--listen 'dns.local'"),
        ("--service-cluster-ip-range", "10.96.0.0/40", "--service-cluster-ip-range"),
        ("--cluster-cidr", "fd00::/64", "--cluster-cidr"),
        ("--recursion-networks", "10.0.0.0/8,nonsense", "nonsense"),
        ("--workers", "0", "--workers 0"),
        ("--dns-service", "kube-dns", "--dns-service 'kube-dns'"),
        ("--peer-check-interval", "-1", "--peer-check-interval -1"),
    ],
)
def test_bad_flag_values_are_named(flag: str, value: str, message: str, caplog: pytest.LogCaptureFixture) -> None:
    assert COMMAND.run(parse([*AGREED, flag, value])) == 2
    assert message in caplog.text


def test_missing_resolv_conf_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "resolv.conf"
    args = parse([*AGREED, "--resolv-conf", str(missing), "--api-server", "http://127.0.0.1:9"])
    assert COMMAND.run(args) == 2
    assert str(missing) in caplog.text


def test_busy_dns_port_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        with socket.socket() as busy_tcp:  # TCP is bound first: hold both so either bind fails
            busy_tcp.bind(("127.0.0.1", port))
            args = parse(
                [*AGREED, "--listen", "127.0.0.1", "--port", str(port), "--resolv-conf", str(resolv)]
                + ["--api-server", "http://127.0.0.1:9"]
            )
            assert COMMAND.run(args) == 2
    assert f"--port {port}" in caplog.text


async def test_waits_for_the_first_sync_before_serving_then_gives_up() -> None:
    """A restarted kdns answers once it knows the cluster's names (as CoreDNS waits), but not forever."""
    calls = 0

    def synced_on_third_look() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    assert await wait_for_first_sync(synced_on_third_look, timeout=5.0, poll=0.001) is True
    assert calls == 3
    assert await wait_for_first_sync(lambda: False, timeout=0.05, poll=0.01) is False

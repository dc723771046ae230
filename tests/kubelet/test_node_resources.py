"""Node allocatable = capacity minus `--system-reserved`, and the flag's errors."""

from __future__ import annotations

import pytest

from control.clock import FakeClock
from kubelet.node import NodeAgent, NodeIdentity, allocatable, parse_reserved


def test_reservation_comes_off_allocatable_in_kubernetes_units() -> None:
    capacity = {"cpu": "2", "memory": "4194304Ki", "pods": "110"}
    assert allocatable(capacity, parse_reserved("cpu=500m,memory=1Gi")) == {
        "cpu": "1500m",
        "memory": "3145728Ki",
        "pods": "110",
    }
    assert allocatable(capacity, parse_reserved("cpu=1")) == {"cpu": "1", "memory": "4194304Ki", "pods": "110"}
    assert allocatable(capacity, parse_reserved("")) == capacity
    assert allocatable(capacity, parse_reserved("cpu=3,memory=8Gi"))["cpu"] == "0"
    assert allocatable(capacity, parse_reserved("memory=8Gi"))["memory"] == "0Ki"


@pytest.mark.parametrize(
    ("flag", "complaint"),
    [
        ("cpu", "not cpu=<quantity>"),
        ("disk=1Gi", "not cpu=<quantity>"),
        ("memory=lots", "invalid quantity 'lots'"),
        ("cpu=-1", "must not be negative"),
    ],
)
def test_bad_reservation_is_named(flag: str, complaint: str) -> None:
    with pytest.raises(ValueError, match="--system-reserved") as err:
        parse_reserved(flag)
    assert complaint in str(err.value)


def test_node_status_reports_capacity_and_reduced_allocatable() -> None:
    identity = NodeIdentity("n1", "192.168.56.19", reserved=parse_reserved("cpu=100m,memory=256Mi"))
    status = NodeAgent(None, identity, "docker://x", FakeClock(), 5, lambda: True).node_status()
    capacity, left = status["capacity"], status["allocatable"]
    assert int(left["memory"].removesuffix("Ki")) == int(capacity["memory"].removesuffix("Ki")) - 256 * 1024
    assert left["cpu"] == f"{int(capacity['cpu']) * 1000 - 100}m"
    assert left["pods"] == capacity["pods"]

"""The protobuf body decoder on hand-encoded messages."""

from __future__ import annotations

import pytest

from control.apiserver.protobuf import ProtobufError, decode


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: int | bytes | str) -> bytes:
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(raw)) + raw


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    return b"k8s\x00" + field(1, field(1, api_version) + field(2, kind)) + field(2, raw)


def test_configmap_with_zero_values_dropped() -> None:
    meta = field(1, "cm") + field(2, "") + field(11, field(1, "app") + field(2, "web")) + field(7, 0)
    raw = field(1, meta) + field(2, field(1, "k") + field(2, "v")) + field(3, field(1, "b") + field(2, b"\x00\x01"))
    assert decode(envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "labels": {"app": "web"}},
        "data": {"k": "v"},
        "binaryData": {"b": "AAE="},
    }


def test_service_target_port_int_or_string() -> None:
    port = field(3, 80) + field(4, field(1, 1) + field(3, "http"))
    raw = field(1, field(1, "s")) + field(2, field(1, port) + field(4, "ClusterIP"))
    assert decode(envelope("v1", "Service", raw))["spec"] == {
        "ports": [{"port": 80, "targetPort": "http"}],
        "type": "ClusterIP",
    }


def test_unset_structs_pass_but_unknown_values_are_refused() -> None:
    zero_struct = field(3, field(1, 0) + field(2, ""))
    assert decode(envelope("apps/v1", "Deployment", field(1, field(1, "d")) + zero_struct))["metadata"] == {"name": "d"}
    with pytest.raises(ProtobufError, match="field 15 of ObjectMeta is not supported"):
        decode(envelope("v1", "ConfigMap", field(1, field(1, "cm") + field(15, "surprise"))))


@pytest.mark.parametrize(
    "body, message",
    [
        (envelope("v1", "Pod", b""), "v1/Pod are not supported"),
        (b"{}", "magic"),
        (b"k8s\x00" + varint(1 << 3 | 2) + varint(50), "truncated"),
    ],
)
def test_bad_bodies_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(ProtobufError, match=message):
        decode(body)


def test_delete_options_keep_an_explicit_zero_grace_period() -> None:
    raw = field(1, 0) + field(2, field(1, "uid-1")) + field(4, "Foreground") + field(5, "All")
    assert decode(envelope("v1", "DeleteOptions", raw)) == {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "gracePeriodSeconds": 0,
        "preconditions": {"uid": "uid-1"},
        "propagationPolicy": "Foreground",
        "dryRun": ["All"],
    }
    assert "gracePeriodSeconds" not in decode(envelope("apps/v1", "DeleteOptions", field(4, "Orphan")))


def test_eviction_with_delete_options() -> None:
    raw = field(1, field(1, "web-1") + field(3, "default")) + field(2, field(1, 5))
    assert decode(envelope("policy/v1", "Eviction", raw)) == {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "web-1", "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 5},
    }

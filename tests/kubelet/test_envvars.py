"""Service environment variables and container env, per §2 of the behaviour reference."""

from __future__ import annotations

import pytest

from kubelet.envvars import EnvError, container_env, expand, referenced_sources, service_env, visible_services


def svc(name: str, ns: str, ip: str, *ports: dict) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"clusterIP": ip, "ports": list(ports)}}


def pod(ns: str = "default", links: bool | None = None, name: str = "p") -> dict:
    spec: dict = {"containers": []}
    if links is not None:
        spec["enableServiceLinks"] = links
    return {
        "metadata": {"name": name, "namespace": ns, "uid": "u1", "labels": {"app": "web"}},
        "spec": {**spec, "nodeName": "worker1"},
        "status": {"podIP": "10.244.1.5", "hostIP": "192.168.56.11"},
    }


def test_redis_primary_names_and_values() -> None:
    env = service_env(
        [svc("redis-primary", "default", "10.0.0.11", {"name": "tcp-redis", "port": 6379, "protocol": "TCP"})]
    )
    assert env == {
        "REDIS_PRIMARY_SERVICE_HOST": "10.0.0.11",
        "REDIS_PRIMARY_SERVICE_PORT": "6379",
        "REDIS_PRIMARY_SERVICE_PORT_TCP_REDIS": "6379",
        "REDIS_PRIMARY_PORT": "tcp://10.0.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP": "tcp://10.0.0.11:6379",
        "REDIS_PRIMARY_PORT_6379_TCP_PROTO": "tcp",
        "REDIS_PRIMARY_PORT_6379_TCP_PORT": "6379",
        "REDIS_PRIMARY_PORT_6379_TCP_ADDR": "10.0.0.11",
    }


def test_multiple_ports_dashed_names_protocols_and_ipv6() -> None:
    env = service_env(
        [
            svc(
                "q-u-u-x",
                "ns",
                "9.8.7.6",
                {"name": "8083", "port": 8083},
                {"name": "u-d-p", "port": 8084, "protocol": "UDP"},
            ),
            svc("sctp-1", "ns", "1.2.3.4", {"port": 777, "protocol": "SCTP"}),
            svc("v6", "ns", "2001:DB8::", {"port": 8084, "protocol": "UDP"}),
        ]
    )
    # first port only for the bare names; every named port for _SERVICE_PORT_<NAME>
    assert env["Q_U_U_X_SERVICE_PORT"] == "8083"
    assert env["Q_U_U_X_SERVICE_PORT_8083"] == "8083"
    assert env["Q_U_U_X_SERVICE_PORT_U_D_P"] == "8084"
    assert env["Q_U_U_X_PORT"] == "tcp://9.8.7.6:8083"
    assert env["Q_U_U_X_PORT_8084_UDP"] == "udp://9.8.7.6:8084"
    assert env["Q_U_U_X_PORT_8084_UDP_PROTO"] == "udp"
    assert env["Q_U_U_X_PORT_8083_TCP_PROTO"] == "tcp"
    assert env["SCTP_1_PORT"] == "sctp://1.2.3.4:777"
    assert env["SCTP_1_PORT_777_SCTP_ADDR"] == "1.2.3.4"
    assert "SCTP_1_SERVICE_PORT_" not in "".join(env)  # unnamed port: no per-name variable
    assert env["V6_PORT_8084_UDP"] == "udp://[2001:DB8::]:8084"
    assert env["V6_PORT_8084_UDP_ADDR"] == "2001:DB8::"
    assert env["V6_SERVICE_HOST"] == "2001:DB8::"


SERVICES = [
    svc("kubernetes", "default", "1.2.3.1", {"name": "https", "port": 443}),
    svc("test", "test1", "1.2.3.3", {"name": "tcp", "port": 8083}),
    svc("kubernetes", "test2", "1.2.3.4", {"name": "https", "port": 443}),
    svc("headless", "test1", "None", {"port": 80}),
    svc("empty", "test1", "", {"port": 80}),
    svc("other", "elsewhere", "1.2.3.9", {"port": 80}),
]


def names(services: list[dict]) -> set[tuple[str, str]]:
    return {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in services}


def test_which_services_are_visible() -> None:
    assert names(visible_services(SERVICES, "test1", True)) == {("default", "kubernetes"), ("test1", "test")}
    assert names(visible_services(SERVICES, "test1", False)) == {("default", "kubernetes")}
    assert names(visible_services(SERVICES, "test2", True)) == {("test2", "kubernetes")}
    assert names(visible_services(SERVICES, "test2", False)) == {("default", "kubernetes")}


def test_kubernetes_override_by_own_namespace() -> None:
    assert container_env(pod("test2", True), {"name": "c"}, SERVICES)["KUBERNETES_SERVICE_HOST"] == "1.2.3.4"
    assert container_env(pod("test2", False), {"name": "c"}, SERVICES)["KUBERNETES_SERVICE_HOST"] == "1.2.3.1"


def test_headless_and_other_namespaces_skipped() -> None:
    env = container_env(pod("test1"), {"name": "c"}, SERVICES)
    assert "TEST_SERVICE_HOST" in env
    assert not [k for k in env if k.startswith(("HEADLESS_", "EMPTY_", "OTHER_"))]


def test_links_disabled_keeps_only_kubernetes() -> None:
    env = container_env(pod("test1", False), {"name": "c"}, SERVICES)
    assert {k.split("_")[0] for k in env} == {"KUBERNETES"}


def test_user_env_wins_and_expands() -> None:
    container = {
        "name": "c",
        "env": [
            {"name": "TEST_SERVICE_HOST", "value": "mine"},
            {"name": "SERVICE_VAR_TEST", "value": "$(TEST_SERVICE_HOST):$(TEST_SERVICE_PORT)"},
            {"name": "FIRST", "value": "one"},
            {"name": "OUT_OF_ORDER_TEST", "value": "$(FIRST)-$(OUT_OF_ORDER_TARGET)"},
            {"name": "OUT_OF_ORDER_TARGET", "value": "FOO"},
            {"name": "UNDEF", "value": "$(UNDEFINED_VAR)"},
            {"name": "ESCAPED", "value": "$$(FIRST) costs $5 $(unclosed"},
            {"name": "EMPTY"},
        ],
    }
    env = container_env(pod("test1"), container, SERVICES)
    assert env["TEST_SERVICE_HOST"] == "mine"
    # user variables beat service ones, but $(VAR) still sees the user value once defined earlier
    assert env["SERVICE_VAR_TEST"] == "mine:8083"
    assert env["OUT_OF_ORDER_TEST"] == "one-$(OUT_OF_ORDER_TARGET)"  # a forward reference stays literal
    assert env["OUT_OF_ORDER_TARGET"] == "FOO"
    assert env["UNDEF"] == "$(UNDEFINED_VAR)"
    assert env["ESCAPED"] == "$(FIRST) costs $5 $(unclosed"
    assert env["EMPTY"] == ""


def test_service_variable_expansion_without_override() -> None:
    container = {
        "name": "c",
        "env": [{"name": "SERVICE_VAR_TEST", "value": "$(TEST_SERVICE_HOST):$(TEST_SERVICE_PORT)"}],
    }
    assert container_env(pod("test1"), container, SERVICES)["SERVICE_VAR_TEST"] == "1.2.3.3:8083"


def test_field_refs() -> None:
    paths = {
        "N": "metadata.name",
        "NS": "metadata.namespace",
        "IP": "status.podIP",
        "NODE": "spec.nodeName",
        "HOST": "status.hostIP",
        "APP": "metadata.labels['app']",
    }
    container = {
        "name": "c",
        "env": [{"name": k, "valueFrom": {"fieldRef": {"fieldPath": v}}} for k, v in paths.items()],
    }
    env = container_env(pod("test1", name="web-1"), container, [])
    assert {k: env[k] for k in paths} == {
        "N": "web-1",
        "NS": "test1",
        "IP": "10.244.1.5",
        "NODE": "worker1",
        "HOST": "192.168.56.11",
        "APP": "web",
    }


def test_bad_sources_are_named() -> None:
    with pytest.raises(EnvError, match="spec.bogus"):
        container_env(
            pod(), {"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}, []
        )
    with pytest.raises(EnvError, match="resourceFieldRef"):
        container_env(pod(), {"name": "c", "env": [{"name": "X", "valueFrom": {"resourceFieldRef": {}}}]}, [])
    with pytest.raises(EnvError, match='secret "s" not found'):
        container_env(pod(), {"name": "c", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s"}}}]}, [])


def test_expand_prefers_earlier_tables() -> None:
    assert expand("$(A)/$(B)", {"A": "1"}, {"A": "x", "B": "2"}) == "1/2"


CONFIG = {
    ("configmaps", "settings"): {"MODE": "fast", "LEVEL": "3", "bad key": "x"},
    ("configmaps", "more"): {"MODE": "slow"},
    ("secrets", "creds"): {"password": "s3cret"},
    ("secrets", "missing"): None,
}


def test_env_from_config_maps_and_secrets() -> None:
    container = {
        "name": "c",
        "envFrom": [
            {"configMapRef": {"name": "settings"}},
            {"configMapRef": {"name": "more"}, "prefix": "MORE_"},
            {"secretRef": {"name": "missing", "optional": True}},
        ],
        "env": [
            {"name": "LEVEL", "value": "override"},
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope", "optional": True}}},
            {"name": "SEEN", "value": "$(MODE)-$(PASSWORD)"},
        ],
    }
    assert referenced_sources(container) == {
        ("configmaps", "settings"),
        ("configmaps", "more"),
        ("secrets", "missing"),
        ("secrets", "creds"),
    }
    env = container_env(pod("test1"), container, [], CONFIG)
    assert {k: env[k] for k in ("MODE", "MORE_MODE", "LEVEL", "PASSWORD", "SEEN")} == {
        "MODE": "fast",
        "MORE_MODE": "slow",
        "LEVEL": "override",
        "PASSWORD": "s3cret",
        "SEEN": "fast-s3cret",
    }
    assert "OPT" not in env and "bad key" not in env


def test_env_from_missing_required_sources_are_named() -> None:
    with pytest.raises(EnvError, match='configmap "absent" not found'):
        container_env(pod(), {"name": "c", "envFrom": [{"configMapRef": {"name": "absent"}}]}, [], CONFIG)
    with pytest.raises(EnvError, match='key "nope" not found in configmap "settings"'):
        var = {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope"}}}
        container_env(pod(), {"name": "c", "env": [var]}, [], CONFIG)


def test_resource_field_ref_divides_and_rounds_up_with_allocatable_for_unset_limits() -> None:
    app = {
        "name": "app",
        "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}},
        "env": [
            {"name": "CPU_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "CPU_LIMIT_M", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}},
            {"name": "CPU_REQUEST_M", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
            {
                "name": "MEM_LIMIT_MI",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {"name": "MEM_REQUEST", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}},
            {
                "name": "SIDE_MEM_LIMIT",
                "valueFrom": {"resourceFieldRef": {"containerName": "side", "resource": "limits.memory"}},
            },
        ],
    }
    side = {"name": "side"}
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [app, side]}}
    env = container_env(pod, app, [], allocatable={"cpu": "2", "memory": "4096Ki"})
    assert {k: v for k, v in env.items() if not k.startswith("KUBERNETES")} == {
        "CPU_LIMIT": "1",
        "CPU_LIMIT_M": "500",
        "CPU_REQUEST_M": "250",
        "MEM_LIMIT_MI": "64",
        "MEM_REQUEST": str(64 * 2**20),  # defaulted from the limit
        "SIDE_MEM_LIMIT": str(4096 * 1024),  # no limit: the node's allocatable
    }


@pytest.mark.parametrize(
    ("ref", "complaint"),
    [
        ({"resource": "limits.gpu"}, "'limits.gpu' is not one of"),
        ({"resource": "limits.cpu", "containerName": "ghost"}, "'ghost' is not a container"),
        ({"resource": "limits.cpu", "divisor": "0"}, "divisor must be positive"),
    ],
)
def test_bad_resource_field_ref_is_named(ref: dict, complaint: str) -> None:
    app = {"name": "app", "env": [{"name": "X", "valueFrom": {"resourceFieldRef": ref}}]}
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": [app]}}
    with pytest.raises(EnvError, match=complaint):
        container_env(pod, app, [])

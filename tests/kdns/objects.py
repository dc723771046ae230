"""Fixed Service and Endpoints objects, shaped as the API server returns them, for the kdns tests."""

from __future__ import annotations

from typing import Any

from kdns.records import RecordIndex

Object = dict[str, Any]

SERVICE_CIDR = "10.96.0.0/12"
POD_CIDR = "10.244.0.0/16"
SERVER_IP = "192.168.56.10"
SERIAL = 1764000000


def service(namespace: str, name: str, spec: Object) -> Object:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": namespace, "name": name}, "spec": spec}


def endpoints(namespace: str, name: str, subsets: list[Object]) -> Object:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"namespace": namespace, "name": name},
        "subsets": subsets,
    }


SERVICES = [
    service(
        "default",
        "kubernetes",
        {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
    ),
    service(
        "kube-system",
        "kube-dns",
        {
            "clusterIP": "10.96.0.10",
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        },
    ),
    service(
        "default",
        "web",
        {
            "clusterIP": "10.96.5.5",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 8080, "protocol": "TCP"}],
        },
    ),
    service("default", "empty", {"clusterIP": "10.96.7.7", "ports": [{"name": "http", "port": 80}]}),
    service(
        "default",
        "db",
        {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
    ),
    service("default", "pending", {"clusterIP": "None", "ports": [{"name": "http", "port": 80}]}),
    service(
        "default",
        "published",
        {"clusterIP": "None", "publishNotReadyAddresses": True, "ports": [{"name": "http", "port": 80}]},
    ),
    service("default", "ext", {"type": "ExternalName", "externalName": "www.example.com"}),
    service("other", "web", {"clusterIP": "10.96.9.9", "ports": [{"name": "http", "port": 80}]}),
]

ENDPOINTS = [
    endpoints(
        "default",
        "kubernetes",
        [{"addresses": [{"ip": SERVER_IP}], "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}],
    ),
    endpoints(
        "kube-system",
        "kube-dns",
        [
            {
                "addresses": [{"ip": SERVER_IP}],
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53}],
            }
        ],
    ),
    endpoints(
        "default",
        "web",
        [
            {
                "addresses": [{"ip": "10.244.1.5"}, {"ip": "10.244.2.6"}],
                "notReadyAddresses": [{"ip": "10.244.1.7"}],
                "ports": [{"name": "http", "port": 8000, "protocol": "TCP"}, {"port": 8080, "protocol": "TCP"}],
            }
        ],
    ),
    endpoints(
        "default",
        "db",
        [
            {
                "addresses": [{"ip": "10.244.1.10", "hostname": "db-0"}, {"ip": "10.244.2.11"}],
                "notReadyAddresses": [{"ip": "10.244.1.12", "hostname": "db-2"}],
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            }
        ],
    ),
    endpoints(
        "default",
        "pending",
        [{"notReadyAddresses": [{"ip": "10.244.1.20"}], "ports": [{"name": "http", "port": 80}]}],
    ),
    endpoints(
        "default",
        "published",
        [{"notReadyAddresses": [{"ip": "10.244.1.30", "hostname": "p-0"}], "ports": [{"name": "http", "port": 80}]}],
    ),
]

NAMESPACES = ["default", "kube-system", "other", "quiet"]


def cluster_index(
    ttl: int = 30, extra_services: tuple[Object, ...] = (), extra_endpoints: tuple[Object, ...] = ()
) -> RecordIndex:
    """The index every kdns test starts from."""
    return RecordIndex.build(
        [*SERVICES, *extra_services],
        [*ENDPOINTS, *extra_endpoints],
        NAMESPACES,
        zone="cluster.local",
        ttl=ttl,
        serial=SERIAL,
        reverse_cidrs=[SERVICE_CIDR, POD_CIDR],
        server_ips=[SERVER_IP],
    )

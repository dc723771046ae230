"""Pod resolv.conf (§1.13 of the behaviour reference) and /etc/hosts."""

from __future__ import annotations

import pytest

from kubelet.dns import DNSConfigError, pod_hosts, pod_resolv_conf

NODE_RESOLV = "nameserver 192.168.56.1\nnameserver 8.8.8.8\nsearch corp.internal\noptions timeout:2\n"


def pod(ns: str = "prod", **spec: object) -> dict:
    return {"metadata": {"name": "web-0", "namespace": ns}, "spec": dict(spec)}


def resolv(p: dict, node: str | None = NODE_RESOLV, dns: list[str] | None = None) -> str:
    return pod_resolv_conf(
        p, cluster_dns=["10.96.0.10"] if dns is None else dns, cluster_domain="cluster.local", node_resolv=node
    )


def test_cluster_first_is_the_default() -> None:
    expected = (
        "nameserver 10.96.0.10\n"
        "search prod.svc.cluster.local svc.cluster.local cluster.local corp.internal\n"
        "options ndots:5\n"
    )
    assert resolv(pod()) == expected
    assert resolv(pod(dnsPolicy="ClusterFirst")) == expected


def test_cluster_first_deduplicates_node_search() -> None:
    node = "nameserver 1.1.1.1\nsearch cluster.local corp.internal corp.internal\n"
    assert (
        resolv(pod(), node).splitlines()[1]
        == "search prod.svc.cluster.local svc.cluster.local cluster.local corp.internal"
    )


def test_host_network_cluster_first_falls_back_to_default() -> None:
    assert resolv(pod(hostNetwork=True)) == NODE_RESOLV


def test_cluster_first_with_host_net_uses_cluster_dns() -> None:
    assert resolv(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet")).startswith("nameserver 10.96.0.10\n")


def test_no_cluster_dns_falls_back_to_default() -> None:
    assert resolv(pod(), dns=[]) == NODE_RESOLV


def test_default_copies_node_file() -> None:
    assert resolv(pod(dnsPolicy="Default")) == NODE_RESOLV


def test_default_without_node_file() -> None:
    assert resolv(pod(dnsPolicy="Default"), node=None) == "nameserver 127.0.0.1\nsearch .\n"


def test_none_uses_only_dns_config() -> None:
    config = {
        "nameservers": ["1.2.3.4"],
        "searches": ["ns1.svc.cluster-domain.example", "my.dns.search.suffix"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
    assert resolv(pod(dnsPolicy="None", dnsConfig=config)) == (
        "nameserver 1.2.3.4\nsearch ns1.svc.cluster-domain.example my.dns.search.suffix\noptions ndots:2 edns0\n"
    )


def test_none_without_nameserver_is_an_error() -> None:
    with pytest.raises(DNSConfigError, match="nameservers"):
        resolv(pod(dnsPolicy="None", dnsConfig={"searches": ["a.b"]}))


def test_unknown_policy_is_an_error() -> None:
    with pytest.raises(DNSConfigError, match="Sometimes"):
        resolv(pod(dnsPolicy="Sometimes"))


def test_dns_config_merges_into_cluster_first() -> None:
    config = {
        "nameservers": ["10.96.0.10", "1.2.3.4"],
        "searches": ["cluster.local", "extra.example"],
        "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
    }
    assert resolv(pod(dnsConfig=config)) == (
        "nameserver 10.96.0.10\nnameserver 1.2.3.4\n"
        "search prod.svc.cluster.local svc.cluster.local cluster.local corp.internal extra.example\n"
        "options ndots:2 edns0\n"
    )


def test_limits() -> None:
    config = {
        "nameservers": ["1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"],
        "searches": [f"d{i}.example" for i in range(40)] + ["x" * 254],
    }
    lines = resolv(pod(dnsPolicy="None", dnsConfig=config)).splitlines()
    assert lines[:3] == ["nameserver 1.1.1.1", "nameserver 2.2.2.2", "nameserver 3.3.3.3"]
    assert lines[3] == "search " + " ".join(f"d{i}.example" for i in range(32))


def test_hosts_plain() -> None:
    text = pod_hosts(pod(), "10.244.1.7", "cluster.local")
    assert text.startswith(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    assert text.endswith("10.244.1.7\tweb-0\n")


def test_hosts_hostname_and_subdomain() -> None:
    p = pod("my-ns", hostname="busybox-1", subdomain="default-subdomain")
    text = pod_hosts(p, "10.244.1.8", "cluster.local")
    assert text.endswith("10.244.1.8\tbusybox-1.default-subdomain.my-ns.svc.cluster.local\tbusybox-1\n")


def test_hosts_aliases() -> None:
    p = pod(hostAliases=[{"ip": "1.2.3.4", "hostnames": ["foo.local", "bar.local"]}])
    assert pod_hosts(p, "10.244.1.9", "cluster.local").endswith(
        "10.244.1.9\tweb-0\n\n# Entries added by HostAliases.\n1.2.3.4\tfoo.local\tbar.local\n"
    )

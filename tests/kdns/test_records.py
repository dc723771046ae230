"""The record index against fixed objects: every record kind, and NXDOMAIN vs NODATA as CoreDNS answers."""

from __future__ import annotations

import pytest
from dnslib import QTYPE, RCODE, RR

from kdns.records import Answer, RecordIndex, endpoint_hostname, reverse_zones
from tests.kdns.objects import ENDPOINTS, NAMESPACES, SERIAL, SERVICES, cluster_index, endpoints, service

INDEX = cluster_index()


def ask(name: str, qtype: str, index: RecordIndex = INDEX) -> Answer:
    answer = index.lookup(name, getattr(QTYPE, qtype))
    assert answer is not None, f"{name} {qtype} should be served by the cluster index"
    return answer


def values(records: tuple[RR, ...], qtype: str) -> list[str]:
    return sorted(str(rr.rdata) for rr in records if rr.rtype == getattr(QTYPE, qtype))


def assert_negative(answer: Answer, rcode: int) -> None:
    """NXDOMAIN/NODATA: authoritative, no answers, the zone's SOA in authority."""
    assert answer.rcode == rcode
    assert answer.answer == ()
    assert answer.authoritative
    assert [rr.rtype for rr in answer.authority] == [QTYPE.SOA]


def test_cluster_ip_service_has_its_cluster_ip() -> None:
    answer = ask("kubernetes.default.svc.cluster.local.", "A")
    assert answer.rcode == RCODE.NOERROR and answer.authoritative
    assert values(answer.answer, "A") == ["10.96.0.1"]
    assert answer.answer[0].ttl == 30


def test_cluster_ip_service_keeps_its_record_with_no_endpoints() -> None:
    assert values(ask("empty.default.svc.cluster.local", "A").answer, "A") == ["10.96.7.7"]


def test_same_service_name_in_two_namespaces() -> None:
    assert values(ask("web.other.svc.cluster.local", "A").answer, "A") == ["10.96.9.9"]
    assert values(ask("web.default.svc.cluster.local", "A").answer, "A") == ["10.96.5.5"]


def test_headless_service_lists_ready_addresses_only() -> None:
    answer = ask("db.default.svc.cluster.local", "A")
    assert values(answer.answer, "A") == ["10.244.1.10", "10.244.2.11"]


def test_headless_service_with_no_ready_address_is_nxdomain() -> None:
    assert_negative(ask("pending.default.svc.cluster.local", "A"), RCODE.NXDOMAIN)


def test_publish_not_ready_addresses_counts_not_ready_as_ready() -> None:
    assert values(ask("published.default.svc.cluster.local", "A").answer, "A") == ["10.244.1.30"]
    assert values(ask("p-0.published.default.svc.cluster.local", "A").answer, "A") == ["10.244.1.30"]


def test_endpoint_names_use_hostname_else_dashed_ip() -> None:
    assert values(ask("db-0.db.default.svc.cluster.local", "A").answer, "A") == ["10.244.1.10"]
    assert values(ask("10-244-2-11.db.default.svc.cluster.local", "A").answer, "A") == ["10.244.2.11"]
    # A not-ready address has no name of its own.
    assert_negative(ask("db-2.db.default.svc.cluster.local", "A"), RCODE.NXDOMAIN)
    # CoreDNS also names the endpoints of ClusterIP services.
    assert values(ask("10-244-1-5.web.default.svc.cluster.local", "A").answer, "A") == ["10.244.1.5"]


def test_endpoint_hostname_for_ipv6_is_dashed() -> None:
    assert endpoint_hostname({"ip": "5678:abcd::1"}) == "5678-abcd--1"
    assert endpoint_hostname({"ip": "10.0.0.1", "hostname": "Box"}) == "box"


def test_srv_for_named_port_of_cluster_ip_service() -> None:
    answer = ask("_http._tcp.web.default.svc.cluster.local", "SRV")
    assert values(answer.answer, "SRV") == ["0 100 80 web.default.svc.cluster.local."]
    assert [(str(rr.rname), str(rr.rdata)) for rr in answer.additional] == [
        ("web.default.svc.cluster.local.", "10.96.5.5")
    ]


def test_port_name_also_answers_a_as_coredns_does() -> None:
    assert values(ask("_http._tcp.web.default.svc.cluster.local", "A").answer, "A") == ["10.96.5.5"]
    assert values(ask("_pg._tcp.db.default.svc.cluster.local", "A").answer, "A") == ["10.244.1.10", "10.244.2.11"]


def test_srv_for_unnamed_port_does_not_exist() -> None:
    assert_negative(ask("_8080._tcp.web.default.svc.cluster.local", "SRV"), RCODE.NXDOMAIN)


def test_srv_protocol_must_match() -> None:
    assert_negative(ask("_http._udp.web.default.svc.cluster.local", "SRV"), RCODE.NXDOMAIN)
    dns = ask("_dns._udp.kube-dns.kube-system.svc.cluster.local", "SRV")
    assert values(dns.answer, "SRV") == ["0 100 53 kube-dns.kube-system.svc.cluster.local."]


def test_srv_for_headless_service_targets_each_endpoint() -> None:
    answer = ask("_pg._tcp.db.default.svc.cluster.local", "SRV")
    assert values(answer.answer, "SRV") == [
        "0 50 5432 10-244-2-11.db.default.svc.cluster.local.",
        "0 50 5432 db-0.db.default.svc.cluster.local.",
    ]
    additional = sorted((str(rr.rname), str(rr.rdata)) for rr in answer.additional)
    assert additional == [
        ("10-244-2-11.db.default.svc.cluster.local.", "10.244.2.11"),
        ("db-0.db.default.svc.cluster.local.", "10.244.1.10"),
    ]


def test_bare_service_srv_lists_all_ports() -> None:
    answer = ask("web.default.svc.cluster.local", "SRV")
    assert values(answer.answer, "SRV") == [
        "0 50 80 web.default.svc.cluster.local.",
        "0 50 8080 web.default.svc.cluster.local.",
    ]


def test_ptr_for_cluster_ip_and_endpoints() -> None:
    assert values(ask("1.0.96.10.in-addr.arpa", "PTR").answer, "PTR") == ["kubernetes.default.svc.cluster.local."]
    assert values(ask("10.1.244.10.in-addr.arpa.", "PTR").answer, "PTR") == ["db-0.db.default.svc.cluster.local."]
    assert values(ask("5.1.244.10.in-addr.arpa", "PTR").answer, "PTR") == ["10-244-1-5.web.default.svc.cluster.local."]


def test_ptr_of_an_unknown_address_in_a_served_reverse_zone_is_nxdomain() -> None:
    answer = ask("9.9.99.10.in-addr.arpa", "PTR")
    assert_negative(answer, RCODE.NXDOMAIN)
    assert str(answer.authority[0].rname) == "99.10.in-addr.arpa."


def test_reverse_zones_widen_to_octets() -> None:
    assert reverse_zones(["10.244.0.0/16"]) == ("244.10.in-addr.arpa",)
    zones = reverse_zones(["10.96.0.0/12"])
    assert len(zones) == 16 and zones[0] == "96.10.in-addr.arpa" and zones[-1] == "111.10.in-addr.arpa"
    with pytest.raises(ValueError, match="not-a-cidr"):
        reverse_zones(["not-a-cidr"])


def test_names_outside_served_zones_are_not_ours() -> None:
    assert INDEX.lookup("www.example.com.", QTYPE.A) is None
    assert INDEX.lookup("8.8.8.8.in-addr.arpa.", QTYPE.PTR) is None
    # A known address outside the served reverse zones still gets its PTR.
    answer = ask("10.56.168.192.in-addr.arpa", "PTR")
    assert values(answer.answer, "PTR") == [
        "192-168-56-10.kube-dns.kube-system.svc.cluster.local.",
        "192-168-56-10.kubernetes.default.svc.cluster.local.",
    ]


def test_external_name_is_a_cname() -> None:
    for qtype in ("A", "AAAA", "CNAME"):
        answer = ask("ext.default.svc.cluster.local", qtype)
        assert values(answer.answer, "CNAME") == ["www.example.com."]
    assert_negative(ask("_http._tcp.ext.default.svc.cluster.local", "SRV"), RCODE.NXDOMAIN)
    assert_negative(ask("x.ext.default.svc.cluster.local", "A"), RCODE.NXDOMAIN)


def test_dns_version_txt() -> None:
    answer = ask("dns-version.cluster.local", "TXT")
    assert values(answer.answer, "TXT") == ['"1.1.0"']
    assert answer.answer[0].ttl == 28800


def test_soa_at_the_apex() -> None:
    answer = ask("cluster.local.", "SOA")
    (soa,) = answer.answer
    assert str(soa.rdata.mname) == "ns.dns.cluster.local."
    assert str(soa.rdata.rname) == "hostmaster.cluster.local."
    assert soa.rdata.times == (SERIAL, 7200, 1800, 86400, 30)
    assert soa.ttl == 30
    assert cluster_index(ttl=3600).soa().ttl == 300  # capped, while the minimum follows the ttl
    assert cluster_index(ttl=3600).soa().rdata.times[4] == 3600


def test_ns_at_the_apex_points_at_the_service_kdns_serves() -> None:
    answer = ask("cluster.local", "NS")
    assert values(answer.answer, "NS") == ["kube-dns.kube-system.svc.cluster.local."]
    assert [(str(rr.rname), str(rr.rdata)) for rr in answer.additional] == [
        ("kube-dns.kube-system.svc.cluster.local.", "10.96.0.10")
    ]
    assert values(ask("ns.dns.cluster.local", "A").answer, "A") == ["192.168.56.10"]


def test_ns_ignores_other_services_on_the_same_node_ip() -> None:
    """The apiserver's endpoints share kdns's node IP; only the Service on kdns's port names the NS."""
    for services in (SERVICES, list(reversed(SERVICES))):
        index = RecordIndex.build(services, ENDPOINTS, NAMESPACES, server_ips=["192.168.56.10"])
        assert values(ask("cluster.local", "NS", index).answer, "NS") == ["kube-dns.kube-system.svc.cluster.local."]


def test_ns_without_a_service_for_kdns_uses_ns_dns_name() -> None:
    index = RecordIndex.build([], [], [], server_ips=["192.168.56.10"])
    answer = ask("cluster.local", "NS", index)
    assert values(answer.answer, "NS") == ["ns.dns.cluster.local."]
    assert values(answer.additional, "A") == ["192.168.56.10"]


def test_pod_records_insecure_mode() -> None:
    assert values(ask("10-244-1-99.default.pod.cluster.local", "A").answer, "A") == ["10.244.1.99"]
    # No lookup in insecure mode: any namespace, any address.
    assert values(ask("1-2-3-4.anything.pod.cluster.local", "A").answer, "A") == ["1.2.3.4"]
    assert_negative(ask("blah.default.pod.cluster.local", "A"), RCODE.NXDOMAIN)
    assert_negative(ask("10-244-1-99.default.pod.cluster.local", "TXT"), RCODE.NOERROR)


@pytest.mark.parametrize(
    ("name", "qtype", "rcode"),
    [
        ("nope.default.svc.cluster.local", "A", RCODE.NXDOMAIN),  # unknown service
        ("web.nonamespace.svc.cluster.local", "A", RCODE.NXDOMAIN),  # unknown namespace
        ("web.default.svc.cluster.local", "TXT", RCODE.NOERROR),  # existing name, other type
        ("web.default.svc.cluster.local", "AAAA", RCODE.NOERROR),  # IPv4-only service
        ("svc.cluster.local", "A", RCODE.NOERROR),  # empty non-terminal
        ("pod.cluster.local", "A", RCODE.NOERROR),
        ("default.svc.cluster.local", "A", RCODE.NOERROR),
        ("quiet.svc.cluster.local", "A", RCODE.NOERROR),  # namespace without services
        ("default.pod.cluster.local", "A", RCODE.NOERROR),
        ("cluster.local", "A", RCODE.NOERROR),  # apex, other type
        ("foo.cluster.local", "NS", RCODE.NXDOMAIN),
        ("foo.cluster.local", "A", RCODE.NXDOMAIN),
        ("_tcp.web.default.svc.cluster.local", "SRV", RCODE.NXDOMAIN),  # CoreDNS reads it as an endpoint
        ("a.b.c.web.default.svc.cluster.local", "A", RCODE.NXDOMAIN),
        ("dns-version.cluster.local", "A", RCODE.NOERROR),
        ("1.0.96.10.in-addr.arpa", "A", RCODE.NOERROR),
        ("0.96.10.in-addr.arpa", "PTR", RCODE.NOERROR),  # above a known PTR
    ],
)
def test_nxdomain_versus_nodata(name: str, qtype: str, rcode: int) -> None:
    assert_negative(ask(name, qtype), rcode)


def test_matching_ignores_case_and_echoes_the_question() -> None:
    answer = ask("KuBeRnEtEs.Default.SVC.cluster.LOCAL.", "A")
    assert values(answer.answer, "A") == ["10.96.0.1"]
    assert str(answer.answer[0].rname) == "KuBeRnEtEs.Default.SVC.cluster.LOCAL."


def test_wildcards_are_literal_labels() -> None:
    assert_negative(ask("*.default.svc.cluster.local", "A"), RCODE.NXDOMAIN)
    assert_negative(ask("*.*.svc.cluster.local", "A"), RCODE.NXDOMAIN)
    assert_negative(ask("_*._tcp.web.default.svc.cluster.local", "SRV"), RCODE.NXDOMAIN)


def test_ttl_is_configurable_and_validated() -> None:
    assert ask("kubernetes.default.svc.cluster.local", "A", cluster_index(ttl=5)).answer[0].ttl == 5
    with pytest.raises(ValueError, match="ttl 4000"):
        RecordIndex.build(SERVICES, ENDPOINTS, NAMESPACES, ttl=4000)


def test_index_follows_its_inputs_only() -> None:
    """A new object shows up only in an index built with it: the old index is unchanged."""
    added = cluster_index(
        extra_services=(service("default", "late", {"clusterIP": "10.96.8.8", "ports": [{"port": 1}]}),),
        extra_endpoints=(endpoints("default", "late", []),),
    )
    assert values(ask("late.default.svc.cluster.local", "A", added).answer, "A") == ["10.96.8.8"]
    assert_negative(ask("late.default.svc.cluster.local", "A"), RCODE.NXDOMAIN)


def test_malformed_objects_are_skipped_not_fatal() -> None:
    broken = (
        service("default", "bad-port", {"clusterIP": "10.96.6.6", "ports": [{"name": "x", "port": "eighty"}]}),
        service("default", "bad-ep", {"clusterIP": "None"}),
    )
    bad_endpoints = (
        endpoints("default", "bad-ep", [{"addresses": [{"ip": "not-an-ip"}, {"ip": "10.244.9.9"}]}]),
        endpoints("default", "bad-port", [{"addresses": [{"ip": "10.244.9.8"}]}]),
    )
    index = cluster_index(extra_services=broken, extra_endpoints=bad_endpoints)
    assert values(ask("bad-ep.default.svc.cluster.local", "A", index).answer, "A") == ["10.244.9.9"]
    assert_negative(ask("bad-port.default.svc.cluster.local", "A", index), RCODE.NXDOMAIN)
    # Nothing of the broken service is left behind, not even its endpoint names.
    assert_negative(ask("10-244-9-8.bad-port.default.svc.cluster.local", "A", index), RCODE.NXDOMAIN)
    assert values(ask("web.default.svc.cluster.local", "A", index).answer, "A") == ["10.96.5.5"]

"""The cluster's DNS records as an immutable index (DNS schema 1.1.0, CoreDNS behaviour).

`RecordIndex.build` turns Services, Endpoints and namespace names into every
name kdns serves; `RecordIndex.lookup` answers one question from it.  The
index holds no I/O and never changes: the server swaps in a new one when the
API objects change, so a lookup always sees one consistent world.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dnslib import AAAA, CNAME, NS, PTR, QTYPE, RCODE, RR, SOA, SRV, TXT, A, DNSLabel

Object = Mapping[str, Any]

log = logging.getLogger(__name__)

DNS_SCHEMA_VERSION = "1.1.0"
TXT_VERSION_TTL = 28800  # the spec's example TTL, which CoreDNS hard-codes
SOA_TTL_CAP = 300
SOA_REFRESH, SOA_RETRY, SOA_EXPIRE = 7200, 1800, 86400
MAX_TTL = 3600


@dataclass(frozen=True)
class Record:
    """One resource record before it becomes a dnslib RR; `value` depends on `rtype`.

    A/AAAA: the address; CNAME/PTR/NS: the target name; TXT: the text;
    SRV: (priority, weight, port, target).
    """

    name: str
    rtype: int
    value: Any
    ttl: int


@dataclass(frozen=True)
class Answer:
    """The response to one question: rcode, the three sections and the AA flag."""

    rcode: int
    answer: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()
    authoritative: bool = True


def endpoint_hostname(address: Object) -> str:
    """The label of an endpoint's own name: its `hostname`, else the dashed IP (as CoreDNS)."""
    hostname = address.get("hostname")
    if hostname:
        return str(hostname).lower()
    ip = str(address.get("ip", ""))
    return ip.replace(".", "-").replace(":", "-").lower()


def reverse_zones(cidrs: Iterable[str]) -> tuple[str, ...]:
    """The in-addr.arpa zones covering IPv4 CIDRs, widened to whole octets (/12 -> sixteen /16 zones)."""
    zones: list[str] = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError as err:
            raise ValueError(f"reverse zone CIDR {cidr!r}: {err}") from err
        if not isinstance(network, ipaddress.IPv4Network):
            raise ValueError(f"reverse zone CIDR {cidr!r}: only IPv4 ranges are served")
        octets = max(1, math.ceil(network.prefixlen / 8))
        for subnet in network.subnets(new_prefix=octets * 8):
            labels = str(subnet.network_address).split(".")[:octets]
            zones.append(".".join(reversed(labels)) + ".in-addr.arpa")
    return tuple(zones)


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def _address_record(name: str, ip: str, ttl: int) -> Record | None:
    parsed = _ip(ip)
    if parsed is None:
        return None
    return Record(name, QTYPE.A if parsed.version == 4 else QTYPE.AAAA, str(parsed), ttl)


def _parents(name: str, zone: str) -> Iterable[str]:
    """Every name strictly between `name` and `zone` (the empty non-terminals it implies)."""
    labels = name.split(".")
    for i in range(1, len(labels)):
        parent = ".".join(labels[i:])
        if parent == zone or not parent.endswith("." + zone):
            return
        yield parent


class _Builder:
    """Accumulates records and names while `RecordIndex.build` walks the objects."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        self.records: dict[str, list[Record]] = defaultdict(list)

    def add(self, record: Record | None) -> None:
        if record is not None and record not in self.records[record.name]:
            self.records[record.name].append(record)

    def merge(self, other: _Builder) -> None:
        for records in other.records.values():
            for record in records:
                self.add(record)

    def srv_set(self, name: str, targets: list[tuple[int, str]]) -> None:
        """SRV records at `name`, weighted as CoreDNS does: floor(100 / number of targets)."""
        if not targets:
            return
        weight = 100 // len(targets)
        for port, target in targets:
            self.add(Record(name, QTYPE.SRV, (0, weight, port, target + "."), self.ttl))


@dataclass(frozen=True)
class _Endpoint:
    ip: str
    hostname: str
    ports: tuple[tuple[str, str, int], ...]  # (name, protocol, port)


def _ready_endpoints(endpoints: Object | None, publish_not_ready: bool) -> list[_Endpoint]:
    """The addresses DNS publishes: ready ones, plus not-ready ones if the Service says so."""
    found: list[_Endpoint] = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = tuple(
            (str(p.get("name") or "").lower(), str(p.get("protocol") or "TCP").lower(), int(p.get("port", 0)))
            for p in subset.get("ports") or []
        )
        addresses = list(subset.get("addresses") or [])
        if publish_not_ready:
            addresses += subset.get("notReadyAddresses") or []
        for address in addresses:
            if _ip(str(address.get("ip", ""))) is not None:
                found.append(_Endpoint(str(address["ip"]), endpoint_hostname(address), ports))
    return found


@dataclass(frozen=True)
class RecordIndex:
    """Every name under the cluster zone (and the PTRs) with its records; immutable."""

    zone: str
    ttl: int
    serial: int
    reverse: tuple[str, ...]
    records: Mapping[str, tuple[Record, ...]]
    empty_non_terminals: frozenset[str]

    @classmethod
    def build(
        cls,
        services: Iterable[Object],
        endpoints: Iterable[Object],
        namespaces: Iterable[str],
        *,
        zone: str = "cluster.local",
        ttl: int = 30,
        serial: int = 0,
        reverse_cidrs: Iterable[str] = (),
        server_ips: Iterable[str] = (),
        server_port: int = 53,
    ) -> RecordIndex:
        """Index the objects.

        `server_ips` and `server_port` are where kdns itself listens: the
        Service whose endpoints point there names the apex NS (CoreDNS's rule).
        """
        if not 0 <= ttl <= MAX_TTL:
            raise ValueError(f"ttl {ttl} is outside 0..{MAX_TTL}")
        zone = zone.strip(".").lower()
        if not zone:
            raise ValueError("cluster domain is empty")
        builder = _Builder(ttl)
        endpoints_by_key = {_key(e): e for e in endpoints}
        known_namespaces = {ns.lower() for ns in namespaces}
        server_ip_set = set(server_ips)
        ns_target = f"ns.dns.{zone}"
        ns_glue: list[str] = sorted(server_ip_set)
        for svc in services:
            meta, spec = svc.get("metadata", {}), svc.get("spec", {})
            namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
            known_namespaces.add(namespace.lower())
            eps = endpoints_by_key.get((namespace, name))
            own = _Builder(ttl)  # merged only when the whole service indexed cleanly
            try:
                cls._add_service(own, zone, namespace.lower(), name.lower(), spec, eps)
                ready = _ready_endpoints(eps, bool(spec.get("publishNotReadyAddresses")))
            except (ValueError, TypeError, AttributeError) as err:
                # One malformed object must not take the whole zone down with it.
                log.warning("skipping service %s/%s: %s", namespace, name, err)
                continue
            builder.merge(own)
            cluster_ips = [ip for ip in _cluster_ips(spec) if _ip(ip)]
            serves_us = any(e.ip in server_ip_set and any(p == server_port for *_, p in e.ports) for e in ready)
            if cluster_ips and serves_us:
                ns_target, ns_glue = f"{name}.{namespace}.svc.{zone}".lower(), cluster_ips
        builder.add(Record(f"dns-version.{zone}", QTYPE.TXT, DNS_SCHEMA_VERSION, TXT_VERSION_TTL))
        builder.add(Record(zone, QTYPE.NS, ns_target + ".", ttl))
        for ip in sorted(server_ip_set):
            builder.add(_address_record(f"ns.dns.{zone}", ip, ttl))
        if ns_target != f"ns.dns.{zone}":
            for ip in ns_glue:
                builder.add(_address_record(ns_target, ip, ttl))
        served_reverse = reverse_zones(reverse_cidrs)
        # In the cluster zone only these are empty non-terminals: CoreDNS answers
        # NXDOMAIN for anything else without records (`_tcp.<svc>...` included).
        ents = {p for n in builder.records for z in served_reverse for p in _parents(n, z)}
        ents |= {f"svc.{zone}", f"pod.{zone}", f"dns.{zone}", f"ns.dns.{zone}"}
        ents |= {f"{ns}.svc.{zone}" for ns in known_namespaces if ns}
        ents |= {f"{ns}.pod.{zone}" for ns in known_namespaces if ns}
        return cls(
            zone=zone,
            ttl=ttl,
            serial=serial,
            reverse=served_reverse,
            records={n: tuple(r) for n, r in builder.records.items()},
            empty_non_terminals=frozenset(ents - set(builder.records)),
        )

    @staticmethod
    def _add_service(
        builder: _Builder, zone: str, namespace: str, name: str, spec: Object, endpoints: Object | None
    ) -> None:
        ttl = builder.ttl
        svc_name = f"{name}.{namespace}.svc.{zone}"
        if spec.get("type") == "ExternalName":
            target = str(spec.get("externalName") or "").strip(".").lower()
            if target and _ip(target) is None:
                builder.add(Record(svc_name, QTYPE.CNAME, target + ".", ttl))
            return
        ready = _ready_endpoints(endpoints, bool(spec.get("publishNotReadyAddresses")))
        headless = spec.get("clusterIP") == "None"
        cluster_ips = [] if headless else [ip for ip in _cluster_ips(spec) if _ip(ip)]
        if not headless and not cluster_ips:
            return  # no address assigned (yet): nothing to publish
        # Per-endpoint names, for headless and ClusterIP services alike (as CoreDNS).
        for ep in ready:
            ep_name = f"{ep.hostname}.{svc_name}"
            builder.add(_address_record(ep_name, ep.ip, ttl))
            builder.add(Record(ipaddress.ip_address(ep.ip).reverse_pointer, QTYPE.PTR, ep_name + ".", ttl))
            builder.srv_set(ep_name, [(port, ep_name) for _, _, port in ep.ports])
        named: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
        named_ips: dict[tuple[str, str], list[str]] = defaultdict(list)
        if headless:
            for ep in ready:
                builder.add(_address_record(svc_name, ep.ip, ttl))
                for port_name, proto, port in ep.ports:
                    if port_name:
                        named[(port_name, proto)].append((port, f"{ep.hostname}.{svc_name}"))
                        named_ips[(port_name, proto)].append(ep.ip)
            builder.srv_set(svc_name, [(port, f"{ep.hostname}.{svc_name}") for ep in ready for _, _, port in ep.ports])
        else:
            ports = [
                (str(p.get("name") or "").lower(), str(p.get("protocol") or "TCP").lower(), int(p.get("port", 0)))
                for p in spec.get("ports") or []
            ]
            for ip in cluster_ips:
                builder.add(_address_record(svc_name, ip, ttl))
                builder.add(Record(ipaddress.ip_address(ip).reverse_pointer, QTYPE.PTR, svc_name + ".", ttl))
            builder.srv_set(svc_name, [(port, svc_name) for _ in cluster_ips for _, _, port in ports])
            for port_name, proto, port in ports:
                if port_name:
                    named[(port_name, proto)] += [(port, svc_name) for _ in cluster_ips]
                    named_ips[(port_name, proto)] += cluster_ips
        for (port_name, proto), targets in named.items():
            port_owner = f"_{port_name}._{proto}.{svc_name}"
            builder.srv_set(port_owner, targets)
            for ip in named_ips[(port_name, proto)]:
                builder.add(_address_record(port_owner, ip, ttl))

    # -- answering ---------------------------------------------------------

    def _zone_of(self, name: str) -> str | None:
        if name == self.zone or name.endswith("." + self.zone):
            return self.zone
        for zone in self.reverse:
            if name == zone or name.endswith("." + zone):
                return zone
        if name in self.records:
            return name  # a PTR for a known address outside the served reverse zones
        return None

    def soa(self, zone: str | None = None, owner: str | None = None) -> RR:
        """The SOA of a served zone, as CoreDNS shapes it; `owner` keeps the question's case."""
        owner = owner or (zone or self.zone) + "."
        times = (self.serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, self.ttl)
        record = SOA(f"ns.dns.{self.zone}.", f"hostmaster.{self.zone}.", times)
        return RR(owner, QTYPE.SOA, ttl=min(self.ttl, SOA_TTL_CAP), rdata=record)

    def lookup(self, qname: str, qtype: int) -> Answer | None:
        """Answer (qname, qtype), or None when the name is not ours (forward it)."""
        name = _canonical(qname)
        zone = self._zone_of(name)
        if zone is None:
            return None
        owner = qname if qname.endswith(".") else qname + "."
        if name == zone and qtype in (QTYPE.SOA, QTYPE.ANY):
            others = list(self.records.get(name, ())) if qtype == QTYPE.ANY else []
            answer = (self.soa(zone, owner), *(_rr(r, owner) for r in others))
            return Answer(RCODE.NOERROR, answer, (), self._additional(others))
        pod_answer = self._pod(name, owner, qtype)
        if pod_answer is not None:
            return pod_answer
        records = self.records.get(name)
        if records is None:
            if name in self.empty_non_terminals or name == zone:
                return self._negative(RCODE.NOERROR, zone)
            return self._negative(RCODE.NXDOMAIN, zone)
        cname = [r for r in records if r.rtype == QTYPE.CNAME]
        if cname and qtype not in (QTYPE.CNAME, QTYPE.ANY):
            matching = cname
        else:
            matching = [r for r in records if qtype in (r.rtype, QTYPE.ANY)]
        if not matching:
            return self._negative(RCODE.NOERROR, zone)
        additional = self._additional(matching)
        return Answer(RCODE.NOERROR, tuple(_rr(r, owner) for r in matching), (), additional)

    def _pod(self, name: str, owner: str, qtype: int) -> Answer | None:
        """`a-b-c-d.<ns>.pod.<zone>` as CoreDNS `pods insecure`: the address in the name, no lookup."""
        suffix = f".pod.{self.zone}"
        if not name.endswith(suffix):
            return None
        labels = name[: -len(suffix)].split(".")
        if len(labels) != 2:
            return None
        dashed = labels[0]
        ip = _ip(dashed.replace("-", ".")) if dashed.count("-") == 3 else _ip(dashed.replace("-", ":"))
        if ip is None:
            return self._negative(RCODE.NXDOMAIN, self.zone)
        record = Record(name, QTYPE.A if ip.version == 4 else QTYPE.AAAA, str(ip), self.ttl)
        if qtype not in (record.rtype, QTYPE.ANY):
            return self._negative(RCODE.NOERROR, self.zone)
        return Answer(RCODE.NOERROR, (_rr(record, owner),))

    def _negative(self, rcode: int, zone: str) -> Answer:
        """NXDOMAIN or NODATA: authoritative, with the zone's SOA in authority (RFC 2308)."""
        owner = zone if zone in (self.zone, *self.reverse) else self._reverse_parent(zone)
        return Answer(rcode, (), (self.soa(owner),), ())

    def _reverse_parent(self, name: str) -> str:
        for zone in self.reverse:
            if name.endswith("." + zone):
                return zone
        return "in-addr.arpa" if name.endswith(".in-addr.arpa") else "ip6.arpa"

    def _additional(self, answers: list[Record]) -> tuple[RR, ...]:
        """Address records for SRV and NS targets that we serve."""
        extra: list[RR] = []
        seen: set[str] = set()
        for record in answers:
            if record.rtype == QTYPE.SRV:
                target = record.value[3]
            elif record.rtype == QTYPE.NS:
                target = record.value
            else:
                continue
            key = _canonical(target)
            if key in seen:
                continue
            seen.add(key)
            extra += [_rr(r) for r in self.records.get(key, ()) if r.rtype in (QTYPE.A, QTYPE.AAAA)]
        return tuple(extra)


def _key(obj: Object) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def _cluster_ips(spec: Object) -> list[str]:
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [str(ip) for ip in ips if ip and ip != "None"]


def _canonical(name: str) -> str:
    return str(name).rstrip(".").lower()


def _rr(record: Record, owner: str | None = None) -> RR:
    """A dnslib RR for a record, owned by `owner` (the question's spelling) when given."""
    rname = DNSLabel(owner or record.name + ".")
    value = record.value
    rdata: Any
    if record.rtype == QTYPE.A:
        rdata = A(value)
    elif record.rtype == QTYPE.AAAA:
        rdata = AAAA(value)
    elif record.rtype == QTYPE.CNAME:
        rdata = CNAME(value)
    elif record.rtype == QTYPE.PTR:
        rdata = PTR(value)
    elif record.rtype == QTYPE.NS:
        rdata = NS(value)
    elif record.rtype == QTYPE.TXT:
        rdata = TXT(value)
    elif record.rtype == QTYPE.SRV:
        priority, weight, port, target = value
        rdata = SRV(priority, weight, port, target)
    else:
        raise ValueError(f"record type {record.rtype} is not one kdns builds")
    return RR(rname, record.rtype, ttl=record.ttl, rdata=rdata)

"""Service rules as `iptables-restore` input, in kube-proxy's iptables layout.

`build_ruleset` is a pure function of (service ports, endpoints, node): the
same inputs always give the same text (services and endpoints are sorted),
so a sync can be compared, replayed and traced in tests. It covers only the
KUBE-* chains; `kproxy.iptables.restore` adds the jumps from the built-in
chains and the deletion of stale chains, which depend on what the kernel
holds now.
"""

from __future__ import annotations

import functools
import hashlib
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"

# Per-service chain prefixes kproxy creates and, when a service goes away, deletes.
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")

FILTER_CHAINS = (KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_NODEPORTS)
NAT_CHAINS = (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ)


BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_BASE32_SHIFTS = range(75, -1, -5)


def chain_hash(text: str) -> str:
    """First 16 characters of base32(sha256(text)): how kube-proxy names per-service chains."""
    # 16 base32 characters are exactly the first 80 bits; spelled out here, 5 times faster than base64's.
    bits = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    return "".join([BASE32[(bits >> shift) & 31] for shift in _BASE32_SHIFTS])


def service_chain(prefix: str, key: ServicePortName) -> str:
    """`KUBE-SVC-…`, `KUBE-SVL-…`, `KUBE-EXT-…` or `KUBE-FW-…` for one service port."""
    return f"{prefix}{chain_hash(str(key) + key.protocol.lower())}"


def endpoint_chain(key: ServicePortName, endpoint: Endpoint) -> str:
    """`KUBE-SEP-…`: the hash also covers `ip:port`, so each backend has its own chain."""
    return f"KUBE-SEP-{chain_hash(str(key) + key.protocol.lower() + str(endpoint))}"


def comment(text: str) -> str:
    """`-m comment --comment X`, quoted when X has spaces (as iptables-save prints it)."""
    return f'-m comment --comment "{text}"' if " " in text else f"-m comment --comment {text}"


def probability(remaining: int) -> str:
    """Chance that rule i of N picks its endpoint, 1/(N-i), formatted as kube-proxy does."""
    return f"{1.0 / remaining:0.10f}"


def usable_endpoints(endpoints: Iterable[Endpoint]) -> list[Endpoint]:
    """Ready endpoints; if none is ready, the serving terminating ones (graceful drain)."""
    candidates = list(endpoints)
    ready = [e for e in candidates if e.ready]
    if ready:
        return ready
    return [e for e in candidates if e.serving and e.terminating]


@dataclass
class Tables:
    """Chains by table, each with its rules (whole `-A CHAIN ...` lines), in declaration order.

    Grouping rules by chain is what lets a sync compare one chain at a time
    and rewrite only those that changed.
    """

    tables: dict[str, dict[str, list[str]]] = field(default_factory=lambda: {"filter": {}, "nat": {}})

    def declare(self, table: str, chain: str) -> None:
        self.tables[table].setdefault(chain, [])

    def add(self, table: str, chain: str, *parts: str) -> None:
        self.tables[table][chain].append(" ".join(["-A", chain, *[p for p in parts if p]]))

    def render(self) -> str:
        """The restore input declaring and filling every chain."""
        lines: list[str] = []
        for name, chains in self.tables.items():
            lines.append(f"*{name}")
            lines.extend(f":{c} - [0:0]" for c in chains)
            for rules in chains.values():
                lines.extend(rules)
            lines.append("COMMIT")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ServiceRules:
    """One service port's share of the ruleset: rules it adds to the shared chains, and its own nat chains.

    A pure function of (service port, its endpoints, node), so a sync can
    keep it while those inputs stay equal and rebuild only what changed.
    """

    shared: tuple[tuple[str, str, str], ...]  # (table, shared chain, rule line)
    chains: tuple[tuple[str, tuple[str, ...]], ...]  # nat chains of this service: (name, rule lines)


def endpoint_order(endpoint: Endpoint) -> tuple[int, int, int]:
    """IPv4 before IPv6, then by address and port (inet_pton: `ipaddress` dominated cold rule building)."""
    if ":" in endpoint.ip:
        return (6, int.from_bytes(socket.inet_pton(socket.AF_INET6, endpoint.ip), "big"), endpoint.port)
    return (4, int.from_bytes(socket.inet_pton(socket.AF_INET, endpoint.ip), "big"), endpoint.port)


def base_tables(node: NodeConfig) -> Tables:
    """The shared chains and the masquerade plumbing, before any service is added."""
    tables = Tables()
    for chain in FILTER_CHAINS:
        tables.declare("filter", chain)
    for chain in NAT_CHAINS:
        tables.declare("nat", chain)
    mark = node.masquerade_mark
    tables.add("filter", KUBE_FORWARD, "-m conntrack --ctstate INVALID -j DROP")
    tables.add(
        "filter", KUBE_FORWARD, comment("kubernetes forwarding rules"), f"-m mark --mark {mark}/{mark}", "-j ACCEPT"
    )
    tables.add(
        "filter",
        KUBE_FORWARD,
        comment("kubernetes forwarding conntrack rule"),
        "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    )
    tables.add("nat", KUBE_POSTROUTING, f"-m mark ! --mark {mark}/{mark} -j RETURN")
    # Clear the mark so a packet that goes round the stack again is not masqueraded twice.
    tables.add("nat", KUBE_POSTROUTING, f"-j MARK --xor-mark {mark}")
    tables.add("nat", KUBE_POSTROUTING, comment("kubernetes service traffic requiring SNAT"), "-j MASQUERADE")
    tables.add("nat", KUBE_MARK_MASQ, f"-j MARK --or-mark {mark}")
    return tables


def assemble(rules: Iterable[ServiceRules], node: NodeConfig) -> Tables:
    """The whole ruleset from per-service parts, which must come sorted by service key."""
    tables = base_tables(node)
    nat = tables.tables["nat"]
    for part in rules:
        for table, chain, line in part.shared:
            tables.tables[table][chain].append(line)
        for chain, lines in part.chains:
            nat[chain] = list(lines)
    tables.add(
        "nat",
        KUBE_SERVICES,
        comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain"),
        "-m addrtype --dst-type LOCAL -j",
        KUBE_NODEPORTS,
    )
    return tables


def build_tables(
    service_ports: Iterable[ServicePort],
    endpoints: Mapping[ServicePortName, Sequence[Endpoint]],
    node: NodeConfig,
) -> Tables:
    """The `filter` and `nat` tables' KUBE-* chains for these services."""
    ordered = sorted(service_ports, key=lambda s: s.key)
    return assemble((service_rules(s, tuple(endpoints.get(s.key, ())), node) for s in ordered), node)


def build_ruleset(
    service_ports: Iterable[ServicePort],
    endpoints: Mapping[ServicePortName, Sequence[Endpoint]],
    node: NodeConfig,
) -> str:
    """The `filter` and `nat` tables' KUBE-* chains for these services, as restore input."""
    return build_tables(service_ports, endpoints, node).render()


class _Builder:
    """Collects one service's rules: lines for shared chains and its own nat chains."""

    def __init__(self) -> None:
        self.shared: list[tuple[str, str, str]] = []
        self.chains: dict[str, list[str]] = {}

    def to_shared(self, table: str, chain: str, *parts: str) -> None:
        self.shared.append((table, chain, " ".join(["-A", chain, *[p for p in parts if p]])))

    def declare(self, chain: str) -> None:
        self.chains.setdefault(chain, [])

    def add(self, chain: str, *parts: str) -> None:
        self.chains[chain].append(" ".join(["-A", chain, *[p for p in parts if p]]))

    def result(self) -> ServiceRules:
        return ServiceRules(tuple(self.shared), tuple((c, tuple(lines)) for c, lines in self.chains.items()))


@functools.lru_cache(maxsize=65536)
def service_rules(service: ServicePort, all_endpoints: tuple[Endpoint, ...], node: NodeConfig) -> ServiceRules:
    """One service port's rules, following kube-proxy's syncProxyRules.

    Cached: a sync at ten thousand services rebuilds only the services whose
    inputs changed (the cache is bounded, and a miss only costs the rebuild).
    """
    out = _Builder()
    key = service.key
    name = str(key)
    proto = key.protocol.lower()
    match_proto = f"-m {proto} -p {proto}"
    ordered = sorted(all_endpoints, key=endpoint_order)
    cluster_endpoints = usable_endpoints(ordered)
    local_endpoints = usable_endpoints(e for e in ordered if e.is_local)
    has_endpoints = bool(cluster_endpoints)
    # Local-policy short circuits in the EXT chain still need the cluster-wide endpoints.
    uses_cluster = not service.internal_policy_local or service.externally_accessible
    uses_local = service.internal_policy_local or (service.externally_accessible and service.external_policy_local)
    has_internal = bool(local_endpoints if service.internal_policy_local else cluster_endpoints)
    has_external = bool(local_endpoints if service.external_policy_local else cluster_endpoints)

    svc_chain = service_chain("KUBE-SVC-", key)
    # Hashing is most of building a rule set: only name the chains this service can use.
    any_local = service.internal_policy_local or service.external_policy_local
    svl_chain = service_chain("KUBE-SVL-", key) if any_local else ""
    ext_chain = service_chain("KUBE-EXT-", key) if service.externally_accessible else ""
    internal_chain = svl_chain if service.internal_policy_local else svc_chain
    external_policy_chain = svl_chain if service.external_policy_local else svc_chain

    # (verdict, comment) of the filter rule for traffic these rules will not DNAT, if any.
    internal_filter: tuple[str, str] | None
    external_filter: tuple[str, str] | None
    if not has_endpoints:
        internal_filter = external_filter = ("REJECT", f"{name} has no endpoints")
    else:
        internal_filter = external_filter = None
        if not has_internal:
            internal_filter = ("DROP", f"{name} has no local endpoints")
        if not has_external:
            external_filter = ("DROP", f"{name} has no local endpoints")

    # Where traffic is captured: cluster IP, external IPs, LB ingress IPs, node port.
    cluster_ip_match = f"{match_proto} -d {service.cluster_ip} --dport {service.port}"
    if has_internal:
        out.to_shared("nat", KUBE_SERVICES, comment(f"{name} cluster IP"), cluster_ip_match, "-j", internal_chain)
    elif internal_filter:
        verdict, why = internal_filter
        out.to_shared("filter", KUBE_SERVICES, comment(why), cluster_ip_match, "-j", verdict)
    for what, addresses in (("external IP", service.external_ips), ("loadbalancer IP", service.load_balancer_ips)):
        for address in addresses:
            ip_match = f"{match_proto} -d {address} --dport {service.port}"
            if has_endpoints:
                out.to_shared("nat", KUBE_SERVICES, comment(f"{name} {what}"), ip_match, "-j", ext_chain)
            if external_filter:
                verdict, why = external_filter
                out.to_shared("filter", KUBE_EXTERNAL_SERVICES, comment(why), ip_match, "-j", verdict)
    if service.node_port:
        if has_endpoints:
            out.to_shared(
                "nat", KUBE_NODEPORTS, comment(name), f"{match_proto} --dport {service.node_port}", "-j", ext_chain
            )
        if external_filter:
            verdict, why = external_filter
            out.to_shared(
                "filter",
                KUBE_EXTERNAL_SERVICES,
                comment(why),
                "-m addrtype --dst-type LOCAL",
                f"{match_proto} --dport {service.node_port}",
                "-j",
                verdict,
            )
    if not has_endpoints:
        return out.result()  # no nat chains at all for a service nobody serves

    if uses_cluster:
        out.declare(svc_chain)
    if uses_local:
        out.declare(svl_chain)
    if service.externally_accessible:
        out.declare(ext_chain)

    # Off-cluster sources reaching a cluster IP may be answered from another node: masquerade them.
    if has_internal and node.cluster_cidr:
        out.add(
            internal_chain,
            comment(f"{name} cluster IP"),
            cluster_ip_match,
            f"! -s {node.cluster_cidr}",
            "-j",
            KUBE_MARK_MASQ,
        )

    if service.externally_accessible:
        if not service.external_policy_local:
            # The endpoint may be on another node: masquerade so replies come back through here.
            out.add(ext_chain, comment(f"masquerade traffic for {name} external destinations"), "-j", KUBE_MARK_MASQ)
        else:
            if node.cluster_cidr:
                out.add(
                    ext_chain,
                    comment(f"pod traffic for {name} external destinations"),
                    f"-s {node.cluster_cidr}",
                    "-j",
                    svc_chain,
                )
            out.add(
                ext_chain,
                comment(f"masquerade LOCAL traffic for {name} external destinations"),
                "-m addrtype --src-type LOCAL -j",
                KUBE_MARK_MASQ,
            )
            out.add(
                ext_chain,
                comment(f"route LOCAL traffic for {name} external destinations"),
                "-m addrtype --src-type LOCAL -j",
                svc_chain,
            )
        out.add(ext_chain, "-j", external_policy_chain)

    if uses_cluster:
        _write_balancing(out, service, svc_chain, cluster_endpoints)
    if uses_local:
        _write_balancing(out, service, svl_chain, local_endpoints)

    reachable = {
        str(e): e for e in (cluster_endpoints if uses_cluster else []) + (local_endpoints if uses_local else [])
    }
    for endpoint in sorted(reachable.values(), key=endpoint_order):
        sep = endpoint_chain(key, endpoint)
        out.declare(sep)
        # Hairpin: a backend reaching itself through the VIP must be masqueraded or its reply bypasses NAT.
        out.add(sep, comment(name), f"-s {endpoint.ip} -j", KUBE_MARK_MASQ)
        sticky = f"-m recent --name {sep} --set" if service.sticky_seconds is not None else ""
        out.add(sep, comment(name), sticky, f"{match_proto} -j DNAT --to-destination {endpoint}")
    return out.result()


def _write_balancing(out: _Builder, service: ServicePort, chain: str, endpoints: Sequence[Endpoint]) -> None:
    """Session-affinity checks first, then a random pick with 1/(N-i) odds per rule."""
    name = str(service.key)
    if service.sticky_seconds is not None:
        for endpoint in endpoints:
            sep = endpoint_chain(service.key, endpoint)
            out.add(
                chain,
                comment(f"{name} -> {endpoint}"),
                f"-m recent --name {sep} --rcheck --seconds {service.sticky_seconds} --reap -j",
                sep,
            )
    count = len(endpoints)
    for index, endpoint in enumerate(endpoints):
        odds = f"-m statistic --mode random --probability {probability(count - index)}" if index < count - 1 else ""
        out.add(chain, comment(f"{name} -> {endpoint}"), odds, "-j", endpoint_chain(service.key, endpoint))

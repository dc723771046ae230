"""Service rules as `iptables-restore` input, in kube-proxy's iptables layout.

`ruleset_chains` is a pure function of (service ports, endpoints, node): the
same inputs always give the same chains in the same order (services and
endpoints are sorted), so a sync can be compared, replayed and traced in
tests. The order is one restore accepts with each chain declared just before
its rules (a jump's target must already exist), which is what lets a sync
stream a service's chains into restore as soon as they are built. It covers
only the KUBE-* chains; `kproxy.iptables.restore` adds the jumps from the
built-in chains and the deletion of stale chains, which depend on what the
kernel holds now.
"""

from __future__ import annotations

import functools
import hashlib
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

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

ChainKey = tuple[str, str]  # (table, chain)
Chain = tuple[ChainKey, tuple[str, ...]]  # a chain with its rules (whole `-A CHAIN ...` lines) in order


BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
# Base32 of every 10-bit value (two characters): 80 bits are 8 lookups.
_BASE32_PAIRS = [BASE32[value >> 5] + BASE32[value & 31] for value in range(1024)]
_PAIR_SHIFTS = range(70, -1, -10)


def chain_hash(text: str) -> str:
    """First 16 characters of base32(sha256(text)): how kube-proxy names per-service chains."""
    # 16 base32 characters are exactly the first 80 bits; spelled out here, faster than base64's b32encode.
    bits = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    return "".join([_BASE32_PAIRS[(bits >> shift) & 1023] for shift in _PAIR_SHIFTS])


def hashed_name(key: ServicePortName) -> str:
    """What kube-proxy hashes to name a service port's chains: `ns/name:port` and the protocol in lower case."""
    return str(key) + key.protocol.lower()


def service_chain(prefix: str, key: ServicePortName) -> str:
    """`KUBE-SVC-…`, `KUBE-SVL-…`, `KUBE-EXT-…` or `KUBE-FW-…` for one service port."""
    return f"{prefix}{chain_hash(hashed_name(key))}"


def endpoint_chain(key: ServicePortName, endpoint: Endpoint) -> str:
    """`KUBE-SEP-…`: the hash also covers `ip:port`, so each backend has its own chain."""
    return f"KUBE-SEP-{chain_hash(hashed_name(key) + str(endpoint))}"


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


class ServiceRules(NamedTuple):
    """One service port's share of the ruleset: rules it adds to the shared chains, and its own nat chains.

    A pure function of (service port, its endpoints, node), so a sync can
    keep it while those inputs stay equal and rebuild only what changed.
    """

    shared: tuple[tuple[ChainKey, str], ...]  # ((table, shared chain), rule line)
    chains: tuple[Chain, ...]  # nat chains of this service, each after those it jumps to


def endpoint_order(endpoint: Endpoint) -> tuple[int, int, int]:
    """IPv4 before IPv6, then by address and port (inet_pton: `ipaddress` dominated cold rule building)."""
    if ":" in endpoint.ip:
        return (6, int.from_bytes(socket.inet_pton(socket.AF_INET6, endpoint.ip), "big"), endpoint.port)
    return (4, int.from_bytes(socket.inet_pton(socket.AF_INET, endpoint.ip), "big"), endpoint.port)


def service_parts(
    service_ports: Iterable[ServicePort], endpoints: Mapping[ServicePortName, Sequence[Endpoint]], node: NodeConfig
) -> Iterator[ServiceRules]:
    """Each service port's rules, sorted by service key, built as they are asked for."""
    for service in sorted(service_ports, key=lambda s: s.key):
        yield service_rules(service, tuple(endpoints.get(service.key, ())), node)


def ruleset_chains(parts: Iterable[ServiceRules], node: NodeConfig) -> Iterator[Chain]:
    """Every chain kproxy owns with its rules, nat before filter, each after the chains it jumps to.

    The masquerade plumbing comes first (service chains jump to it), then each
    service's own chains as its part arrives, and last the shared chains that
    gather a rule or two from every service. `parts` must come sorted by service key.
    """
    mark = node.masquerade_mark
    yield ("nat", KUBE_MARK_MASQ), (f"-A {KUBE_MARK_MASQ} -j MARK --or-mark {mark}",)
    yield (
        ("nat", KUBE_POSTROUTING),
        (
            f"-A {KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j RETURN",
            # Clear the mark so a packet that goes round the stack again is not masqueraded twice.
            f"-A {KUBE_POSTROUTING} -j MARK --xor-mark {mark}",
            f"-A {KUBE_POSTROUTING} {comment('kubernetes service traffic requiring SNAT')} -j MASQUERADE",
        ),
    )
    shared: dict[ChainKey, list[str]] = {
        ("nat", KUBE_NODEPORTS): [],
        ("nat", KUBE_SERVICES): [],
        ("filter", KUBE_SERVICES): [],
        ("filter", KUBE_EXTERNAL_SERVICES): [],
    }
    for part in parts:
        for key, line in part.shared:
            shared[key].append(line)
        yield from part.chains
    last = comment("kubernetes service nodeports; NOTE: this must be the last rule in this chain")
    shared[("nat", KUBE_SERVICES)].append(f"-A {KUBE_SERVICES} {last} -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}")
    for key, lines in shared.items():
        yield key, tuple(lines)
    yield (
        ("filter", KUBE_FORWARD),
        (
            f"-A {KUBE_FORWARD} -m conntrack --ctstate INVALID -j DROP",
            f"-A {KUBE_FORWARD} {comment('kubernetes forwarding rules')} -m mark --mark {mark}/{mark} -j ACCEPT",
            f"-A {KUBE_FORWARD} {comment('kubernetes forwarding conntrack rule')} "
            "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        ),
    )
    yield ("filter", KUBE_NODEPORTS), ()


def chains_text(chains: Sequence[tuple[str, Sequence[str]]]) -> str:
    """Restore input that declares (creating or flushing) these chains, then fills them.

    Declarations go together: iptables-legacy-restore finds a chain by walking
    a sorted list, and chains declared one by one between rules end up spread
    through memory among them (a 10,000-service restore took 20-30% more CPU so).
    """
    return "\n".join([*[f":{chain} - [0:0]" for chain, _ in chains], *[r for _, rules in chains for r in rules], ""])


def build_ruleset(
    service_ports: Iterable[ServicePort],
    endpoints: Mapping[ServicePortName, Sequence[Endpoint]],
    node: NodeConfig,
) -> str:
    """The `nat` and `filter` tables' KUBE-* chains for these services, as restore input."""
    tables: dict[str, list[tuple[str, Sequence[str]]]] = {}
    for (table, chain), rules in ruleset_chains(service_parts(service_ports, endpoints, node), node):
        tables.setdefault(table, []).append((chain, rules))
    return "".join(f"*{table}\n{chains_text(chains)}COMMIT\n" for table, chains in tables.items())


@functools.lru_cache(maxsize=65536)
def service_rules(service: ServicePort, all_endpoints: tuple[Endpoint, ...], node: NodeConfig) -> ServiceRules:
    """One service port's rules, following kube-proxy's syncProxyRules.

    Cached: a sync at ten thousand services rebuilds only the services whose
    inputs changed (the cache is bounded, and a miss only costs the rebuild).
    """
    key = service.key
    name = str(key)
    proto = key.protocol.lower()
    match_proto = f"-m {proto} -p {proto}"
    ordered = sorted(all_endpoints, key=endpoint_order)
    cluster_endpoints = usable_endpoints(ordered)
    has_endpoints = bool(cluster_endpoints)
    # Local-policy short circuits in the EXT chain still need the cluster-wide endpoints.
    uses_cluster = not service.internal_policy_local or service.externally_accessible
    uses_local = service.internal_policy_local or (service.externally_accessible and service.external_policy_local)
    any_local = service.internal_policy_local or service.external_policy_local
    local_endpoints = usable_endpoints(e for e in ordered if e.is_local) if any_local else []
    has_internal = bool(local_endpoints if service.internal_policy_local else cluster_endpoints)
    has_external = bool(local_endpoints if service.external_policy_local else cluster_endpoints)

    # The names service_chain and endpoint_chain give; hashing is much of building a rule set, so each
    # hash is computed once: SVC, SVL and EXT share theirs, and only the chains the service can use are named.
    hashed = hashed_name(key)
    suffix = chain_hash(hashed)
    svc_chain = f"KUBE-SVC-{suffix}"
    svl_chain = f"KUBE-SVL-{suffix}" if any_local else ""
    ext_chain = f"KUBE-EXT-{suffix}" if service.externally_accessible else ""
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
    shared: list[tuple[ChainKey, str]] = []
    cluster_ip_match = f"{match_proto} -d {service.cluster_ip} --dport {service.port}"
    if has_internal:
        rule = f"-A {KUBE_SERVICES} {comment(f'{name} cluster IP')} {cluster_ip_match} -j {internal_chain}"
        shared.append((("nat", KUBE_SERVICES), rule))
    elif internal_filter:
        verdict, why = internal_filter
        shared.append((("filter", KUBE_SERVICES), f"-A {KUBE_SERVICES} {comment(why)} {cluster_ip_match} -j {verdict}"))
    for what, addresses in (("external IP", service.external_ips), ("loadbalancer IP", service.load_balancer_ips)):
        for address in addresses:
            ip_match = f"{match_proto} -d {address} --dport {service.port}"
            if has_endpoints:
                rule = f"-A {KUBE_SERVICES} {comment(f'{name} {what}')} {ip_match} -j {ext_chain}"
                shared.append((("nat", KUBE_SERVICES), rule))
            if external_filter:
                verdict, why = external_filter
                rule = f"-A {KUBE_EXTERNAL_SERVICES} {comment(why)} {ip_match} -j {verdict}"
                shared.append((("filter", KUBE_EXTERNAL_SERVICES), rule))
    if service.node_port:
        node_port_match = f"{match_proto} --dport {service.node_port}"
        if has_endpoints:
            rule = f"-A {KUBE_NODEPORTS} {comment(name)} {node_port_match} -j {ext_chain}"
            shared.append((("nat", KUBE_NODEPORTS), rule))
        if external_filter:
            verdict, why = external_filter
            local = f"-m addrtype --dst-type LOCAL {node_port_match}"
            rule = f"-A {KUBE_EXTERNAL_SERVICES} {comment(why)} {local} -j {verdict}"
            shared.append((("filter", KUBE_EXTERNAL_SERVICES), rule))
    if not has_endpoints:
        return ServiceRules(tuple(shared), ())  # no nat chains at all for a service nobody serves

    reachable = set((cluster_endpoints if uses_cluster else []) + (local_endpoints if uses_local else []))
    # Each backend's chain by `ip:port`, in endpoint order: the balancing rules jump to it and it holds the DNAT.
    seps: dict[str, str] = {}
    chains: list[Chain] = []
    name_comment = comment(name)
    for endpoint in ordered:
        address = str(endpoint)
        if endpoint not in reachable or address in seps:
            continue
        sep = seps[address] = f"KUBE-SEP-{chain_hash(hashed + address)}"
        # Hairpin: a backend reaching itself through the VIP must be masqueraded or its reply bypasses NAT.
        hairpin = f"-A {sep} {name_comment} -s {endpoint.ip} -j {KUBE_MARK_MASQ}"
        sticky = f" -m recent --name {sep} --set" if service.sticky_seconds is not None else ""
        dnat = f"-A {sep} {name_comment}{sticky} {match_proto} -j DNAT --to-destination {address}"
        chains.append((("nat", sep), (hairpin, dnat)))

    # Off-cluster sources reaching a cluster IP may be answered from another node: masquerade them.
    masquerade = ""
    if has_internal and node.cluster_cidr:
        masquerade = (
            f"-A {internal_chain} {comment(f'{name} cluster IP')} {cluster_ip_match} "
            f"! -s {node.cluster_cidr} -j {KUBE_MARK_MASQ}"
        )
    for used, chain, endpoints in (
        (uses_cluster, svc_chain, cluster_endpoints),
        (uses_local, svl_chain, local_endpoints),
    ):
        if used:
            first = [masquerade] if masquerade and chain == internal_chain else []
            chains.append((("nat", chain), (*first, *_balancing(service, chain, endpoints, seps))))

    if service.externally_accessible:
        ext = []
        if not service.external_policy_local:
            # The endpoint may be on another node: masquerade so replies come back through here.
            why = comment(f"masquerade traffic for {name} external destinations")
            ext.append(f"-A {ext_chain} {why} -j {KUBE_MARK_MASQ}")
        else:
            if node.cluster_cidr:
                why = comment(f"pod traffic for {name} external destinations")
                ext.append(f"-A {ext_chain} {why} -s {node.cluster_cidr} -j {svc_chain}")
            why = comment(f"masquerade LOCAL traffic for {name} external destinations")
            ext.append(f"-A {ext_chain} {why} -m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}")
            why = comment(f"route LOCAL traffic for {name} external destinations")
            ext.append(f"-A {ext_chain} {why} -m addrtype --src-type LOCAL -j {svc_chain}")
        ext.append(f"-A {ext_chain} -j {external_policy_chain}")
        chains.append((("nat", ext_chain), tuple(ext)))
    return ServiceRules(tuple(shared), tuple(chains))


def _balancing(service: ServicePort, chain: str, endpoints: Sequence[Endpoint], seps: Mapping[str, str]) -> list[str]:
    """Session-affinity checks first, then a random pick with 1/(N-i) odds per rule; `seps` maps `ip:port` to chain."""
    name = str(service.key)
    addresses = [str(e) for e in endpoints]
    rules = []
    if service.sticky_seconds is not None:
        for address in addresses:
            sep = seps[address]
            rules.append(
                f"-A {chain} {comment(f'{name} -> {address}')} "
                f"-m recent --name {sep} --rcheck --seconds {service.sticky_seconds} --reap -j {sep}"
            )
    last = len(addresses) - 1
    for index, address in enumerate(addresses):
        odds = f" -m statistic --mode random --probability {probability(last + 1 - index)}" if index < last else ""
        rules.append(f"-A {chain} {comment(f'{name} -> {address}')}{odds} -j {seps[address]}")
    return rules

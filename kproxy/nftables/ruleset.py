"""Native nftables mode (`--mode nftables`): Service rules in kproxy's own table, `ip kproxy`.

Two shapes, chosen per service port by what it needs:

- **Spread** (a ClusterIP-only port without session affinity: at scale,
  nearly every Service). No chains at all: its (ip, proto, port) key sits in
  the set `spread-<proto>-N` for its N endpoints, and one rule per such set
  in use, in chain `services`, DNATs to
  `service-endpoints-<proto>[key . numgen random mod N]`.
  Changing its endpoints only changes set and map elements. That matters
  because the kernel re-validates every chain reachable from the hooks
  whenever a transaction adds a rule with a DNAT or a jump (about 30 ms at
  10,000 Services in chains), and never for data elements.
- **Chains** (node ports, external and LoadBalancer IPs, affinity): kube-
  proxy's nftables shape. Verdict maps keyed by (daddr, proto, dport)
  (`service-ips`) or (proto, dport) (`service-nodeports`) lead to the port's
  `svc-`/`svl-`/`ext-`/`ep-` chains (named with kube-proxy's hash), and
  rule i of N picks its endpoint with `numgen random mod (N-i) == 0`.

Both share the rest: `no-endpoint-*` maps drop or reject at once; the
masquerade mark from kube-proxy; and hairpin traffic (a pod reaching
itself through its Service) is masqueraded in postrouting by the set
`hairpin-endpoints` (each endpoint address twice: source equals
destination after DNAT).

`build_nft` is a pure function of (service ports, endpoints, node).
`NftablesProgrammer` turns the difference between two of them into one
transaction of only the changed chains, sets and elements, sent as a netlink
batch (`netlink.py`; `nft -f` reads the whole ruleset into its cache first).
Elements two service ports share (a hairpin address, or the key of two
Services claiming one address) are counted, so one leaving keeps the other's.
A full sync (`FullSync`) flushes and refills everything kproxy owns and
deletes what it no longer wants, which also repairs edits made behind its
back: one netlink batch too, after `nft -f` has declared the table, its
sets and base chains (declarations alone never change a packet's path).
The kernel commits 70,000 elements from a batch several times faster than
`nft` parses them. Nothing outside table `ip kproxy` is touched.
"""

from __future__ import annotations

import functools
import logging
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kproxy.collector import collector_paused
from kproxy.iptables.restore import PacketFilterError
from kproxy.iptables.rules import chain_hash, endpoint_order, usable_endpoints
from kproxy.iptables.sync import SyncReport
from kproxy.nftables.netlink import Batch, NetlinkNft, UnsupportedRule
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot

log = logging.getLogger(__name__)

TABLE = "ip kproxy"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"  # cluster IPs: checked on forward and output
NO_ENDPOINT_EXTERNAL_IPS = "no-endpoint-external-ips"  # external and LB IPs: on input and forward, as iptables
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
SERVICE_ENDPOINTS = "service-endpoints-"  # + protocol: (service key . index) -> endpoint address . port
HAIRPIN_ENDPOINTS = "hairpin-endpoints"
SPREAD = "spread-"  # + protocol-N: the keys of spread service ports with N endpoints
PROTOCOLS = ("tcp", "udp", "sctp")
AFFINITY = "aff-"
MARK_FOR_MASQUERADE = "mark-for-masquerade"
REJECT_CHAIN = "reject-chain"
SERVICE_CHAIN_PREFIXES = ("svc-", "svl-", "ext-", "ep-")
SERVICE_KEY = "ip daddr . meta l4proto . th dport"
ENDPOINT_KEY = f"{SERVICE_KEY} . numgen random mod 1"  # the type of (service key . endpoint index)


@dataclass(frozen=True)
class SetSpec:
    """A set or map every table has: its nft declaration, and its elements' layout for the netlink encoder."""

    kind: str  # "set" or "map"
    declaration: str
    key: tuple[str, ...]  # field kinds: addr, proto, port, index
    data: str | tuple[str, ...] | None = None  # "verdict", field kinds, or None for a set


SERVICE_VMAP = SetSpec(
    "map", "type ipv4_addr . inet_proto . inet_service : verdict ;", ("addr", "proto", "port"), "verdict"
)
NODEPORT_VMAP = SetSpec("map", "type inet_proto . inet_service : verdict ;", ("proto", "port"), "verdict")
STATIC_SETS = {
    SERVICE_IPS: SERVICE_VMAP,
    NO_ENDPOINT_SERVICES: SERVICE_VMAP,
    NO_ENDPOINT_EXTERNAL_IPS: SERVICE_VMAP,
    SERVICE_NODEPORTS: NODEPORT_VMAP,
    NO_ENDPOINT_NODEPORTS: NODEPORT_VMAP,
    # One map per protocol: nft 1.0.6 cannot read back a map whose data is typed `th dport`.
    **{
        f"{SERVICE_ENDPOINTS}{proto}": SetSpec(
            "map",
            f"typeof {ENDPOINT_KEY} : ip daddr . {proto} dport ;",
            ("addr", "proto", "port", "index"),
            ("addr", "port"),
        )
        for proto in PROTOCOLS
    },
    HAIRPIN_ENDPOINTS: SetSpec("set", "typeof ip saddr . ip daddr ;", ("addr", "addr")),
}
# Base chains: (name, hook, priority). Filter chains run before DNAT so a rejected VIP is seen as itself.
BASE_CHAINS = (
    ("nat-prerouting", "nat", "prerouting", "dstnat"),
    ("nat-output", "nat", "output", "-100"),
    ("nat-postrouting", "nat", "postrouting", "srcnat"),
    ("filter-input", "filter", "input", "-110"),
    ("filter-forward", "filter", "forward", "-110"),
    ("filter-output", "filter", "output", "-110"),
)


HOOKED_CHAINS = frozenset(name for name, *_ in BASE_CHAINS)
# The protocol of the port in each endpoint map's data, which a mapped DNAT tests first (as nft does).
PORT_PROTOCOLS = {f"{SERVICE_ENDPOINTS}{proto}": proto for proto in PROTOCOLS}


def kproxy_batch() -> Batch:
    """An empty netlink batch for kproxy's table."""
    return Batch.for_table(TABLE.split()[1], PORT_PROTOCOLS)


def element_fields(name: str) -> tuple[tuple[str, ...], str | tuple[str, ...] | None]:
    """The layout of a set's elements (see SetSpec); every `spread-` set holds service keys."""
    if name.startswith(SPREAD):
        return ("addr", "proto", "port"), None
    spec = STATIC_SETS[name]
    return spec.key, spec.data


Spread = tuple[str, int]  # (protocol, endpoint count) of a `spread-` set


@dataclass
class NftRuleset:
    """kproxy's table, or the part of it a sync changes: chains, set and map elements, sets declared."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    elements: dict[str, dict[str, str]] = field(default_factory=dict)  # set or map -> key -> value ("" in a set)
    spreads: set[Spread] = field(default_factory=set)  # (protocol, N) of every `spread-` set
    timeout_sets: dict[str, int] = field(default_factory=dict)  # affinity set -> timeout seconds

    def render(self) -> str:
        """The whole table as an `nft -f` script that creates it from nothing."""
        lines = [*static_declarations(), *_declarations(self)]
        lines += [f"add chain {TABLE} {name}" for name in self.chains]
        for name, rules in self.chains.items():
            lines += [f"add rule {TABLE} {name} {rule}" for rule in rules]
        lines += _element_lines(self.elements)
        return "\n".join(lines) + "\n"


def static_declarations() -> list[str]:
    """The table, its static sets and maps, and its base chains with their hooks.

    A full sync declares these with `nft -f` (the `typeof` maps keep their
    types readable that way) before its one netlink transaction. Declaring
    what exists changes nothing, and an empty set or chain changes no
    packet's path, so doing it apart from that transaction is safe.
    """
    lines = [f"add table {TABLE}"]
    lines += [f"add {spec.kind} {TABLE} {name} {{ {spec.declaration} }}" for name, spec in STATIC_SETS.items()]
    return lines + [_declare_base_chain(*spec) for spec in BASE_CHAINS]


def _declarations(ruleset: NftRuleset) -> list[str]:
    """The sets this ruleset adds to the static ones: `spread-` and affinity sets."""
    lines = [_declare_set(spread_set(*spread), "") for spread in sorted(ruleset.spreads)]
    return lines + [_declare_set(name, str(timeout)) for name, timeout in sorted(ruleset.timeout_sets.items())]


def _declare_set(name: str, timeout: str) -> str:
    """A `spread-` set, or an affinity set whose entries expire after `timeout` seconds."""
    if name.startswith(SPREAD):
        return f"add set {TABLE} {name} {{ typeof {SERVICE_KEY} ; }}"
    return f"add set {TABLE} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"


def _declare_base_chain(name: str, kind: str, hook: str, priority: str) -> str:
    return f"add chain {TABLE} {name} {{ type {kind} hook {hook} priority {priority} ; policy accept ; }}"


def _element(key: str, value: str) -> str:
    return f"{key} : {value}" if value else key


def _element_lines(elements: Mapping[str, Mapping[str, str]]) -> list[str]:
    """One `add element` per set: nft parses a long list far faster than one command per element."""
    return [
        f"add element {TABLE} {name} {{ " + ", ".join(_element(k, v) for k, v in members.items()) + " }"
        for name, members in elements.items()
        if members
    ]


@dataclass(frozen=True)
class ServiceNft:
    """One service port's part: its chains, the elements that lead to them or replace them, affinity sets."""

    chains: tuple[tuple[str, tuple[str, ...]], ...]
    elements: tuple[tuple[str, str, str], ...]  # (set or map, key, value; "" in a set)
    sets: tuple[tuple[str, int], ...]


def chain_name(prefix: str, key: ServicePortName, endpoint: Endpoint | None = None) -> str:
    """`svc-`/`svl-`/`ext-`/`ep-` plus the same hash kube-proxy's iptables chain names use."""
    text = str(key) + key.protocol.lower() + (str(endpoint) if endpoint else "")
    return f"{prefix}{chain_hash(text).lower()}"


def affinity_set(key: ServicePortName, endpoint: Endpoint) -> str:
    return chain_name(AFFINITY, key, endpoint)


def spread_set(proto: str, count: int) -> str:
    return f"{SPREAD}{proto}-{count}"


def spreads_of(elements: Mapping[str, Mapping[str, str]]) -> set[Spread]:
    """(protocol, N) of every non-empty `spread-` set."""
    found = set()
    for name, members in elements.items():
        if name.startswith(SPREAD) and members:
            proto, count = name[len(SPREAD) :].rsplit("-", 1)
            found.add((proto, int(count)))
    return found


def base_chains(node: NodeConfig, spreads: Iterable[Spread]) -> dict[str, list[str]]:
    """The plumbing every node has: hooks into the maps, spread DNAT rules, masquerading, reject."""
    mark = node.masquerade_mark
    return {
        "nat-prerouting": ["jump services"],
        "nat-output": ["jump services"],
        "nat-postrouting": [
            f"ct status dnat ip saddr . ip daddr @{HAIRPIN_ENDPOINTS} jump {MARK_FOR_MASQUERADE}",
            "jump masquerading",
        ],
        # As kube-proxy's KUBE-SERVICES (forward, output) and KUBE-EXTERNAL-SERVICES (input, forward) filters:
        # a node reaching a Local-policy LoadBalancer IP without a local endpoint goes to the cluster's.
        "filter-input": ["ct state new jump external-endpoints-check"],
        "filter-forward": ["ct state new jump service-endpoints-check", "ct state new jump external-endpoints-check"],
        "filter-output": ["ct state new jump service-endpoints-check"],
        "services": services_rules(node, spreads),
        "service-endpoints-check": [f"{SERVICE_KEY} vmap @{NO_ENDPOINT_SERVICES}"],
        "external-endpoints-check": [
            f"{SERVICE_KEY} vmap @{NO_ENDPOINT_EXTERNAL_IPS}",
            f"fib daddr type local meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}",
        ],
        MARK_FOR_MASQUERADE: [f"meta mark set meta mark or {mark}"],
        "masquerading": [
            f"meta mark & {mark} == 0 return",
            f"meta mark set meta mark xor {mark}",
            "masquerade",
        ],
        REJECT_CHAIN: ["reject"],
    }


def services_rules(node: NodeConfig, spreads: Iterable[Spread]) -> list[str]:
    """Chain `services`: two rules per (protocol, endpoint count) in use by spread ports, then the verdict maps."""
    rules = []
    for proto, count in sorted(spreads):
        members = f"{SERVICE_KEY} @{spread_set(proto, count)}"
        if node.cluster_cidr:
            rules.append(f"ip saddr != {node.cluster_cidr} {members} jump {MARK_FOR_MASQUERADE}")
        rules.append(f"{members} dnat ip to {SERVICE_KEY} . numgen random mod {count} map @{SERVICE_ENDPOINTS}{proto}")
    return rules + [
        f"{SERVICE_KEY} vmap @{SERVICE_IPS}",
        f"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{SERVICE_NODEPORTS}",
    ]


def build_nft(
    service_ports: Iterable[ServicePort],
    endpoints: Mapping[ServicePortName, Sequence[Endpoint]],
    node: NodeConfig,
) -> NftRuleset:
    """kproxy's whole nftables table for these services."""
    ordered = sorted(service_ports, key=lambda s: s.key)
    return assemble_nft((service_nft(s, tuple(endpoints.get(s.key, ())), node) for s in ordered), node)


@dataclass
class Claims:
    """Who wants which element: the counts, and the values that lost to a smaller one for the same key."""

    counts: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (set, key, value) -> service ports
    rivals: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (set, key) -> values not held


def assemble_nft(parts: Iterable[ServiceNft], node: NodeConfig, claims: Claims | None = None) -> NftRuleset:
    """The table holding these parts: of two values claimed for one key, the smaller wins.

    `claims`, when given, is filled with who claims what, for the programmer's later partial syncs.
    """
    counts = claims.counts if claims is not None else None
    elements: dict[str, dict[str, str]] = {name: {} for name in STATIC_SETS}
    service_chains: dict[str, list[str]] = {}
    timeout_sets: dict[str, int] = {}
    for part in parts:
        for name, rules in part.chains:
            service_chains[name] = list(rules)
        for element in part.elements:
            set_name, key, value = element
            members = elements.get(set_name)
            if members is None:
                members = elements[set_name] = {}
            current = members.get(key)
            if current is None:
                members[key] = value
            elif value != current:
                if claims is not None:
                    claims.rivals.setdefault((set_name, key), set()).add(max(value, current))
                if value < current:
                    members[key] = value
            if counts is not None:
                counts[element] = counts.get(element, 0) + 1
        timeout_sets.update(part.sets)
    spreads = spreads_of(elements)
    return NftRuleset({**base_chains(node, spreads), **service_chains}, elements, spreads, timeout_sets)


def _same_inputs(before: ServiceInputs | None, now: ServiceInputs) -> bool:
    """Whether a service's rules cannot have changed: the same objects (the usual case), or equal ones."""
    if before is None:
        return False
    (old_port, old_endpoints), (port, endpoints) = before, now
    if old_port is port and old_endpoints is endpoints:
        return True
    same_port = old_port is port or old_port == port
    return same_port and (old_endpoints is endpoints or tuple(old_endpoints) == tuple(endpoints))


def _part_size(part: ServiceNft) -> int:
    """Rules plus set and map elements, for the rules metric."""
    return sum(len(rules) for _, rules in part.chains) + len(part.elements)


def _hairpins(endpoints: Iterable[Endpoint]) -> list[tuple[str, str, str]]:
    return [(HAIRPIN_ENDPOINTS, f"{ip} . {ip}", "") for ip in sorted({e.ip for e in endpoints})]


@functools.lru_cache(maxsize=65536)
def service_nft(service: ServicePort, all_endpoints: tuple[Endpoint, ...], node: NodeConfig) -> ServiceNft:
    """One service port's elements and chains (kube-proxy's logic, in nft).

    Cached like the iptables rules: a sync rebuilds only changed services.
    """
    proto = service.key.protocol.lower()
    cluster_key = f"{service.cluster_ip} . {proto} . {service.port}"
    if not service.externally_accessible and service.sticky_seconds is None:
        local_only = service.internal_policy_local
        internal = usable_endpoints([e for e in all_endpoints if e.is_local] if local_only else all_endpoints)
        if not internal:
            refuse = "drop" if local_only and usable_endpoints(all_endpoints) else f"goto {REJECT_CHAIN}"
            return ServiceNft((), ((NO_ENDPOINT_SERVICES, cluster_key, refuse),), ())
        internal.sort(key=endpoint_order)
        endpoints_map = f"{SERVICE_ENDPOINTS}{proto}"
        spread = [(spread_set(proto, len(internal)), cluster_key, "")]
        spread += [(endpoints_map, f"{cluster_key} . {i}", f"{e.ip} . {e.port}") for i, e in enumerate(internal)]
        return ServiceNft((), tuple(spread + _hairpins(internal)), ())
    ordered = sorted(all_endpoints, key=endpoint_order)
    cluster_endpoints = usable_endpoints(ordered)
    local_endpoints = usable_endpoints(e for e in ordered if e.is_local)
    refuse = "drop" if cluster_endpoints else f"goto {REJECT_CHAIN}"  # none local, or none at all
    return _chained_service(service, cluster_endpoints, local_endpoints, refuse, node)


def _chained_service(
    service: ServicePort,
    cluster_endpoints: list[Endpoint],
    local_endpoints: list[Endpoint],
    refuse: str,
    node: NodeConfig,
) -> ServiceNft:
    """A port with node ports, external addresses or affinity: kube-proxy's chains."""
    key = service.key
    proto = key.protocol.lower()
    uses_cluster = not service.internal_policy_local or service.externally_accessible
    uses_local = service.internal_policy_local or (service.externally_accessible and service.external_policy_local)
    has_internal = bool(local_endpoints if service.internal_policy_local else cluster_endpoints)
    has_external = bool(local_endpoints if service.external_policy_local else cluster_endpoints)
    svc = chain_name("svc-", key)
    # Hashing is most of building the rules: only name the chains this service can use.
    svl = chain_name("svl-", key) if service.internal_policy_local or service.external_policy_local else ""
    ext = chain_name("ext-", key) if service.externally_accessible else ""
    internal_chain = svl if service.internal_policy_local else svc
    external_chain = svl if service.external_policy_local else svc

    elements: list[tuple[str, str, str]] = []
    cluster_key = f"{service.cluster_ip} . {proto} . {service.port}"
    if has_internal:
        elements.append((SERVICE_IPS, cluster_key, f"goto {internal_chain}"))
    else:
        elements.append((NO_ENDPOINT_SERVICES, cluster_key, refuse))
    for address in (*service.external_ips, *service.load_balancer_ips):
        address_key = f"{address} . {proto} . {service.port}"
        if cluster_endpoints:
            elements.append((SERVICE_IPS, address_key, f"goto {ext}"))
        if not has_external:
            elements.append((NO_ENDPOINT_EXTERNAL_IPS, address_key, refuse))
    if service.node_port:
        port_key = f"{proto} . {service.node_port}"
        if cluster_endpoints:
            elements.append((SERVICE_NODEPORTS, port_key, f"goto {ext}"))
        if not has_external:
            elements.append((NO_ENDPOINT_NODEPORTS, port_key, refuse))
    if not cluster_endpoints:
        return ServiceNft((), tuple(elements), ())

    chains: dict[str, list[str]] = {}
    sets: list[tuple[str, int]] = []
    if uses_cluster:
        chains[svc] = []
    if uses_local:
        chains[svl] = []
    if has_internal and node.cluster_cidr:
        chains[internal_chain].append(
            f"ip daddr {service.cluster_ip} {proto} dport {service.port} ip saddr != {node.cluster_cidr} "
            f"jump {MARK_FOR_MASQUERADE}"
        )
    if service.externally_accessible:
        rules = []
        if not service.external_policy_local:
            rules.append(f"jump {MARK_FOR_MASQUERADE}")
        else:
            if node.cluster_cidr:
                rules.append(f"ip saddr {node.cluster_cidr} goto {svc}")
            rules.append(f"fib saddr type local jump {MARK_FOR_MASQUERADE}")
            rules.append(f"fib saddr type local goto {svc}")
        rules.append(f"goto {external_chain}")
        chains[ext] = rules
    if uses_cluster:
        chains[svc] += _balancing(service, cluster_endpoints)
    if uses_local:
        chains[svl] += _balancing(service, local_endpoints)
    reachable = {
        str(e): e for e in (cluster_endpoints if uses_cluster else []) + (local_endpoints if uses_local else [])
    }
    for endpoint in sorted(reachable.values(), key=endpoint_order):
        rules = []
        if service.sticky_seconds is not None:
            name = affinity_set(key, endpoint)
            sets.append((name, service.sticky_seconds))
            rules.append(f"update @{name} {{ ip saddr }}")
        rules.append(f"meta l4proto {proto} dnat to {endpoint.ip}:{endpoint.port}")
        chains[chain_name("ep-", key, endpoint)] = rules
    elements += _hairpins(reachable.values())
    return ServiceNft(tuple((c, tuple(r)) for c, r in chains.items()), tuple(elements), tuple(sets))


def _balancing(service: ServicePort, endpoints: Sequence[Endpoint]) -> list[str]:
    """Affinity lookups first, then rule i picks its endpoint with odds 1/(N-i); the last always does."""
    rules = []
    if service.sticky_seconds is not None:
        rules += [
            f"ip saddr @{affinity_set(service.key, e)} goto {chain_name('ep-', service.key, e)}" for e in endpoints
        ]
    count = len(endpoints)
    for index, endpoint in enumerate(endpoints):
        target = f"goto {chain_name('ep-', service.key, endpoint)}"
        rules.append(f"numgen random mod {count - index} == 0 {target}" if index < count - 1 else target)
    return rules


@dataclass(frozen=True)
class FullSync:
    """A full sync's one transaction: every chain and set kproxy wants flushed and refilled, those it no longer
    wants deleted. Affinity sets that stay are not flushed: clients keep their endpoints.

    `existing_chains` and `existing_sets` are what the table held after the static declarations.
    """

    wanted: NftRuleset
    existing_chains: set[str]
    existing_sets: set[str]

    @property
    def stale_chains(self) -> list[str]:
        wanted = self.wanted.chains
        return sorted(c for c in self.existing_chains if c.startswith(SERVICE_CHAIN_PREFIXES) and c not in wanted)

    @property
    def stale_sets(self) -> list[str]:
        wanted = {spread_set(*spread) for spread in self.wanted.spreads} | set(self.wanted.timeout_sets)
        return sorted(s for s in self.existing_sets if s.startswith((SPREAD, AFFINITY)) and s not in wanted)

    def undeclared_spread_sets(self) -> list[str]:
        """Declarations of the `spread-` sets the table lacks, for `nft -f` before the batch (see
        `static_declarations`: the same holds for these)."""
        names = [spread_set(*spread) for spread in sorted(self.wanted.spreads)]
        return [_declare_set(name, "") for name in names if name not in self.existing_sets]

    def script(self) -> str:
        """The transaction as one `nft -f` script, declarations included."""
        wanted, stale_chains = self.wanted, self.stale_chains
        lines = [*static_declarations(), *_declarations(wanted)]
        lines += [f"flush {spec.kind} {TABLE} {name}" for name, spec in STATIC_SETS.items()]
        lines += [f"flush set {TABLE} {spread_set(*spread)}" for spread in sorted(wanted.spreads)]
        for name in [*wanted.chains, *stale_chains]:
            lines += [f"add chain {TABLE} {name}", f"flush chain {TABLE} {name}"]
        lines += [f"delete chain {TABLE} {name}" for name in stale_chains]
        lines += [f"delete set {TABLE} {name}" for name in self.stale_sets]
        for name, rules in wanted.chains.items():
            lines += [f"add rule {TABLE} {name} {rule}" for rule in rules]
        lines += _element_lines(wanted.elements)
        return "\n".join(lines) + "\n"

    def batch(self) -> Batch:
        """The same transaction as one netlink batch, declarations aside (UnsupportedRule for a rule the compiler
        does not know)."""
        wanted, stale_chains = self.wanted, self.stale_chains
        batch = kproxy_batch()
        for name, timeout in sorted(wanted.timeout_sets.items()):
            batch.add_timeout_set(name, timeout)
        for name in wanted.chains:
            if name not in HOOKED_CHAINS:
                batch.add_chain(name)
        for name in STATIC_SETS:
            batch.flush_set(name)
        for spread in sorted(wanted.spreads):
            batch.flush_set(spread_set(*spread))
        for name in [*wanted.chains, *stale_chains]:
            batch.flush_chain(name)
        for name in stale_chains:
            batch.delete_chain(name)
        for name in self.stale_sets:
            batch.delete_set(name)
        for name, rules in wanted.chains.items():
            for rule in rules:
                batch.add_rule(name, rule)
        for name, members in wanted.elements.items():
            if members:
                batch.add_elements(name, members, *element_fields(name))
        return batch


# -- applying --------------------------------------------------------------


class Nft:
    """The kernel: whole scripts through `nft -f -`, between-full-syncs changes as one netlink batch.

    `netns` (a name under /run/netns) programs that namespace instead of
    this process's own, which is how tests and benchmarks use it; kproxy
    itself runs inside its node's namespace and passes none.
    """

    def __init__(self, netns: str | None = None, timeout: float = 60.0):
        self.command_prefix = ["ip", "netns", "exec", netns] if netns else []
        self.timeout = timeout
        self.netlink = NetlinkNft(netns)

    def apply(self, script: str) -> None:
        self._run(["nft", "-f", "-"], script)

    def apply_changes(self, changes: Sequence[Change]) -> None:
        """New `spread-` sets declared by `nft -f`, then one atomic netlink batch (see `change_batch`); a rule
        the compiler does not know sends all the changes via `nft -f`."""
        try:
            batch = change_batch(changes)
        except UnsupportedRule as err:
            log.info("sending changes with nft -f: %s", err)
            self.apply(render_changes(changes))
            return
        self.declare(
            [_declare_set(name, "") for verb, name, *_ in changes if verb == "add set" and name.startswith(SPREAD)]
        )
        self.netlink.send(batch)

    def apply_full(self, full: FullSync) -> None:
        """The undeclared `spread-` sets by `nft -f`, then the transaction as one netlink batch (by `nft -f`
        if the compiler does not know a rule)."""
        try:
            batch = full.batch()
        except UnsupportedRule as err:
            log.info("sending the full sync with nft -f: %s", err)
            self.apply(full.script())
            return
        self.declare(full.undeclared_spread_sets())
        self.netlink.send(batch)

    def declare(self, declarations: Sequence[str]) -> None:
        """Sets a batch is about to use, by `nft -f` (nothing to run when there are none)."""
        if declarations:
            self.apply("".join(f"{line}\n" for line in declarations))

    def list_names(self, declarations: Sequence[str] = ()) -> tuple[set[str], set[str]]:
        """Names of the chains and of the sets (not maps) table `ip kproxy` holds, after `declarations`, all in
        one `nft` run."""
        script = "".join(f"{line}\n" for line in declarations) + "list chains ip\nlist sets ip\n"
        chains: set[str] = set()
        sets: set[str] = set()
        in_table = False
        for line in self._run(["nft", "-t", "-f", "-"], script).splitlines():
            line = line.strip()
            if line.startswith("table "):
                in_table = line == f"table {TABLE} {{"
            elif in_table and line.startswith(("chain ", "set ")):
                (chains if line.startswith("chain ") else sets).add(line.split()[1])
        return chains, sets

    def _run(self, command: list[str], stdin: str | None) -> str:
        try:
            done = subprocess.run(
                self.command_prefix + command, input=stdin, capture_output=True, text=True, timeout=self.timeout
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            raise PacketFilterError(f"nft: {err}") from err
        if done.returncode != 0:
            raise PacketFilterError(f"nft exited {done.returncode}: {done.stderr.strip()[:2000]}")
        return done.stdout


class RecordingNft:
    """A test double keeping every script (changes as the `nft -f` script they equal); it reports declared
    chains and sets."""

    def __init__(self) -> None:
        self.scripts: list[str] = []
        self.chains: set[str] = set()
        self.sets: set[str] = set()

    def apply(self, script: str) -> None:
        self.scripts.append(script)
        for line in script.splitlines():
            words = line.split()
            if len(words) < 5 or words[2:4] != TABLE.split() or words[1] not in ("chain", "set"):
                continue
            names = self.chains if words[1] == "chain" else self.sets
            if words[0] == "add":
                names.add(words[4])
            elif words[0] == "delete":
                names.discard(words[4])

    def apply_changes(self, changes: Sequence[Change]) -> None:
        self.apply(render_changes(changes))

    def apply_full(self, full: FullSync) -> None:
        self.apply(full.script())

    def list_names(self, declarations: Sequence[str] = ()) -> tuple[set[str], set[str]]:
        return set(self.chains), set(self.sets)


ServiceInputs = tuple[ServicePort, Sequence[Endpoint]]


class NftablesProgrammer:
    """Keeps table `ip kproxy` equal to a snapshot: changed services only per sync, everything on full syncs.

    Between full syncs the work is proportional to what changed: a service
    whose port and endpoints are the very objects (or equal to those) of the
    last sync is skipped without building or comparing its rules. Every
    element is counted by the service ports that want it (`Claims`), and the
    kernel holds the smallest value claimed for each key, as `assemble_nft`
    picks it: so an element two ports share outlives either of them.
    """

    def __init__(self, nft: Nft | RecordingNft, node: NodeConfig):
        self.nft = nft
        self.node = node
        self.inputs: dict[ServicePortName, ServiceInputs] | None = None  # None: the kernel is unknown
        self.parts: dict[ServicePortName, ServiceNft] = {}
        self.claims = Claims()
        self.elements: dict[str, dict[str, str]] = {}  # what the kernel holds: each key's winning value
        self.rule_count = 0

    def _part(self, port: ServicePort, endpoints: Sequence[Endpoint]) -> ServiceNft:
        return service_nft(port, tuple(endpoints), self.node)

    def sync(self, snap: ServiceSnapshot, full: bool) -> SyncReport:
        previous = self.inputs
        if full or previous is None:
            return self._full_sync({p.key: (p, snap.endpoints.get(p.key, ())) for p in snap.service_ports})
        inputs: dict[ServicePortName, ServiceInputs] = {}
        changed = []
        endpoints_of, previous_of = snap.endpoints.get, previous.get
        for port in snap.service_ports:  # one pass, identity first: this loop is most of a sync's Python time
            key = port.key
            now = inputs[key] = (port, endpoints_of(key, ()))
            if not _same_inputs(previous_of(key), now):
                changed.append(key)
        removed = [key for key in previous if key not in inputs] if len(inputs) - len(changed) < len(previous) else []
        before, after = NftRuleset(), NftRuleset()
        touched: dict[tuple[str, str], set[str]] = {}  # (set, key) -> values claimed in this sync
        for key in changed + removed:
            if key in self.parts:
                self._withdraw(self.parts.pop(key), before, touched)
        for key in changed:
            part = self.parts[key] = self._part(*inputs[key])
            self._claim(part, after, touched)
        spreads_before = spreads_of(self.elements)
        self._resolve(touched, before, after)
        spreads_after = spreads_of(self.elements)
        if spreads_after != spreads_before:  # a new endpoint count in use, or the last of one gone
            before.spreads, after.spreads = spreads_before, spreads_after
            before.chains["services"] = services_rules(self.node, spreads_before)
            after.chains["services"] = services_rules(self.node, spreads_after)
        changes, written = diff_changes(before, after)
        if changes:
            self.nft.apply_changes(changes)
        self.inputs = inputs
        return SyncReport({"nftables": self.rule_count}, written, full=False)

    def _withdraw(self, part: ServiceNft, before: NftRuleset, touched: dict[tuple[str, str], set[str]]) -> None:
        """Take back a part's claims; its chains and sets go into `before`."""
        for name, rules in part.chains:
            before.chains[name] = list(rules)
        before.timeout_sets.update(part.sets)
        counts = self.claims.counts
        for element in part.elements:
            left = counts[element] - 1
            if left:
                counts[element] = left
            else:
                del counts[element]
            touched.setdefault(element[:2], set())
        self.rule_count -= _part_size(part)

    def _claim(self, part: ServiceNft, after: NftRuleset, touched: dict[tuple[str, str], set[str]]) -> None:
        for name, rules in part.chains:
            after.chains[name] = list(rules)
        after.timeout_sets.update(part.sets)
        counts = self.claims.counts
        for element in part.elements:
            counts[element] = counts.get(element, 0) + 1
            touched.setdefault(element[:2], set()).add(element[2])
        self.rule_count += _part_size(part)

    def _resolve(self, touched: Mapping[tuple[str, str], set[str]], before: NftRuleset, after: NftRuleset) -> None:
        """Each touched key's new winning value; those that differ from the kernel's go into the diff.

        A key's candidates are the value held, the rivals it beat and what this sync claimed; the
        smallest still claimed wins and the others stay rivals.
        """
        counts, rivals = self.claims.counts, self.claims.rivals
        for set_name, key in sorted(touched):  # sorted: the same change always reads the same
            members = self.elements.setdefault(set_name, {})
            old = members.get(key)
            candidates = touched[set_name, key] | rivals.pop((set_name, key), set())
            if old is not None:
                candidates.add(old)
            alive = {value for value in candidates if (set_name, key, value) in counts}
            new = min(alive) if alive else None
            if len(alive) > 1:
                rivals[set_name, key] = alive - {new}
            if old == new:
                continue
            if old is not None:
                before.elements.setdefault(set_name, {})[key] = old
                del members[key]
                if not members and set_name not in STATIC_SETS:
                    del self.elements[set_name]
            if new is not None:
                after.elements.setdefault(set_name, {})[key] = new
                members[key] = new

    def _full_sync(self, inputs: dict[ServicePortName, ServiceInputs]) -> SyncReport:
        # The declarations and `nft list` run while the rules are built: they do not depend on each other.
        with ThreadPoolExecutor(1, thread_name_prefix="nft-list") as pool:
            listing = pool.submit(self.nft.list_names, static_declarations())
            built = collector_paused((key, self._part(port, endpoints)) for key, (port, endpoints) in inputs.items())
            self.parts = dict(built)
            self.claims = Claims()
            wanted = assemble_nft(self.parts.values(), self.node, self.claims)
            existing_chains, existing_sets = listing.result()
        self.nft.apply_full(FullSync(wanted, existing_chains, existing_sets))
        self.elements = {name: dict(members) for name, members in wanted.elements.items()}
        self.inputs = inputs
        self.rule_count = sum(_part_size(p) for p in self.parts.values())
        return SyncReport({"nftables": self.rule_count}, len(wanted.chains), full=True)

    def forget(self) -> None:
        self.inputs = None


# One change to the table: (verb, arguments...), e.g. ("add rule", chain, rule) or ("delete element", set, key).
Change = tuple[str, ...]


def diff_changes(before: NftRuleset, after: NftRuleset) -> tuple[list[Change], int]:
    """The changes taking the table from `before` to `after`, and how many chains they rewrite.

    Order matters inside the one transaction: new sets and chains are added
    first, elements that lead to removed chains are deleted before those
    chains are flushed and deleted, and sets go last, once no rule uses them.
    Only what differs is touched: unchanged chains and elements are not sent.
    """
    changes: list[Change] = []
    changes += [("add set", spread_set(*spread), "") for spread in sorted(after.spreads - before.spreads)]
    changes += [
        ("add set", n, str(t)) for n, t in sorted(after.timeout_sets.items()) if before.timeout_sets.get(n) != t
    ]
    new_chains = [c for c in after.chains if c not in before.chains]
    changes += [("add chain", c) for c in new_chains]
    for name, members in before.elements.items():
        new = after.elements.get(name, {})
        changes += [("delete element", name, k) for k, v in members.items() if new.get(k) != v]
    changed = [c for c, rules in after.chains.items() if c in before.chains and before.chains[c] != rules]
    removed = [c for c in before.chains if c not in after.chains]
    changes += [("flush chain", c) for c in changed + removed]
    for name in new_chains + changed:
        changes += [("add rule", name, rule) for rule in after.chains[name]]
    for name, members in after.elements.items():
        old = before.elements.get(name, {})
        changes += [("add element", name, k, v) for k, v in members.items() if old.get(k) != v]
    changes += [("delete chain", c) for c in removed]
    changes += [("delete set", n) for n in sorted(before.timeout_sets) if n not in after.timeout_sets]
    changes += [("delete set", spread_set(*spread)) for spread in sorted(before.spreads - after.spreads)]
    return changes, len(new_chains) + len(changed)


def render_changes(changes: Sequence[Change]) -> str:
    """The `nft -f` script making these changes."""
    lines = []
    for verb, *args in changes:
        if verb == "add set":
            lines.append(_declare_set(args[0], args[1]))
        elif verb == "add rule":
            lines.append(f"add rule {TABLE} {args[0]} {args[1]}")
        elif verb == "add element":
            lines.append(f"add element {TABLE} {args[0]} {{ {_element(args[1], args[2])} }}")
        elif verb == "delete element":
            lines.append(f"delete element {TABLE} {args[0]} {{ {args[1]} }}")
        else:  # add/flush/delete chain, delete set: verb and name
            lines.append(f"{verb} {TABLE} {args[0]}")
    return "\n".join(lines) + "\n" if lines else ""


def change_batch(changes: Sequence[Change]) -> Batch:
    """The same changes as one nf_tables netlink batch, but for declaring `spread-` sets, which `Nft.apply_changes`
    leaves to `nft -f` first, as full syncs do (UnsupportedRule for what it cannot encode)."""
    batch = kproxy_batch()
    for verb, *args in changes:
        if verb == "add set":
            if not args[0].startswith(SPREAD):  # a `spread-` set is declared by nft beforehand (`typeof`)
                batch.add_timeout_set(args[0], int(args[1]))
        elif verb == "add chain":
            batch.add_chain(args[0])
        elif verb == "flush chain":
            batch.flush_chain(args[0])
        elif verb == "delete chain":
            batch.delete_chain(args[0])
        elif verb == "add rule":
            batch.add_rule(args[0], args[1])
        elif verb == "add element":
            batch.add_element(args[0], args[1], args[2], *element_fields(args[0]))
        elif verb == "delete element":
            batch.delete_element(args[0], args[1], element_fields(args[0])[0])
        elif verb == "delete set":
            batch.delete_set(args[0])
        else:
            raise UnsupportedRule(f"change {verb!r}")
    return batch


def diff_script(before: NftRuleset, after: NftRuleset) -> tuple[str, int]:
    """The `nft -f` script taking the table from `before` to `after`, and how many chains it rewrites."""
    changes, written = diff_changes(before, after)
    return render_changes(changes), written

"""Native nftables mode (`--mode nftables`): Service rules in kproxy's own table, `ip kproxy`.

Where a packet goes is decided by verdict maps keyed by (daddr, proto,
dport) (`service-ips`, `no-endpoint-services`) or (proto, dport) for node
ports, so adding or changing one Service changes a few map elements and its
own chains: O(1), however many Services there are. Each service port has
chains in kube-proxy's iptables shape (`svc-`, `svl-`, `ext-`, `ep-` plus a
hash), and picks an endpoint with one `numgen random mod (N-i) == 0` rule
per endpoint (probability 1/(N-i), as iptables' statistic rules): the
measured alternative, an anonymous `numgen` vmap per service, loads ten
times slower at ten thousand services.

`build_nft` is a pure function of (service ports, endpoints, node).
`NftablesProgrammer` turns the difference between two of them into one
transaction of only the changed chains, map elements and sets, sent as a
netlink batch (`netlink.py`: `nft -f` would first read all 40,000 chains
at 10,000 Services); a full sync is one `nft -f` script that re-declares everything it owns and
deletes the chains it no longer wants, which also repairs edits made
behind its back. Nothing outside table `ip kproxy` is touched.
"""

from __future__ import annotations

import functools
import logging
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kproxy.iptables.restore import PacketFilterError
from kproxy.iptables.rules import chain_hash, endpoint_order, usable_endpoints
from kproxy.iptables.sync import SyncReport
from kproxy.nftables.netlink import Batch, NetlinkNft, UnsupportedRule
from kproxy.model import Endpoint, NodeConfig, ServicePort, ServicePortName, ServiceSnapshot

log = logging.getLogger(__name__)

TABLE = "ip kproxy"
SERVICE_IPS = "service-ips"
SERVICE_NODEPORTS = "service-nodeports"
NO_ENDPOINT_SERVICES = "no-endpoint-services"
NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"
MARK_FOR_MASQUERADE = "mark-for-masquerade"
REJECT_CHAIN = "reject-chain"
SERVICE_CHAIN_PREFIXES = ("svc-", "svl-", "ext-", "ep-")

MAP_TYPES = {
    SERVICE_IPS: "ipv4_addr . inet_proto . inet_service : verdict",
    NO_ENDPOINT_SERVICES: "ipv4_addr . inet_proto . inet_service : verdict",
    SERVICE_NODEPORTS: "inet_proto . inet_service : verdict",
    NO_ENDPOINT_NODEPORTS: "inet_proto . inet_service : verdict",
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


@dataclass
class NftRuleset:
    """kproxy's table: regular chains with their rules, verdict map elements, and affinity sets."""

    chains: dict[str, list[str]] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=lambda: {name: {} for name in MAP_TYPES})
    sets: dict[str, int] = field(default_factory=dict)  # affinity set -> timeout seconds

    def render(self) -> str:
        """The whole table as an `nft -f` script that creates it from nothing."""
        lines = [f"add table {TABLE}"]
        lines += [_declare_set(name, timeout) for name, timeout in sorted(self.sets.items())]
        lines += [f"add map {TABLE} {name} {{ type {kind} ; }}" for name, kind in MAP_TYPES.items()]
        lines += [_declare_base_chain(*spec) for spec in BASE_CHAINS]
        lines += [f"add chain {TABLE} {name}" for name in self.chains]
        for name, rules in self.chains.items():
            lines += [f"add rule {TABLE} {name} {rule}" for rule in rules]
        for name, elements in self.maps.items():
            lines += [f"add element {TABLE} {name} {{ {key} : {verdict} }}" for key, verdict in elements.items()]
        return "\n".join(lines) + "\n"


def _declare_set(name: str, timeout: int) -> str:
    return f"add set {TABLE} {name} {{ type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ; }}"


def _declare_base_chain(name: str, kind: str, hook: str, priority: str) -> str:
    return f"add chain {TABLE} {name} {{ type {kind} hook {hook} priority {priority} ; policy accept ; }}"


@dataclass(frozen=True)
class ServiceNft:
    """One service port's part: its chains, sets and the map elements that lead to them."""

    chains: tuple[tuple[str, tuple[str, ...]], ...]
    elements: tuple[tuple[str, str, str], ...]  # (map, key, verdict)
    sets: tuple[tuple[str, int], ...]


def chain_name(prefix: str, key: ServicePortName, endpoint: Endpoint | None = None) -> str:
    """`svc-`/`svl-`/`ext-`/`ep-` plus the same hash kube-proxy's iptables chain names use."""
    text = str(key) + key.protocol.lower() + (str(endpoint) if endpoint else "")
    return f"{prefix}{chain_hash(text).lower()}"


def affinity_set(key: ServicePortName, endpoint: Endpoint) -> str:
    return chain_name("aff-", key, endpoint)


def base_ruleset(node: NodeConfig) -> NftRuleset:
    """The plumbing every node has: hooks into the maps, masquerade marking, reject."""
    mark = node.masquerade_mark
    ruleset = NftRuleset()
    ruleset.chains.update(
        {
            "nat-prerouting": ["jump services"],
            "nat-output": ["jump services"],
            "nat-postrouting": ["jump masquerading"],
            "filter-input": ["ct state new jump nodeport-endpoints-check", "ct state new jump service-endpoints-check"],
            "filter-forward": ["ct state new jump service-endpoints-check"],
            "filter-output": ["ct state new jump service-endpoints-check"],
            "services": [
                f"ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}",
                f"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @{SERVICE_NODEPORTS}",
            ],
            "service-endpoints-check": [f"ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"],
            "nodeport-endpoints-check": [f"fib daddr type local meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"],
            MARK_FOR_MASQUERADE: [f"meta mark set meta mark or {mark}"],
            "masquerading": [
                f"meta mark & {mark} == 0 return",
                f"meta mark set meta mark xor {mark}",
                "masquerade",
            ],
            REJECT_CHAIN: ["reject"],
        }
    )
    return ruleset


def build_nft(
    service_ports: Iterable[ServicePort],
    endpoints: Mapping[ServicePortName, Sequence[Endpoint]],
    node: NodeConfig,
) -> NftRuleset:
    """kproxy's whole nftables table for these services."""
    ordered = sorted(service_ports, key=lambda s: s.key)
    return assemble_nft((service_nft(s, tuple(endpoints.get(s.key, ())), node) for s in ordered), node)


def assemble_nft(parts: Iterable[ServiceNft], node: NodeConfig) -> NftRuleset:
    return assemble_into(base_ruleset(node), parts)


def assemble_into(ruleset: NftRuleset, parts: Iterable[ServiceNft]) -> NftRuleset:
    """Add service parts' chains, elements and sets to a ruleset (the last part wins a shared element)."""
    for part in parts:
        for name, rules in part.chains:
            ruleset.chains[name] = list(rules)
        for map_name, key, verdict in part.elements:
            ruleset.maps[map_name][key] = verdict
        ruleset.sets.update(part.sets)
    return ruleset


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
    """Rules plus map elements, for the rules metric."""
    return sum(len(rules) for _, rules in part.chains) + len(part.elements)


@functools.lru_cache(maxsize=65536)
def service_nft(service: ServicePort, all_endpoints: tuple[Endpoint, ...], node: NodeConfig) -> ServiceNft:
    """One service port's chains and map elements (kube-proxy's logic, in nft).

    Cached like the iptables rules: a sync rebuilds only changed services.
    """
    key = service.key
    proto = key.protocol.lower()
    ordered = sorted(all_endpoints, key=endpoint_order)
    cluster_endpoints = usable_endpoints(ordered)
    local_endpoints = usable_endpoints(e for e in ordered if e.is_local)
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
    refuse = "drop" if cluster_endpoints else f"goto {REJECT_CHAIN}"  # none local, or none at all
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
            elements.append((NO_ENDPOINT_SERVICES, address_key, refuse))
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
        rules = [f"ip saddr {endpoint.ip} jump {MARK_FOR_MASQUERADE}"]
        if service.sticky_seconds is not None:
            name = affinity_set(key, endpoint)
            sets.append((name, service.sticky_seconds))
            rules.append(f"update @{name} {{ ip saddr }}")
        rules.append(f"meta l4proto {proto} dnat to {endpoint.ip}:{endpoint.port}")
        chains[chain_name("ep-", key, endpoint)] = rules
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
        """One atomic netlink batch; a rule the compiler does not know sends the same changes via `nft -f`."""
        try:
            batch = change_batch(changes)
        except UnsupportedRule as err:
            log.info("sending changes with nft -f: %s", err)
            self.apply(render_changes(changes))
            return
        self.netlink.send(batch)

    def list_chains(self) -> set[str]:
        """Names of the chains table `ip kproxy` holds now (empty when there is no table)."""
        text = self._run(["nft", "list", "chains", "ip"], None)
        names, in_table = set(), False
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("table "):
                in_table = line == f"table {TABLE} {{"
            elif in_table and line.startswith("chain "):
                names.add(line.split()[1])
        return names

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
    """A test double keeping every script (changes as the `nft -f` script they equal); it reports declared chains."""

    def __init__(self) -> None:
        self.scripts: list[str] = []
        self.chains: set[str] = set()

    def apply(self, script: str) -> None:
        self.scripts.append(script)
        for line in script.splitlines():
            if line.startswith(f"add chain {TABLE} "):
                self.chains.add(line.split()[4])
            elif line.startswith(f"delete chain {TABLE} "):
                self.chains.discard(line.split()[4])

    def apply_changes(self, changes: Sequence[Change]) -> None:
        self.apply(render_changes(changes))

    def list_chains(self) -> set[str]:
        return set(self.chains)


ServiceInputs = tuple[ServicePort, Sequence[Endpoint]]


class NftablesProgrammer:
    """Keeps table `ip kproxy` equal to a snapshot: changed services only per sync, everything on full syncs.

    Between full syncs the work is proportional to what changed: a service
    whose port and endpoints are the very objects (or equal to those) of the
    last sync is skipped without building or comparing its rules. Two
    Services claiming the same address and port (invalid, but possible with
    externalIPs) can leave the element of the wrong one until the next full
    sync, which renders every map whole.
    """

    def __init__(self, nft: Nft | RecordingNft, node: NodeConfig):
        self.nft = nft
        self.node = node
        self.inputs: dict[ServicePortName, ServiceInputs] | None = None  # None: the kernel is unknown
        self.parts: dict[ServicePortName, ServiceNft] = {}
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
        for key in changed + removed:
            if key in self.parts:
                old = self.parts.pop(key)
                assemble_into(before, [old])
                self.rule_count -= _part_size(old)
        for key in changed:
            part = self._part(*inputs[key])
            self.parts[key] = part
            assemble_into(after, [part])
            self.rule_count += _part_size(part)
        changes, written = diff_changes(before, after)
        if changes:
            self.nft.apply_changes(changes)
        self.inputs = inputs
        return SyncReport({"nftables": self.rule_count}, written, full=False)

    def _full_sync(self, inputs: dict[ServicePortName, ServiceInputs]) -> SyncReport:
        self.parts = {key: self._part(*inputs[key]) for key in sorted(inputs)}
        wanted = assemble_nft(self.parts.values(), self.node)
        self.nft.apply(self._full_script(wanted, self.nft.list_chains()))
        self.inputs = inputs
        self.rule_count = sum(_part_size(p) for p in self.parts.values())
        return SyncReport({"nftables": self.rule_count}, len(wanted.chains), full=True)

    def forget(self) -> None:
        self.inputs = None

    @staticmethod
    def _full_script(wanted: NftRuleset, existing: set[str]) -> str:
        """Declare everything (idempotent `add`), flush and refill chains and maps, delete unwanted chains."""
        stale = sorted(c for c in existing if c.startswith(SERVICE_CHAIN_PREFIXES) and c not in wanted.chains)
        lines = [f"add table {TABLE}"]
        lines += [_declare_set(name, timeout) for name, timeout in sorted(wanted.sets.items())]
        lines += [f"add map {TABLE} {name} {{ type {kind} ; }}" for name, kind in MAP_TYPES.items()]
        lines += [f"flush map {TABLE} {name}" for name in MAP_TYPES]
        lines += [_declare_base_chain(*spec) for spec in BASE_CHAINS]
        for name in [*wanted.chains, *stale]:
            lines += [f"add chain {TABLE} {name}", f"flush chain {TABLE} {name}"]
        lines += [f"delete chain {TABLE} {name}" for name in stale]
        for name, rules in wanted.chains.items():
            lines += [f"add rule {TABLE} {name} {rule}" for rule in rules]
        for name, elements in wanted.maps.items():
            lines += [f"add element {TABLE} {name} {{ {key} : {verdict} }}" for key, verdict in elements.items()]
        return "\n".join(lines) + "\n"


# One change to the table: (verb, arguments...), e.g. ("add rule", chain, rule) or ("delete element", map, key).
Change = tuple[str, ...]


def diff_changes(before: NftRuleset, after: NftRuleset) -> tuple[list[Change], int]:
    """The changes taking the table from `before` to `after`, and how many chains they rewrite.

    Order matters inside the one transaction: new sets and chains are added
    first, map elements that lead to removed chains are deleted before those
    chains are flushed and deleted, and sets go last, once no rule uses them.
    Only what differs is touched: unchanged chains and elements are not sent.
    """
    changes: list[Change] = []
    changes += [("add set", n, str(t)) for n, t in sorted(after.sets.items()) if before.sets.get(n) != t]
    new_chains = [c for c in after.chains if c not in before.chains]
    changes += [("add chain", c) for c in new_chains]
    for name, elements in after.maps.items():
        old = before.maps.get(name, {})
        changes += [("delete element", name, k) for k, v in old.items() if k not in elements or elements[k] != v]
    changed = [c for c, rules in after.chains.items() if c in before.chains and before.chains[c] != rules]
    removed = [c for c in before.chains if c not in after.chains]
    changes += [("flush chain", c) for c in changed + removed]
    for name in new_chains + changed:
        changes += [("add rule", name, rule) for rule in after.chains[name]]
    for name, elements in after.maps.items():
        old = before.maps.get(name, {})
        changes += [("add element", name, k, v) for k, v in elements.items() if old.get(k) != v]
    changes += [("delete chain", c) for c in removed]
    changes += [("delete set", n) for n in sorted(before.sets) if n not in after.sets]
    return changes, len(new_chains) + len(changed)


def render_changes(changes: Sequence[Change]) -> str:
    """The `nft -f` script making these changes."""
    lines = []
    for verb, *args in changes:
        if verb == "add set":
            lines.append(_declare_set(args[0], int(args[1])))
        elif verb == "add rule":
            lines.append(f"add rule {TABLE} {args[0]} {args[1]}")
        elif verb == "add element":
            lines.append(f"add element {TABLE} {args[0]} {{ {args[1]} : {args[2]} }}")
        elif verb == "delete element":
            lines.append(f"delete element {TABLE} {args[0]} {{ {args[1]} }}")
        else:  # add/flush/delete chain, delete set: verb and name
            lines.append(f"{verb} {TABLE} {args[0]}")
    return "\n".join(lines) + "\n" if lines else ""


def change_batch(changes: Sequence[Change]) -> Batch:
    """The same changes as one nf_tables netlink batch (UnsupportedRule for a rule it cannot compile)."""
    batch = Batch.for_table(TABLE.split()[1])
    for verb, *args in changes:
        if verb == "add set":
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
            batch.add_element(args[0], args[1], args[2])
        elif verb == "delete element":
            batch.delete_element(args[0], args[1])
        elif verb == "delete set":
            batch.delete_set(args[0])
        else:
            raise UnsupportedRule(f"change {verb!r}")
    return batch


def diff_script(before: NftRuleset, after: NftRuleset) -> tuple[str, int]:
    """The `nft -f` script taking the table from `before` to `after`, and how many chains it rewrites."""
    changes, written = diff_changes(before, after)
    return render_changes(changes), written

"""A pod's /etc/resolv.conf and /etc/hosts, as Kubernetes' kubelet writes them.

resolv.conf follows `pkg/kubelet/network/dns` (`GetPodDNS`): the dnsPolicy
picks a base (cluster DNS, the node's file, or nothing) and `dnsConfig` is
merged on top; hosts follows the kubelet's managed hosts file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Object = dict[str, Any]

MAX_NAMESERVERS = 3
MAX_SEARCH_DOMAINS = 32
MAX_SEARCH_CHARS = 2048
MAX_DOMAIN_CHARS = 253
CLUSTER_OPTIONS = ["ndots:5"]
POLICIES = ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")


class DNSConfigError(ValueError):
    """The pod's DNS settings cannot be turned into a resolv.conf."""


@dataclass
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"nameserver {ns}" for ns in self.nameservers]
        if self.searches:
            lines.append("search " + " ".join(self.searches))
        if self.options:
            lines.append("options " + " ".join(self.options))
        return "\n".join(lines) + "\n"


def parse_resolv_conf(text: str) -> ResolvConf:
    """Nameservers, the last `search` line and every option of a resolv.conf."""
    conf = ResolvConf()
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            conf.nameservers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            conf.searches = [s.rstrip(".") if s != "." else s for s in fields[1:]]
        elif fields[0] == "options":
            conf.options.extend(fields[1:])
    return conf


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _merge_options(base: list[str], extra: list[Object]) -> list[str]:
    """Options by name, in first-seen order; later values win."""
    merged: dict[str, str] = {}
    for option in base:
        merged[option.partition(":")[0]] = option
    for entry in extra:
        name = entry.get("name")
        if not name:
            raise DNSConfigError("dnsConfig.options entry without a name")
        value = entry.get("value")
        merged[name] = f"{name}:{value}" if value is not None else name
    return list(merged.values())


def _limit(conf: ResolvConf) -> ResolvConf:
    searches = [s for s in conf.searches if len(s) <= MAX_DOMAIN_CHARS][:MAX_SEARCH_DOMAINS]
    while searches and len(" ".join(searches)) > MAX_SEARCH_CHARS:
        searches.pop()
    return ResolvConf(conf.nameservers[:MAX_NAMESERVERS], searches, conf.options)


def node_resolv_conf(text: str | None) -> ResolvConf:
    """The `Default` policy's base: the node's file, or localhost when the kubelet has none."""
    if text is None:
        return ResolvConf(["127.0.0.1"], ["."], [])
    return parse_resolv_conf(text)


def pod_resolv_conf(
    pod: Object,
    *,
    cluster_dns: list[str],
    cluster_domain: str,
    node_resolv: str | None,
) -> str:
    """The resolv.conf text for a pod.

    `node_resolv` is the content of the kubelet's `--resolv-conf` file, or
    None when that flag is empty.
    """
    spec = pod.get("spec", {})
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    if policy not in POLICIES:
        raise DNSConfigError(f"dnsPolicy {policy!r} is not one of {', '.join(POLICIES)}")
    host_network = bool(spec.get("hostNetwork"))
    if policy == "ClusterFirst" and host_network:
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and not cluster_dns:
        policy = "Default"  # Kubernetes emits MissingClusterDNS and falls back the same way
    node = node_resolv_conf(node_resolv)
    if policy == "None":
        conf = ResolvConf()
    elif policy == "Default":
        conf = node
    else:
        namespace = pod.get("metadata", {}).get("namespace", "default")
        cluster_search = [f"{namespace}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain]
        node_search = [s for s in node.searches if s != "."]
        conf = ResolvConf(list(cluster_dns), _unique(cluster_search + node_search), list(CLUSTER_OPTIONS))
    extra = spec.get("dnsConfig") or {}
    if extra:
        conf = ResolvConf(
            _unique(conf.nameservers + list(extra.get("nameservers") or [])),
            _unique(conf.searches + list(extra.get("searches") or [])),
            _merge_options(conf.options, list(extra.get("options") or [])),
        )
    if policy == "None" and not conf.nameservers:
        raise DNSConfigError("dnsPolicy None needs at least one dnsConfig.nameservers entry")
    return _limit(conf).render()


HOSTS_HEADER = """# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
"""


def pod_hostname(pod: Object) -> str:
    """`spec.hostname`, else the pod's name (truncated to 63 characters, as Kubernetes does)."""
    spec = pod.get("spec", {})
    name = spec.get("hostname") or pod.get("metadata", {}).get("name", "")
    return str(name)[:63].rstrip("-.")


def pod_hosts(pod: Object, pod_ip: str, cluster_domain: str) -> str:
    """The pod's /etc/hosts: localhost lines, its own name, then `hostAliases`."""
    spec = pod.get("spec", {})
    hostname = pod_hostname(pod)
    text = HOSTS_HEADER
    if pod_ip:
        subdomain = spec.get("subdomain")
        if subdomain:
            namespace = pod.get("metadata", {}).get("namespace", "default")
            text += f"{pod_ip}\t{hostname}.{subdomain}.{namespace}.svc.{cluster_domain}\t{hostname}\n"
        else:
            text += f"{pod_ip}\t{hostname}\n"
    aliases = spec.get("hostAliases") or []
    if aliases:
        text += "\n# Entries added by HostAliases.\n"
        for alias in aliases:
            text += f"{alias.get('ip', '')}\t" + "\t".join(alias.get("hostnames") or []) + "\n"
    return text

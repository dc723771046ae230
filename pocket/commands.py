"""The local-cluster subcommands of `pocket`: up, down, status, node, client, forward."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from control.cli_support import Command
from pocket import cluster as local
from pocket import forward
from pocket.config import API_PORT, ClusterConfig, plan_nodes
from pocket.netns import netns_path, nsenter_argv
from pocket.setup import run_setup

PROXY_MODE_FILE = "proxy-mode"  # in the state dir: the --proxy-mode `pocket up` was given


def say(line: str) -> None:
    print(line, flush=True)


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the cluster lives; the defaults are the one real local cluster."""
    defaults = ClusterConfig()
    parser.add_argument("--prefix", default=defaults.prefix,
                        help="network namespace name prefix (default: %(default)s)")
    parser.add_argument("--state-dir", type=Path, default=defaults.state_dir,
                        help="data and logs (default: %(default)s)")
    parser.add_argument("--run-dir", type=Path, default=defaults.run_dir,
                        help="sockets and pid files (default: %(default)s)")
    parser.add_argument("--kubeconfig", type=Path, default=defaults.kubeconfig,
                        help="where to write the kubeconfig (default: %(default)s)")
    parser.add_argument("--api-port", type=int, default=API_PORT,
                        help="host port of the API forwarder on 127.0.0.1 (default: %(default)s)")
    parser.add_argument("--proxy-mode", choices=("iptables", "nftables"), default=None,
                        help="how each kproxy programs Services, passed as its --mode (default: what `pocket up` "
                             f"last used for this state dir, else {defaults.proxy_mode})")
    parser.add_argument("--control-planes", type=int, default=1,
                        help="control-plane nodes, each with an etcd member, API server, scheduler and controller "
                             "manager: 1, or 3 for HA (give the same number to every command on that cluster; "
                             "default: %(default)s)")


def cluster_config(args: argparse.Namespace) -> ClusterConfig:
    if not 0 < args.api_port < 65536:
        raise SystemExit(f"pocket: --api-port must be in 1-65535, got {args.api_port}")
    try:
        nodes = plan_nodes(args.control_planes)
    except ValueError as err:
        raise SystemExit(f"pocket: {err}") from None
    return ClusterConfig(
        prefix=args.prefix,
        state_dir=args.state_dir,
        run_dir=args.run_dir,
        kubeconfig=args.kubeconfig,
        api_port=args.api_port,
        proxy_mode=args.proxy_mode or remembered_proxy_mode(args.state_dir),
        nodes=nodes,
    )


def remember_proxy_mode(cluster: ClusterConfig) -> None:
    cluster.state_dir.mkdir(parents=True, exist_ok=True)
    (cluster.state_dir / PROXY_MODE_FILE).write_text(cluster.proxy_mode + "\n")


def remembered_proxy_mode(state_dir: Path) -> str:
    """The mode `pocket up` last wrote for this cluster, so a restarted kproxy comes back the same."""
    try:
        mode = (state_dir / PROXY_MODE_FILE).read_text().strip()
    except FileNotFoundError:
        return ClusterConfig().proxy_mode
    if mode not in ("iptables", "nftables"):
        raise SystemExit(f"pocket: {state_dir / PROXY_MODE_FILE} says {mode!r}; expected iptables or nftables")
    return mode


def run_up(args: argparse.Namespace) -> int:
    cluster = cluster_config(args)
    with local.exclusive(cluster, say):
        remember_proxy_mode(cluster)
        return local.up(cluster, say)


def add_down_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("--keep", action="store_true",
                        help="stop everything but keep the state dir and kubeconfig: "
                             "a later `pocket up` brings the same cluster back")


def run_down(args: argparse.Namespace) -> int:
    cluster = cluster_config(args)
    with local.exclusive(cluster, say):
        return local.down(cluster, say, keep=args.keep)


def run_status(args: argparse.Namespace) -> int:
    return local.status(cluster_config(args), say)


def exec_in(netns: str, argv: list[str], docker_host: str | None = None) -> int:
    """Replace this process with `argv` inside `netns`, so its exit code is ours.

    On a node, DOCKER_HOST points at that node's own engine, so
    `pocket node exec worker1 -- docker ps` lists worker1's containers.
    """
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        say("pocket: give a command after `--`, e.g. `pocket node exec worker1 -- ip addr`")
        return 2
    if not netns_path(netns).exists():
        say(f"pocket: network namespace {netns} does not exist; is the cluster up? (`pocket up`)")
        return 1
    full = nsenter_argv(netns, argv)
    env = dict(os.environ, DOCKER_HOST=docker_host) if docker_host else dict(os.environ)
    os.execvpe(full[0], full, env)
    return 127  # not reached: execvp replaces the process or raises


def add_node_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("action", choices=("exec", "stop", "start", "setup"),
                        help="exec: run a command in the node's network namespace; stop: crash the node; "
                             "start: bring it back; setup: make this machine a node with systemd units "
                             "(`pocket node setup --help`)")
    parser.add_argument("node", nargs="?", help="node name (control-plane, worker1, worker2); not for setup")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="for exec: -- COMMAND [ARGS...]; for setup: its flags")


def run_node(args: argparse.Namespace) -> int:
    if args.action == "setup":
        return run_setup(([args.node] if args.node else []) + args.cmd, say)
    if args.node is None:
        say(f"pocket: `node {args.action}` needs a node name")
        return 2
    cluster = cluster_config(args)
    try:
        node = cluster.node(args.node)
    except KeyError as err:
        say(f"pocket: {err.args[0]}")
        return 2
    if args.action == "exec":
        return exec_in(cluster.node_netns(node.name), args.cmd, cluster.docker_host(node.name))
    if args.cmd:
        say(f"pocket: `node {args.action}` takes no command, got {' '.join(args.cmd)!r}")
        return 2
    with local.exclusive(cluster, say):
        if args.action == "stop":
            return local.node_stop(cluster, node.name, say)
        return local.node_start(cluster, node.name, say)


def add_restart_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("node", help="node name (control-plane, worker1, worker2)")
    parser.add_argument("component", help="one of the node's components, as `pocket status` names them "
                                          "(etcd, apiserver, controller-manager, scheduler, kdns, kubelet, kproxy)")


def run_restart(args: argparse.Namespace) -> int:
    cluster = cluster_config(args)
    try:
        node = cluster.node(args.node)
    except KeyError as err:
        say(f"pocket: {err.args[0]}")
        return 2
    with local.exclusive(cluster, say):
        return local.restart_component(cluster, node.name, args.component, say)


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    add_cluster_arguments(parser)
    parser.add_argument("action", choices=("exec",), help="exec: run a command in the client namespace")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")


def run_client(args: argparse.Namespace) -> int:
    return exec_in(cluster_config(args).client_netns, args.cmd)


def add_forward_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", default=f"127.0.0.1:{API_PORT}", help="HOST:PORT to bind in the host namespace")
    parser.add_argument("--netns", default="pk-control-plane", help="namespace to forward from")
    parser.add_argument("--target", default=f"192.168.56.10:{API_PORT}",
                        help="HOST:PORT inside that namespace, or a comma-separated list to fail over between")


def run_forward(args: argparse.Namespace) -> int:
    try:
        forward.run(args.listen, args.netns, args.target)
    except (ValueError, OSError) as err:
        print(f"pocket forward: {err}", file=sys.stderr)
        return 1
    return 0


COMMANDS: dict[str, Command] = {
    "up": Command("up", "create the local cluster (idempotent: completes a half-made one)",
                  add_cluster_arguments, run_up),
    "down": Command("down", "remove everything `pocket up` made (--keep: stop it, keep its state)",
                    add_down_arguments, run_down),
    "status": Command("status", "which components run on each node, and whether nodes are Ready",
                      add_cluster_arguments, run_status),
    "node": Command("node", "run a command on a node, or stop/start a node", add_node_arguments, run_node),
    "restart": Command("restart", "stop one component of a node and start it again (`pocket status` names them)",
                       add_restart_arguments, run_restart),
    "client": Command("client", "run a command in the client namespace (192.168.56.1)",
                      add_client_arguments, run_client),
    "forward": Command("forward", "forward a host port to an address inside a node namespace",
                       add_forward_arguments, run_forward),
}

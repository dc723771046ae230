"""kdns beside dnsmasq under dnsperf, in the same run: cluster names, search-path expansions, cached upstream names.

Everything listens on 127.0.0.x in the host namespace (no cluster needed):
kdns serves a fixed index of SERVICES ClusterIP Services (the production
server and record index, fed a StaticSource); dnsmasq serves the same names
from a hosts file with `--local=/cluster.local/` (so it answers NXDOMAIN for
the rest of the zone itself, as kdns does); both forward other names to an
upstream dnsmasq serving `ext-*.example.org` with a long TTL, and both cache
what it says.  The server runs on core 0 and dnsperf on core 1 (taskset).
Each run: a warm-up pass over the query file, then dnsperf for DURATION
seconds; kdns and dnsmasq runs alternate, REPEATS rounds, and each figure is
the best run (other work on the machine only ever slows a run down).  CPU
per query is the server's user+system time over that run divided by the
queries it completed: on a shared machine the steadier of the two measures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dnslib

from benchmarks.report import Distribution, Reference, Section
from benchmarks.report import Figure as ReportFigure

SERVICES = 1000
UPSTREAM_NAMES = 1000
NAMESPACE = "bench"
ZONE = "cluster.local"
DURATION = 5  # seconds of dnsperf per run
REPEATS = 3  # each figure is the best of this many runs: the machine is shared, noise only subtracts
OUTSTANDING = 100  # dnsperf -q
PORT = 5300
KDNS_ADDRESS, DNSMASQ_ADDRESS, UPSTREAM_ADDRESS = "127.0.0.61", "127.0.0.62", "127.0.0.63"
SERVER_CPU, CLIENT_CPU = "0", "1"
START_TIMEOUT = 20.0
TTL = 30


def cluster_ip(i: int) -> str:
    return f"10.96.{10 + i // 250}.{1 + i % 250}"


def service_objects(count: int) -> list[dict[str, object]]:
    """`count` ClusterIP Services with a named port, shaped as the API returns them."""
    return [
        {
            "metadata": {"namespace": NAMESPACE, "name": f"svc-{i}"},
            "spec": {"clusterIP": cluster_ip(i), "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        }
        for i in range(count)
    ]


# -- the kdns process ------------------------------------------------------------------------


def serve(argv: list[str]) -> None:
    """`python -m benchmarks.bench_kdns --listen A --port P --services N --upstream H:P [--workers W]`."""
    import uvloop

    from kdns.forward import Forwarder
    from kdns.records import RecordIndex
    from kdns.server import DnsServer, StaticSource

    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_kdns")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--services", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="host:port")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    host, port = args.upstream.rsplit(":", 1)
    index = RecordIndex.build(service_objects(args.services), [], [NAMESPACE], zone=ZONE, ttl=TTL)
    for _ in range(args.workers - 1):
        if os.fork() == 0:
            break  # a worker: serve like the parent, on the shared port

    async def main() -> None:
        # No rate limiter (as `--rate-limit 0`): dnsperf is a single client and is meant to run flat out.
        server = DnsServer(StaticSource(index), Forwarder([(host, int(port))]), rate_limiter=None)
        await server.start(args.listen, args.port, reuse_port=args.workers > 1)
        await asyncio.Event().wait()

    uvloop.run(main())


# -- the harness -----------------------------------------------------------------------------


def ensure_packages() -> None:
    """Debian's dnsperf and dnsmasq, installed with apt-get when missing."""
    missing = [pkg for pkg, binary in (("dnsperf", "dnsperf"), ("dnsmasq", "dnsmasq")) if not shutil.which(binary)]
    if missing:
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, capture_output=True
        )


@dataclass
class Server:
    label: str
    process: subprocess.Popen[bytes]

    def pids(self) -> list[int]:
        """The process and its children (kdns workers)."""
        found = [self.process.pid]
        for pid in found:
            children = Path(f"/proc/{pid}/task/{pid}/children")
            if children.exists():
                found += [int(p) for p in children.read_text().split()]
        return found

    def cpu_seconds(self) -> float:
        ticks = 0
        for pid in self.pids():
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def running(label: str, argv: list[str], address: str) -> Iterator[Server]:
    """A server process in its own session, killed (its whole group) on exit."""
    process = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_answering(address, process, label)
        yield Server(label, process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_answering(address: str, process: subprocess.Popen[bytes], label: str) -> None:
    query = bytes.fromhex("beef01000001000000000000") + b"\x03svc\x00\x00\x01\x00\x01"
    deadline = time.monotonic() + START_TIMEOUT
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{label} exited: {process.stderr.read().decode() if process.stderr else ''}")
            try:
                sock.sendto(query, (address, PORT))
                sock.recv(512)
                return
            except OSError:
                time.sleep(0.1)
    raise RuntimeError(f"{label} did not answer on {address}:{PORT} within {START_TIMEOUT:.0f}s")


@dataclass
class Figure:
    qps: float
    latency_ms: float
    lost: int
    cpu_us: float
    command: str


def dnsperf(server: Server, address: str, queries: Path) -> Figure:
    """A warm-up pass, then DURATION seconds of dnsperf pinned to CLIENT_CPU."""
    base = ["taskset", "-c", CLIENT_CPU, "dnsperf", "-s", address, "-p", str(PORT), "-d", str(queries)]
    subprocess.run([*base, "-n", "1"], check=True, capture_output=True)
    argv = [*base, "-l", str(DURATION), "-q", str(OUTSTANDING)]
    cpu_before = server.cpu_seconds()
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    cpu = server.cpu_seconds() - cpu_before
    completed = int(re.search(r"Queries completed:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    qps = float(re.search(r"Queries per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = float(re.search(r"Average Latency \(s\):\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lost = int(re.search(r"Queries lost:\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    command = " ".join(argv).replace(str(queries.parent), "$DIR")
    return Figure(qps, latency * 1000, lost, cpu / max(completed, 1) * 1e6, command)


def write_inputs(directory: Path) -> dict[str, Path]:
    """Hosts files for dnsmasq and the three dnsperf query files."""
    (directory / "cluster.hosts").write_text(
        "".join(f"{cluster_ip(i)} svc-{i}.{NAMESPACE}.svc.{ZONE}\n" for i in range(SERVICES))
    )
    (directory / "upstream.hosts").write_text(
        "".join(f"192.0.2.{1 + i % 250} ext-{i}.example.org\n" for i in range(UPSTREAM_NAMES))
    )
    files = {
        "cluster": "".join(f"svc-{i}.{NAMESPACE}.svc.{ZONE} A\n" for i in range(SERVICES)),
        # `svc-i.bench` from a pod in `bench` with ndots:5, as glibc asks it (A and AAAA):
        # the first search domain misses (NXDOMAIN), the second finds the Service.
        "search": "".join(
            f"svc-{i}.{NAMESPACE}.{NAMESPACE}.svc.{ZONE} {t}\nsvc-{i}.{NAMESPACE}.svc.{ZONE} {t}\n"
            for i in range(SERVICES)
            for t in ("A", "AAAA")
        ),
        "upstream": "".join(f"ext-{i}.example.org A\n" for i in range(UPSTREAM_NAMES)),
    }
    paths = {}
    for name, text in files.items():
        paths[name] = directory / f"{name}.queries"
        paths[name].write_text(text)
    return paths


def dnsmasq_argv(directory: Path, address: str, hosts: str, *extra: str) -> list[str]:
    return [
        "taskset", "-c", SERVER_CPU, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
        "--no-hosts", f"--addn-hosts={directory / hosts}", f"--listen-address={address}", "--bind-interfaces",
        f"--port={PORT}", "--user=root", "--pid-file=", "--cache-size=10000", "--dns-forward-max=1000", *extra,
    ]  # fmt: skip


def kdns_argv(workers: int) -> list[str]:
    cpus = SERVER_CPU if workers == 1 else f"{SERVER_CPU},{CLIENT_CPU}"
    return [
        "taskset", "-c", cpus, sys.executable, "-m", "benchmarks.bench_kdns", "--listen", KDNS_ADDRESS,
        "--port", str(PORT), "--services", str(SERVICES), "--upstream", f"{UPSTREAM_ADDRESS}:{PORT}",
        "--workers", str(workers),
    ]  # fmt: skip


FIGURES = {
    "cluster": "cluster names (`svc-i.bench.svc.cluster.local` A)",
    "search": "search path, ndots:5 (`svc-i.bench` from ns bench: A+AAAA, half NXDOMAIN)",
    "upstream": "cached upstream names (`ext-i.example.org` A)",
}


LATENCY_QUERIES = 1000  # one at a time, for the latency distribution (unloaded)


def query_latencies(address: str, names: list[str]) -> list[float]:
    """Milliseconds per query, one outstanding at a time over UDP, cycling through `names` (bounded count)."""
    samples = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        sock.connect((address, PORT))
        for i in range(LATENCY_QUERIES):
            packet = dnslib.DNSRecord.question(names[i % len(names)]).pack()
            started = time.perf_counter()
            sock.send(packet)
            sock.recv(4096)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def run() -> Section:
    ensure_packages()
    with tempfile.TemporaryDirectory(prefix="pkt-kdns-bench-") as tmp:
        directory = Path(tmp)
        queries = write_inputs(directory)
        upstream_argv = dnsmasq_argv(directory, UPSTREAM_ADDRESS, "upstream.hosts", "--local-ttl=300")
        upstream_argv[2] = CLIENT_CPU  # the upstream only answers cache misses: keep it off the server's core
        front_argv = dnsmasq_argv(
            directory, DNSMASQ_ADDRESS, "cluster.hosts", f"--local=/{ZONE}/", f"--local-ttl={TTL}",
            f"--server={UPSTREAM_ADDRESS}#{PORT}",
        )  # fmt: skip
        results: dict[str, dict[str, Figure]] = {"kdns": {}, "dnsmasq": {}}
        with (
            running("upstream dnsmasq", upstream_argv, UPSTREAM_ADDRESS),
            running("kdns", kdns_argv(1), KDNS_ADDRESS) as kdns,
            running("dnsmasq", front_argv, DNSMASQ_ADDRESS) as dnsmasq,
        ):
            for _ in range(REPEATS):  # alternating, so both see the same moments of a shared machine
                for name, path in queries.items():
                    for label, server, address in (("kdns", kdns, KDNS_ADDRESS), ("dnsmasq", dnsmasq, DNSMASQ_ADDRESS)):
                        figure = dnsperf(server, address, path)
                        best = results[label].get(name)
                        if best is None or figure.qps > best.qps:
                            results[label][name] = figure
            names = [f"svc-{i}.{NAMESPACE}.svc.{ZONE}" for i in range(SERVICES)]
            latencies = {label: query_latencies(address, names)
                         for label, address in (("kdns", KDNS_ADDRESS), ("dnsmasq", DNSMASQ_ADDRESS))}
        with (
            running("upstream dnsmasq", upstream_argv, UPSTREAM_ADDRESS),
            running("kdns --workers 2", kdns_argv(2), KDNS_ADDRESS) as server,
        ):
            workers = max(
                (dnsperf(server, KDNS_ADDRESS, queries["cluster"]) for _ in range(REPEATS)), key=lambda f: f.qps
            )
    markdown = report(results, workers, " ".join(front_argv).replace(tmp, "$DIR"))
    return Section(markdown, figures(results, workers, latencies),
                   tuple(Distribution(f"{label}, cluster name A, one query at a time", "ms", tuple(samples))
                         for label, samples in latencies.items()))


def figures(results: dict[str, dict[str, Figure]], workers: Figure,
            latencies: dict[str, list[float]]) -> tuple[ReportFigure, ...]:
    """kdns against dnsmasq measured in the same run: throughput and CPU per query for each query mix."""
    found = []
    for name, title in FIGURES.items():
        k, d = results["kdns"][name], results["dnsmasq"][name]
        found += [
            ReportFigure(f"{title}: throughput", k.qps, "q/s", Reference(d.qps, "dnsmasq, same run"), k.command),
            ReportFigure(f"{title}: CPU per query", k.cpu_us, "us", Reference(d.cpu_us, "dnsmasq, same run"),
                         k.command),
        ]
    found.append(ReportFigure("cluster names, --workers 2: throughput", workers.qps, "q/s",
                              Reference(results["kdns"]["cluster"].qps, "kdns with one worker, same run"),
                              workers.command))
    p99 = {label: sorted(samples)[int(len(samples) * 0.99)] for label, samples in latencies.items()}
    found.append(ReportFigure(f"cluster name A, one query at a time ({LATENCY_QUERIES}): p99 latency", p99["kdns"],
                              "ms", Reference(p99["dnsmasq"], "dnsmasq, same run")))
    return tuple(found)


def report(results: dict[str, dict[str, Figure]], workers: Figure, dnsmasq_command: str) -> str:
    lines = [
        "## kdns vs dnsmasq (dnsperf)",
        "",
        f"{SERVICES} ClusterIP Services; kdns (uvloop, pre-packed answers) and dnsmasq (hosts file, "
        f"`--local=/{ZONE}/`) on core {SERVER_CPU}, dnsperf on core {CLIENT_CPU}; best of {REPEATS} "
        f"alternating runs of {DURATION} s (after a warm-up pass), {OUTSTANDING} queries outstanding. "
        "CPU/query = server user+system time over the run / queries completed; ratio = kdns q/s / dnsmasq q/s, "
        "and the same for CPU (dnsmasq CPU/query / kdns CPU/query). kdns runs without its per-client rate "
        "limiter (as with `--rate-limit 0`): dnsperf is one client, which the default 1000 q/s would throttle.",
        "",
        "| figure | kdns q/s | dnsmasq q/s | ratio | kdns latency | dnsmasq latency | kdns CPU/query "
        "| dnsmasq CPU/query | CPU ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, title in FIGURES.items():
        k, d = results["kdns"][name], results["dnsmasq"][name]
        lines.append(
            f"| {title} | {k.qps:,.0f} | {d.qps:,.0f} | {k.qps / d.qps:.2f}x | {k.latency_ms:.3f} ms "
            f"| {d.latency_ms:.3f} ms | {k.cpu_us:.1f} us | {d.cpu_us:.1f} us | {d.cpu_us / k.cpu_us:.2f}x |"
        )
    single = results["kdns"]["cluster"]
    lines += [
        "",
        f"`--workers 2` (SO_REUSEPORT, both cores, dnsperf sharing core {CLIENT_CPU}), cluster names: "
        f"{workers.qps:,.0f} q/s, {workers.latency_ms:.3f} ms ({workers.qps / single.qps:.2f}x one worker).",
        "",
        "Commands (`$DIR` holds the generated hosts and query files):",
        "",
        "```",
        f"{sys.executable} -m benchmarks.bench_kdns --listen {KDNS_ADDRESS} --port {PORT} --services {SERVICES} "
        f"--upstream {UPSTREAM_ADDRESS}:{PORT}   # under taskset -c {SERVER_CPU}",
        dnsmasq_command,
        *(f"{results['kdns'][name].command}   # and -s {DNSMASQ_ADDRESS} for dnsmasq" for name in FIGURES),
        "```",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    serve(sys.argv[1:])

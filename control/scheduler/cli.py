"""`pocket scheduler`: the scheduler as a command."""

from __future__ import annotations

import argparse
import asyncio
import signal
import random

from control.cli_support import Command, add_api_arguments, api_client
from control.controllers.leaderelection import (
    LeaderElectionConfig,
    add_leader_election_arguments,
    leader_election_config,
    run_elected,
)
from control.observability import serve_health
from control.scheduler.scheduler import DEFAULT_SCHEDULER_NAME, Scheduler


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_api_arguments(parser, "http://127.0.0.1:6443")
    parser.add_argument("--health-port", type=int, default=10259, help="port for /healthz and /metrics (0.0.0.0)")
    parser.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME, help="schedule pods naming this scheduler")
    parser.add_argument(
        "--retry-interval", type=float, default=15.0, help="seconds between retries of unschedulable pods"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="break score ties randomly with this seed (default: by name)"
    )
    add_leader_election_arguments(parser, "kube-scheduler")


async def _main(args: argparse.Namespace, election: LeaderElectionConfig | None) -> int:
    async with api_client(args, "pocket-scheduler") as client:
        rng = random.Random(args.seed) if args.seed is not None else None
        current: list[Scheduler] = []  # the scheduler of the current leadership term, if leading

        async def lead() -> None:
            scheduler = Scheduler(
                client, scheduler_name=args.scheduler_name, rng=rng, retry_interval=args.retry_interval
            )
            current[:] = [scheduler]
            try:
                await scheduler.run()
            finally:
                current.clear()

        task = asyncio.create_task(run_elected(client, election, lead))
        runner = await serve_health(
            "0.0.0.0",
            args.health_port,
            {
                "scheduler": lambda: not task.done(),
                "synced": lambda: all(s.nodes.synced.is_set() for s in current),  # a standby has nothing to sync
            },
        )
        # SIGTERM (pocket down, systemd stop) ends the task cleanly, so the leader hands its Lease back.
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            return 0
        finally:
            await runner.cleanup()
    return 0


def run(args: argparse.Namespace) -> int:
    if args.retry_interval <= 0:
        raise SystemExit(f"--retry-interval must be positive, got {args.retry_interval}")
    try:
        return asyncio.run(_main(args, leader_election_config(args)))
    except KeyboardInterrupt:
        return 0
    except ValueError as err:  # --kubeconfig or --api-server unusable
        raise SystemExit(f"scheduler: {err}") from None


COMMAND = Command("scheduler", "Assign pending pods to nodes", add_arguments, run)

"""Injectable time, so heartbeats, backoff and probes are testable without sleeping.

Components take a `Clock`; production uses `RealClock`, tests use
`FakeClock` and advance it explicitly (as trio's MockClock does).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale."""

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """Time that moves only when a test calls `advance`."""

    def __init__(self, start: float = 0.0):
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + seconds, future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward and let every sleeper that is due run."""
        self._now += seconds
        due = [f for t, f in self._sleepers if t <= self._now]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self._now]
        for future in due:
            if not future.done():
                future.set_result(None)
        for _ in range(3):
            await asyncio.sleep(0)

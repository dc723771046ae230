"""Fixtures for controller tests against a real API server: the whole controller manager, and a namespace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from control.client import Client
from control.controllers.manager import ControllerManager, Settings
from tests.controllers.helpers import make_namespace


@pytest.fixture
async def manager(apiserver) -> AsyncIterator[ControllerManager]:
    """The controller manager on the test's event loop, with its own client, cancelled afterwards."""
    client = Client(apiserver.url, user_agent="pkt-controller-manager")
    mgr = ControllerManager(client, Settings(resync_period=5))
    task = asyncio.create_task(mgr.run())
    try:
        await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in mgr.informers.values())), 20)
        yield mgr
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


@pytest.fixture
async def namespace(apiserver) -> str:
    return await make_namespace(apiserver.client)

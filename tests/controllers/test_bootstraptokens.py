"""The token cleaner against a real API server: expired bootstrap tokens go, others stay."""

from __future__ import annotations

import asyncio
import time

from control.api.errors import ApiError
from control.apiserver.bootstraptokens import generate_token, token_secret
from control.client import Client, Informer
from control.controllers.bootstraptokens import FIELD_SELECTOR, TokenCleaner
from tests.conftest import ApiServer
from tests.controllers.helpers import eventually


async def _exists(client: Client, name: str) -> bool:
    try:
        await client.get("secrets", name, "kube-system")
        return True
    except ApiError as err:
        assert err.code == 404
        return False


async def test_expired_tokens_are_deleted(apiserver: ApiServer) -> None:
    client = apiserver.client
    expired = token_secret(generate_token(), ttl_seconds=-5)
    fresh = token_secret(generate_token(), ttl_seconds=600)
    forever = token_secret(generate_token())
    for secret in (expired, fresh, forever):
        await client.create("secrets", secret, "kube-system")
    names = [s["metadata"]["name"] for s in (expired, fresh, forever)]
    clock = [time.time()]
    secrets = Informer(client, "secrets", "kube-system", field_selector=FIELD_SELECTOR)
    cleaner = TokenCleaner(client, secrets, now=lambda: clock[0])  # before the first list: it sees every ADDED
    informer = asyncio.create_task(secrets.run())
    await secrets.synced.wait()
    worker = asyncio.create_task(cleaner.run(resync_period=60))
    try:
        await eventually(lambda: _gone(client, names[0]), what="the expired token deleted")
        assert await _exists(client, names[1]) and await _exists(client, names[2])
        clock[0] += 601  # the fresh one's expiry has passed; any change to it makes the cleaner look again
        await client.patch("secrets", names[1], {"metadata": {"labels": {"touched": "yes"}}}, "kube-system")
        await eventually(lambda: _gone(client, names[1]), what="the now expired token deleted")
        assert await _exists(client, names[2]), "a token without expiration stays"
    finally:
        worker.cancel()
        informer.cancel()
        await asyncio.gather(worker, informer, return_exceptions=True)
        await client.delete("secrets", names[2], "kube-system")


async def _gone(client: Client, name: str) -> bool:
    return not await _exists(client, name)

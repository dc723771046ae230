"""The join token against a real API server: recorded once by the control plane, checked by workers."""

from __future__ import annotations

import pytest

from control.api.errors import ApiError
from pocket.setup import JOIN_CONFIGMAP, JOIN_NAMESPACE, SetupError, join_token_matches, record_join_token
from tests.conftest import ApiServer

TOKEN = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"


async def test_token_is_recorded_once_and_checked(apiserver: ApiServer) -> None:
    client = apiserver.client
    try:
        await client.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": JOIN_NAMESPACE}})
    except ApiError as err:
        assert err.code == 409
    try:
        assert not await join_token_matches(client, TOKEN), "no token recorded yet: a worker must wait"
        assert await record_join_token(client, TOKEN)
        assert not await record_join_token(client, TOKEN), "recording the same token again changes nothing"
        assert await join_token_matches(client, TOKEN)
        stored = await client.get("configmaps", JOIN_CONFIGMAP, JOIN_NAMESPACE)
        assert stored["data"] == {"token": TOKEN}
        with pytest.raises(SetupError, match="does not match"):
            await join_token_matches(client, OTHER)
        with pytest.raises(SetupError, match="different join token"):
            await record_join_token(client, OTHER)
    finally:
        await client.delete("configmaps", JOIN_CONFIGMAP, JOIN_NAMESPACE)

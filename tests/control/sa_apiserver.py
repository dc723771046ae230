"""An in-loop API server with service-account keys (and optionally HTTPS with client certificates), for the
service-account, kubelet token and kubelet bootstrap tests."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from control import pki
from control.apiserver.allocator import ServiceIPRange
from control.apiserver.app import ServerConfig, create_app
from control.apiserver.authn import Authentication, X509Authenticator
from control.apiserver.registry import Registry
from control.apiserver.serviceaccounts import ServiceAccountConfig
from control.apiserver.storage import Storage
from tests.conftest import free_port


@dataclass
class KeyedServer:
    url: str
    registry: Registry  # on the server's etcd prefix, for tests that check tokens in-process
    keys: pki.CertPaths  # sa.pub / sa.key
    ca: pki.CA | None  # with HTTPS: the CA of the serving and client certificates


@asynccontextmanager
async def keyed_apiserver(etcd_url: str, directory: Path, https: bool = False) -> AsyncIterator[KeyedServer]:
    """Serve on 127.0.0.1 until the block ends: plain HTTP (callers are anonymous) or HTTPS with x509 client auth."""
    keys = pki.ensure_key_pair(directory / "pki")
    prefix = f"/pkt-sa-{uuid.uuid4().hex[:10]}"
    port = free_port()
    config = ServerConfig(
        advertise_address="127.0.0.1",
        port=port,
        service_accounts=ServiceAccountConfig(key_files=(keys.cert,), signing_key_file=keys.key),
    )
    ca, serving, authentication = None, None, None
    if https:
        ca = pki.ensure_ca(directory / "pki")
        cert = pki.ensure_cert(directory / "pki", ca, "apiserver", pki.apiserver_serving(("127.0.0.1",), "10.96.0.1"))
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(cert.cert, cert.key)
        serving.load_verify_locations(ca.paths.cert)
        serving.verify_mode = ssl.CERT_OPTIONAL
        authentication = Authentication([X509Authenticator()], [], anonymous=False)
    app = create_app(Storage(etcd_url, prefix), ServiceIPRange("10.96.0.0/12"), config, authentication)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=serving).start()
    storage = Storage(etcd_url, prefix)
    await storage.connect()
    registry = Registry(storage, ServiceIPRange("10.96.0.0/12"))
    try:
        yield KeyedServer(f"{'https' if https else 'http'}://127.0.0.1:{port}", registry, keys, ca)
    finally:
        await registry.close()
        await storage.close()
        await runner.cleanup()

"""`pocket apiserver`: the API server on etcd."""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from control.apiserver.allocator import ServiceIPRange
from control.apiserver import limits, serviceaccounts
from control.apiserver.app import ServerConfig, create_app
from control.apiserver.authz import filter as authz_filter
from control.apiserver.authn import (
    Authentication,
    Authenticator,
    StaticTokens,
    TokenAuthenticator,
    TokenFileError,
    X509Authenticator,
)
from control.apiserver.encryption import load_encryption_config
from control.apiserver.metrics_api import DEFAULT_RESOLUTION
from control.apiserver.storage import EtcdTLS, Storage, parse_endpoint
from control.cli_support import Command, bool_flag

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--etcd-servers", default="http://127.0.0.1:2379", help="etcd client URL")
    parser.add_argument("--bind-address", default="0.0.0.0", help="address to listen on")
    parser.add_argument("--port", type=int, default=6443, help="port to listen on (HTTPS with --tls-cert-file)")
    parser.add_argument(
        "--advertise-address", default="192.168.56.10", help="address published in the `kubernetes` Endpoints"
    )
    parser.add_argument("--service-cluster-ip-range", default="10.96.0.0/12", help="CIDR Service ClusterIPs come from")
    parser.add_argument("--kubelet-port", type=int, default=10250, help="kubelet port when a Node does not say")
    add_tls_arguments(parser)
    parser.add_argument(
        "--metrics-resolution",
        type=float,
        default=DEFAULT_RESOLUTION,
        help="seconds between kubelet stats scrapes for metrics.k8s.io (metrics-server's --metric-resolution)",
    )
    parser.add_argument(
        "--encryption-provider-config",
        default="",
        help="EncryptionConfiguration file: which resources are encrypted in etcd, and with which keys",
    )
    limits.add_arguments(parser)
    serviceaccounts.add_arguments(parser)
    authz_filter.add_arguments(parser)


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    """kube-apiserver's TLS and authentication flags, by their upstream names."""
    parser.add_argument("--tls-cert-file", default="", help="serving certificate; without it the API is plain HTTP")
    parser.add_argument("--tls-private-key-file", default="", help="key of --tls-cert-file")
    parser.add_argument(
        "--client-ca-file", default="", help="CA of client certificates: CN is the user name, O the groups"
    )
    parser.add_argument("--token-auth-file", default="", help='static bearer tokens, CSV: token,user,uid,"g1,g2"')
    parser.add_argument(
        "--anonymous-auth",
        type=bool_flag,
        nargs="?",
        const=True,
        default=False,
        help="serve requests without credentials as system:anonymous (default false; plain HTTP always does)",
    )
    parser.add_argument("--etcd-cafile", default="", help="CA of etcd's serving certificate")
    parser.add_argument("--etcd-certfile", default="", help="client certificate for etcd")
    parser.add_argument("--etcd-keyfile", default="", help="key of --etcd-certfile")
    parser.add_argument("--kubelet-client-certificate", default="", help="client certificate for kubelets")
    parser.add_argument("--kubelet-client-key", default="", help="key of --kubelet-client-certificate")
    parser.add_argument(
        "--kubelet-certificate-authority", default="", help="CA of kubelets' serving certificates (HTTPS to kubelets)"
    )


@dataclass
class Security:
    """What the TLS and authentication flags amount to; built once the files have been read."""

    serving: ssl.SSLContext | None
    authentication: Authentication
    etcd: EtcdTLS | None
    kubelet: ssl.SSLContext | None


def _readable(flag: str, path: str) -> str:
    if not Path(path).is_file():
        raise ValueError(f"{flag} {path}: no such file")
    return path


def _both(args: argparse.Namespace, first: str, second: str) -> bool:
    """Flags that only make sense together: both or neither."""
    a, b = getattr(args, first.lstrip("-").replace("-", "_")), getattr(args, second.lstrip("-").replace("-", "_"))
    if bool(a) != bool(b):
        raise ValueError(f"{first} and {second} must be given together")
    return bool(a)


def security_from_args(args: argparse.Namespace) -> Security:
    """TLS contexts, authenticators and etcd credentials; ValueError names a bad flag."""
    try:
        return _security(args)
    except ssl.SSLError as err:
        raise ValueError(f"TLS files do not load: {err}") from None


def _security(args: argparse.Namespace) -> Security:
    serving = None
    authenticators: list[Authenticator] = []
    if _both(args, "--tls-cert-file", "--tls-private-key-file"):
        serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serving.load_cert_chain(
            _readable("--tls-cert-file", args.tls_cert_file),
            _readable("--tls-private-key-file", args.tls_private_key_file),
        )
        if args.client_ca_file:
            serving.load_verify_locations(_readable("--client-ca-file", args.client_ca_file))
            serving.verify_mode = ssl.CERT_OPTIONAL  # a certificate is one way in; tokens are another
            authenticators.append(X509Authenticator())
    elif args.client_ca_file:
        raise ValueError("--client-ca-file needs --tls-cert-file: client certificates come with TLS")
    tokens: list[TokenAuthenticator] = []
    if args.token_auth_file:
        try:
            tokens.append(StaticTokens.load(Path(args.token_auth_file)))
        except TokenFileError as err:
            raise ValueError(str(err)) from None
    # Plain HTTP is for in-process tests and has no way to prove identity, like the old insecure port.
    anonymous = args.anonymous_auth or serving is None
    etcd = None
    if _both(args, "--etcd-certfile", "--etcd-keyfile"):
        if not args.etcd_cafile:
            raise ValueError("--etcd-certfile needs --etcd-cafile to check etcd's certificate")
        if not args.etcd_servers.startswith("https://"):
            raise ValueError(f"--etcd-certfile given but --etcd-servers {args.etcd_servers} is not https://")
        etcd = EtcdTLS(args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile)
        etcd.credentials()
    elif args.etcd_servers.startswith("https://"):
        raise ValueError("--etcd-servers https:// needs --etcd-cafile, --etcd-certfile and --etcd-keyfile")
    kubelet = None
    if _both(args, "--kubelet-client-certificate", "--kubelet-client-key"):
        kubelet = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        kubelet.load_cert_chain(
            _readable("--kubelet-client-certificate", args.kubelet_client_certificate),
            _readable("--kubelet-client-key", args.kubelet_client_key),
        )
        if args.kubelet_certificate_authority:
            kubelet.load_verify_locations(
                _readable("--kubelet-certificate-authority", args.kubelet_certificate_authority)
            )
        else:  # upstream's behaviour without the flag: encrypted, but the kubelet's certificate is not checked
            kubelet.check_hostname = False
            kubelet.verify_mode = ssl.CERT_NONE
    elif args.kubelet_certificate_authority:
        raise ValueError("--kubelet-certificate-authority needs --kubelet-client-certificate and --kubelet-client-key")
    return Security(serving, Authentication(authenticators, tokens, anonymous), etcd, kubelet)


async def serve(args: argparse.Namespace, etcd_prefix: str = "") -> None:
    """Run until cancelled."""
    security = security_from_args(args)
    encryption = load_encryption_config(args.encryption_provider_config) if args.encryption_provider_config else None
    storage = Storage(args.etcd_servers, prefix=etcd_prefix, encryption=encryption, tls=security.etcd)
    config = ServerConfig(
        advertise_address=args.advertise_address,
        port=args.port,
        kubelet_port=args.kubelet_port,
        metrics_resolution=args.metrics_resolution,
        limits=limits.from_args(args),
        kubelet_ssl=security.kubelet,
        service_accounts=serviceaccounts.config_from_args(args),
        authorization_modes=args.authorization_mode,
        admission_plugins=args.enable_admission_plugins,
    )
    app = create_app(storage, ServiceIPRange(args.service_cluster_ip_range), config, security.authentication)
    # aiohttp closes a connection that has not sent a whole request by the keep-alive deadline (slowloris)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2, keepalive_timeout=args.request_header_timeout)
    await runner.setup()
    await web.TCPSite(runner, args.bind_address, args.port, ssl_context=security.serving).start()
    scheme = "https" if security.serving else "http"
    log.info(
        "apiserver listening", extra={"url": f"{scheme}://{args.bind_address}:{args.port}", "etcd": args.etcd_servers}
    )
    if security.serving is None:
        log.warning("serving plain HTTP: every request is system:anonymous (give --tls-cert-file for HTTPS)")
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    try:
        ServiceIPRange(args.service_cluster_ip_range)
        parse_endpoint(args.etcd_servers)
        security_from_args(args)
        serviceaccounts.config_from_args(args)
        if args.encryption_provider_config:
            load_encryption_config(args.encryption_provider_config)
        if args.metrics_resolution <= 0:
            raise ValueError(f"--metrics-resolution must be positive seconds, not {args.metrics_resolution}")
    except ValueError as err:
        log.error("%s", err)
        return 2
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


COMMAND = Command("apiserver", "Kubernetes API server storing objects in etcd", add_arguments, run)

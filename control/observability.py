"""Health, metrics and logging shared by every long-running component.

Each component calls `setup_logging` once and `serve_health` to expose
`/healthz` (200 while its checks pass) and Prometheus `/metrics`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable

import prometheus_client
from aiohttp import web

HealthCheck = Callable[[], bool]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and extras."""

    _STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(verbose: bool = False) -> None:
    """Structured logs on stderr; quiet (warnings) unless verbose."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.WARNING)


def health_app(checks: dict[str, HealthCheck] | None = None) -> web.Application:
    """An aiohttp app with /healthz and /metrics, to mount or serve alone."""
    checks = checks or {}

    async def healthz(_: web.Request) -> web.Response:
        failed = [name for name, check in checks.items() if not check()]
        if failed:
            return web.Response(status=503, text="unhealthy: " + ", ".join(failed) + "\n")
        return web.Response(text="ok")

    async def metrics(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest()
        return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve_health(host: str, port: int, checks: dict[str, HealthCheck] | None = None) -> web.AppRunner:
    """Start /healthz and /metrics on host:port; the caller keeps the runner to stop it."""
    runner = web.AppRunner(health_app(checks), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

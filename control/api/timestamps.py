"""Wall-clock timestamps in the two forms the Kubernetes API uses."""

from __future__ import annotations

from datetime import UTC, datetime


def now_rfc3339() -> str:
    """metav1.Time: seconds precision (status times, Event timestamps)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(stamp: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (0 when absent)."""
    if not stamp:
        return 0.0
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def now_micro() -> str:
    """metav1.MicroTime: microseconds (Lease renewTime)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

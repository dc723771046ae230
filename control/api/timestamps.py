"""Wall-clock timestamps in the two forms the Kubernetes API uses."""

from __future__ import annotations

from datetime import UTC, datetime


def now_rfc3339() -> str:
    """metav1.Time: seconds precision (status times, Event timestamps)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    """metav1.MicroTime: microseconds (Lease renewTime)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

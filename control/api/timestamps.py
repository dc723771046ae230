"""Wall-clock timestamps in the two forms the Kubernetes API uses, and Go durations (metav1.Duration)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?)(h|ms|m|s)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration as metav1.Duration and Go flags write it ("10s", "1m30s", "500ms")."""
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}: expected a Go duration like 30s or 5m0s")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


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

"""Taint and toleration matching, as `v1.Toleration.ToleratesTaint` defines it.

Shared by the scheduler (which taints block a node) and the node lifecycle
controller (how long a pod may stay on an unreachable node).
"""

from __future__ import annotations

from typing import Any
from collections.abc import Iterable, Mapping

Taint = Mapping[str, Any]
Toleration = Mapping[str, Any]

SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Whether one toleration covers one taint.

    An empty effect matches every effect; an empty key with operator Exists
    matches every key; Exists ignores the value, Equal (the default) compares it.
    """
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def tolerated(tolerations: Iterable[Toleration], taint: Taint) -> bool:
    return any(tolerates(t, taint) for t in tolerations)


def first_untolerated(
    taints: Iterable[Taint], tolerations: Iterable[Toleration], effects: tuple[str, ...] = SCHEDULING_EFFECTS
) -> Taint | None:
    """The first taint with one of `effects` that no toleration covers."""
    tolerations = list(tolerations)
    for taint in taints:
        if taint.get("effect") in effects and not tolerated(tolerations, taint):
            return taint
    return None


def format_taint(taint: Taint) -> str:
    """`{key: value}`, the form kube-scheduler's TaintToleration plugin reports."""
    return f"{{{taint.get('key', '')}: {taint.get('value') or ''}}}"

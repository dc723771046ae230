"""Label and field selectors, as Kubernetes parses and matches them.

A selector parses to a list of requirements (ANDed).  The same Requirement
type serves the string form (`?labelSelector=env in (a,b),!x`) and the
structured `LabelSelector` of workload specs, so matching lives in one place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from collections.abc import Mapping

from control.api.errors import bad_request

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_KEY_RE = re.compile(rf"^{_KEY}$")
_VALUE_RE = re.compile(rf"^{_VALUE}$")


@dataclass(frozen=True)
class Requirement:
    """One clause: key, operator and values.

    operator is one of "=", "!=", "in", "notin", "exists", "!", ">", "<".
    """

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        op = self.operator
        if op in ("=", "in"):
            return present and value in self.values
        if op in ("!=", "notin"):
            return not present or value not in self.values
        if op == "exists":
            return present
        if op == "!":
            return not present
        if op in (">", "<"):
            if not present:
                return False
            try:
                have, want = int(value or ""), int(self.values[0])
            except ValueError:
                return False
            return have > want if op == ">" else have < want
        raise ValueError(f"unknown operator {op!r}")


Selector = tuple[Requirement, ...]


def matches(selector: Selector, labels: Mapping[str, str] | None) -> bool:
    return all(req.matches(labels or {}) for req in selector)


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _check_key(key: str, whole: str) -> str:
    if not _KEY_RE.match(key) or len(key) > 317:
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in selector {whole!r}")
    return key


def _check_value(value: str, whole: str) -> str:
    if not _VALUE_RE.match(value) or len(value) > 63:
        raise bad_request(f"unable to parse requirement: invalid label value {value!r} in selector {whole!r}")
    return value


_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s+\((.*)\)\s*$")
_BINARY_RE = re.compile(r"^\s*([^=!<>\s]+)\s*(==|=|!=|<|>)\s*(.*?)\s*$")


def parse_label_selector(text: str | None) -> Selector:
    """Parse the string form used in `?labelSelector=`; raise 400 on bad syntax."""
    if not text or not text.strip():
        return ()
    reqs: list[Requirement] = []
    for clause in _split_top_level(text):
        clause = clause.strip()
        if not clause:
            raise bad_request(f"unable to parse requirement: empty clause in selector {text!r}")
        m = _SET_RE.match(clause)
        if m:
            key = _check_key(m.group(1), text)
            values = tuple(_check_value(v.strip(), text) for v in m.group(3).split(","))
            reqs.append(Requirement(key, m.group(2), values))
            continue
        if clause.startswith("!"):
            key = clause[1:].strip()
            if re.search(r"[=!<>]", key):
                raise bad_request(f"unable to parse requirement: invalid selector {text!r}")
            reqs.append(Requirement(_check_key(key, text), "!"))
            continue
        m = _BINARY_RE.match(clause)
        if m:
            key, op, value = m.groups()
            _check_key(key, text)
            if re.search(r"[=!<>|]", value):
                raise bad_request(f"unable to parse requirement: invalid selector {text!r}")
            if op in ("<", ">"):
                if not re.fullmatch(r"-?\d+", value):
                    raise bad_request(
                        f"unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {text!r}"
                    )
                reqs.append(Requirement(key, op, (value,)))
            else:
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (_check_value(value, text),)))
            continue
        if re.fullmatch(_KEY, clause):
            reqs.append(Requirement(clause, "exists"))
            continue
        raise bad_request(f"unable to parse requirement: invalid selector {text!r}")
    return tuple(reqs)


def from_label_selector(spec: Mapping[str, Any] | None) -> Selector:
    """Convert a structured LabelSelector (matchLabels/matchExpressions)."""
    if not spec:
        return ()
    reqs = [Requirement(k, "=", (str(v),)) for k, v in sorted((spec.get("matchLabels") or {}).items())]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in spec.get("matchExpressions") or []:
        op = operators.get(expr.get("operator", ""))
        if op is None:
            raise bad_request(f"{expr.get('operator')!r} is not a valid label selector operator")
        reqs.append(Requirement(expr["key"], op, tuple(expr.get("values") or ())))
    return tuple(reqs)


def labels_to_selector(labels: Mapping[str, str] | None) -> Selector:
    """A Service's `spec.selector` map as a selector (equality on every key)."""
    return tuple(Requirement(k, "=", (v,)) for k, v in sorted((labels or {}).items()))


def format_label_selector(labels: Mapping[str, str]) -> str:
    return format_selector(labels_to_selector(labels))


def format_selector(selector: Selector) -> str:
    """The string form of a selector as Kubernetes writes it: clauses sorted by key, set values sorted."""
    clauses = []
    for req in sorted(selector, key=lambda r: r.key):
        if req.operator in ("in", "notin"):
            clauses.append(f"{req.key} {req.operator} ({','.join(sorted(req.values))})")
        elif req.operator == "exists":
            clauses.append(req.key)
        elif req.operator == "!":
            clauses.append(f"!{req.key}")
        else:
            clauses.append(f"{req.key}{req.operator}{req.values[0]}")
    return ",".join(clauses)


# -- field selectors ---------------------------------------------------------

_COMMON_FIELDS = ("metadata.name", "metadata.namespace")
SUPPORTED_FIELDS: dict[str, tuple[str, ...]] = {
    "pods": _COMMON_FIELDS
    + (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "status.phase",
        "status.podIP",
    ),
    "events": _COMMON_FIELDS
    + (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "secrets": _COMMON_FIELDS + ("type",),
    "namespaces": _COMMON_FIELDS + ("status.phase",),
    "nodes": _COMMON_FIELDS + ("spec.unschedulable",),
    "replicasets": _COMMON_FIELDS + ("status.replicas",),
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        have = field_value(obj, self.field)
        return (have == self.value) == self.equal


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field, as Kubernetes' field sets give it."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text: str | None, plural: str) -> tuple[FieldRequirement, ...]:
    """Parse `?fieldSelector=`; unknown fields give 400 as in Kubernetes."""
    if not text or not text.strip():
        return ()
    allowed = SUPPORTED_FIELDS.get(plural, _COMMON_FIELDS)
    reqs = []
    for clause in text.split(","):
        clause = clause.strip()
        m = re.fullmatch(r"([^=!]+?)\s*(==|=|!=)\s*(.*)", clause)
        if not m:
            raise bad_request(f"invalid field selector: {clause!r}")
        field, op, value = m.groups()
        if field not in allowed:
            raise bad_request(f"field label not supported: {field}")
        reqs.append(FieldRequirement(field, op != "!=", value))
    return tuple(reqs)


def fields_match(reqs: tuple[FieldRequirement, ...], obj: Mapping[str, Any]) -> bool:
    return all(r.matches(obj) for r in reqs)

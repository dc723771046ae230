"""The three PATCH formats Kubernetes accepts, as pure functions on JSON values.

- JSON merge patch (RFC 7386): `merge_patch`.
- JSON patch (RFC 6902): `json_patch`.
- Strategic merge patch: `strategic_merge_patch`.  Lists of known fields
  merge by a key (containers by `name`, ports by `containerPort`, ...)
  instead of being replaced, and the directives `$patch`,
  `$setElementOrder/<list>`, `$retainKeys` and
  `$deleteFromPrimitiveList/<list>` are honoured, as kubectl's three-way
  `apply` patches need.  The merge keys are those of Kubernetes' Go types
  (`patchStrategy`/`patchMergeKey` struct tags) for the kinds served here.

Failures raise PatchError with a message naming what is wrong.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

JSON = Any


class PatchError(ValueError):
    """The patch cannot be applied (bad operation, missing path, failed test)."""


# -- RFC 7386 ----------------------------------------------------------------


def merge_patch(target: JSON, patch: JSON) -> JSON:
    """Apply a JSON merge patch: objects merge recursively, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# -- RFC 6902 ----------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _index(container: list[Any], token: str, path: str, *, for_add: bool) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r} in {path!r}")
    index = int(token)
    limit = len(container) if for_add else len(container) - 1
    if index > limit:
        raise PatchError(f"array index {index} out of range in {path!r}")
    return index


def _parent(doc: JSON, tokens: list[str], path: str) -> JSON:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"path {path!r} not found: no {token!r}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, path, for_add=False)]
        else:
            raise PatchError(f"path {path!r} not found: {token!r} is inside a scalar")
    return current


def _get(doc: JSON, path: str) -> JSON:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path {path!r} not found")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, path, for_add=False)]
    raise PatchError(f"path {path!r} not found")


def _add(doc: JSON, path: str, value: JSON) -> JSON:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, path, for_add=True), value)
    else:
        raise PatchError(f"cannot add at {path!r}: parent is not an object or array")
    return doc


def _remove(doc: JSON, path: str) -> JSON:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"cannot remove {path!r}: not found")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, path, for_add=False)]
    else:
        raise PatchError(f"cannot remove {path!r}: parent is a scalar")
    return doc


def json_patch(doc: JSON, operations: JSON) -> JSON:
    """Apply an RFC 6902 operation list to a copy of `doc`."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be an array of operations")
    result = copy.deepcopy(doc)
    for number, op in enumerate(operations):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"operation {number} must be an object with 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"operation {number} ({kind} {path}) has no 'value'")
        if kind == "add":
            result = _add(result, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            result = _remove(result, path)
        elif kind == "replace":
            _get(result, path)
            result = _add(_remove(result, path), path, copy.deepcopy(op["value"])) if _pointer(path) else op["value"]
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise PatchError(f"operation {number} ({kind} {path}) has no 'from'")
            value = copy.deepcopy(_get(result, op["from"]))
            if kind == "move":
                if path.startswith(op["from"] + "/"):
                    raise PatchError(f"cannot move {op['from']!r} into its own child {path!r}")
                result = _remove(result, op["from"])
            result = _add(result, path, value)
        elif kind == "test":
            if _get(result, path) != op["value"]:
                raise PatchError(f"test operation failed: {path!r} is not {op['value']!r}")
        else:
            raise PatchError(f"unknown JSON patch operation {kind!r}")
    return result


# -- strategic merge patch ---------------------------------------------------


@dataclass(frozen=True)
class ListStrategy:
    """How a list field merges: by `merge_key` (lists of objects) or as a set of scalars."""

    merge_key: str | None


Schema = dict[tuple[str, ...], ListStrategy]

_CONTAINER: Schema = {
    ("ports",): ListStrategy("containerPort"),
    ("env",): ListStrategy("name"),
    ("volumeMounts",): ListStrategy("mountPath"),
    ("volumeDevices",): ListStrategy("devicePath"),
    ("resizePolicy",): ListStrategy("resourceName"),
}

_POD_SPEC: Schema = {
    ("containers",): ListStrategy("name"),
    ("initContainers",): ListStrategy("name"),
    ("ephemeralContainers",): ListStrategy("name"),
    ("volumes",): ListStrategy("name"),
    ("imagePullSecrets",): ListStrategy("name"),
    ("hostAliases",): ListStrategy("ip"),
    ("topologySpreadConstraints",): ListStrategy("topologyKey"),
    ("resourceClaims",): ListStrategy("name"),
    ("schedulingGates",): ListStrategy("name"),
}
for _field in ("containers", "initContainers", "ephemeralContainers"):
    for _path, _strategy in _CONTAINER.items():
        _POD_SPEC[(_field, *_path)] = _strategy

_META: Schema = {
    ("metadata", "ownerReferences"): ListStrategy("uid"),
    ("metadata", "finalizers"): ListStrategy(None),
}


def _under(prefix: tuple[str, ...], schema: Schema) -> Schema:
    return {(*prefix, *path): strategy for path, strategy in schema.items()}


_CONDITIONS = ListStrategy("type")

SCHEMAS: dict[str, Schema] = {
    "Pod": {
        **_META,
        **_under(("spec",), _POD_SPEC),
        ("status", "conditions"): _CONDITIONS,
        ("status", "podIPs"): ListStrategy("ip"),
    },
    "Service": {**_META, ("spec", "ports"): ListStrategy("port")},
    "Node": {
        **_META,
        ("status", "conditions"): _CONDITIONS,
        ("status", "addresses"): _CONDITIONS,
        ("spec", "podCIDRs"): ListStrategy(None),
    },
    "Namespace": {**_META, ("status", "conditions"): _CONDITIONS},
    "Deployment": {
        **_META,
        **_under(("spec", "template", "spec"), _POD_SPEC),
        ("status", "conditions"): _CONDITIONS,
    },
    "ReplicaSet": {
        **_META,
        **_under(("spec", "template", "spec"), _POD_SPEC),
        ("status", "conditions"): _CONDITIONS,
    },
}

_DIRECTIVE = "$patch"
_ORDER = "$setElementOrder/"
_RETAIN = "$retainKeys"
_DELETE_PRIMITIVE = "$deleteFromPrimitiveList/"


def strategic_merge_patch(original: JSON, patch: JSON, kind: str) -> JSON:
    """Apply a strategic merge patch to a copy of `original` for an object of `kind`."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    schema = SCHEMAS.get(kind, dict(_META))
    merged = _merge_map(copy.deepcopy(original) if isinstance(original, dict) else {}, patch, (), schema)
    if merged is None:
        raise PatchError("a strategic merge patch cannot delete the whole object")
    return merged


def _merge_map(original: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...], schema: Schema) -> Any:
    """Merge `patch` into `original` (mutated); None means "delete this map"."""
    directive = patch.get(_DIRECTIVE)
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != _DIRECTIVE}, path, schema)
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError(f"unknown $patch directive {directive!r} at {_dotted(path)}")

    retain = patch.get(_RETAIN)
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError(f"$retainKeys at {_dotted(path)} must be a list")
        for key in list(original):
            if key not in retain:
                del original[key]

    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in (_DIRECTIVE, _RETAIN):
            continue
        if key.startswith(_ORDER):
            if not isinstance(value, list):
                raise PatchError(f"{key} at {_dotted(path)} must be a list")
            orders[key[len(_ORDER) :]] = value
            continue
        if key.startswith(_DELETE_PRIMITIVE):
            field = key[len(_DELETE_PRIMITIVE) :]
            if not isinstance(value, list):
                raise PatchError(f"{key} at {_dotted(path)} must be a list")
            if isinstance(original.get(field), list):
                original[field] = [item for item in original[field] if item not in value]
            continue
        if key.startswith("$"):
            raise PatchError(f"unknown directive {key!r} at {_dotted(path)}")
        child = (*path, key)
        if value is None:
            original.pop(key, None)
        elif isinstance(value, dict):
            base = original.get(key)
            merged = _merge_map(base if isinstance(base, dict) else {}, value, child, schema)
            if merged is None:
                original.pop(key, None)
            else:
                original[key] = merged
        elif isinstance(value, list) and child in schema:
            base = original.get(key)
            original[key] = _merge_list(base if isinstance(base, list) else [], value, child, schema)
        else:
            original[key] = _strip(value, child, schema)

    for field, order in orders.items():
        if isinstance(original.get(field), list):
            original[field] = _apply_order(original[field], order, schema.get((*path, field)))
    return original


def _merge_list(original: list[Any], patch: list[Any], path: tuple[str, ...], schema: Schema) -> list[Any]:
    strategy = schema[path]
    key = strategy.merge_key
    for item in patch:
        if isinstance(item, dict) and item.get(_DIRECTIVE) == "replace":
            return [_strip(i, path, schema) for i in patch if not (isinstance(i, dict) and _DIRECTIVE in i)]
    result = list(original)
    if key is None:
        for item in patch:
            if item not in result:
                result.append(item)
        return result
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"{_dotted(path)}: expected objects merged by {key!r}, got {item!r}")
        if key not in item:
            raise PatchError(f"{_dotted(path)}: an element lacks the merge key {key!r}")
        at = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]), None)
        if item.get(_DIRECTIVE) == "delete":
            result = [old for old in result if not (isinstance(old, dict) and old.get(key) == item[key])]
            continue
        if at is None:
            added = _merge_map({}, item, path, schema)
            if added is not None:
                result.append(added)
        else:
            merged = _merge_map(result[at], item, path, schema)
            if merged is None:
                del result[at]
            else:
                result[at] = merged
    return result


def _apply_order(items: list[Any], order: list[Any], strategy: ListStrategy | None) -> list[Any]:
    """Reorder the elements named in `order` into that order; others keep their slots."""
    key = strategy.merge_key if strategy else None

    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [identity(o) for o in order]
    rank = {ident: i for i, ident in enumerate(wanted) if _hashable(ident)}
    ordered = sorted(
        (it for it in items if _hashable(identity(it)) and identity(it) in rank), key=lambda it: rank[identity(it)]
    )
    slots = iter(ordered)
    return [next(slots) if _hashable(identity(it)) and identity(it) in rank else it for it in items]


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _strip(value: Any, path: tuple[str, ...], schema: Schema) -> Any:
    """A value new to the object: directives inside it are applied against nothing."""
    if isinstance(value, dict):
        merged = _merge_map({}, value, path, schema)
        return {} if merged is None else merged
    if isinstance(value, list):
        return [_strip(item, path, schema) for item in value]
    return value


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path) or "<root>"

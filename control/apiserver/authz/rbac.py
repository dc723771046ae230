"""RBAC: Roles, ClusterRoles and their bindings decide, as Kubernetes' RBAC authorizer does.

A request is allowed when some binding that names the caller (user, group,
or service account) refers to a role with a rule covering the request's
attributes.  RoleBindings grant in their own namespace only;
ClusterRoleBindings everywhere, and alone grant non-resource URLs.  RBAC
never denies: no matching rule is "no opinion", so the next authorizer in the
chain may still allow.

The four resources are read from the API server's watch cache, never from
etcd per request: an index of bindings by subject is rebuilt when a cache's
revision moves (bindings change rarely), and a denial first makes the caches
current, so a binding created a moment ago is seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from control.api.resources import resource
from control.apiserver.authn import UserInfo
from control.apiserver.authz.attributes import Attributes
from control.apiserver.authz.authorizer import NO_OPINION, Decision
from control.apiserver.cache import ResourceCache, WatchCache

Object = dict[str, Any]

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"


def rule_covers(rule: Object, attrs: Attributes) -> bool:
    """RuleAllows: verb, then (apiGroup, resource[/subresource], resourceName) or the non-resource URL."""
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        return _url_matches(rule.get("nonResourceURLs") or [], attrs.path)
    if not _has(rule.get("apiGroups"), attrs.api_group):
        return False
    wanted = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    resources = rule.get("resources") or []
    if not any(r in ("*", wanted) or (attrs.subresource and r == f"*/{attrs.subresource}") for r in resources):
        return False
    names = rule.get("resourceNames") or []
    return not names or attrs.name in names


def _has(values: Any, wanted: str) -> bool:
    return isinstance(values, list) and any(v in ("*", wanted) for v in values)


def _url_matches(patterns: Iterable[str], path: str) -> bool:
    """A non-resource URL rule: exact, `*`, or a prefix ending in `*`."""
    for pattern in patterns:
        if pattern == "*" or pattern == path:
            return True
        if pattern.endswith("*") and path.startswith(pattern[:-1]):
            return True
    return False


def subject_names(subject: Object, binding_namespace: str) -> tuple[str, str] | None:
    """(kind, key) a subject matches on: ("user", name), ("group", name); service accounts as their user name."""
    kind, name = subject.get("kind"), str(subject.get("name", ""))
    if kind == "User":
        return "user", name
    if kind == "Group":
        return "group", name
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return "user", f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"
    return None


@dataclass(frozen=True)
class _Binding:
    namespace: str  # "" for a ClusterRoleBinding
    role_kind: str
    role_name: str
    name: str


class _Index:
    """Bindings by subject, and roles by (namespace, name); built from one revision of each cache."""

    def __init__(self, caches: dict[str, ResourceCache]):
        self.revisions = {plural: cache.revision for plural, cache in caches.items()}
        self.caches = caches
        self.by_subject: dict[tuple[str, str], list[_Binding]] = {}
        for plural in ("rolebindings", "clusterrolebindings"):
            for obj in caches[plural].objects.values():
                meta = obj.get("metadata") or {}
                namespace = str(meta.get("namespace") or "") if plural == "rolebindings" else ""
                ref = obj.get("roleRef") or {}
                binding = _Binding(namespace, str(ref.get("kind", "")), str(ref.get("name", "")), str(meta.get("name")))
                for subject in obj.get("subjects") or []:
                    key = subject_names(subject, namespace) if isinstance(subject, dict) else None
                    if key is not None:
                        self.by_subject.setdefault(key, []).append(binding)
        self.roles: dict[tuple[str, str, str], Object] = {}
        for plural, kind in (("roles", "Role"), ("clusterroles", "ClusterRole")):
            for obj in caches[plural].objects.values():
                meta = obj.get("metadata") or {}
                self.roles[(kind, str(meta.get("namespace") or ""), str(meta.get("name")))] = obj

    def current(self, caches: dict[str, ResourceCache]) -> bool:
        return all(
            caches[plural] is self.caches[plural] and cache.revision == self.revisions[plural]
            for plural, cache in caches.items()
        )

    def bindings_for(self, user: UserInfo) -> Iterator[tuple[_Binding, str]]:
        """Each binding naming the user, with how it names them ('User "jane"', 'Group "dev"')."""
        for binding in self.by_subject.get(("user", user.name), ()):
            yield binding, f'User "{user.name}"'
        for group in user.groups:
            for binding in self.by_subject.get(("group", group), ()):
                yield binding, f'Group "{group}"'

    def rules(self, binding: _Binding) -> list[Object]:
        namespace = binding.namespace if binding.role_kind == "Role" else ""
        role = self.roles.get((binding.role_kind, namespace, binding.role_name))
        rules = (role or {}).get("rules") or []
        return [r for r in rules if isinstance(r, dict)]


class RBACAuthorizer:
    """The `RBAC` authorization mode, reading roles and bindings from the watch cache."""

    name = "RBAC"
    PLURALS = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")

    def __init__(self, cache: WatchCache):
        self.cache = cache
        self._index: _Index | None = None

    async def _caches(self) -> dict[str, ResourceCache]:
        return {p: await self.cache.resource(resource(p).storage_prefix(None)) for p in self.PLURALS}

    async def _current_index(self, fresh: bool = False) -> _Index:
        caches = await self._caches()
        if fresh:
            for cache in caches.values():
                await cache.wait_fresh()
            caches = await self._caches()
        if self._index is None or not self._index.current(caches):
            self._index = _Index(caches)
        return self._index

    async def authorize(self, attrs: Attributes) -> Decision:
        why = self._allowed_by(await self._current_index(), attrs)
        if why is None:
            why = self._allowed_by(await self._current_index(fresh=True), attrs)
        return NO_OPINION if why is None else Decision("allow", why)

    @staticmethod
    def _allowed_by(index: _Index, attrs: Attributes) -> str | None:
        """Upstream's reason for an allow ('RBAC: allowed by RoleBinding "b/ns" of Role "r" to User "u"'), or None."""
        for binding, subject in index.bindings_for(attrs.user):
            if binding.namespace and (binding.namespace != attrs.namespace or not attrs.resource_request):
                continue
            if any(rule_covers(rule, attrs) for rule in index.rules(binding)):
                if binding.namespace:
                    by = f'RoleBinding "{binding.name}/{binding.namespace}"'
                else:
                    by = f'ClusterRoleBinding "{binding.name}"'
                return f'RBAC: allowed by {by} of {binding.role_kind} "{binding.role_name}" to {subject}'
        return None

    async def rules_for(self, user: UserInfo, namespace: str) -> list[Object]:
        """Every rule that applies to `user` in `namespace` (SelfSubjectRulesReview)."""
        index = await self._current_index()
        out: list[Object] = []
        for binding, _ in index.bindings_for(user):
            if binding.namespace and binding.namespace != namespace:
                continue
            out.extend(index.rules(binding))
        return out

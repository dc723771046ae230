"""RBAC's escalation prevention: nobody grants, through a role or a binding, what they do not hold.

As upstream's RBAC storage does when the RBAC mode is on: writing a Role or
ClusterRole needs every rule in it to be held by the writer already (in that
namespace, or cluster-wide for a ClusterRole), unless the writer may
`escalate` roles; writing a RoleBinding or ClusterRoleBinding needs the
writer to hold every rule of the referenced role where the binding applies,
unless the writer may `bind` that role.  Without this, anyone allowed to
write RoleBindings in a namespace (the `admin` role) could bind
`cluster-admin` there.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from control.api import errors
from control.api.errors import ApiError
from control.api.resources import resource
from control.apiserver.authz.attributes import Attributes
from control.apiserver.authz.authorizer import MASTERS_GROUP, Chain
from control.apiserver.authz.bootstrap import RBAC_GROUP, missing_rules
from control.apiserver.authz.rbac import RBACAuthorizer
from control.apiserver.registry import Registry, apply_patch

Object = dict[str, Any]

_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
}
_ROLE_RESOURCES = ("roles", "clusterroles")
_BINDING_RESOURCES = ("rolebindings", "clusterrolebindings")


def _compact(rule: Object) -> str:
    """A rule as upstream's CompactString prints it: {APIGroups:["apps"], Resources:["pods"], Verbs:["get"]}."""
    parts = []
    for field, shown in (
        ("apiGroups", "APIGroups"),
        ("resources", "Resources"),
        ("resourceNames", "ResourceNames"),
        ("nonResourceURLs", "NonResourceURLs"),
        ("verbs", "Verbs"),
    ):
        if rule.get(field):
            parts.append(f"{shown}:[{' '.join(json.dumps(v) for v in rule[field])}]")
    return "{" + ", ".join(parts) + "}"


class EscalationCheck:
    """Refuses role and binding writes that would grant more than the writer holds."""

    def __init__(self, registry: Registry, chain: Chain, rbac: RBACAuthorizer):
        self.registry = registry
        self.chain = chain
        self.rbac = rbac

    async def check(self, attrs: Attributes, content_type: str, body: Any) -> None:
        if (
            attrs.api_group != RBAC_GROUP
            or attrs.verb not in ("create", "update", "patch")
            or attrs.subresource
            or attrs.resource not in (*_ROLE_RESOURCES, *_BINDING_RESOURCES)
            or MASTERS_GROUP in attrs.user.groups
        ):
            return
        new = await self._new_object(attrs, content_type, body)
        if not isinstance(new, dict):
            return  # the handler answers the malformed body
        if attrs.resource in _ROLE_RESOURCES:
            if (await self.chain.authorize(replace(attrs, verb="escalate"))).allowed:
                return
            if new.get("aggregationRule"):  # its rules will be whatever other roles carry
                raise self._forbidden(attrs, new, "must have cluster-admin privileges to use the aggregationRule")
            wanted = [r for r in new.get("rules") or [] if isinstance(r, dict)]
        else:
            ref = new.get("roleRef")
            ref = ref if isinstance(ref, dict) else {}
            kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
            role_resource = "roles" if kind == "Role" else "clusterroles"
            bind = Attributes(
                attrs.user,
                "bind",
                True,
                api_group=RBAC_GROUP,
                resource=role_resource,
                namespace=attrs.namespace,  # the binding's namespace, for either kind of role (as upstream)
                name=name,
            )
            if (await self.chain.authorize(bind)).allowed or kind not in ("Role", "ClusterRole"):
                return  # a bad roleRef is validation's to refuse
            wanted = await self._role_rules(role_resource, attrs.namespace if kind == "Role" else None, name)
        held = await self.rbac.rules_for(attrs.user, attrs.namespace)
        missing = missing_rules(held, wanted)
        if missing:
            groups = json.dumps(list(attrs.user.groups)).replace(", ", " ")
            why = (
                f'user "{attrs.user.name}" (groups={groups}) is attempting to grant RBAC permissions not currently '
                f"held:\n" + "\n".join(_compact(r) for r in missing)
            )
            raise self._forbidden(attrs, new, why)

    @staticmethod
    def _forbidden(attrs: Attributes, new: Object, why: str) -> ApiError:
        name = str((new.get("metadata") or {}).get("name") or attrs.name)
        return ApiError(
            errors.status_failure(
                403,
                "Forbidden",
                f'{attrs.resource}.{RBAC_GROUP} "{name}" is forbidden: {why}',
                {"name": name, "group": RBAC_GROUP, "kind": attrs.resource},
            )
        )

    async def _role_rules(self, plural: str, namespace: str | None, name: str) -> list[Object]:
        try:
            role = await self.registry.get(resource(plural), namespace, name)
        except ApiError as err:
            if err.code == 404:
                kind = "role" if plural == "roles" else "clusterrole"
                raise errors.bad_request(f'{kind}.{RBAC_GROUP} "{name}" not found') from None
            raise
        return [r for r in role.get("rules") or [] if isinstance(r, dict)]

    async def _new_object(self, attrs: Attributes, content_type: str, body: Any) -> Any:
        if attrs.verb != "patch":
            return body
        res = resource(attrs.resource)
        patch_type = _PATCH_TYPES.get(content_type)
        if patch_type is None:
            return None
        current = await self.registry.get(res, attrs.namespace or None, attrs.name)
        return apply_patch(res.kind, current, patch_type, body)

"""authorization.k8s.io/v1: access reviews and rules reviews, answered by the authorizer chain.

`kubectl auth can-i` posts a SelfSubjectAccessReview (the caller asks about
itself; with `--as` about whom it impersonates) and, for `--list`, a
SelfSubjectRulesReview.  SubjectAccessReview and LocalSubjectAccessReview ask
about any user (webhook-style, for components that authorize their own
callers).  None of them is stored: the answer is the posted object with a
status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from control.api import errors
from control.api.errors import ApiError
from control.apiserver.authn import UserInfo
from control.apiserver.authz.attributes import Attributes
from control.apiserver.authz.authorizer import MASTERS_GROUP, AlwaysAllow, Chain
from control.apiserver.authz.bootstrap import NODE_RULES
from control.apiserver.authz.node import node_name
from control.apiserver.authz.rbac import RBACAuthorizer

Object = dict[str, Any]

GROUP = "authorization.k8s.io"
ACCESS_KINDS = {
    "selfsubjectaccessreviews": "SelfSubjectAccessReview",
    "subjectaccessreviews": "SubjectAccessReview",
    "localsubjectaccessreviews": "LocalSubjectAccessReview",
}
_ALL_RESOURCES = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
_ALL_URLS = {"verbs": ["*"], "nonResourceURLs": ["*"]}


def _invalid(kind: str, field: str, message: str) -> ApiError:
    return errors.invalid(kind, "", [(field, "FieldValueInvalid", message)], GROUP)


def _check_kind(kind: str, body: Any) -> Object:
    if not isinstance(body, dict):
        raise errors.bad_request(f"the body of the request must be a {kind} object")
    if body.get("kind") not in (None, kind):
        raise errors.bad_request(f"the kind in the data ({body.get('kind')}) does not match the expected kind ({kind})")
    if body.get("apiVersion") not in (None, f"{GROUP}/v1"):
        raise errors.bad_request(
            f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version "
            f"({GROUP}/v1)"
        )
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise errors.invalid(kind, "", [("spec", "FieldValueRequired", "Required value")], GROUP)
    return spec


def review_attributes(kind: str, user: UserInfo, spec: Object, namespace: str | None) -> Attributes:
    """The attributes a review's spec asks about; 422 when it names neither or both kinds of attribute."""
    resource_attrs, url_attrs = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (resource_attrs is None) == (url_attrs is None):
        raise _invalid(
            kind,
            "spec.resourceAttributes",
            "Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )
    if isinstance(url_attrs, dict):
        return Attributes(user, str(url_attrs.get("verb", "")), False, path=str(url_attrs.get("path", "")))
    if not isinstance(resource_attrs, dict):
        raise _invalid(kind, "spec.resourceAttributes", "Invalid value: must be an object")
    ns = str(resource_attrs.get("namespace") or "")
    if namespace is not None:
        if ns and ns != namespace:
            raise _invalid(
                kind,
                "spec.resourceAttributes.namespace",
                f'Invalid value: "{ns}": must match metadata.namespace',
            )
        ns = namespace
    return Attributes(
        user,
        str(resource_attrs.get("verb", "")),
        True,
        api_group=str(resource_attrs.get("group", "")),
        api_version=str(resource_attrs.get("version", "")),
        resource=str(resource_attrs.get("resource", "")),
        subresource=str(resource_attrs.get("subresource", "")),
        namespace=ns,
        name=str(resource_attrs.get("name", "")),
    )


def _subject(kind: str, spec: Object) -> UserInfo:
    user, groups = spec.get("user") or "", spec.get("groups") or []
    if not user and not groups:
        raise _invalid(kind, "spec.user", 'Invalid value: "": at least one of user or group must be specified')
    extra: Mapping[str, tuple[str, ...]] = {
        str(k): tuple(str(x) for x in v) for k, v in (spec.get("extra") or {}).items() if isinstance(v, list)
    }
    return UserInfo(str(user), tuple(str(g) for g in groups), str(spec.get("uid") or ""), extra)


class Reviews:
    """Answers the four review kinds for one API server's chain."""

    def __init__(self, chain: Chain, rbac: RBACAuthorizer | None):
        self.chain = chain
        self.rbac = rbac

    async def access_review(self, plural: str, caller: UserInfo, namespace: str | None, body: Any) -> Object:
        kind = ACCESS_KINDS[plural]
        spec = _check_kind(kind, body)
        subject = caller if plural == "selfsubjectaccessreviews" else _subject(kind, spec)
        attrs = review_attributes(kind, subject, spec, namespace if plural == "localsubjectaccessreviews" else None)
        decision = await self.chain.authorize(attrs)
        status: Object = {"allowed": decision.allowed}
        if decision.verdict == "deny":
            status["denied"] = True
        if decision.reason:
            status["reason"] = decision.reason
        metadata: Object = {"creationTimestamp": None}
        if plural == "localsubjectaccessreviews":
            metadata["namespace"] = namespace
        return {
            "kind": kind,
            "apiVersion": f"{GROUP}/v1",
            "metadata": metadata,
            "spec": spec,
            "status": status,
        }

    async def rules_review(self, caller: UserInfo, body: Any) -> Object:
        """SelfSubjectRulesReview: the caller's RBAC rules in a namespace (node identities: the system:node rules)."""
        spec = _check_kind("SelfSubjectRulesReview", body)
        namespace = str(spec.get("namespace") or "")
        resource_rules: list[Object] = []
        url_rules: list[Object] = []
        incomplete = False
        if any(isinstance(a, AlwaysAllow) for a in self.chain.authorizers) or MASTERS_GROUP in caller.groups:
            resource_rules.append(dict(_ALL_RESOURCES))
            url_rules.append(dict(_ALL_URLS))
        rules: list[Object] = []
        if self.rbac is not None:
            rules += await self.rbac.rules_for(caller, namespace)
        if node_name(caller) is not None and any(a.name == "Node" for a in self.chain.authorizers):
            rules += NODE_RULES
            incomplete = True  # the node graph narrows these to the node's own objects
        for rule in rules:
            if rule.get("nonResourceURLs"):
                entry = {"verbs": rule.get("verbs") or [], "nonResourceURLs": rule["nonResourceURLs"]}
                if entry not in url_rules:
                    url_rules.append(entry)
            else:
                entry = {k: rule[k] for k in ("verbs", "apiGroups", "resources", "resourceNames") if rule.get(k)}
                if entry not in resource_rules:
                    resource_rules.append(entry)
        return {
            "kind": "SelfSubjectRulesReview",
            "apiVersion": f"{GROUP}/v1",
            "metadata": {"creationTimestamp": None},
            "spec": {"namespace": namespace} if namespace else {},
            "status": {"resourceRules": resource_rules, "nonResourceRules": url_rules, "incomplete": incomplete},
        }

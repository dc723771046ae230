"""Request attributes as Kubernetes' RequestInfo resolver reads them, and the 403 built from them."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from control.apiserver import cli

from control.apiserver.authn import UserInfo
from control.apiserver.authz.attributes import request_attributes
from control.apiserver.authz.authorizer import forbidden, parse_modes

JANE = UserInfo("jane", ("system:authenticated",))

# (method, path, query) -> (verb, api group, resource, subresource, namespace, name), or a non-resource verb
RESOURCE_CASES = [
    ("GET", "/api/v1/namespaces/default/pods", {}, ("list", "", "pods", "", "default", "")),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": ["true"]}, ("watch", "", "pods", "", "default", "")),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": ["1"]}, ("watch", "", "pods", "", "default", "")),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": ["false"]}, ("list", "", "pods", "", "default", "")),
    ("GET", "/api/v1/namespaces/default/pods", {"watch": ["yes"]}, ("watch", "", "pods", "", "default", "")),
    ("GET", "/api/v1/watch/namespaces/default/pods", {}, ("watch", "", "pods", "", "default", "")),
    ("GET", "/api/v1/watch/namespaces/default/pods/web", {}, ("watch", "", "pods", "", "default", "web")),
    ("GET", "/api/v1/namespaces/default/pods/web", {}, ("get", "", "pods", "", "default", "web")),
    ("HEAD", "/api/v1/namespaces/default/pods/web", {}, ("get", "", "pods", "", "default", "web")),
    ("POST", "/api/v1/namespaces/default/pods", {}, ("create", "", "pods", "", "default", "")),
    ("PUT", "/api/v1/namespaces/default/pods/web", {}, ("update", "", "pods", "", "default", "web")),
    ("PATCH", "/api/v1/namespaces/default/pods/web", {}, ("patch", "", "pods", "", "default", "web")),
    ("DELETE", "/api/v1/namespaces/default/pods/web", {}, ("delete", "", "pods", "", "default", "web")),
    ("DELETE", "/api/v1/namespaces/default/pods", {}, ("deletecollection", "", "pods", "", "default", "")),
    ("PUT", "/api/v1/namespaces/default/pods/web/status", {}, ("update", "", "pods", "status", "default", "web")),
    ("GET", "/api/v1/namespaces/default/pods/web/log", {}, ("get", "", "pods", "log", "default", "web")),
    ("POST", "/api/v1/namespaces/default/pods/web/eviction", {}, ("create", "", "pods", "eviction", "default", "web")),
    ("GET", "/api/v1/pods", {}, ("list", "", "pods", "", "", "")),
    ("GET", "/api/v1/nodes/worker1", {}, ("get", "", "nodes", "", "", "worker1")),
    ("PATCH", "/api/v1/nodes/worker1/status", {}, ("patch", "", "nodes", "status", "", "worker1")),
    ("GET", "/api/v1/namespaces", {}, ("list", "", "namespaces", "", "", "")),
    ("GET", "/api/v1/namespaces/kube-system", {}, ("get", "", "namespaces", "", "kube-system", "kube-system")),
    (
        "PUT",
        "/api/v1/namespaces/kube-system/finalize",
        {},
        ("update", "", "namespaces", "finalize", "kube-system", "kube-system"),
    ),
    (
        "GET",
        "/apis/apps/v1/namespaces/web/deployments/site/scale",
        {},
        ("get", "apps", "deployments", "scale", "web", "site"),
    ),
    (
        "GET",
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
        {"fieldSelector": ["metadata.name=worker1"]},
        ("list", "coordination.k8s.io", "leases", "", "kube-node-lease", "worker1"),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/secrets",
        {"fieldSelector": ["metadata.name==token"], "watch": ["true"]},
        ("watch", "", "secrets", "", "default", "token"),
    ),
    (
        "GET",
        "/api/v1/namespaces/default/secrets",
        {"fieldSelector": ["metadata.name!=token"]},
        ("list", "", "secrets", "", "default", ""),
    ),
    (
        "GET",
        "/api/v1/pods",
        {"fieldSelector": ["spec.nodeName=worker1"]},
        ("list", "", "pods", "", "", ""),
    ),
    (
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/builder/token",
        {},
        ("create", "", "serviceaccounts", "token", "default", "builder"),
    ),
    (
        "GET",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        {},
        ("list", "rbac.authorization.k8s.io", "clusterroles", "", "", ""),
    ),
]

NON_RESOURCE_CASES = [
    ("GET", "/healthz", "get"),
    ("GET", "/version", "get"),
    ("GET", "/api", "get"),
    ("GET", "/api/v1", "get"),
    ("GET", "/apis", "get"),
    ("GET", "/apis/apps", "get"),
    ("GET", "/apis/apps/v1", "get"),
    ("GET", "/openapi/v3", "get"),
    ("POST", "/metrics", "post"),
    ("GET", "/logs/", "get"),
]


@pytest.mark.parametrize(("method", "path", "query", "expected"), RESOURCE_CASES)
def test_resource_request_attributes(
    method: str, path: str, query: dict[str, list[str]], expected: tuple[str, ...]
) -> None:
    attrs = request_attributes(JANE, method, path, query)
    assert attrs.resource_request
    assert (attrs.verb, attrs.api_group, attrs.resource, attrs.subresource, attrs.namespace, attrs.name) == expected
    assert attrs.path == path


@pytest.mark.parametrize(("method", "path", "verb"), NON_RESOURCE_CASES)
def test_non_resource_request_attributes(method: str, path: str, verb: str) -> None:
    attrs = request_attributes(JANE, method, path, {})
    assert not attrs.resource_request
    assert (attrs.verb, attrs.path, attrs.resource) == (verb, path, "")


def test_forbidden_messages_name_user_verb_resource_and_scope() -> None:
    cases = [
        (
            ("POST", "/api/v1/namespaces/default/pods"),
            'pods is forbidden: User "jane" cannot create resource "pods" in API group "" in the namespace "default"',
        ),
        (
            ("GET", "/apis/apps/v1/namespaces/web/deployments/site/scale"),
            'deployments.apps "site" is forbidden: User "jane" cannot get resource "deployments/scale" in API group '
            '"apps" in the namespace "web"',
        ),
        (
            ("DELETE", "/api/v1/nodes"),
            'nodes is forbidden: User "jane" cannot deletecollection resource "nodes" in API group "" '
            "at the cluster scope",
        ),
        (("GET", "/metrics"), 'forbidden: User "jane" cannot get path "/metrics"'),
    ]
    for (method, path), message in cases:
        status = forbidden(request_attributes(JANE, method, path, {})).status
        assert (status["code"], status["reason"], status["message"]) == (403, "Forbidden", message)
    status = forbidden(request_attributes(JANE, "GET", "/api/v1/namespaces/x/secrets/s", {}), "no relationship").status
    assert status["message"].endswith('in the namespace "x": no relationship')
    assert status["details"] == {"name": "s", "kind": "secrets"}


def test_authorization_modes_flag() -> None:
    assert parse_modes("Node,RBAC") == ("Node", "RBAC")
    assert parse_modes("AlwaysAllow") == ("AlwaysAllow",)
    with pytest.raises(ValueError, match="unknown mode 'ABAC'"):
        parse_modes("RBAC,ABAC")
    with pytest.raises(ValueError, match="'RBAC' given more than once"):
        parse_modes("RBAC,Node,RBAC")
    with pytest.raises(ValueError, match="at least one mode"):
        parse_modes(" , ")


def test_apiserver_flags_name_a_bad_mode_or_plugin() -> None:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction"])
    assert (args.authorization_mode, args.enable_admission_plugins) == (("Node", "RBAC"), ("NodeRestriction",))
    defaults = parser.parse_args([])
    assert (defaults.authorization_mode, defaults.enable_admission_plugins) == (("AlwaysAllow",), ())
    for flag, value, named in (
        ("--authorization-mode", "Webhook", "unknown mode 'Webhook'"),
        ("--enable-admission-plugins", "NodeRestriction,AlwaysPullImages", "unknown plugin 'AlwaysPullImages'"),
    ):
        errors = io.StringIO()
        with pytest.raises(SystemExit), contextlib.redirect_stderr(errors):
            parser.parse_args([flag, value])
        assert named in errors.getvalue()

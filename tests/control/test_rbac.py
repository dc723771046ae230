"""RBAC against a real API server process and etcd: the bootstrap policy, Kubernetes' 403, binding scope,
aggregation, non-resource URLs, impersonation, validation, and `kubectl auth can-i` with the real kubectl."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from control.api.errors import ApiError
from control.client import Client
from tests.conftest import EtcdServer
from tests.control.authz_server import AuthzServer, Identity, start_authz_server

RBAC = "rbac.authorization.k8s.io"
WAIT_SECONDS = 10.0

IDENTITIES = {
    "admin": Identity("admin-token", "kubernetes-admin", ("system:masters",)),
    "jane": Identity("jane-token", "jane"),
    "bob": Identity("bob-token", "bob", ("devs",)),
    "root": Identity("root-token", "root", ("system:masters",)),
}


@pytest.fixture(scope="module")
def server(etcd_server: EtcdServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthzServer]:
    yield from start_authz_server(etcd_server, tmp_path_factory.mktemp("pkt-rbac"), IDENTITIES)


async def _forbidden(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call
    assert caught.value.code == 403, caught.value.status
    return caught.value


async def _can(
    client: Client, verb: str, resource: str, namespace: str = "", group: str = "", name: str = "", sub: str = ""
) -> bool:
    attributes = {"verb": verb, "resource": resource, "namespace": namespace, "group": group, "name": name}
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {**attributes, "subresource": sub}},
    }
    answer = await client.request("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review)
    return bool(answer["status"]["allowed"])


async def _eventually_can(client: Client, *args: str) -> None:
    """Bounded wait for the watch cache to carry a new binding or aggregated rule."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not await _can(client, *args):
        assert time.monotonic() < deadline, f"never allowed: {args}"
        await asyncio.sleep(0.1)


async def _namespace(admin: Client, name: str) -> str:
    await admin.create("namespaces", {"metadata": {"name": name}})
    return name


def _binding(name: str, role_kind: str, role: str, subjects: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "roleRef": {"apiGroup": RBAC, "kind": role_kind, "name": role},
        "subjects": subjects,
    }


async def test_bootstrap_policy_is_in_place(server: AuthzServer) -> None:
    async with server.client("admin") as admin:
        admin_binding = await admin.get("clusterrolebindings", "cluster-admin")
        assert admin_binding["subjects"] == [{"kind": "Group", "apiGroup": RBAC, "name": "system:masters"}]
        for name in ("system:basic-user", "system:discovery", "system:kube-scheduler", "system:node-proxier"):
            assert (await admin.get("clusterroles", name))["rules"], name
        public = await admin.get("clusterrolebindings", "system:public-info-viewer")
        assert {s["name"] for s in public["subjects"]} == {"system:authenticated", "system:unauthenticated"}
        dns = await admin.get("clusterrolebindings", "system:kube-dns")
        assert dns["subjects"] == [{"kind": "User", "apiGroup": RBAC, "name": "system:kube-dns"}]
        bootstrappers = await admin.get("clusterrolebindings", "kubeadm:kubelet-bootstrap")
        assert bootstrappers["roleRef"]["name"] == "system:node-bootstrapper"
        assert bootstrappers["subjects"][0]["name"] == "system:bootstrappers"
        # admin, edit and view carry the rules gathered from the roles their selectors match
        view, edit, admin_role = [await admin.get("clusterroles", n) for n in ("view", "edit", "admin")]
        assert any("pods" in r.get("resources", []) and "list" in r["verbs"] for r in view["rules"])
        assert not any("secrets" in r.get("resources", []) for r in view["rules"])
        assert all(r in edit["rules"] for r in view["rules"])
        assert any("secrets" in r.get("resources", []) and "create" in r["verbs"] for r in edit["rules"])
        assert all(r in admin_role["rules"] for r in edit["rules"])
        assert any("rolebindings" in r.get("resources", []) for r in admin_role["rules"])


async def test_no_binding_is_forbidden_with_kubernetes_message(server: AuthzServer) -> None:
    async with server.client("jane") as jane:
        err = await _forbidden(jane.list("pods", namespace="default"))
        assert err.status["message"] == (
            'pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default"'
        )
        assert err.status["reason"] == "Forbidden"
        assert err.status["details"] == {"kind": "pods"}
        err = await _forbidden(jane.create("pods", {"metadata": {"name": "p"}}, "default"))
        assert err.status["message"] == (
            'pods is forbidden: User "jane" cannot create resource "pods" in API group "" in the namespace "default"'
        )
        err = await _forbidden(jane.get("deployments", "web", "default"))
        assert err.status["message"] == (
            'deployments.apps "web" is forbidden: User "jane" cannot get resource "deployments" in API group "apps" '
            'in the namespace "default"'
        )
        err = await _forbidden(jane.list("nodes"))
        assert err.status["message"] == (
            'nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope'
        )
        err = await _forbidden(jane.request("GET", "/metrics"))
        assert err.status["message"] == 'forbidden: User "jane" cannot get path "/metrics"'


async def test_view_user_can_read_but_not_write_and_only_in_the_bound_namespace(server: AuthzServer) -> None:
    async with server.client("admin") as admin, server.client("jane") as jane:
        ns = await _namespace(admin, f"pkt-view-{server.suffix}")
        other = await _namespace(admin, f"pkt-other-{server.suffix}")
        await admin.create("configmaps", {"metadata": {"name": "settings"}, "data": {"a": "1"}}, ns)
        await admin.create("rolebindings", _binding("jane-view", "ClusterRole", "view", [_user("jane")]), ns)
        await _eventually_can(jane, "list", "configmaps", ns)
        assert (await jane.get("configmaps", "settings", ns))["data"] == {"a": "1"}
        assert [c["metadata"]["name"] for c in (await jane.list("configmaps", namespace=ns))["items"]] == ["settings"]
        err = await _forbidden(jane.create("configmaps", {"metadata": {"name": "mine"}}, ns))
        assert err.status["message"] == (
            f'configmaps is forbidden: User "jane" cannot create resource "configmaps" in API group "" '
            f'in the namespace "{ns}"'
        )
        await _forbidden(jane.delete("configmaps", "settings", ns))
        await _forbidden(jane.list("configmaps", namespace=other))
        await _forbidden(jane.list("configmaps"))  # all namespaces is cluster scope
        await _forbidden(jane.get("secrets", "anything", ns))  # view never reads secrets


async def test_cluster_role_binding_grants_everywhere_and_groups_count(server: AuthzServer) -> None:
    async with server.client("admin") as admin, server.client("bob") as bob:
        ns = await _namespace(admin, f"pkt-crb-{server.suffix}")
        await _forbidden(bob.list("services", namespace=ns))
        binding = _binding(f"devs-view-{server.suffix}", "ClusterRole", "view", [_group("devs")])
        await admin.create("clusterrolebindings", binding)
        await _eventually_can(bob, "list", "services", ns)
        assert (await bob.list("services", namespace=ns))["items"] == []
        assert "items" in await bob.list("services")  # every namespace at once
        await _forbidden(bob.create("services", {"metadata": {"name": "s"}}, ns))


async def test_role_rules_names_subresources_and_wildcards(server: AuthzServer) -> None:
    async with server.client("admin") as admin, server.client("jane") as jane:
        ns = await _namespace(admin, f"pkt-rules-{server.suffix}")
        for name in ("allowed", "hidden"):
            await admin.create("configmaps", {"metadata": {"name": name}}, ns)
        role = {
            "metadata": {"name": "narrow"},
            "rules": [
                {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["allowed"], "verbs": ["get"]},
                {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get"]},
                {"apiGroups": ["*"], "resources": ["leases"], "verbs": ["*"]},
            ],
        }
        await admin.create("roles", role, ns)
        await admin.create("rolebindings", _binding("narrow", "Role", "narrow", [_user("jane")]), ns)
        await _eventually_can(jane, "get", "configmaps", ns, "", "allowed")
        assert (await jane.get("configmaps", "allowed", ns))["metadata"]["name"] == "allowed"
        err = await _forbidden(jane.get("configmaps", "hidden", ns))
        assert err.status["message"].startswith('configmaps "hidden" is forbidden: User "jane" cannot get')
        await _forbidden(jane.list("configmaps", namespace=ns))  # resourceNames never allow a whole list
        assert await _can(jane, "get", "deployments", ns, "apps", "web", sub="scale")
        assert not await _can(jane, "get", "deployments", ns, "apps", "web")
        assert not await _can(jane, "update", "deployments", ns, "apps", "web", sub="scale")
        assert await _can(jane, "delete", "leases", ns, "coordination.k8s.io")
        lease = await jane.create("leases", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "jane"}}, ns)
        assert lease["spec"]["holderIdentity"] == "jane"


async def test_aggregation_adds_labelled_rules_to_view(server: AuthzServer) -> None:
    async with server.client("admin") as admin, server.client("jane") as jane:
        ns = await _namespace(admin, f"pkt-agg-{server.suffix}")
        await admin.create("rolebindings", _binding("jane-view", "ClusterRole", "view", [_user("jane")]), ns)
        await _eventually_can(jane, "list", "pods", ns)
        assert not await _can(jane, "list", "leases", ns, "coordination.k8s.io")
        lease_rule = {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list"]}
        name = f"pkt-lease-reader-{server.suffix}"
        extra = {
            "metadata": {
                "name": name,
                "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
            },
            "rules": [lease_rule],
        }
        await admin.create("clusterroles", extra)
        await _eventually_can(jane, "list", "leases", ns, "coordination.k8s.io")
        view = await admin.get("clusterroles", "view")
        assert lease_rule in view["rules"]
        edit = await admin.get("clusterroles", "edit")  # view aggregates into edit, edit into admin
        deadline = time.monotonic() + WAIT_SECONDS
        while lease_rule not in edit["rules"]:
            assert time.monotonic() < deadline, "edit never gathered the new rule"
            await asyncio.sleep(0.1)
            edit = await admin.get("clusterroles", "edit")
        await admin.delete("clusterroles", name)
        deadline = time.monotonic() + WAIT_SECONDS
        while await _can(jane, "list", "leases", ns, "coordination.k8s.io"):
            assert time.monotonic() < deadline, "view kept the rule of a deleted role"
            await asyncio.sleep(0.1)


async def test_non_resource_urls_and_masters(server: AuthzServer) -> None:
    async with server.client("jane") as jane, server.client("root") as root:
        assert "gitVersion" in await jane.request("GET", "/version")
        assert (await jane.request("GET", "/apis"))["kind"] == "APIGroupList"  # system:discovery
        await _forbidden(jane.request("GET", "/metrics"))
        # system:masters is allowed before any mode is asked, even for what no role grants
        assert await _can(root, "frobnicate", "widgets", "default", "example.com")
        assert not await _can(jane, "frobnicate", "widgets", "default", "example.com")
    anonymous = server.anonymous_client()
    try:
        assert (await anonymous.request_text("/healthz")) == "ok"
        err = await _forbidden(anonymous.list("namespaces"))
        assert 'User "system:anonymous" cannot list resource "namespaces"' in err.status["message"]
    finally:
        await anonymous.close()


async def _raw(server: AuthzServer, who: str, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
    """(status, decoded body) of one request with extra headers (Impersonate-*), which Client does not send."""
    all_headers = {"Authorization": f"Bearer {server.identities[who].token}", **headers}
    async with aiohttp.ClientSession() as session:
        request = session.request(method, server.url + path, headers=all_headers, json=body, ssl=server.ssl_context())
        async with request as response:
            return response.status, await response.json()


async def test_impersonation_needs_the_impersonate_verb(server: AuthzServer) -> None:
    status, answer = await _raw(server, "jane", "GET", "/api/v1/namespaces", {"Impersonate-User": "root"})
    assert status == 403
    assert answer["message"] == (
        'users "root" is forbidden: User "jane" cannot impersonate resource "users" in API group "" '
        "at the cluster scope"
    )
    review = {"spec": {"resourceAttributes": {"verb": "list", "resource": "secrets", "namespace": "default"}}}
    path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    status, answer = await _raw(server, "admin", "POST", path, {"Impersonate-User": "jane"}, review)
    assert (status, answer["status"]["allowed"]) == (201, False)
    status, answer = await _raw(server, "admin", "GET", "/api/v1/secrets", {"Impersonate-User": "jane"})
    assert status == 403
    assert 'User "jane" cannot list resource "secrets"' in answer["message"]
    headers = {"Impersonate-User": "jane", "Impersonate-Group": "system:masters"}
    status, answer = await _raw(server, "admin", "GET", "/api/v1/secrets", headers)
    assert (status, answer["kind"]) == (200, "SecretList")  # as jane in system:masters
    status, answer = await _raw(server, "admin", "GET", "/api/v1/secrets", {"Impersonate-Group": "devs"})
    assert status == 400
    assert "without impersonating a user" in answer["message"]


async def test_binding_validation_and_immutable_role_ref(server: AuthzServer) -> None:
    async with server.client("admin") as admin:
        ns = await _namespace(admin, f"pkt-valid-{server.suffix}")
        bad = _binding("bad", "ClusterRole", "view", [{"kind": "Robot", "name": "r2d2"}])
        with pytest.raises(ApiError) as caught:
            await admin.create("rolebindings", bad, ns)
        assert caught.value.code == 422
        assert 'subjects[0].kind: Unsupported value: "Robot"' in caught.value.status["message"]
        with pytest.raises(ApiError) as caught:
            await admin.create("roles", {"metadata": {"name": "r"}, "rules": [{"resources": ["pods"]}]}, ns)
        assert "rules[0].verbs: Required value" in caught.value.status["message"]
        binding = await admin.create("rolebindings", _binding("good", "ClusterRole", "view", [_user("jane")]), ns)
        assert binding["subjects"][0]["apiGroup"] == RBAC  # defaulted
        binding["roleRef"]["name"] = "edit"
        with pytest.raises(ApiError) as caught:
            await admin.update("rolebindings", binding)
        assert caught.value.code == 422
        assert "roleRef: Invalid value" in caught.value.status["message"]
        assert "cannot change roleRef" in caught.value.status["message"]


async def test_reconcile_keeps_user_edits_and_respects_autoupdate(server: AuthzServer) -> None:
    async with server.client("admin") as admin:
        originals = {name: await admin.get("clusterroles", name) for name in ("system:basic-user", "system:monitoring")}
        basic = originals["system:basic-user"]
        extra_rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}
        await admin.update("clusterroles", {**basic, "rules": basic["rules"] + [extra_rule]})
        monitoring = copy.deepcopy(originals["system:monitoring"])
        monitoring["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = "false"
        await admin.update("clusterroles", {**monitoring, "rules": []})
        discovery = await admin.get("clusterroles", "system:discovery")
        await admin.update("clusterroles", {**discovery, "rules": []})
    try:
        await asyncio.to_thread(server.process.stop)
        await asyncio.to_thread(server.process.start)
        async with server.client("admin") as admin:
            basic = await admin.get("clusterroles", "system:basic-user")
            assert extra_rule in basic["rules"]
            assert any("selfsubjectaccessreviews" in r.get("resources", []) for r in basic["rules"])
            assert (await admin.get("clusterroles", "system:monitoring"))["rules"] == []
            restored = await admin.get("clusterroles", "system:discovery")
            assert any("/apis/*" in r.get("nonResourceURLs", []) for r in restored["rules"])
    finally:  # the policy lives at etcd's root, shared with other API server processes of the session
        async with server.client("admin") as admin:
            for name, original in originals.items():
                current = await admin.get("clusterroles", name)
                await admin.update(
                    "clusterroles",
                    {
                        **original,
                        "metadata": current["metadata"] | {"annotations": original["metadata"]["annotations"]},
                    },
                )


def test_kubectl_auth_can_i_and_forbidden_output(server: AuthzServer) -> None:
    ns = f"pkt-cani-{server.suffix}"
    assert server.kubectl("admin", "create", "namespace", ns).returncode == 0
    result = server.kubectl("admin", "auth", "can-i", "create", "pods", "--as", "jane", "-n", ns)
    assert (result.returncode, result.stdout.strip()) == (1, "no"), result.stderr
    result = server.kubectl(
        "admin", "create", "rolebinding", "jane-edit", "--clusterrole=edit", "--user=jane", "-n", ns
    )
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        result = server.kubectl("admin", "auth", "can-i", "create", "pods", "--as", "jane", "-n", ns)
        if result.returncode == 0:
            break
        assert time.monotonic() < deadline, result.stdout + result.stderr
    assert result.stdout.strip() == "yes"
    result = server.kubectl("jane", "auth", "can-i", "delete", "rolebindings", "-n", ns)
    assert (result.returncode, result.stdout.strip()) == (1, "no")
    result = server.kubectl("jane", "auth", "can-i", "--list", "-n", ns)
    assert result.returncode == 0, result.stderr
    pods_line = next(line for line in result.stdout.splitlines() if line.startswith("pods "))
    assert "create" in pods_line and "list" in pods_line
    assert any(line.startswith("selfsubjectaccessreviews.authorization.k8s.io") for line in result.stdout.splitlines())
    result = server.kubectl("jane", "get", "pods", "-n", "default")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        'Error from server (Forbidden): pods is forbidden: User "jane" cannot list resource "pods" in API group "" '
        'in the namespace "default"'
    )
    result = server.kubectl("admin", "get", "rolebindings", "-n", ns, "-o", "wide")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    assert row.split()[:2] == ["jane-edit", "ClusterRole/edit"] and row.split()[3] == "jane"
    result = server.kubectl("admin", "get", "clusterroles", "view")
    assert result.stdout.split()[:3] == ["NAME", "CREATED", "AT"]


def _user(name: str) -> dict[str, str]:
    return {"kind": "User", "apiGroup": RBAC, "name": name}


def _group(name: str) -> dict[str, str]:
    return {"kind": "Group", "apiGroup": RBAC, "name": name}


# What each component identity calls (grepped from control/scheduler, control/controllers, kdns), as
# (user, groups, verb, group, resource, subresource, namespace, name); each must be allowed by its default role.
COMPONENT_CALLS = [
    *(
        ("system:kube-scheduler", (), verb, "", res, sub, ns, name)
        for verb, res, sub, ns, name in (
            ("list", "pods", "", "", ""),
            ("watch", "nodes", "", "", ""),
            ("create", "pods", "binding", "web", "p"),
            ("patch", "pods", "status", "web", "p"),
            ("create", "events", "", "web", ""),
        )
    ),
    ("system:kube-scheduler", (), "update", "coordination.k8s.io", "leases", "", "kube-system", "kube-scheduler"),
    *(
        ("system:kube-controller-manager", (), verb, group, res, sub, ns, name)
        for verb, group, res, sub, ns, name in (
            ("watch", "", "pods", "", "", ""),
            ("create", "", "pods", "", "web", ""),
            ("delete", "", "pods", "", "web", "p"),
            ("patch", "", "pods", "status", "web", "p"),
            ("update", "", "nodes", "status", "", "worker1"),
            ("patch", "", "nodes", "", "", "worker1"),
            ("update", "", "services", "status", "web", "lb"),
            ("create", "", "endpoints", "", "web", ""),
            ("delete", "", "endpoints", "", "web", "svc"),
            ("create", "", "serviceaccounts", "", "web", ""),
            ("update", "", "configmaps", "", "web", "kube-root-ca.crt"),
            ("patch", "apps", "deployments", "status", "web", "d"),
            ("create", "apps", "replicasets", "", "web", ""),
            ("update", "apps", "deployments", "scale", "web", "d"),
            ("update", "autoscaling", "horizontalpodautoscalers", "status", "web", "h"),
            ("list", "metrics.k8s.io", "pods", "", "web", ""),
            ("create", "discovery.k8s.io", "endpointslices", "", "web", ""),
            ("list", "coordination.k8s.io", "leases", "", "kube-node-lease", ""),
            ("update", "coordination.k8s.io", "leases", "", "kube-system", "kube-controller-manager"),
            ("update", "certificates.k8s.io", "certificatesigningrequests", "approval", "", "csr-1"),
            ("update", "certificates.k8s.io", "certificatesigningrequests", "status", "", "csr-1"),
        )
    ),
    *(
        ("system:kube-dns", (), verb, "", res, "", ns, name)
        for verb, res, ns, name in (
            ("watch", "services", "", ""),
            ("list", "endpoints", "", ""),
            ("watch", "namespaces", "", ""),
            ("update", "endpoints", "kube-system", "kube-dns"),
        )
    ),
    ("system:kube-proxy", (), "watch", "discovery.k8s.io", "endpointslices", "", "", ""),
    (
        "system:bootstrap:abcdef",
        ("system:bootstrappers",),
        "create",
        "certificates.k8s.io",
        "certificatesigningrequests",
        "",
        "",
        "",
    ),
    (
        "system:bootstrap:abcdef",
        ("system:bootstrappers",),
        "create",
        "certificates.k8s.io",
        "certificatesigningrequests",
        "nodeclient",
        "",
        "",
    ),
]


async def _subject_review(admin: Client, user: str, groups: tuple[str, ...], attributes: dict[str, str]) -> Any:
    review = {"spec": {"user": user, "groups": [*groups, "system:authenticated"], "resourceAttributes": attributes}}
    return await admin.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review)


async def test_component_identities_may_make_their_calls_and_no_more(server: AuthzServer) -> None:
    async with server.client("admin") as admin:
        for user, groups, verb, group, res, sub, ns, name in COMPONENT_CALLS:
            attributes = {
                "verb": verb,
                "group": group,
                "resource": res,
                "subresource": sub,
                "namespace": ns,
                "name": name,
            }
            answer = await _subject_review(admin, user, groups, attributes)
            assert answer["status"]["allowed"] is True, (user, attributes, answer["status"])
        for user, attributes in (
            ("system:kube-scheduler", {"verb": "get", "resource": "secrets", "namespace": "web", "name": "s"}),
            ("system:kube-dns", {"verb": "update", "resource": "endpoints", "namespace": "web", "name": "other"}),
            ("system:kube-controller-manager", {"verb": "create", "group": RBAC, "resource": "clusterrolebindings"}),
            ("system:kube-proxy", {"verb": "update", "resource": "nodes", "name": "worker1"}),
            # The token cleaner's Role reaches expired bootstrap tokens in kube-system only.
            ("system:kube-controller-manager", {"verb": "delete", "resource": "secrets", "namespace": "web"}),
        ):
            answer = await _subject_review(admin, user, (), attributes)
            assert answer["status"]["allowed"] is False, (user, attributes)
        cleanup = {
            "verb": "delete",
            "resource": "secrets",
            "namespace": "kube-system",
            "name": "bootstrap-token-abcdef",
        }
        answer = await _subject_review(admin, "system:kube-controller-manager", (), cleanup)
        assert answer["status"]["allowed"] is True, answer["status"]


async def test_no_escalation_through_roles_or_bindings(server: AuthzServer) -> None:
    """A namespace admin may write roles and bindings, but grant only what it holds itself."""
    async with server.client("admin") as admin, server.client("jane") as jane:
        ns = await _namespace(admin, f"pkt-esc-{server.suffix}")
        await admin.create("rolebindings", _binding("jane-admin", "ClusterRole", "admin", [_user("jane")]), ns)
        await _eventually_can(jane, "create", "rolebindings", ns, RBAC)
        err = await _forbidden(
            jane.create("rolebindings", _binding("grab", "ClusterRole", "cluster-admin", [_user("jane")]), ns)
        )
        assert err.status["message"].startswith(
            f'rolebindings.{RBAC} "grab" is forbidden: user "jane" (groups=["system:authenticated"]) is attempting '
            'to grant RBAC permissions not currently held:\n{APIGroups:["*"], Resources:["*"], Verbs:["*"]}'
        )
        nodes_rule = {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}
        err = await _forbidden(jane.create("roles", {"metadata": {"name": "nodes"}, "rules": [nodes_rule]}, ns))
        assert err.status["message"].endswith('{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}')
        aggregated = {
            "metadata": {"name": f"pkt-gather-{server.suffix}"},
            "aggregationRule": {"clusterRoleSelectors": []},
        }
        writer_name = f"pkt-role-writer-{server.suffix}"
        writer = {
            "metadata": {"name": writer_name},
            "rules": [{"apiGroups": [RBAC], "resources": ["clusterroles"], "verbs": ["create"]}],
        }
        await admin.create("clusterroles", writer)
        binding = _binding(f"jane-roles-{server.suffix}", "ClusterRole", writer_name, [_user("jane")])
        await admin.create("clusterrolebindings", binding)
        await _eventually_can(jane, "create", "clusterroles", "", RBAC)
        err = await _forbidden(jane.create("clusterroles", aggregated))
        assert err.status["message"].endswith("must have cluster-admin privileges to use the aggregationRule")
        # what jane holds, she may hand on: a Role of her own and a binding of view
        pods_rule = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}
        await jane.create("roles", {"metadata": {"name": "pod-reader"}, "rules": [pods_rule]}, ns)
        await jane.create("rolebindings", _binding("bob-reads", "Role", "pod-reader", [_user("bob")]), ns)
        await jane.create("rolebindings", _binding("bob-views", "ClusterRole", "view", [_user("bob")]), ns)
        role = await jane.get("roles", "pod-reader", ns)
        await _forbidden(jane.update("roles", {**role, "rules": [pods_rule, nodes_rule]}))
        await _forbidden(jane.patch("roles", "pod-reader", {"rules": [nodes_rule]}, ns))
        # kubectl sends bindings as protobuf: the check reads those too
        result = server.kubectl(
            "jane", "create", "rolebinding", "k-grab", "--clusterrole=cluster-admin", "--user=jane", "-n", ns
        )
        assert result.returncode == 1
        assert "is attempting to grant RBAC permissions not currently held" in result.stderr
        # with the bind verb on a role, binding it needs no more
        binder = {
            "metadata": {"name": "may-bind-cluster-admin"},
            "rules": [
                {
                    "apiGroups": [RBAC],
                    "resources": ["clusterroles"],
                    "verbs": ["bind"],
                    "resourceNames": ["cluster-admin"],
                }
            ],
        }
        await admin.create("roles", binder, ns)
        await admin.create(
            "rolebindings", _binding("jane-binds", "Role", "may-bind-cluster-admin", [_user("jane")]), ns
        )
        await _eventually_can(jane, "bind", "clusterroles", ns, RBAC, "cluster-admin")
        created = await jane.create(
            "rolebindings", _binding("grab", "ClusterRole", "cluster-admin", [_user("bob")]), ns
        )
        assert created["roleRef"]["name"] == "cluster-admin"


async def test_local_subject_access_review_and_rules_review(server: AuthzServer) -> None:
    async with server.client("admin") as admin, server.client("jane") as jane:
        ns = await _namespace(admin, f"pkt-lsar-{server.suffix}")
        await admin.create("rolebindings", _binding("jane-view", "ClusterRole", "view", [_user("jane")]), ns)
        await _eventually_can(jane, "list", "pods", ns)
        path = f"/apis/authorization.k8s.io/v1/namespaces/{ns}/localsubjectaccessreviews"
        attributes = {"verb": "list", "resource": "pods"}
        review = {"spec": {"user": "jane", "resourceAttributes": attributes}}
        answer = await admin.request("POST", path, body=review)
        assert answer["status"]["allowed"] is True
        assert (
            answer["status"]["reason"]
            == f'RBAC: allowed by RoleBinding "jane-view/{ns}" of ClusterRole "view" to User "jane"'
        )
        assert answer["metadata"]["namespace"] == ns
        attributes["namespace"] = "elsewhere"
        with pytest.raises(ApiError) as caught:
            await admin.request("POST", path, body=review)
        assert caught.value.code == 422
        assert "must match metadata.namespace" in caught.value.status["message"]
        with pytest.raises(ApiError) as caught:
            await admin.request("POST", path, body={"spec": {"user": "jane"}})
        assert (
            "exactly one of nonResourceAttributes or resourceAttributes must be specified"
            in caught.value.status["message"]
        )
        await _forbidden(jane.request("POST", path, body=review))  # view does not include access reviews
        rules = await jane.request(
            "POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", body={"spec": {"namespace": ns}}
        )
        resource_rules = rules["status"]["resourceRules"]
        assert any("pods" in r["resources"] and "list" in r["verbs"] for r in resource_rules)
        assert not any("secrets" in r["resources"] for r in resource_rules)
        assert any("/apis/*" in r["nonResourceURLs"] for r in rules["status"]["nonResourceRules"])
        assert rules["status"]["incomplete"] is False


async def test_service_account_subjects(server: AuthzServer) -> None:
    async with server.client("admin") as admin:
        ns = await _namespace(admin, f"pkt-sa-{server.suffix}")
        subject = {"kind": "ServiceAccount", "name": "builder"}  # namespace defaults to the binding's
        binding = await admin.create("rolebindings", _binding("builder-edit", "ClusterRole", "edit", [subject]), ns)
        assert binding["subjects"][0]["apiGroup"] == ""
        group_binding = _binding("all-sa-view", "ClusterRole", "view", [_group(f"system:serviceaccounts:{ns}")])
        await admin.create("rolebindings", group_binding, ns)
        account = f"system:serviceaccount:{ns}:builder"
        groups = ("system:serviceaccounts", f"system:serviceaccounts:{ns}")
        deadline = time.monotonic() + WAIT_SECONDS
        attributes = {"verb": "create", "resource": "deployments", "group": "apps", "namespace": ns}
        while not (await _subject_review(admin, account, groups, attributes))["status"]["allowed"]:
            assert time.monotonic() < deadline, "the service account binding never counted"
            await asyncio.sleep(0.1)
        other = f"system:serviceaccount:{ns}:default"
        assert not (await _subject_review(admin, other, groups, attributes))["status"]["allowed"]
        read = {"verb": "list", "resource": "pods", "namespace": ns}
        assert (await _subject_review(admin, other, groups, read))["status"]["allowed"]  # through its group
        assert not (await _subject_review(admin, account, groups, {**attributes, "namespace": "default"}))["status"][
            "allowed"
        ]

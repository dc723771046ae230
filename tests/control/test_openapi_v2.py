"""/openapi/v2: JSON and protobuf encodings, and the real kubectl validating a `kind: List` against it."""

from __future__ import annotations

from collections.abc import Callable
from subprocess import CompletedProcess

import aiohttp

from control.apiserver.openapi_v2 import PROTOBUF, PROTOBUF_DEPRECATED, encode_document
from tests.conftest import ApiServer
from tests.control.test_openapi import schema_refs

LIST = """
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {{name: {a}}}
  data: {{a: "1"}}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {{name: {b}}}
  spec:
    {extra}selector: {{matchLabels: {{app: {b}}}}}
    template:
      metadata: {{labels: {{app: {b}}}}}
      spec: {{containers: [{{name: c, image: busybox}}]}}
"""


async def _get(url: str, accept: str) -> tuple[str, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url, headers={"Accept": accept}) as resp:
        assert resp.status == 200
        return resp.headers["Content-Type"], await resp.read()


async def test_json_document_marks_kinds_and_resolves_references(apiserver: ApiServer) -> None:
    doc = await apiserver.client.request("GET", "/openapi/v2")
    assert doc["swagger"] == "2.0"
    definitions = doc["definitions"]
    assert definitions["V1Pod"]["x-kubernetes-group-version-kind"] == [{"group": "", "kind": "Pod", "version": "v1"}]
    assert definitions["V1Deployment"]["properties"]["spec"] == {"$ref": "#/definitions/V1DeploymentSpec"}
    assert {ref.removeprefix("#/definitions/") for ref in schema_refs(doc)} <= set(definitions)
    assert "#/components" not in str(doc)


async def test_protobuf_is_served_when_asked_and_is_the_same_document(apiserver: ApiServer) -> None:
    content_type, body = await _get(apiserver.url + "/openapi/v2", PROTOBUF_DEPRECATED)
    assert content_type == PROTOBUF  # the legal spelling of what kubectl asked for
    doc = await apiserver.client.request("GET", "/openapi/v2")
    assert body == encode_document(doc)
    # Document.swagger is field 1, a string: tag 0x0a, length 3, "2.0".
    assert body.startswith(b"\x0a\x032.0")


def test_kubectl_validates_a_list_with_the_v2_document(kubectl: Callable[..., CompletedProcess[str]]) -> None:
    good = LIST.format(a="v2-list-a", b="v2-list-b", extra="")
    applied = kubectl("apply", "-f", "-", input=good)
    assert "configmap/v2-list-a created" in applied.stdout and "deployment.apps/v2-list-b created" in applied.stdout
    # Validation really uses the schemas: an unknown field inside a List item is refused by name, nothing is written.
    bad = LIST.format(a="v2-list-c", b="v2-list-d", extra="replicaz: 2\n    ")
    refused = kubectl("apply", "-f", "-", input=bad, check=False)
    assert refused.returncode != 0 and 'unknown field "replicaz"' in refused.stderr, refused.stderr
    assert kubectl("get", "configmap", "v2-list-c", check=False).returncode != 0
    kubectl("delete", "-f", "-", input=good)

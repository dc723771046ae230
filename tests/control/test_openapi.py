"""The served OpenAPI v3 documents: current schemas, resolvable references, and a bounded schemathesis run
that must find no 5xx and leave nothing the API cannot serve back."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp

from control.api.resources import RESOURCES
from tests.conftest import ApiServer
from tests.control.openapi_schemas_gen import TARGET, render

FUZZ_EXAMPLES = 4
FUZZ_SECONDS = 80
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def test_schema_module_is_generated_from_the_current_resource_table() -> None:
    assert TARGET.read_text() == render(), "run: python -m tests.control.openapi_schemas_gen"


def schema_refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if "$ref" in node else set()
        return found.union(*(schema_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(schema_refs(v) for v in node))
    return set()


async def test_every_document_has_kind_schemas_and_resolvable_references(apiserver: ApiServer) -> None:
    client = apiserver.client
    index = await client.request("GET", "/openapi/v3")
    for path, entry in index["paths"].items():
        doc = await client.request("GET", entry["serverRelativeURL"])
        defined = set(doc["components"]["schemas"])
        assert {r.split("/")[-1] for r in schema_refs(doc)} <= defined, path
        for operations in doc["paths"].values():
            for method in ("post", "put"):
                if method in operations:
                    ref = operations[method]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                    gvk = operations[method]["x-kubernetes-group-version-kind"]
                    schema = doc["components"]["schemas"][ref.split("/")[-1]]
                    assert {"apiVersion", "kind", "metadata"} <= set(schema["properties"]), (path, gvk)
    pod = (await client.request("GET", index["paths"]["api/v1"]["serverRelativeURL"]))["components"]["schemas"]["V1Pod"]
    assert pod["properties"]["spec"] == {"$ref": "#/components/schemas/V1PodSpec"}


async def _servable(client: Any) -> list[str]:
    """Every stored object of every resource must come back from GET, LIST and a Table LIST."""
    problems = []
    async with aiohttp.ClientSession() as session:
        for res in RESOURCES:
            base = client.server + res.path()  # all namespaces
            async with session.get(base, headers={"Accept": TABLE}) as resp:
                if resp.status != 200:
                    problems.append(f"table list {res.plural}: {resp.status} {await resp.text()}")
            async with session.get(base) as resp:
                if resp.status != 200:
                    problems.append(f"list {res.plural}: {resp.status} {await resp.text()}")
                    continue
                items = (await resp.json())["items"]
            for item in items:
                meta = item["metadata"]
                async with session.get(client.server + res.path(meta.get("namespace"), meta["name"])) as got:
                    if got.status != 200:
                        problems.append(f"get {res.plural} {meta.get('namespace')}/{meta['name']}: {got.status}")
    return problems


async def test_fuzzing_finds_no_server_error_and_no_unservable_object(apiserver: ApiServer, tmp_path: Path) -> None:
    assert shutil.which("schemathesis"), "the fuzz test needs schemathesis: pip install schemathesis"
    client = apiserver.client
    await client.create("namespaces", {"metadata": {"name": "fuzz"}})
    config = tmp_path / "schemathesis.toml"
    # every namespaced path goes to one real namespace, so writes can be accepted and then checked
    config.write_text('[parameters]\n"path.namespace" = "fuzz"\n')
    index = await client.request("GET", "/openapi/v3")
    report = tmp_path / "report.json"
    failures = []
    for path in ("api/v1", "apis/apps/v1", "apis/discovery.k8s.io/v1", "apis/policy/v1"):
        url = client.server + index["paths"][path]["serverRelativeURL"]
        command = [
            "schemathesis", "--config-file", str(config), "run", url,
            "--url", client.server, "--checks", "not_a_server_error",
            "--max-examples", str(FUZZ_EXAMPLES), "--seed", "1", "--no-shrink",
            "--phases", "examples,fuzzing", "--max-time", str(FUZZ_SECONDS // 4),
            "--exclude-method", "DELETE", "--report", "ndjson", "--report-ndjson-path", str(report),
        ]  # fmt: skip
        proc = await _run(command, FUZZ_SECONDS)
        if proc.returncode != 0:
            failures.append(f"{path}:\n{proc.stdout[-4000:]}")
    assert not failures, "\n".join(failures)
    assert not await _servable(client)


async def _run(command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=timeout)

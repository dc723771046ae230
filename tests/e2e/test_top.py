"""`kubectl top` on the local cluster: the API server's metrics.k8s.io from the kubelets' stats.

A pod burning CPU (a shell loop bounded by `timeout`) must show clearly
more CPU than an idle one; every node is listed by `kubectl top nodes`;
`--containers`, `-l`, `-n` and `-A` select as in Kubernetes; the raw path
the HPA reads answers a PodMetricsList.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from control.api.quantity import milli_value
from tests.e2e.helpers import get_json, wait_for

pytestmark = pytest.mark.e2e

NAMESPACE = "e2e-top"
BURN = "timeout 120 sh -c 'while :; do :; done'"  # bounded: the container ends after 120 s


def _pod(name: str, app: str, *containers: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": app}},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": list(containers)},
    }


@pytest.fixture(scope="module")
def workload(cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A burning pod (with an idle sidecar) and an idle pod in this file's own namespace, deleted after."""
    manifest = tmp_path_factory.mktemp("top") / "pods.yaml"
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        _pod(
            "burner",
            "burner",
            {"name": "burn", "image": "busybox", "command": ["sh", "-c", BURN]},
            {"name": "sidecar", "image": "busybox", "command": ["sleep", "150"]},
        ),
        _pod("idler", "idler", {"name": "app", "image": "busybox", "command": ["sleep", "150"]}),
    ]
    manifest.write_text(yaml.safe_dump_all(objects))
    cluster.kubectl("apply", "-f", str(manifest))
    try:
        wait_for("both pods Running", lambda: _phases(cluster) == {"burner": "Running", "idler": "Running"})
        yield
    finally:
        cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def _phases(cluster: Any) -> dict[str, str]:
    pods = get_json(cluster, "pods", "-n", NAMESPACE)["items"]
    return {p["metadata"]["name"]: p.get("status", {}).get("phase", "") for p in pods}


def _rows(output: str) -> list[list[str]]:
    return [line.split() for line in output.strip().splitlines() if line.strip()]


def _top_pods(cluster: Any, *args: str) -> list[list[str]]:
    return _rows(cluster.kubectl("top", "pods", "--no-headers", *args))


def test_burning_pod_uses_clearly_more_cpu_than_an_idle_one(cluster: Any, workload: None) -> None:
    def both() -> dict[str, list[str]] | None:
        rows = {row[0]: row for row in _top_pods(cluster, "-n", NAMESPACE)}
        return rows if set(rows) == {"burner", "idler"} else None

    rows = wait_for("metrics for both pods (two scrapes)", both, timeout=90, interval=3)
    burner, idler = milli_value(rows["burner"][1]), milli_value(rows["idler"][1])
    assert burner >= 50, rows  # a busy loop gets a twentieth of a core even with the machine busy
    assert burner >= 10 * max(idler, 1), rows
    assert rows["burner"][2].endswith("Mi") and rows["idler"][2].endswith("Mi"), rows


def test_top_pods_by_container_label_and_namespace(cluster: Any, workload: None) -> None:
    def containers() -> dict[tuple[str, str], list[str]] | None:
        rows = {(r[0], r[1]): r for r in _top_pods(cluster, "-n", NAMESPACE, "--containers")}
        return rows if len(rows) == 3 else None

    rows = wait_for("per-container metrics", containers, timeout=90, interval=3)
    assert set(rows) == {("burner", "burn"), ("burner", "sidecar"), ("idler", "app")}
    assert milli_value(rows[("burner", "burn")][2]) >= 10 * max(milli_value(rows[("burner", "sidecar")][2]), 1)

    assert [r[0] for r in _top_pods(cluster, "-n", NAMESPACE, "-l", "app=burner")] == ["burner"]
    everywhere = _top_pods(cluster, "-A")  # other tests' pods may be there too
    assert {(r[0], r[1]) for r in everywhere} >= {(NAMESPACE, "burner"), (NAMESPACE, "idler")}


def test_top_nodes_lists_every_node(cluster: Any, workload: None) -> None:
    names = {n["metadata"]["name"] for n in get_json(cluster, "nodes")["items"]}
    assert len(names) == 3

    def all_nodes() -> dict[str, list[str]] | None:
        rows = {r[0]: r for r in _rows(cluster.kubectl("top", "nodes", "--no-headers"))}
        return rows if set(rows) == names and all(r[1] != "<unknown>" for r in rows.values()) else None

    rows = wait_for("metrics for every node", all_nodes, timeout=60, interval=3)
    for row in rows.values():
        assert milli_value(row[1]) > 0 and row[2].endswith("%") and row[3].endswith("Mi"), rows


def test_the_path_the_hpa_reads(cluster: Any, workload: None) -> None:
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods?labelSelector=app%3Dburner"
    listed = json.loads(cluster.kubectl("get", "--raw", path))
    assert listed["kind"] == "PodMetricsList" and listed["apiVersion"] == "metrics.k8s.io/v1beta1"
    (item,) = listed["items"]
    assert item["metadata"]["name"] == "burner" and item["metadata"]["labels"] == {"app": "burner"}
    assert item["window"].endswith("s") and item["timestamp"].endswith("Z")
    assert {c["name"] for c in item["containers"]} == {"burn", "sidecar"}
    assert all(set(c["usage"]) == {"cpu", "memory"} for c in item["containers"])


def test_writes_are_refused(cluster: Any, workload: None, tmp_path: Path) -> None:
    body = tmp_path / "metrics.json"
    body.write_text(json.dumps({"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics"}))
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/pods"
    with pytest.raises(AssertionError, match="MethodNotAllowed|not allowed"):
        cluster.kubectl("create", "--raw", path, "-f", str(body))

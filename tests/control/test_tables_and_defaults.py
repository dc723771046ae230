"""Printer cells and defaulting, as pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from control.apiserver.allocator import ServiceIPRange
from control.apiserver.tables import human_duration, pod_status_reason, to_table
from control.apiserver.validation import apply_defaults, unknown_fields, validate


@pytest.mark.parametrize(
    "seconds, text",
    [
        (5, "5s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 300, "3h5m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (40 * 86400, "40d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_pod_status_reasons() -> None:
    waiting = {
        "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ImagePullBackOff"}}}]}
    }
    assert pod_status_reason(waiting) == "ImagePullBackOff"
    crashed = {"status": {"phase": "Running", "containerStatuses": [{"state": {"terminated": {"exitCode": 2}}}]}}
    assert pod_status_reason(crashed) == "ExitCode:2"
    init = {
        "spec": {"initContainers": [{"name": "i"}]},
        "status": {"phase": "Pending", "initContainerStatuses": [{"state": {"running": {}}}]},
    }
    assert pod_status_reason(init) == "Init:0/1"
    deleting = {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}}
    assert pod_status_reason(deleting) == "Terminating"


def test_service_and_endpoints_cells() -> None:
    lb = {
        "metadata": {"name": "lb"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.3.4",
            "selector": {"app": "x"},
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}],
        },
        "status": {"loadBalancer": {}},
    }
    cells = to_table("Service", [lb], {})["rows"][0]["cells"]
    assert cells[:5] == ["lb", "LoadBalancer", "10.96.3.4", "<pending>", "80:30080/TCP"] and cells[6] == "app=x"
    ep = {
        "metadata": {"name": "e"},
        "subsets": [{"addresses": [{"ip": f"10.244.0.{i}"} for i in range(5)], "ports": [{"port": 80}]}],
    }
    assert (
        to_table("Endpoints", [ep], {})["rows"][0]["cells"][1]
        == "10.244.0.0:80,10.244.0.1:80,10.244.0.2:80 + 2 more..."
    )


def test_hpa_and_endpoint_slice_cells() -> None:
    hpa = {
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "maxReplicas": 5,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
                },
                {
                    "type": "Resource",
                    "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "64Mi"}},
                },
            ],
        },
        "status": {
            "currentReplicas": 2,
            "currentMetrics": [
                {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 75}}}
            ],
        },
    }
    assert to_table("HorizontalPodAutoscaler", [hpa], {})["rows"][0]["cells"][:6] == [
        "web",
        "Deployment/web",
        "cpu: 75%/50%, memory: <unknown>/64Mi",
        "<unset>",
        5,
        2,
    ]
    endpoint_slice = {
        "metadata": {"name": "web-abcde"},
        "addressType": "IPv4",
        "ports": [{"port": 8080}, {"port": 9090}],
        "endpoints": [{"addresses": [f"10.244.0.{i}"]} for i in range(5)],
    }
    assert to_table("EndpointSlice", [endpoint_slice], {})["rows"][0]["cells"][:4] == [
        "web-abcde",
        "IPv4",
        "8080,9090",
        "10.244.0.0,10.244.0.1,10.244.0.2 + 2 more...",
    ]


def test_service_defaults_and_image_pull_policy() -> None:
    svc: dict[str, Any] = {
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 80}]},
    }
    apply_defaults("Service", svc)
    assert svc["spec"]["ports"] == [
        {"port": 53, "protocol": "UDP", "targetPort": 53},
        {"port": 80, "protocol": "TCP", "targetPort": 80},
    ]
    assert svc["spec"]["sessionAffinity"] == "None" and svc["spec"]["ipFamilyPolicy"] == "SingleStack"
    pod = {
        "spec": {
            "containers": [
                {"name": "a", "image": "reg:5000/app"},
                {"name": "b", "image": "reg:5000/app:v2"},
                {"name": "c", "image": "app@sha256:abc"},
            ]
        }
    }
    apply_defaults("Pod", pod)
    assert [c["imagePullPolicy"] for c in pod["spec"]["containers"]] == ["Always", "IfNotPresent", "IfNotPresent"]


def test_validation_causes_and_unknown_fields() -> None:
    causes = validate(
        "Pod",
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "a"}, {"name": "a", "image": "i", "ports": [{"containerPort": 0}]}]},
        },
    )
    assert [c[0] for c in causes] == [
        "spec.containers[0].image",
        "spec.containers[1].name",
        "spec.containers[1].ports[0].containerPort",
    ]
    assert unknown_fields(
        "Deployment", {"metadata": {"nmae": "x"}, "spec": {"template": {"spec": {"containers": [{"imagee": "x"}]}}}}
    ) == ["metadata.nmae", "spec.template.spec.containers[0].imagee"]


def test_service_ip_range_static_band_and_bad_input() -> None:
    ip_range = ServiceIPRange("10.96.0.0/12")
    assert ip_range.static_band == 256 and ip_range.first() == "10.96.0.1"
    assert ip_range.contains("10.111.255.254") and not ip_range.contains("10.112.0.1")
    with pytest.raises(ValueError, match="invalid --service-cluster-ip-range"):
        ServiceIPRange("10.96.0.1/12")

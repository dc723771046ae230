"""The kubelet's Prometheus metrics, named as upstream's where an upstream one exists."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

POD_START_DURATION = Histogram(
    "kubelet_pod_start_duration_seconds",
    "Seconds from the kubelet first seeing a pod to all its containers running",
    buckets=(0.5, 1, 2, 3, 4, 5, 6, 8, 10, 20, 30, 45, 60, 120, 300),
)
RUNNING_PODS = Gauge("kubelet_running_pods", "Pods with a running sandbox")
RUNNING_CONTAINERS = Gauge("kubelet_running_containers", "App containers running", ["container_state"])
RUNTIME_OPERATION_ERRORS = Counter(
    "kubelet_runtime_operations_errors_total", "Container runtime operations that failed", ["operation_type"]
)
POD_WORKER_ERRORS = Counter("kubelet_pod_worker_errors_total", "Pod syncs that failed with an unexpected error")

"""Pod workers against FakeRuntime + FakeClock: creation, status, restart policy and backoff, deletion, adoption."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kubelet.pods import LABEL_SANDBOX_ATTEMPT, default_pull_policy, go_duration, resource_settings
from kubelet.runtime import LABEL_POD_UID, LABEL_TYPE, TYPE_SANDBOX
from tests.kubelet.harness import Harness, c, make_pod


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


async def test_new_pod_runs_with_sandbox_network_and_status(h: Harness, tmp_path: Path) -> None:
    pod = make_pod(
        c(
            command=["/bin/sh", "-c"],
            args=["echo hi"],
            workingDir="/tmp",
            env=[{"name": "A", "value": "b"}],
            resources={"limits": {"memory": "64Mi", "cpu": "500m"}, "requests": {"cpu": "250m"}},
        ),
        hostname="my-host",
    )
    await h.sync(pod)
    sandbox = next(s for s in h.runtime.containers.values() if s.labels[LABEL_TYPE] == TYPE_SANDBOX)
    app = h.runtime.find("app")
    sandbox_config, app_config = h.runtime.configs[sandbox.id], h.runtime.configs[app.id]
    assert sandbox_config.network_mode == "none" and sandbox_config.hostname == "my-host"
    assert sandbox_config.image == "pocketkube/pause:latest"
    assert h.network.sandbox_pids["uid-1"] == sandbox.pid
    assert app_config.network_mode == f"container:{sandbox.id}"
    assert (app_config.entrypoint, app_config.cmd, app_config.working_dir) == (["/bin/sh", "-c"], ["echo hi"], "/tmp")
    assert app_config.env["A"] == "b" and app_config.env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert (app_config.memory_limit, app_config.cpu_quota, app_config.cpu_period, app_config.cpu_shares) == (
        64 * 2**20,
        50_000,
        100_000,
        256,
    )
    mounts = {m.container_path: Path(m.host_path) for m in app_config.mounts}
    assert mounts["/etc/resolv.conf"].read_text().startswith("nameserver 10.96.0.10\nsearch default.svc.cluster.local")
    assert mounts["/etc/hosts"].read_text().endswith("10.244.1.2\tmy-host\n")
    assert mounts["/etc/hosts"].parent == tmp_path / "pods" / "uid-1"
    status = h.api.last_status
    assert status["phase"] == "Running"
    assert (status["podIP"], status["podIPs"], status["hostIP"]) == (
        "10.244.1.2",
        [{"ip": "10.244.1.2"}],
        "192.168.56.11",
    )
    assert status["startTime"]
    assert {x["type"]: x["status"] for x in status["conditions"]} == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    app_status = h.app_status()
    assert app_status["containerID"] == f"docker://{app.id}"
    assert app_status["ready"] and app_status["started"] and app_status["restartCount"] == 0
    assert "running" in app_status["state"] and app_status["lastState"] == {}
    assert status["qosClass"] == "Burstable"


async def test_status_written_only_on_change(h: Harness) -> None:
    pod = make_pod(c())
    await h.sync(pod)
    await h.sync(pod)
    assert len(h.api.statuses) == 1


async def test_restart_always_with_crashloop_backoff(h: Harness) -> None:
    pod = make_pod(c())
    await h.sync(pod)
    h.runtime.exit(h.runtime.find("app", 0).id, 1)
    await h.sync(pod)  # first crash: restarted at once
    assert h.app_status()["restartCount"] == 1 and "running" in h.app_status()["state"]
    assert h.app_status()["lastState"]["terminated"]["exitCode"] == 1
    assert h.app_status()["lastState"]["terminated"]["reason"] == "Error"
    for delay in (10, 20, 40, 40):  # doubling, capped at backoff_max=40
        restarts = h.app_status()["restartCount"]
        h.runtime.exit(h.runtime.find("app", restarts).id, 2)
        await h.sync(pod)
        waiting = h.app_status()["state"]["waiting"]
        assert waiting["reason"] == "CrashLoopBackOff"
        assert waiting["message"].startswith(
            f"back-off {go_duration(delay)} restarting failed container=app pod=web_default"
        )
        assert h.api.last_status["phase"] == "Running"
        assert h.api.last_status["conditions"][3]["status"] == "False"
        await h.clock.advance(delay - 1)
        await h.sync(pod)
        assert h.app_status()["restartCount"] == restarts
        await h.clock.advance(1)
        await h.sync(pod)
        assert h.app_status()["restartCount"] == restarts + 1
        assert "running" in h.app_status()["state"]


async def test_only_the_previous_instance_is_kept(h: Harness) -> None:
    pod = make_pod(c())
    await h.sync(pod)
    for attempt in range(3):
        h.runtime.exit(h.runtime.find("app", attempt).id, 1)
        await h.clock.advance(100)
        await h.sync(pod)
    counts = sorted(s.restart_count for s in h.runtime.containers.values() if s.labels[LABEL_TYPE] != TYPE_SANDBOX)
    assert counts == [2, 3]


async def test_on_failure_success_completes(h: Harness) -> None:
    pod = make_pod(c(), restart="OnFailure")
    await h.sync(pod)
    h.runtime.exit(h.runtime.find("app").id, 0)
    await h.sync(pod)
    assert h.api.last_status["phase"] == "Succeeded"
    assert h.app_status()["state"]["terminated"]["reason"] == "Completed"
    ready = h.api.last_status["conditions"][3]
    assert (ready["status"], ready["reason"]) == ("False", "PodCompleted")
    await h.clock.advance(1000)
    await h.sync(pod)
    assert h.app_status()["restartCount"] == 0
    # a finished pod gives its address back
    assert "uid-1" in h.network.torn_down


async def test_on_failure_failure_restarts(h: Harness) -> None:
    pod = make_pod(c(), restart="OnFailure")
    await h.sync(pod)
    h.runtime.exit(h.runtime.find("app").id, 3)
    await h.sync(pod)
    assert h.app_status()["restartCount"] == 1 and h.api.last_status["phase"] == "Running"


async def test_never_failure_fails_and_oom_is_reported(h: Harness) -> None:
    pod = make_pod(c(), restart="Never")
    await h.sync(pod)
    h.runtime.exit(h.runtime.find("app").id, 137, oom_killed=True)
    await h.sync(pod)
    assert h.api.last_status["phase"] == "Failed"
    assert h.app_status()["state"]["terminated"] | {"startedAt": None, "finishedAt": None} == {
        "exitCode": 137,
        "reason": "OOMKilled",
        "startedAt": None,
        "finishedAt": None,
        "containerID": f"docker://{h.runtime.find('app').id}",
    }


async def test_never_with_one_container_still_running_is_running(h: Harness) -> None:
    pod = make_pod(c("a"), c("b"), restart="Never")
    await h.sync(pod)
    h.runtime.exit(h.runtime.find("a").id, 0)
    await h.sync(pod)
    assert h.api.last_status["phase"] == "Running"
    h.runtime.exit(h.runtime.find("b").id, 0)
    await h.sync(pod)
    assert h.api.last_status["phase"] == "Succeeded"


async def test_missing_image_is_pending_with_pull_backoff(h: Harness) -> None:
    pod = make_pod(c(image="nginx:1.25", imagePullPolicy="IfNotPresent"))
    await h.sync(pod)
    assert h.api.last_status["phase"] == "Pending"
    assert h.app_status()["state"]["waiting"]["reason"] == "ErrImagePull"
    await h.sync(pod)
    assert h.app_status()["state"]["waiting"]["reason"] == "ImagePullBackOff"
    assert h.runtime.pulls == ["nginx:1.25"]
    await h.clock.advance(10)
    await h.sync(pod)
    assert h.runtime.pulls == ["nginx:1.25", "nginx:1.25"]


async def test_pull_policy_never_does_not_pull(h: Harness) -> None:
    pod = make_pod(c(image="nginx:1.25", imagePullPolicy="Never"))
    await h.sync(pod)
    waiting = h.app_status()["state"]["waiting"]
    assert h.runtime.pulls == [] and waiting["reason"] == "ErrImageNeverPull" and "Never" in waiting["message"]


async def test_pull_policy_never_uses_the_present_image(h: Harness) -> None:
    await h.sync(make_pod(c(imagePullPolicy="Never")))
    assert h.runtime.pulls == [] and "running" in h.app_status()["state"]


async def test_always_pulls_even_a_present_image(h: Harness) -> None:
    await h.sync(make_pod(c(imagePullPolicy="Always")))
    assert h.runtime.pulls == ["busybox:latest"] and "running" in h.app_status()["state"]


async def test_if_not_present_skips_the_pull_of_a_present_image(h: Harness) -> None:
    await h.sync(make_pod(c(imagePullPolicy="IfNotPresent")))
    assert h.runtime.pulls == [] and "running" in h.app_status()["state"]


async def test_always_with_a_failing_pull_does_not_fall_back_to_the_local_image(h: Harness) -> None:
    h.runtime.unpullable.add("busybox:latest")
    pod = make_pod(c(imagePullPolicy="Always"))
    await h.sync(pod)
    waiting = h.app_status()["state"]["waiting"]
    assert waiting["reason"] == "ErrImagePull" and 'failed to pull image "busybox:latest"' in waiting["message"]
    await h.sync(pod)
    waiting = h.app_status()["state"]["waiting"]
    assert waiting["reason"] == "ImagePullBackOff"
    assert waiting["message"].startswith('Back-off pulling image "busybox:latest": ErrImagePull: failed to pull')
    assert not [s for s in h.runtime.containers.values() if s.labels.get("io.kubernetes.docker.type") == "container"]
    h.runtime.unpullable.clear()
    await h.clock.advance(10)
    await h.sync(pod)
    assert "running" in h.app_status()["state"] and h.runtime.pulls == ["busybox:latest"] * 2


async def test_unknown_pull_policy_is_a_config_error(h: Harness) -> None:
    await h.sync(make_pod(c(imagePullPolicy="Sometimes")))
    waiting = h.app_status()["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError" and "Sometimes" in waiting["message"]


async def test_bad_env_is_a_config_error(h: Harness) -> None:
    pod = make_pod(c(env=[{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]))
    await h.sync(pod)
    waiting = h.app_status()["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError" and "spec.nope" in waiting["message"]


async def test_deletion_stops_with_grace_tears_down_and_deletes(h: Harness, tmp_path: Path) -> None:
    pod = make_pod(c("a"), c("b"))
    await h.sync(pod)
    ids = {h.runtime.find("a").id, h.runtime.find("b").id}
    sandbox_id = next(i for i, s in h.runtime.containers.items() if s.labels[LABEL_TYPE] == TYPE_SANDBOX)
    pod["metadata"] |= {"deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 7}
    assert await h.workers.sync_pod(pod) is True
    assert {(i, t) for i, t in h.runtime.stops} == {(i, 7) for i in ids} | {(sandbox_id, 0)}
    assert h.runtime.containers == {}
    assert h.network.torn_down == ["uid-1"] and h.network.ips == {}
    assert not (tmp_path / "pods" / "uid-1").exists()
    assert h.api.deleted == [("default", "web", 0)]


async def test_restarted_kubelet_adopts_running_pod(h: Harness, tmp_path: Path) -> None:
    pod = make_pod(c())
    await h.sync(pod)
    before = dict(h.runtime.containers)
    again = Harness(tmp_path, h.runtime, h.network)
    await again.sync(pod)
    assert h.runtime.containers.keys() == before.keys()
    assert again.api.last_status["phase"] == "Running" and again.api.last_status["podIP"] == "10.244.1.2"


async def test_dead_sandbox_is_recreated_and_containers_restarted(h: Harness) -> None:
    pod = make_pod(c())
    await h.sync(pod)
    sandbox_id = next(i for i, s in h.runtime.containers.items() if s.labels[LABEL_TYPE] == TYPE_SANDBOX)
    h.runtime.exit(sandbox_id, 137)
    await h.sync(pod)
    sandboxes = [s for s in h.runtime.containers.values() if s.labels[LABEL_TYPE] == TYPE_SANDBOX]
    assert len(sandboxes) == 2 and sandboxes[-1].running
    assert h.app_status()["restartCount"] == 1 and "running" in h.app_status()["state"]
    assert h.runtime.configs[h.runtime.find("app", 1).id].network_mode == f"container:{sandboxes[-1].id}"


async def test_repeated_sandbox_deaths_keep_only_the_newest_dead_sandbox(h: Harness) -> None:
    """As Kubernetes' container GC: the previous sandbox stays (the previous container's), older ones go."""
    pod = make_pod(c())
    await h.sync(pod)
    for _ in range(3):  # three node reboots, each after the crash backoff has passed
        await h.clock.advance(1000)
        for state in list(h.runtime.containers.values()):
            if state.running:
                h.runtime.exit(state.id, 255)
        await h.sync(pod)
    sandboxes = sorted(
        (s for s in h.runtime.containers.values() if s.labels[LABEL_TYPE] == TYPE_SANDBOX),
        key=lambda s: int(s.labels[LABEL_SANDBOX_ATTEMPT]),
    )
    assert [(s.labels[LABEL_SANDBOX_ATTEMPT], s.running) for s in sandboxes] == [("2", False), ("3", True)]
    apps = sorted((s.restart_count, s.running) for s in h.runtime.containers.values() if s not in sandboxes)
    assert apps == [(2, False), (3, True)]
    assert h.app_status()["restartCount"] == 3 and "running" in h.app_status()["state"]
    assert h.runtime.configs[h.runtime.find("app", 3).id].network_mode == f"container:{sandboxes[-1].id}"


async def test_orphans_are_removed(h: Harness) -> None:
    orphan = make_pod(c(), uid="uid-orphan")
    await h.sync(orphan)
    known = make_pod(c(), uid="uid-known")
    known["metadata"]["name"] = "known"
    h.workers.update(known)
    await h.workers.close()
    await h.sync(known)
    await h.workers.cleanup_orphans()
    assert {s.labels[LABEL_POD_UID] for s in h.runtime.containers.values()} == {"uid-known"}
    assert h.network.allocated_pods() == {"uid-known"}


def test_resource_settings_and_pull_policy() -> None:
    assert resource_settings({}) == {"cpu_shares": 2}
    assert resource_settings({"resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}) == {
        "memory_limit": 2**30,
        "cpu_quota": 200_000,
        "cpu_period": 100_000,
        "cpu_shares": 2048,
    }
    with pytest.raises(ValueError, match="lots"):
        resource_settings({"resources": {"limits": {"memory": "lots"}}})
    assert [
        default_pull_policy(i) for i in ("busybox", "busybox:latest", "busybox:1.36", "r:5000/x", "x@sha256:ab")
    ] == ["Always", "Always", "IfNotPresent", "Always", "IfNotPresent"]
    assert [go_duration(s) for s in (10, 80, 300)] == ["10s", "1m20s", "5m0s"]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_worker_loop_runs_resyncs_and_cleans_up_vanished_pods(h: Harness) -> None:
    pod = make_pod(c())
    h.workers.update(pod)
    await settle()
    first = h.runtime.find("app", 0)
    assert first.running
    h.runtime.exit(first.id, 1)
    await h.clock.advance(1)  # the resync period notices the exit
    await settle()
    assert h.runtime.find("app", 1).running
    h.workers.remove(pod)
    await settle()
    assert h.runtime.containers == {} and h.network.ips == {}
    assert h.api.deleted == []  # it already left the API; nothing to finish there
    assert h.workers.known_pods() == {}
    await h.workers.close()


def conditions_of(status: dict) -> dict[str, dict]:
    return {x["type"]: x for x in status["conditions"]}


async def test_init_containers_run_in_order_before_apps(h: Harness) -> None:
    pod = make_pod(c("app"), initContainers=[c("first"), c("second")])
    await h.sync(pod)
    status = h.api.last_status
    assert status["phase"] == "Pending"
    assert h.runtime.find("first").running
    with pytest.raises(KeyError):
        h.runtime.find("second")
    with pytest.raises(KeyError):
        h.runtime.find("app")
    assert [s["state"] for s in status["initContainerStatuses"]][1] == {"waiting": {"reason": "PodInitializing"}}
    assert h.app_status()["state"] == {"waiting": {"reason": "PodInitializing"}}
    initialized = conditions_of(status)["Initialized"]
    assert (initialized["status"], initialized["reason"]) == ("False", "ContainersNotInitialized")
    assert initialized["message"] == "containers with incomplete status: [first second]"

    h.runtime.exit(h.runtime.find("first").id, 0)
    await h.sync(pod)
    assert h.runtime.find("second").running and h.api.last_status["phase"] == "Pending"
    h.runtime.exit(h.runtime.find("second").id, 0)
    await h.sync(pod)
    status = h.api.last_status
    assert status["phase"] == "Running" and h.runtime.find("app").running
    assert conditions_of(status)["Initialized"]["status"] == "True"
    assert [s["state"]["terminated"]["reason"] for s in status["initContainerStatuses"]] == ["Completed", "Completed"]
    await h.clock.advance(100)
    await h.sync(pod)
    assert h.runtime.find("first").restart_count == 0  # a completed init container is not run again


async def test_failed_init_container_retries_with_backoff(h: Harness) -> None:
    pod = make_pod(c("app"), initContainers=[c("setup")])
    await h.sync(pod)
    h.runtime.exit(h.runtime.find("setup").id, 1)
    await h.sync(pod)
    assert h.runtime.find("setup", 1).running and h.api.last_status["phase"] == "Pending"
    h.runtime.exit(h.runtime.find("setup", 1).id, 1)
    await h.sync(pod)
    waiting = h.api.last_status["initContainerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CrashLoopBackOff" and h.api.last_status["phase"] == "Pending"


async def test_failed_init_container_fails_a_never_pod(h: Harness) -> None:
    pod = make_pod(c("app"), restart="Never", initContainers=[c("setup")])
    await h.sync(pod)
    h.runtime.exit(h.runtime.find("setup").id, 2)
    await h.sync(pod)
    assert h.api.last_status["phase"] == "Failed"
    with pytest.raises(KeyError):
        h.runtime.find("app")


async def test_env_reads_config_maps_and_decoded_secrets_from_the_api(h: Harness) -> None:
    h.api.objects[("configmaps", "default", "settings")] = {"data": {"MODE": "fast"}}
    h.api.objects[("secrets", "default", "creds")] = {"data": {"password": "czNjcmV0"}}  # base64 of s3cret
    env = [{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}]
    pod = make_pod(c(envFrom=[{"configMapRef": {"name": "settings"}}], env=env))
    await h.sync(pod)
    config = h.runtime.configs[h.runtime.find("app").id]
    assert (config.env["MODE"], config.env["PASSWORD"]) == ("fast", "s3cret")


async def test_missing_config_map_is_a_config_error(h: Harness) -> None:
    pod = make_pod(c(envFrom=[{"configMapRef": {"name": "absent"}}]))
    await h.sync(pod)
    waiting = h.app_status()["state"]["waiting"]
    assert waiting == {"reason": "CreateContainerConfigError", "message": 'configmap "absent" not found'}
    assert h.api.last_status["phase"] == "Pending"


async def test_events_tell_the_pod_story(h: Harness) -> None:
    pod = make_pod(c())
    await h.sync(pod)
    await h.sync(pod)  # nothing changed: no new events
    assert h.api.event_reasons() == [("Created", "Created container app", 1), ("Started", "Started container app", 1)]
    h.runtime.exit(h.runtime.find("app", 0).id, 1)
    await h.sync(pod)
    h.runtime.exit(h.runtime.find("app", 1).id, 1)
    await h.sync(pod)
    await h.sync(pod)
    await h.clock.advance(10)
    await h.sync(pod)  # restarted after the back-off
    pod["metadata"] |= {"deletionTimestamp": "2026-01-01T00:00:00Z", "deletionGracePeriodSeconds": 1}
    await h.workers.sync_pod(pod)
    assert h.api.event_reasons() == [
        ("BackOff", "Back-off restarting failed container app in pod web_default(uid-1)", 1),
        ("Created", "Created container app", 3),
        ("Killing", "Stopping container app", 1),
        ("Started", "Started container app", 3),
    ]
    event = next(iter(h.api.events.values()))
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web",
        "namespace": "default",
        "uid": "uid-1",
        "resourceVersion": pod["metadata"]["resourceVersion"],
    }
    assert event["source"] == {"component": "kubelet", "host": "worker1"} and event["type"] == "Normal"


async def test_config_errors_are_warning_events(h: Harness) -> None:
    await h.sync(make_pod(c(envFrom=[{"configMapRef": {"name": "absent"}}])))
    event = next(e for e in h.api.events.values() if e["reason"] == "Failed")
    assert event["type"] == "Warning"
    assert event["message"] == 'Error: CreateContainerConfigError: configmap "absent" not found'


async def test_sandbox_with_failed_network_is_replaced(h: Harness) -> None:
    h.network.fail_setups = 1
    pod = make_pod(c())
    await h.sync(pod)
    waiting = h.app_status()["state"]["waiting"]
    assert waiting["reason"] == "ContainerCreating" and "No such device" in waiting["message"]
    assert "podIP" not in h.api.last_status
    await h.sync(pod)
    sandboxes = [s for s in h.runtime.containers.values() if s.labels[LABEL_TYPE] == TYPE_SANDBOX]
    assert [s.running for s in sandboxes] == [False, True]
    assert h.api.last_status["podIP"] == "10.244.1.2" and h.runtime.find("app").running
    assert h.runtime.configs[h.runtime.find("app").id].network_mode == f"container:{sandboxes[1].id}"


async def test_deleted_pod_leaves_no_worker_state(h: Harness) -> None:
    pod = make_pod(c())
    h.workers.update(pod)
    await settle()
    deleting = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    h.workers.update(deleting)
    h.workers.remove(deleting)  # the API's DELETED event can come right behind
    for _ in range(3):
        await settle()
    assert h.runtime.containers == {} and h.workers.known_pods() == {}
    assert h.workers._pods == {} and h.workers._workers == {}
    await h.workers.close()

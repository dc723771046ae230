"""Volumes: emptyDir, hostPath, configMap and secret on the host, and the bind mounts containers get."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kubelet.runtime import Mount
from kubelet.volumes import VolumeError, container_mounts, prepare_volumes
from tests.kubelet.harness import Harness, c, make_pod

DATA = {("configmaps", "settings"): {"a.conf": "A=1\n", "b.conf": "B=2\n"}, ("secrets", "creds"): {"token": "t0k"}}


async def fetch(plural: str, name: str) -> dict[str, str] | None:
    return DATA.get((plural, name))


def pod_with(*volumes: dict) -> dict:
    return {"metadata": {"name": "p", "namespace": "default", "uid": "u"}, "spec": {"volumes": list(volumes)}}


async def test_volume_kinds_on_the_host(tmp_path: Path) -> None:
    host_dir = tmp_path / "host" / "made"
    pod = pod_with(
        {"name": "scratch", "emptyDir": {}},
        {"name": "host", "hostPath": {"path": str(host_dir), "type": "DirectoryOrCreate"}},
        {"name": "conf", "configMap": {"name": "settings", "items": [{"key": "a.conf", "path": "sub/a.conf"}]}},
        {"name": "all", "configMap": {"name": "settings"}},
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {"name": "maybe", "configMap": {"name": "absent", "optional": True}},
    )
    paths = await prepare_volumes(pod, tmp_path / "pod", fetch)
    assert paths["scratch"] == tmp_path / "pod" / "volumes" / "scratch" and paths["scratch"].is_dir()
    assert paths["host"] == host_dir and host_dir.is_dir()
    assert (paths["conf"] / "sub" / "a.conf").read_text() == "A=1\n"
    assert not (paths["conf"] / "b.conf").exists()
    assert sorted(p.name for p in paths["all"].iterdir()) == ["a.conf", "b.conf"]
    token = paths["creds"] / "token"
    assert token.read_text() == "t0k" and token.stat().st_mode & 0o777 == 0o400
    assert list(paths["maybe"].iterdir()) == []


@pytest.mark.parametrize(
    "volume, message",
    [
        ({"name": "v", "configMap": {"name": "absent"}}, 'configmap "absent" not found'),
        ({"name": "v", "configMap": {"name": "settings", "items": [{"key": "zz", "path": "z"}]}}, 'key "zz"'),
        ({"name": "v", "configMap": {"name": "settings", "items": [{"key": "a.conf", "path": "../x"}]}}, "'..'"),
        ({"name": "v", "hostPath": {"path": "relative"}}, "must be absolute"),
        ({"name": "v", "hostPath": {"path": "/nonexistent-pkt", "type": "Directory"}}, "is not a directory"),
        ({"name": "v", "nfs": {"server": "x"}}, "['nfs'] is not supported"),
    ],
)
async def test_bad_volumes_are_named(tmp_path: Path, volume: dict, message: str) -> None:
    with pytest.raises(VolumeError, match=re.escape(message)):
        await prepare_volumes(pod_with(volume), tmp_path, fetch)


def test_container_mounts(tmp_path: Path) -> None:
    volumes = {"data": tmp_path / "data"}
    container = {
        "name": "c",
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "data", "mountPath": "/logs", "subPath": "logs", "readOnly": True},
        ],
    }
    assert container_mounts(container, volumes) == [
        Mount(str(tmp_path / "data"), "/data", False),
        Mount(str(tmp_path / "data" / "logs"), "/logs", True),
    ]
    assert (tmp_path / "data" / "logs").is_dir()
    with pytest.raises(VolumeError, match="'other' names no volume"):
        container_mounts({"name": "c", "volumeMounts": [{"name": "other", "mountPath": "/x"}]}, volumes)


async def test_pod_workers_mount_volumes_and_report_bad_ones(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.api.objects[("configmaps", "default", "settings")] = {"data": {"a.conf": "A=1\n"}}
    mounts = [{"name": "conf", "mountPath": "/etc/app"}, {"name": "scratch", "mountPath": "/scratch"}]
    pod = make_pod(
        c(volumeMounts=mounts),
        volumes=[{"name": "conf", "configMap": {"name": "settings"}}, {"name": "scratch", "emptyDir": {}}],
    )
    await h.sync(pod)
    config = h.runtime.configs[h.runtime.find("app").id]
    by_target = {m.container_path: Path(m.host_path) for m in config.mounts}
    assert (by_target["/etc/app"] / "a.conf").read_text() == "A=1\n"
    assert by_target["/scratch"] == tmp_path / "pods" / "uid-1" / "volumes" / "scratch"

    broken = make_pod(c(volumeMounts=[{"name": "gone", "mountPath": "/x"}]), uid="uid-2")
    broken["metadata"]["name"] = "broken"
    await h.sync(broken)
    waiting = h.api.last_status["containerStatuses"][0]["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError" and "'gone' names no volume" in waiting["message"]


async def test_pod_workers_project_a_service_account_token_bound_to_the_pod(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    h.api.objects[("configmaps", "default", "kube-root-ca.crt")] = {"data": {"ca.crt": "CA\n"}}
    sources = [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    ]
    pod = make_pod(
        c(volumeMounts=[{"name": "api", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
        serviceAccountName="builder",
        volumes=[{"name": "api", "projected": {"sources": sources}}],
    )
    await h.sync(pod)
    config = h.runtime.configs[h.runtime.find("app").id]
    (mount,) = [m for m in config.mounts if m.container_path.endswith("/serviceaccount")]
    assert (Path(mount.host_path) / "token").read_text() == "token-1"
    assert (Path(mount.host_path) / "ca.crt").read_text() == "CA\n"
    ((path, request),) = h.api.token_requests
    assert path == "/api/v1/namespaces/default/serviceaccounts/builder/token"
    assert request["spec"]["boundObjectRef"] == {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "uid-1"}
    assert request["spec"]["expirationSeconds"] == 3607

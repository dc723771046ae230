"""Pod volumes as host directories bind-mounted into containers: emptyDir, hostPath, configMap, secret, projected.

Each volume becomes a directory under the pod's directory (hostPath: the
node's own path); `volumeMounts` turn into bind mounts.  ConfigMap and Secret
contents are written once when the pod's sandbox is made, as a snapshot
(Kubernetes refreshes them; see docs/kubelet.md).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from kubelet.runtime import Mount

Object = dict[str, Any]
# (plural, name) -> the object's data (Secret values decoded), or None if it does not exist
FetchData = Callable[[str, str], Awaitable[dict[str, str] | None]]

SOURCES = {"configMap": ("configmaps", "name"), "secret": ("secrets", "secretName")}
HOST_PATH_TYPES = ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice")


class VolumeError(ValueError):
    """A volume or mount that cannot be set up; the message names it."""


class Projector(Protocol):
    """Writes `projected` volumes (kubelet.serviceaccount.ProjectedVolumes: tokens, CA, namespace)."""

    async def project(self, pod: Object, volume: Object, directory: Path, fetch: FetchData) -> Path: ...


def relative_path(path: str, what: str) -> PurePosixPath:
    relative = PurePosixPath(path)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise VolumeError(f"{what}: {path!r} must be a relative path without '..'")
    return relative


def _host_path(volume: Object) -> Path:
    source = volume["hostPath"]
    path, kind = Path(source.get("path", "")), source.get("type") or ""
    if kind not in HOST_PATH_TYPES:
        raise VolumeError(f"volume {volume['name']!r}: hostPath type {kind!r} is not one of {HOST_PATH_TYPES}")
    if not path.is_absolute():
        raise VolumeError(f"volume {volume['name']!r}: hostPath {str(path)!r} must be absolute")
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    elif kind == "Directory" and not path.is_dir():
        raise VolumeError(f"volume {volume['name']!r}: hostPath {str(path)!r} is not a directory")
    elif kind == "File" and not path.is_file():
        raise VolumeError(f"volume {volume['name']!r}: hostPath {str(path)!r} is not a file")
    return path


async def write_data_volume(volume: Object, kind: str, directory: Path, fetch: FetchData) -> Path:
    source = volume[kind]
    plural, name_field = SOURCES[kind]
    name = source.get(name_field, "")
    data = await fetch(plural, name)
    directory.mkdir(parents=True, exist_ok=True)
    if data is None:
        if source.get("optional"):
            return directory
        raise VolumeError(f'volume {volume["name"]!r}: {plural[:-1]} "{name}" not found')
    items = source.get("items") or [{"key": key, "path": key} for key in data]
    mode = source.get("defaultMode", 0o644)
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if source.get("optional"):
                continue
            raise VolumeError(f'volume {volume["name"]!r}: key "{key}" not found in {plural[:-1]} "{name}"')
        target = directory / relative_path(item.get("path") or key, f"volume {volume['name']!r} item")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[key])
        os.chmod(target, item.get("mode", mode))
    return directory


async def prepare_volumes(
    pod: Object, pod_dir: Path, fetch: FetchData, projector: Projector | None = None
) -> dict[str, Path]:
    """Make every volume of the pod exist on the host; return volume name -> host path."""
    paths: dict[str, Path] = {}
    for volume in pod.get("spec", {}).get("volumes") or []:
        name = volume.get("name", "")
        directory = pod_dir / "volumes" / name
        if "emptyDir" in volume:
            directory.mkdir(parents=True, exist_ok=True)
            paths[name] = directory
        elif "hostPath" in volume:
            paths[name] = _host_path(volume)
        elif kind := next((k for k in SOURCES if k in volume), None):
            paths[name] = await write_data_volume(volume, kind, directory, fetch)
        elif "projected" in volume and projector is not None:
            paths[name] = await projector.project(pod, volume, directory, fetch)
        else:
            kinds = sorted(set(volume) - {"name"})
            raise VolumeError(
                f"volume {name!r}: type {kinds} is not supported (emptyDir, hostPath, configMap, secret, projected are)"
            )
    return paths


def container_mounts(container: Object, volumes: dict[str, Path]) -> list[Mount]:
    """The bind mounts for a container's `volumeMounts`."""
    mounts = []
    for mount in container.get("volumeMounts") or []:
        name = mount.get("name", "")
        if name not in volumes:
            raise VolumeError(f"container {container.get('name')!r}: volumeMount {name!r} names no volume of the pod")
        host = volumes[name]
        if mount.get("subPath"):
            host = host / relative_path(mount["subPath"], f"volumeMount {name!r} subPath")
            if not host.exists():
                host.mkdir(parents=True)
        target = mount.get("mountPath", "")
        if not target.startswith("/"):
            raise VolumeError(f"container {container.get('name')!r}: mountPath {target!r} must be absolute")
        mounts.append(Mount(str(host), target, bool(mount.get("readOnly"))))
    return mounts

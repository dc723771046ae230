"""Container images built offline from Debian's busybox-static.

No registry outside this machine is reachable, so the images every cluster
needs are made here: `busybox:latest` (a root filesystem of /bin/busybox and
its applet links) and the pod sandbox image, which is the same filesystem
with a command that only waits.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import time
from pathlib import Path

BUSYBOX_BINARY = Path("/bin/busybox")
BUSYBOX_IMAGE = "busybox:latest"
SANDBOX_IMAGE = "pocketkube/pause:latest"
SANDBOX_COMMAND = ["/bin/sleep", "2147483647"]


def _applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True, text=True).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def busybox_rootfs_tar(busybox: Path = BUSYBOX_BINARY) -> bytes:
    """A root filesystem tarball: busybox, its applets, and the files programs expect."""
    if not busybox.exists():
        raise FileNotFoundError(
            f"{busybox} is missing: install Debian's busybox-static (apt-get install busybox-static)"
        )
    buf = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add_dir(path: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(path)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            info.mtime = now
            tar.addfile(info)

        def add_file(path: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = mode
            info.mtime = now
            tar.addfile(info, io.BytesIO(data))

        dirs = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "root", "var", "var/www", "home")
        for d in (*dirs, "proc", "sys", "dev"):
            add_dir(d)
        add_dir("tmp", 0o1777)
        add_file("bin/busybox", busybox.read_bytes(), 0o755)
        for applet in _applets(busybox):
            path = applet.lstrip("/")
            if path == "bin/busybox" or not path:
                continue
            link = tarfile.TarInfo(path)
            link.type = tarfile.SYMTYPE
            link.linkname = "/bin/busybox"
            link.mtime = now
            tar.addfile(link)
        add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
        add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\n")
    return buf.getvalue()


def import_images(docker_client: object) -> list[str]:
    """Import busybox and the sandbox image into a Docker engine; return their tags.

    docker_client is a `docker.DockerClient`.
    """
    rootfs = busybox_rootfs_tar()
    api = docker_client.api  # type: ignore[attr-defined]
    api.import_image_from_data(rootfs, repository="busybox", tag="latest", changes=['CMD ["sh"]'])
    cmd = ", ".join(f'"{part}"' for part in SANDBOX_COMMAND)
    api.import_image_from_data(rootfs, repository="pocketkube/pause", tag="latest", changes=[f"CMD [{cmd}]"])
    return [BUSYBOX_IMAGE, SANDBOX_IMAGE]

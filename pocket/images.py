"""Container images built offline from Debian packages on this machine.

No registry outside this machine is reachable, so the images common
manifests name are made here:

- `busybox:latest` (a root filesystem of Debian's busybox-static and its
  applet links) and the pod sandbox image, the same filesystem with a
  command that only waits: seconds, needed by every cluster;
- `debian:bookworm-slim` (`debootstrap --variant=minbase` from the Debian
  mirror apt uses), `python:3.11-slim` (that plus Debian's python3) and
  `nginx:latest` (that plus Debian's nginx-light, logging to stdout/stderr
  like the Docker library image): minutes the first time, so they are built
  once and cached as tarballs under CACHE_DIR, and imported from there.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
import logging
import shutil
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BUSYBOX_BINARY = Path("/bin/busybox")
BUSYBOX_IMAGE = "busybox:latest"
SANDBOX_IMAGE = "pocketkube/pause:latest"
SANDBOX_COMMAND = ["/bin/sleep", "2147483647"]
CACHE_DIR = Path("/var/cache/pocketkube/images")
DEBIAN_SUITE = "bookworm"
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
BUILD_TIMEOUT = 1800  # seconds for one debootstrap or apt-get run


class ImageBuildError(Exception):
    """An offline image could not be built; the message names the step and its output."""


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


# (local name, repository in the registry, tag) of the images every node needs before any pod runs.
BASE_IMAGES = ((BUSYBOX_IMAGE, "library/busybox", "latest"), (SANDBOX_IMAGE, "pocketkube/pause", "latest"))


class PushError(Exception):
    """The registry refused an image."""


def push_images(docker_client: object, registry: str, images: Iterable[tuple[str, str, str]]) -> None:
    """Tag each (local name, registry repository, tag) for `registry` and push it there.

    docker_client is a `docker.DockerClient` that already holds the images.
    """
    for image, repository, tag in images:
        target = f"{registry}/{repository}"
        docker_client.images.get(image).tag(target, tag)  # type: ignore[attr-defined]
        for line in docker_client.api.push(target, tag=tag, stream=True, decode=True):  # type: ignore[attr-defined]
            if "error" in line:
                raise PushError(f"pushing {target}:{tag} failed: {line['error']}")


@dataclass(frozen=True)
class DebianImage:
    """An image made from the minbase Debian root filesystem plus some packages and a setup script."""

    repository: str
    tag: str
    packages: tuple[str, ...]
    changes: tuple[str, ...]
    setup: str = ""  # shell run in the chroot after the packages are installed

    @property
    def name(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def registry_repository(self) -> str:
        """Where a Docker Hub mirror serves it: official images live under `library/`."""
        return self.repository if "/" in self.repository else f"library/{self.repository}"

    @property
    def cache_file(self) -> str:
        return f"{self.repository.replace('/', '_')}_{self.tag}.tar"


DEBIAN_SLIM = DebianImage("debian", "bookworm-slim", (), ('CMD ["bash"]',))
PYTHON_SLIM = DebianImage(
    "python",
    "3.11-slim",
    ("python3",),
    ('CMD ["python3"]', "ENV LANG=C.UTF-8"),
    "ln -sf /usr/bin/python3 /usr/local/bin/python",
)
NGINX = DebianImage(
    "nginx",
    "latest",
    ("nginx-light",),
    ('CMD ["nginx", "-g", "daemon off;"]', "EXPOSE 80"),
    "ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log",
)
DEBIAN_IMAGES = (DEBIAN_SLIM, PYTHON_SLIM, NGINX)


def _run(step: str, argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise ImageBuildError(f"{step} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")


def debian_mirror(sources: tuple[Path, ...] = APT_SOURCES) -> str:
    """The Debian mirror this machine's apt already uses (deb822 `URIs:` or a one-line `deb` entry).

    Images are built from the same mirror apt installs the cluster's packages
    from, so they need no network access apt does not already have.
    """
    for path in sources:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "URIs:" and not words[1].rstrip("/").endswith("-security"):
                return words[1]
            if len(words) >= 3 and words[0] == "deb" and not words[1].startswith("["):
                if not words[1].rstrip("/").endswith("-security"):
                    return words[1]
    raise ImageBuildError(f"no Debian mirror found in {', '.join(str(p) for p in sources)}: apt is not set up")


def _base_rootfs(cache: Path) -> Path:
    """The minbase root filesystem, debootstrapped once (the .debs kept in cache/debs)."""
    rootfs = cache / "rootfs" / f"debian-{DEBIAN_SUITE}"
    done = rootfs.with_name(rootfs.name + ".done")
    if done.exists():
        return rootfs
    if shutil.which("debootstrap") is None:
        raise ImageBuildError("debootstrap is missing: apt-get install debootstrap")
    shutil.rmtree(rootfs, ignore_errors=True)
    (cache / "debs").mkdir(parents=True, exist_ok=True)
    mirror = debian_mirror()
    _run(
        "debootstrap",
        ["debootstrap", "--variant=minbase", f"--cache-dir={cache / 'debs'}", DEBIAN_SUITE, str(rootfs), mirror],
    )
    done.touch()
    return rootfs


def _slim(rootfs: Path) -> None:
    """Drop what the slim images drop: apt lists, caches, docs, man pages, the machine's resolver."""
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "usr/share/doc/*",
        "usr/share/man/*",
        "usr/share/info/*",
        "var/log/*.log",
    ):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
    (rootfs / "etc" / "resolv.conf").unlink(missing_ok=True)


def build_debian_image(image: DebianImage, cache: Path = CACHE_DIR) -> Path:
    """The image's root filesystem tarball in the cache, built now if it is not there yet."""
    tarball = cache / image.cache_file
    if tarball.exists():
        return tarball
    base = _base_rootfs(cache)
    work = cache / "rootfs" / f"build-{image.repository.replace('/', '_')}-{image.tag}"
    shutil.rmtree(work, ignore_errors=True)
    _run("copying the base root filesystem", ["cp", "-a", str(base), str(work)])
    try:
        if image.packages or image.setup:
            shutil.copyfile("/etc/resolv.conf", work / "etc" / "resolv.conf")
        if image.packages:
            env = ["env", "DEBIAN_FRONTEND=noninteractive"]
            _run("apt-get update in the chroot", ["chroot", str(work), *env, "apt-get", "update"])
            _run(
                f"installing {' '.join(image.packages)}",
                ["chroot", str(work), *env, "apt-get", "install", "-y", "--no-install-recommends", *image.packages],
            )
            _run("apt-get clean", ["chroot", str(work), "apt-get", "clean"])
        if image.setup:
            _run(f"setting up {image.name}", ["chroot", str(work), "/bin/sh", "-c", image.setup])
        _slim(work)
        partial = tarball.with_suffix(".partial")
        _run("packing the root filesystem", ["tar", "-C", str(work), "--numeric-owner", "-cf", str(partial), "."])
        partial.rename(tarball)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tarball


def import_debian_images(
    docker_client: object, images: tuple[DebianImage, ...] = DEBIAN_IMAGES, cache: Path = CACHE_DIR
) -> list[str]:
    """Build (or take from the cache) and import the Debian-based images; return their names.

    docker_client is a `docker.DockerClient`. The first build downloads
    packages from the Debian mirror and takes minutes; later ones only import.
    """
    api = docker_client.api  # type: ignore[attr-defined]
    names = []
    for image in images:
        tarball = build_debian_image(image, cache)
        with open(tarball, "rb") as data:
            api.import_image_from_data(data, repository=image.repository, tag=image.tag, changes=list(image.changes))
        names.append(image.name)
    return names


def main() -> None:
    """`python -m pocket.images`: build every Debian-based image into the cache and say how long each took."""
    for image in DEBIAN_IMAGES:
        started = time.monotonic()
        tarball = build_debian_image(image)
        print(
            f"{image.name}: {tarball} ({tarball.stat().st_size // 2**20} MiB) in {time.monotonic() - started:.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()

"""Offline images: the busybox root filesystem and where Debian-based images come from."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from pocket.images import DEBIAN_IMAGES, ImageBuildError, busybox_rootfs_tar, debian_mirror


def test_busybox_rootfs_has_busybox_applets_and_passwd() -> None:
    with tarfile.open(fileobj=io.BytesIO(busybox_rootfs_tar())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["bin/busybox"].isfile() and members["bin/busybox"].mode & 0o111
    for applet in ("bin/sh", "bin/sleep", "usr/sbin/httpd", "usr/bin/nslookup", "usr/bin/wget"):
        assert members[applet].issym() and members[applet].linkname == "/bin/busybox", applet
    assert members["tmp"].mode == 0o1777
    assert "etc/passwd" in members


def test_mirror_comes_from_deb822_sources(tmp_path: Path) -> None:
    sources = tmp_path / "debian.sources"
    sources.write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
    )
    assert debian_mirror((sources,)) == "http://mirror.example/debian"


def test_mirror_comes_from_one_line_sources(tmp_path: Path) -> None:
    sources = tmp_path / "sources.list"
    sources.write_text("# comment\ndeb [signed-by=/k.gpg] http://signed.example/debian bookworm main\n"
                       "deb http://plain.example/debian bookworm main\n")
    assert debian_mirror((tmp_path / "missing.sources", sources)) == "http://plain.example/debian"


def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ImageBuildError, match="no Debian mirror found"):
        debian_mirror((tmp_path / "none",))


def test_official_images_live_under_library() -> None:
    repos = {image.name: image.registry_repository for image in DEBIAN_IMAGES}
    assert repos == {
        "debian:bookworm-slim": "library/debian",
        "python:3.11-slim": "library/python",
        "nginx:latest": "library/nginx",
    }

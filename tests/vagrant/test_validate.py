"""`vagrant validate` of vagrant/Vagrantfile, as CI runs it (needs Debian's vagrant and vagrant-libvirt)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"
TOKEN = "0123456789abcdef"


def validate(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run `vagrant validate` with its state in tmp_path, so nothing is left in the checkout or ~/.vagrant.d."""
    env = dict(os.environ, VAGRANT_HOME=str(tmp_path / "home"), VAGRANT_DOTFILE_PATH=str(tmp_path / "dot"),
               POCKET_JOIN_TOKEN=TOKEN)
    env.update(settings)
    return subprocess.run(["vagrant", "validate"], cwd=VAGRANT_DIR, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("workers", [None, "3"], ids=["default", "3-workers"])
def test_vagrantfile_validates(tmp_path: Path, workers: str | None) -> None:
    proc = validate(tmp_path, **({"POCKET_WORKERS": workers} if workers else {}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "validated successfully" in proc.stdout


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"POCKET_WORKERS": "0"}, "POCKET_WORKERS must be a positive integer"),
        ({"POCKET_MEMORY": "lots"}, "POCKET_MEMORY must be a positive integer"),
        ({"POCKET_JOIN_TOKEN": "Not A Token"}, "join token must be"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, settings: dict[str, str], message: str) -> None:
    proc = validate(tmp_path, **settings)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr

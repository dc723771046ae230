"""How `pocket up` reports progress and failures: phase lines, a failed component's name, exit code and log."""

from __future__ import annotations

from pathlib import Path

import pytest

from pocket import processes
from pocket.cluster import BringUpError, Waiting, run_phases, wait_all


def test_phases_print_one_line_each_and_say_whether_they_changed_anything(capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    changed = run_phases([("check", lambda: None), ("make", lambda: True), ("keep", lambda: False)], lines.append, "")
    assert changed is True
    out = capsys.readouterr().out.splitlines()
    assert [line.rsplit(" (", 1)[0] for line in out] == [
        "[1/3] check ... ok", "[2/3] make ... done", "[3/3] keep ... already done",
    ]
    assert all(line.endswith("s)") for line in out)
    assert run_phases([("keep", lambda: False)], lines.append, "") is False


def test_a_failed_phase_stops_the_run_and_says_what_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    ran: list[str] = []

    def fail() -> bool:
        raise BringUpError("etcd on control-plane exited with code 2", ["log: /x.log"])

    def record(name: str) -> bool:
        ran.append(name)
        return True

    phases = [("first", lambda: record("first")), ("second", fail), ("third", lambda: record("third"))]
    assert run_phases(phases, lines.append, "run `pocket down` to reset") is None
    assert ran == ["first"]
    assert "[2/3] second ... FAILED" in capsys.readouterr().out
    assert lines == ["error: etcd on control-plane exited with code 2", "  log: /x.log", "run `pocket down` to reset"]


def waiting_for(tmp_path: Path, name: str, script: str, ready: bool = False) -> Waiting:
    pid_file, log_file = tmp_path / f"{name}.pid", tmp_path / f"{name}.log"
    started = processes.start(["sh", "-c", script], log_file, pid_file)
    return Waiting("worker1", name, pid_file, log_file, lambda: ready, started)


def test_a_component_that_exits_is_named_with_its_exit_code_and_log(tmp_path: Path) -> None:
    healthy = waiting_for(tmp_path, "kproxy", "exec sleep 30")
    crashing = waiting_for(tmp_path, "kubelet", "echo 'ModuleNotFoundError: no kubelet.cli'; exit 3")
    try:
        with pytest.raises(BringUpError) as failure:
            wait_all([healthy, crashing], timeout=30)
    finally:
        processes.stop(healthy.pid_file)
    assert str(failure.value) == "kubelet on worker1 exited with code 3"
    assert failure.value.details[0] == f"log: {tmp_path / 'kubelet.log'} (last lines below)"
    assert "  | ModuleNotFoundError: no kubelet.cli" in failure.value.details


def test_a_component_that_never_serves_times_out_by_name(tmp_path: Path) -> None:
    stuck = waiting_for(tmp_path, "apiserver", "exec sleep 30")
    try:
        with pytest.raises(BringUpError, match="apiserver on worker1 did not become ready within 1s"):
            wait_all([stuck], timeout=1.0)
    finally:
        processes.stop(stuck.pid_file)


def test_ready_components_pass(tmp_path: Path) -> None:
    item = waiting_for(tmp_path, "kdns", "exec sleep 30", ready=True)
    try:
        wait_all([item], timeout=10)
    finally:
        processes.stop(item.pid_file)

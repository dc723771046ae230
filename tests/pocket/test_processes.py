"""Detached processes, pid files and process-tree lookups, with real processes."""

from __future__ import annotations

import os
from pathlib import Path

from pocket import processes


def test_start_records_pid_logs_output_and_stop_removes_it(tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "echo.pid"
    log_file = tmp_path / "logs" / "echo.log"
    started = processes.start(["sh", "-c", "echo hello from the child; exec sleep 60"], log_file, pid_file)
    try:
        assert processes.read_pid(pid_file) == started.pid
        assert processes.is_running(pid_file)
        assert started.popen.poll() is None
    finally:
        assert processes.stop(pid_file, timeout=5) == started.pid
    assert not processes.alive(started.pid)
    assert not pid_file.exists()
    assert not processes.is_running(pid_file)
    text = log_file.read_text()
    assert "starting: sh -c" in text
    assert "hello from the child" in text


def test_started_process_has_its_own_session_and_no_stdin(tmp_path: Path) -> None:
    pid_file = tmp_path / "cat.pid"
    started = processes.start(["cat"], tmp_path / "cat.log", pid_file)
    # cat with stdin at /dev/null reads EOF and exits 0 at once.
    assert started.popen.wait(timeout=10) == 0
    assert not processes.is_running(pid_file)
    started = processes.start(["sleep", "60"], tmp_path / "sleep.log", pid_file)
    try:
        session_id = int(Path(f"/proc/{started.pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
        assert session_id == started.pid
    finally:
        processes.stop(pid_file)


def test_a_recycled_pid_is_not_taken_for_the_recorded_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "x.pid"
    started = processes.start(["sleep", "60"], tmp_path / "x.log", pid_file)
    try:
        real_start = processes.start_time(started.pid)
        assert real_start is not None
        pid_file.write_text(f"{started.pid} {real_start + 1}\n")
        assert processes.read_pid(pid_file) is None
    finally:
        pid_file.write_text(f"{started.pid} {real_start}\n")
        processes.stop(pid_file)


def test_stop_escalates_to_sigkill_when_sigterm_is_ignored(tmp_path: Path) -> None:
    pid_file = tmp_path / "stubborn.pid"
    log_file = tmp_path / "stubborn.log"
    script = "trap '' TERM; echo signal-$((1 + 1)); while :; do sleep 1; done"
    started = processes.start(["sh", "-c", script], log_file, pid_file)
    for _ in range(100):
        if "signal-2" in log_file.read_text():
            break
        processes.wait_gone({started.pid}, 0.05)
    assert processes.stop(pid_file, timeout=0.5) == started.pid
    assert started.popen.wait(timeout=10) == -9


def test_descendants_include_grandchildren_and_kill_removes_them(tmp_path: Path) -> None:
    pid_file = tmp_path / "tree.pid"
    log_file = tmp_path / "tree.log"
    started = processes.start(["sh", "-c", "sleep 60 & sleep 60 & echo spawned; wait"], log_file, pid_file)
    tree: set[int] = {started.pid}
    for _ in range(100):
        tree = processes.with_descendants({started.pid})
        if len(tree) == 3:
            break
        processes.wait_gone({started.pid}, 0.05)
    assert len(tree) == 3
    assert processes.kill(tree) == set()
    assert not any(processes.alive(pid) for pid in tree)
    pid_file.unlink()


def test_processes_are_found_by_network_namespace() -> None:
    own = processes.net_inode(os.getpid())
    assert own is not None
    assert os.getpid() in processes.in_netns({own})
    assert processes.in_netns({0}) == set()

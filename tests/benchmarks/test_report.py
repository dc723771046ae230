"""The benchmark report writer, with fixed figures: table rows, ratios, stored results and the PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.report import (
    Distribution,
    Figure,
    Reference,
    Section,
    Series,
    Stored,
    as_section,
    load,
    save,
    thin,
    write_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SLO = Reference(5.0, "Kubernetes SLO, p99 <= 5 s (https://github.com/kubernetes/community/blob/master/"
                     "sig-scalability/slos/pod_startup_latency.md)")


def stored_startup() -> Stored:
    return Stored(
        name="bench_pod_startup",
        command="python -m benchmarks bench_pod_startup",
        stamp="2026-11-27 20:00 UTC",
        machine="vm (2 cores, 23 GiB, Linux 6.1)",
        seconds=42.0,
        figures=(Figure("pod startup p99", 2.5, "s", SLO),
                 Figure("bare docker run p50", 0.8, "s", command="docker run --rm busybox true")),
        distributions=(Distribution("pod startup", "s", (1.0, 2.0, 2.5, 0.5)),),
    )


def stored_kproxy() -> Stored:
    return Stored(
        name="bench_kproxy",
        command="python -m benchmarks bench_kproxy",
        stamp="2026-11-27 21:00 UTC",
        machine="vm (2 cores, 23 GiB, Linux 6.1)",
        seconds=300.0,
        figures=(Figure("full sync, 10000 Services", 1200.0, "ms",
                        Reference(400.0, "iptables-restore alone, same run")),),
        series=(Series("sync time vs Services", "Services", "ms",
                       {"iptables": ((1000, 100.0), (10000, 1200.0)), "nftables": ((1000, 80.0), (10000, 900.0))}),),
    )


def test_ratio_is_value_over_reference_and_absent_without_one() -> None:
    assert Figure("p99", 2.5, "s", SLO).ratio == 0.5
    assert Figure("q/s", 55559, "q/s", Reference(48130, "dnsmasq")).ratio == pytest.approx(1.1543, abs=1e-4)
    assert Figure("alone", 1.0, "s").ratio is None


def test_save_then_load_round_trips_and_thins_samples(tmp_path: Path) -> None:
    many = tuple(float(i) for i in range(5000, 0, -1))
    stored = Stored("bench_x", "python -m benchmarks bench_x", "2026-11-27 20:00 UTC", "vm", 1.0,
                    (Figure("f", 1.0, "ms", Reference(2.0, "peer")),), (Distribution("d", "ms", many),),
                    stored_kproxy().series)
    save(tmp_path, stored, "## X\n")
    assert (tmp_path / "x.md").read_text().endswith("## X\n")
    back = load(tmp_path / "x.json")
    assert back.figures == stored.figures and back.series == stored.series
    (samples,) = [d.samples for d in back.distributions]
    assert len(samples) == 1000 and samples[0] == 1.0 and samples[-1] == 5000.0
    assert list(samples) == sorted(samples)


def test_thin_keeps_short_lists_whole_and_sorted() -> None:
    assert thin([3.0, 1.0, 2.0]) == (1.0, 2.0, 3.0)
    assert thin([float(i) for i in range(10)], at_most=4) == (0.0, 3.0, 6.0, 9.0)


def test_report_has_every_figure_its_reference_ratio_machine_date_and_plots(tmp_path: Path) -> None:
    out_dir = tmp_path / "benchmarks"
    out_dir.mkdir()
    save(out_dir, stored_startup(), "## Pod startup\n\ndetails\n")
    save(out_dir, stored_kproxy(), "## kproxy\n\nmore details\n")
    (out_dir / "legacy.md").write_text("## An older section without figures\n")
    index = tmp_path / "benchmarks.md"
    write_report(out_dir, index)
    text = index.read_text()

    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 3
    assert ("| pod_startup | pod startup p99 | 2.5 s | 5 s | " + SLO.what
            + " | 0.5x | 2026-11-27 20:00 UTC | `python -m benchmarks bench_pod_startup` |") in rows
    assert any("bare docker run p50" in row and "| - | no reference | - |" in row
               and "`docker run --rm busybox true`" in row for row in rows)
    assert any("1,200 ms | 400 ms | iptables-restore alone, same run | 3x" in row for row in rows)
    assert "vm (2 cores, 23 GiB, Linux 6.1)" in text
    assert "2026-11-27 20:00 UTC to 2026-11-27 21:00 UTC" in text
    for section in ("## Pod startup", "## kproxy", "## An older section without figures"):
        assert section in text

    latency = out_dir / "pod_startup-latency.png"
    sync = out_dir / "kproxy-sync-time-vs-services.png"
    for plot in (latency, sync):
        assert plot.read_bytes().startswith(PNG_MAGIC)
        assert f"](benchmarks/{plot.name})" in text
    assert not (out_dir / "kproxy-latency.png").exists(), "no samples, no distribution plot"


def test_a_malformed_result_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text(json.dumps({"name": "bench_broken"}))
    with pytest.raises(ValueError, match="broken.json"):
        load(tmp_path / "broken.json")


def test_run_results_old_and_new_forms() -> None:
    assert as_section("## md\n") == Section("## md\n")
    section = Section("## md\n", (Figure("f", 1.0, "s"),))
    assert as_section(section) is section
    with pytest.raises(TypeError, match="must return markdown"):
        as_section(42)

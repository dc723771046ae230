"""Run the benchmarks, store each section under docs/benchmarks/, and rewrite docs/benchmarks.md from them all."""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import pkgutil
import sys
import time
from pathlib import Path

import benchmarks
from benchmarks.report import Stored, as_section, save, write_report

DOCS = Path(__file__).resolve().parent.parent / "docs"
OUT_DIR = DOCS / "benchmarks"
INDEX = DOCS / "benchmarks.md"


def machine() -> str:
    cores = len(os.sched_getaffinity(0))
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return f"{platform.node()} ({cores} cores, {mem_kib // 1024 // 1024} GiB, Linux {platform.release()})"


def main(argv: list[str] | None = None) -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name.startswith("bench_"))
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("only", nargs="*", help=f"benchmarks to run (default all): {', '.join(names)}")
    args = parser.parse_args(argv)
    unknown = set(args.only) - set(names)
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(names)}")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    failed = []
    for name in args.only or names:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            section = as_section(importlib.import_module(f"benchmarks.{name}").run())
        except Exception as err:  # report and go on: one broken benchmark must not hide the others
            print(f"{name} failed: {err!r}", file=sys.stderr)
            failed.append(name)
            continue
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        stored = Stored(name, f"python -m benchmarks {name}", stamp, machine(), time.monotonic() - started,
                        section.figures, section.distributions, section.series)
        save(OUT_DIR, stored, section.markdown)
        print(section.markdown, flush=True)
    write_report(OUT_DIR, INDEX)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

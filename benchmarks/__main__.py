"""Run the benchmarks and write their tables under docs/benchmarks/."""

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
            section = importlib.import_module(f"benchmarks.{name}").run()
        except Exception as err:  # report and go on: one broken benchmark must not hide the others
            print(f"{name} failed: {err!r}", file=sys.stderr)
            failed.append(name)
            continue
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        took = time.monotonic() - started
        header = f"<!-- written by `make bench` ({name}) on {stamp}, {machine()}, in {took:.0f}s -->\n"
        (OUT_DIR / f"{name.removeprefix('bench_')}.md").write_text(header + section)
        print(section, flush=True)
    write_index()
    return 1 if failed else 0


def write_index() -> None:
    """docs/benchmarks.md: every section written so far, one after another, each with its stamp."""
    sections = sorted(OUT_DIR.glob("*.md"))
    parts = [
        "# Benchmarks\n\n"
        "Written by `make bench` (`python -m benchmarks [NAME...]`) from the sections in "
        "[benchmarks/](benchmarks/); each section says when and where it ran and the commands behind its numbers.\n"
    ]
    parts += [f"\n<!-- from benchmarks/{path.name} -->\n{path.read_text()}" for path in sections]
    INDEX.write_text("".join(parts))


if __name__ == "__main__":
    raise SystemExit(main())

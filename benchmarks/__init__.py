"""Benchmarks: `make bench` (python -m benchmarks) runs every `bench_*.py` here.

Each module defines `run() -> str`, returning a Markdown section (a table of
figures beside the floor or peer measured in the same run, and the command
that produced them). The runner writes each section to
`docs/benchmarks/<name>.md` and prints it.
"""

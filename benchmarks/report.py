"""docs/benchmarks.md as one report: every figure beside its reference, the machine, the date, and plots.

A benchmark module's `run()` returns its markdown section, or a `Section` holding that markdown
together with structured figures (name, value, unit, reference and what the reference is),
latency samples and x/y series. Each section is saved under docs/benchmarks/ (NAME.md and,
for a `Section`, NAME.json), so running one benchmark rewrites the whole report from the
stored results of the others; the plots (PNG, matplotlib) are drawn from the stored data.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MAX_STORED_SAMPLES = 1000  # a distribution is stored as this many evenly spaced quantiles at most


@dataclass(frozen=True)
class Reference:
    """What a figure is compared with: a peer measured in the same run, or a published Kubernetes figure."""

    value: float
    what: str  # e.g. "dnsmasq, same run" or "Kubernetes SLO, p99 <= 5 s (https://...)"


@dataclass(frozen=True)
class Figure:
    """One number of a benchmark; `command` is what produced it (default: the section's command)."""

    name: str
    value: float
    unit: str
    reference: Reference | None = None
    command: str = ""

    @property
    def ratio(self) -> float | None:
        """value / reference, in the figure's own unit (so for latencies below 1 is faster than the reference)."""
        if self.reference is None or self.reference.value == 0:
            return None
        return self.value / self.reference.value


@dataclass(frozen=True)
class Distribution:
    """Latency samples of one operation, plotted as a cumulative distribution."""

    name: str
    unit: str
    samples: tuple[float, ...]


@dataclass(frozen=True)
class Series:
    """y against x for several lines (e.g. kproxy sync time vs number of Services, per mode)."""

    title: str
    x_label: str
    y_label: str
    lines: dict[str, tuple[tuple[float, float], ...]]


@dataclass(frozen=True)
class Section:
    """What a benchmark's `run()` may return instead of bare markdown."""

    markdown: str
    figures: tuple[Figure, ...] = ()
    distributions: tuple[Distribution, ...] = ()
    series: tuple[Series, ...] = ()


@dataclass(frozen=True)
class Stored:
    """A section as saved: its data plus when, where, how long and by which command it ran."""

    name: str
    command: str
    stamp: str
    machine: str
    seconds: float
    figures: tuple[Figure, ...] = ()
    distributions: tuple[Distribution, ...] = ()
    series: tuple[Series, ...] = ()


def thin(samples: tuple[float, ...] | list[float], at_most: int = MAX_STORED_SAMPLES) -> tuple[float, ...]:
    """At most `at_most` evenly spaced quantiles of the samples (the smallest and largest kept)."""
    ordered = sorted(samples)
    if len(ordered) <= at_most:
        return tuple(ordered)
    step = (len(ordered) - 1) / (at_most - 1)
    return tuple(ordered[round(i * step)] for i in range(at_most))


def save(out_dir: Path, stored: Stored, markdown: str) -> None:
    """NAME.md (header comment + markdown) and NAME.json (figures, thinned samples, series) under out_dir."""
    short = stored.name.removeprefix("bench_")
    header = (
        f"<!-- written by `make bench` ({stored.name}) on {stored.stamp}, {stored.machine}, "
        f"in {stored.seconds:.0f}s -->\n"
    )
    (out_dir / f"{short}.md").write_text(header + markdown)
    data = asdict(stored)
    data["distributions"] = [
        {**asdict(d), "samples": list(thin(d.samples))} for d in stored.distributions
    ]
    (out_dir / f"{short}.json").write_text(json.dumps(data, indent=1) + "\n")


def load(path: Path) -> Stored:
    """A NAME.json written by `save`; a malformed file is an error naming it."""
    try:
        data = json.loads(path.read_text())
        return Stored(
            name=data["name"],
            command=data["command"],
            stamp=data["stamp"],
            machine=data["machine"],
            seconds=float(data["seconds"]),
            figures=tuple(
                Figure(f["name"], float(f["value"]), f["unit"],
                       Reference(float(f["reference"]["value"]), f["reference"]["what"]) if f["reference"] else None,
                       f["command"])
                for f in data["figures"]
            ),
            distributions=tuple(Distribution(d["name"], d["unit"], tuple(d["samples"])) for d in data["distributions"]),
            series=tuple(
                Series(s["title"], s["x_label"], s["y_label"],
                       {label: tuple((float(x), float(y)) for x, y in points) for label, points in s["lines"].items()})
                for s in data["series"]
            ),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a benchmark result written by benchmarks.report.save ({err!r})") from err


def number(value: float) -> str:
    """Three significant digits, thousands separated: 55,559 / 1.63 / 0.0412."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def summary_table(results: list[Stored]) -> list[str]:
    lines = [
        "| benchmark | figure | value | reference | reference is | ratio (value / reference) | measured | command |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stored in results:
        for figure in stored.figures:
            reference = figure.reference
            ratio = figure.ratio
            lines.append(
                f"| {stored.name.removeprefix('bench_')} | {figure.name} | {number(figure.value)} {figure.unit} | "
                f"{f'{number(reference.value)} {figure.unit}' if reference else '-'} | "
                f"{reference.what if reference else 'no reference'} | "
                f"{f'{number(ratio)}x' if ratio is not None else '-'} | {stored.stamp} | "
                f"`{figure.command or stored.command}` |"
            )
    return lines


def plot_distributions(stored: Stored, out_dir: Path) -> Path:
    """Cumulative distributions of the section's latency samples, one line each, log x axis."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4))
    for dist in stored.distributions:
        ordered = sorted(dist.samples)
        fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
        axes.step(ordered, fractions, where="post", label=f"{dist.name} ({dist.unit})")
    if all(s > 0 for d in stored.distributions for s in d.samples):
        axes.set_xscale("log")
    units = sorted({d.unit for d in stored.distributions})
    axes.set_xlabel(" / ".join(units))
    axes.set_ylabel("fraction of samples at or below")
    axes.set_title(f"{stored.name}: latency distribution ({stored.stamp})")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    path = out_dir / f"{stored.name.removeprefix('bench_')}-latency.png"
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    pyplot.close(figure)
    return path


def plot_series(stored: Stored, series: Series, out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4))
    for label, points in series.lines.items():
        axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=label)
    values = [y for points in series.lines.values() for _, y in points]
    if values and min(values) > 0 and max(values) / min(values) > 100:  # e.g. 1 ms one-change syncs beside 3 s ones
        axes.set_yscale("log")
    axes.set_xlabel(series.x_label)
    axes.set_ylabel(series.y_label)
    axes.set_title(f"{series.title} ({stored.stamp})")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small")
    path = out_dir / f"{stored.name.removeprefix('bench_')}-{slug(series.title)}.png"
    figure.tight_layout()
    figure.savefig(path, dpi=100, metadata={"Software": None})
    pyplot.close(figure)
    return path


def write_report(out_dir: Path, index: Path) -> None:
    """The whole report from what out_dir holds: summary table, plots, then every section's markdown."""
    results = [load(path) for path in sorted(out_dir.glob("*.json"))]
    sections = sorted(out_dir.glob("*.md"))
    relative = out_dir.relative_to(index.parent) if out_dir.is_relative_to(index.parent) else out_dir
    machines = sorted({stored.machine for stored in results})
    stamps = sorted(stored.stamp for stored in results)
    parts = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks [NAME...]`, which rewrites this page from every section "
        f"stored in [{relative}/]({relative}/)). Each figure names the command that produced it; each section "
        "below says how it was measured, when, where and how long it took.",
        "",
        f"Machine: {'; '.join(machines) if machines else 'no structured results yet'}.  ",
        f"Date: {stamps[0]} to {stamps[-1]}." if stamps else "Date: -.",
        "",
        "## Every figure",
        "",
        "The reference is a peer measured in the same run on the same machine, or a published Kubernetes figure "
        "(its source linked); ratio = value / reference in the figure's unit.",
        "",
        *summary_table(results),
        "",
    ]
    plots: list[tuple[str, Path]] = []
    for stored in results:
        if stored.distributions:
            plots.append((f"{stored.name}: latency distribution", plot_distributions(stored, out_dir)))
        plots += [(f"{stored.name}: {series.title}", plot_series(stored, series, out_dir)) for series in stored.series]
    if plots:
        parts += ["## Plots", ""]
        for title, path in plots:
            parts += [f"![{title}]({relative}/{path.name})", ""]
    for path in sections:
        parts += [f"<!-- from {relative}/{path.name} -->", path.read_text().rstrip("\n"), ""]
    index.write_text("\n".join(parts))


def as_section(result: Any) -> Section:
    """A module's `run()` result as a Section: bare markdown (the older form) carries no figures."""
    if isinstance(result, Section):
        return result
    if isinstance(result, str):
        return Section(result)
    raise TypeError(f"a benchmark's run() must return markdown (str) or a benchmarks.report.Section, got {result!r}")

"""Turn the samples of a run into figures, the Markdown table and the PNG chart."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from _common import percentiles
from _systems import SYSTEMS


@attrs.frozen
class Figure:
    """Samples of one measurement (one per repetition): median, min and max."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    def cell(self, fmt: str) -> str:
        if len(self.samples) == 1:
            return f"{self.median:{fmt}}"
        lo, hi = min(self.samples), max(self.samples)
        return f"{self.median:{fmt}} [{lo:{fmt}}-{hi:{fmt}}]"


def _fig(values: Sequence[float]) -> Figure | None:
    return Figure(tuple(values)) if values else None


#: The drain workloads: each enqueues, so the enqueue figure pools them.
DRAINS = ("drain1", "drain4", "drain2p")


# -- figures from the runs ------------------------------------------------------------------


def figures(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Return, per system, its figures: each a Figure over the repetitions, or None."""
    out: dict[str, dict[str, Any]] = {}
    for name in report["systems"]:
        runs = [r for r in report["runs"] if r["system"] == name and r["ok"]]

        def of(workload: str, key: str, runs: list[dict[str, Any]] = runs) -> list[float]:
            return [r[key] for r in runs if r["workload"] == workload]

        lat = [percentiles(r["samples_us"]) for r in runs if r["workload"] == "latency"]
        claims: dict[str, list[float]] = {}
        for r in runs:
            if r["workload"] == "claims":
                for backlog, us in r["us_per_claim"].items():
                    claims.setdefault(backlog, []).append(us)
        mem = [r for r in runs if r["workload"] == "memory"]
        out[name] = {
            "enqueue": _fig([v for w in DRAINS for v in of(w, "enqueue_rate")]),
            "drain1": _fig(of("drain1", "drain_rate")),
            "drain4": _fig(of("drain4", "drain_rate")),
            "drain2p": _fig(of("drain2p", "drain_rate")),
            "p50": _fig([p["p50"] / 1000 for p in lat]),
            "p99": _fig([p["p99"] / 1000 for p in lat]),
            "max": _fig([p["max"] / 1000 for p in lat]),
            "latency_samples": sum(
                len(r["samples_us"]) for r in runs if r["workload"] == "latency"
            ),
            "memory": _fig([r["bytes_per_job"] for r in mem]),
            "memory_method": mem[0]["method"] if mem else "",
            "memory_jobs": mem[0]["jobs"] if mem else 0,
            "claims": {int(k): Figure(tuple(v)) for k, v in claims.items()},
        }
    return out


def errors(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    """Return the first error of each system and workload that failed."""
    out: dict[tuple[str, str], str] = {}
    for r in report["runs"]:
        if not r["ok"]:
            out.setdefault((r["system"], r["workload"]), r["error"])
    return out


# -- targets --------------------------------------------------------------------------------


@attrs.frozen
class Target:
    storage: str
    text: str
    unit: str
    bound: float
    at_least: bool
    value: Callable[[dict[str, dict[str, Any]]], float | None]


def _median(figs: dict[str, dict[str, Any]], system: str, key: str) -> float | None:
    fig = figs.get(system, {}).get(key)
    return fig.median if fig is not None else None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _claim_ratio(figs: dict[str, dict[str, Any]], system: str) -> float | None:
    claims = figs.get(system, {}).get("claims") or {}
    if len(claims) < 2:
        return None
    small, big = min(claims), max(claims)
    return _ratio(claims[big].median, claims[small].median)


def _drain_ratio(a: str, b: str, key_a: str, key_b: str | None = None) -> Callable[..., Any]:
    return lambda f: _ratio(_median(f, a, key_a), _median(f, b, key_b or key_a))


TARGETS = [
    Target("memory", "1 worker vs Huey MemoryHuey, 1 thread worker", "x", 1.5, True,
           _drain_ratio("jobworker-memory", "huey-memory", "drain1")),
    Target("memory", "4 workers vs 1 worker", "x", 0.5, True,
           _drain_ratio("jobworker-memory", "jobworker-memory", "drain4", "drain1")),
    Target("memory", "enqueue -> start p99", "ms", 1.0, False,
           lambda f: _median(f, "jobworker-memory", "p99")),
    Target("memory", "bytes per pending job", "B", 600, False,
           lambda f: _median(f, "jobworker-memory", "memory")),
    Target("memory", "claim time, 1,000,000 vs 1,000 waiting (quick: 10,000)", "x", 1.5, False,
           lambda f: _claim_ratio(f, "jobworker-memory")),
    Target("sqlite", "1 worker vs Huey SqliteHuey, 1 thread worker", "x", 3.0, True,
           _drain_ratio("jobworker-sqlite", "huey-sqlite", "drain1")),
    Target("sqlite", "1 worker vs the minimal WAL queue, 1 thread (leases on)", "x", 0.5, True,
           _drain_ratio("jobworker-sqlite", "miniwal", "drain1")),
    Target("sqlite", "enqueue -> start p99, one process", "ms", 2.0, False,
           lambda f: _median(f, "jobworker-sqlite", "p99")),
    Target("postgres", "1 worker vs Huey PostgresHuey, 1 thread worker", "x", 3.0, True,
           _drain_ratio("jobworker-postgres", "huey-postgres", "drain1")),
    Target("postgres", "4 workers vs procrastinate, concurrency 4", "x", 5.0, True,
           _drain_ratio("jobworker-postgres", "procrastinate", "drain4")),
    Target("postgres", "enqueue -> start p99, woken by NOTIFY", "ms", 5.0, False,
           lambda f: _median(f, "jobworker-postgres", "p99")),
]  # fmt: skip

STORAGE_LABEL = {"memory": "Memory", "sqlite": "SQLite", "postgres": "PostgreSQL"}


def target_rows(figs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for t in TARGETS:
        value = t.value(figs)
        met = None if value is None else (value >= t.bound if t.at_least else value <= t.bound)
        rows.append(
            {
                "storage": t.storage,
                "target": t.text,
                "required": f"{'>=' if t.at_least else '<='} {_fmt_value(t.bound, t.unit)}",
                "measured": value,
                "unit": t.unit,
                "met": met,
            }
        )
    return rows


# -- Markdown -------------------------------------------------------------------------------


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(fig: Figure | None, fmt: str, na: str | None, err: str | None) -> str:
    if fig is not None:
        return fig.cell(fmt)
    if err is not None:
        return "failed"
    return "n/a" if na else "-"


def _fmt_value(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    if unit == "B":
        return f"{value:,.0f} B"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:.2f}x"


def _runs(n: int) -> str:
    return f"{n} repetition{'s' if n != 1 else ''}"


def _cut(lines: list[str], start: int, workloads: Sequence[str], ran: set[str]) -> None:
    """Drop the section from *start* if none of its *workloads* ran."""
    if not ran.intersection(workloads):
        del lines[start:]


def render(report: dict[str, Any]) -> str:
    figs = figures(report)
    errs = errors(report)
    names = list(report["systems"])
    ran = set(report["options"]["workloads"])
    m = report["machine"]
    o = report["options"]
    lines = [
        "# jobworker benchmark",
        "",
        f"{m['cpus']} CPUs ({m['cpu']}), {m['os']}, CPython {m['python']}, "
        f"PostgreSQL {m['servers']['postgresql']}, Redis {m['servers']['redis']}; "
        + ", ".join(f"{p} {v}" for p, v in m["versions"].items() if p != "matplotlib")
        + ".",
        "",
        f"{_runs(o['repeat'])} of each drain, latency and claim workload, "
        f"{_runs(o['memory_repeat'])} of the memory workload"
        f"{', quick sizes' if o['quick'] else ''}; the run took {report['seconds'] / 60:.1f} min. "
        "Each system and workload ran in a fresh process. Cells: median [min-max] over the "
        "repetitions. Ratios compare medians of this one run.",
        "",
        "## Targets of issue 5",
        "",
        _row(["backend", "target", "required", "measured", "met"]),
        _row(["---", "---", "---:", "---:", ":---:"]),
    ]
    for row in target_rows(figs):
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        lines.append(
            _row(
                [
                    STORAGE_LABEL[row["storage"]],
                    row["target"],
                    row["required"],
                    _fmt_value(row["measured"], row["unit"]),
                    met,
                ]
            )
        )

    start = len(lines)
    # The 2-process columns only when drain2p ran (an older run's JSON has none).
    processes = "drain2p" in ran
    lines += [
        "",
        "## Throughput of no-op jobs (jobs/s, higher is better)",
        "",
        _row(
            ["system", "backend", "jobs", "enqueue", "drain, 1 worker", "drain, 4", "4 / 1"]
            + (["drain, 2 processes", "2p / 1"] if processes else [])
        ),
        _row(["---", "---"] + ["---:"] * (7 if processes else 5)),
    ]

    def drain(name: str, key: str) -> str:
        na = report["systems"][name]["na"].get(key)
        return _cell(figs[name][key], ",.0f", na, errs.get((name, key)))

    def scale(name: str, key: str) -> str:
        ratio = _ratio(_median(figs, name, key), _median(figs, name, "drain1"))
        return "-" if ratio is None else f"{ratio:.2f}"

    for name in names:
        s, f = report["systems"][name], figs[name]
        na = s["na"]
        lines.append(
            _row(
                [
                    s["label"],
                    s["storage"],
                    f"{s['sizes']['drain_jobs']:,}",
                    _cell(f["enqueue"], ",.0f", na.get("drain1"), errs.get((name, "drain1"))),
                    drain(name, "drain1"),
                    drain(name, "drain4"),
                    scale(name, "drain4"),
                ]
                + ([drain(name, "drain2p"), scale(name, "drain2p")] if processes else [])
            )
        )

    _cut(lines, start, DRAINS, ran)
    start = len(lines)
    lines += [
        "",
        "## Enqueue -> start latency of an idle worker (ms, lower is better)",
        "",
        _row(["system", "backend", "samples", "p50", "p99", "max"]),
        _row(["---", "---", "---:", "---:", "---:", "---:"]),
    ]
    for name in names:
        s, f = report["systems"][name], figs[name]
        na, err = s["na"].get("latency"), errs.get((name, "latency"))
        lines.append(
            _row(
                [
                    s["label"],
                    s["storage"],
                    f"{f['latency_samples']:,}",
                    _cell(f["p50"], ".3f", na, err),
                    _cell(f["p99"], ".3f", na, err),
                    _cell(f["max"], ".3f", na, err),
                ]
            )
        )

    _cut(lines, start, ("latency",), ran)
    start = len(lines)
    lines += [
        "",
        "## Bytes per pending job (lower is better)",
        "",
        _row(["system", "backend", "jobs waiting", "bytes per job", "what is measured"]),
        _row(["---", "---", "---:", "---:", "---"]),
    ]
    for name in names:
        s, f = report["systems"][name], figs[name]
        na, err = s["na"].get("memory"), errs.get((name, "memory"))
        lines.append(
            _row(
                [
                    s["label"],
                    s["storage"],
                    f"{f['memory_jobs'] or s['sizes']['memory_jobs']:,}",
                    _cell(f["memory"], ",.0f", na, err),
                    f["memory_method"] or "",
                ]
            )
        )

    _cut(lines, start, ("memory",), ran)
    start = len(lines)
    lines += [
        "",
        "## Claim time by backlog (median microseconds per claim, lower is better)",
        "",
        _row(["system", "backend", "small backlog", "big backlog", "big / small"]),
        _row(["---", "---", "---:", "---:", "---:"]),
    ]
    for name in names:
        s, f = report["systems"][name], figs[name]
        if s["na"].get("claims"):
            continue
        claims = f["claims"]
        err = errs.get((name, "claims"))
        if len(claims) < 2:
            lines.append(_row([s["label"], s["storage"], "failed" if err else "-", "-", "-"]))
            continue
        small, big = min(claims), max(claims)
        lines.append(
            _row(
                [
                    s["label"],
                    s["storage"],
                    f"{small:,}: {claims[small].cell(',.1f')}",
                    f"{big:,}: {claims[big].cell(',.1f')}",
                    f"{claims[big].median / claims[small].median:.2f}",
                ]
            )
        )

    _cut(lines, start, ("claims",), ran)
    notes = [f"- {s['label']}: {s['note']}" for s in report["systems"].values() if s["note"]]
    by_reason: dict[tuple[str, str], list[str]] = {}
    for s in report["systems"].values():
        for workload, why in s["na"].items():
            by_reason.setdefault((workload, why), []).append(s["label"])
    na_notes = [
        f"- {workload} n/a for {', '.join(labels)}: {why}"
        for (workload, why), labels in by_reason.items()
    ]
    lines += ["", "## Notes", "", *notes, *na_notes]
    if errs:
        lines += ["", "## Failures", ""]
        lines += [f"- {SYSTEMS[s].label}, {w}: {e}" for (s, w), e in errs.items()]
    return "\n".join(lines) + "\n"


# -- chart ----------------------------------------------------------------------------------

KIND_COLOUR = {"jobworker": "#1f77b4", "peer": "#ff7f0e", "baseline": "#7f7f7f"}


def chart(report: dict[str, Any], path: str) -> None:
    """Write a PNG: drain throughput (1 and 4 workers) and latency (p50, p99) per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = figures(report)
    names = list(report["systems"])
    labels = [f"{report['systems'][n]['label']} ({report['systems'][n]['storage']})" for n in names]
    colours = [KIND_COLOUR[report["systems"][n]["kind"]] for n in names]
    y = list(range(len(names)))
    h = 0.38

    def med(name: str, key: str) -> float:
        fig = figs[name][key]
        return fig.median if fig is not None else math.nan

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.42 * len(names) + 2), sharey=True)
    for offset, key, alpha in ((-h / 2, "drain1", 1.0), (h / 2, "drain4", 0.45)):
        left.barh([v + offset for v in y], [med(n, key) for n in names], height=h,
                  color=colours, alpha=alpha)  # fmt: skip
    left.set_xscale("log")
    left.set_xlabel("drain throughput, no-op jobs/s (log)\nsolid: 1 worker, pale: 4 workers")
    left.set_yticks(y, labels)
    left.invert_yaxis()
    left.grid(axis="x", which="both", alpha=0.3)

    for offset, key, alpha in ((-h / 2, "p50", 1.0), (h / 2, "p99", 0.45)):
        right.barh([v + offset for v in y], [med(n, key) for n in names], height=h,
                   color=colours, alpha=alpha)  # fmt: skip
    right.set_xscale("log")
    right.set_xlabel("enqueue -> start latency of an idle worker, ms (log)\nsolid: p50, pale: p99")
    right.grid(axis="x", which="both", alpha=0.3)

    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLOUR.values()]
    fig.legend(handles, list(KIND_COLOUR), loc="upper center", ncol=3, frameon=False)
    m = report["machine"]
    fig.suptitle(
        f"{m['cpus']} CPUs, CPython {m['python']}; median of {_runs(report['options']['repeat'])}",
        y=0.005, va="bottom", fontsize=9,
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 0.95))
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- reStructuredText, for the docs ---------------------------------------------------------


def _rst_cell(text: str) -> str:
    text = text.strip()
    # A lone "-" would start a nested bullet list.
    return "\\-" if text in ("-", "") else text


def to_rst(markdown: str, underline: str = "~") -> str:
    """Return the Markdown of :func:`render` as reStructuredText, without its title.

    Handles exactly what :func:`render` writes: ``#`` and ``##`` headings,
    pipe tables (as list-tables), bullets and plain paragraphs.
    """
    out: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if not table:
            return
        out.extend([".. list-table::", "   :header-rows: 1", ""])
        for row in table:
            out.append(f"   * - {_rst_cell(row[0])}")
            out.extend(f"     - {_rst_cell(cell)}" for cell in row[1:])
        out.append("")
        table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            cells = line.strip().strip("|").split("|")
            if all(set(c.strip()) <= set("-:") for c in cells):
                continue  # the Markdown separator row
            table.append(cells)
            continue
        flush()
        if line.startswith("# "):
            continue
        if line.startswith("## "):
            title = line[3:]
            out.extend([title, underline * len(title)])
            continue
        out.append(line)
    flush()
    return "\n".join(out).strip() + "\n"

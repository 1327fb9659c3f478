"""The dashboard's pages and live regions, rendered from jobs and counts.

Pure functions of their arguments: no I/O, no queue. Every value a job
carries (its id, type, user, params, progress, result, errors) is user data
and goes through :func:`~jobworker.web._html.render`, which escapes it.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlencode

import attrs

from ..model import STATUSES, AnyJob, CancelledJob, CompleteJob, FailedJob, RunningJob
from ..serialization import job_to_dict
from ._html import Html, join, render

__all__ = ["Context", "Overview", "job_page", "jobs_page", "layout", "overview_page"]

#: Longest params or progress shown in a row of the job list.
_SUMMARY_LENGTH: Final = 80


@attrs.frozen
class Context:
    """What every page needs: where the dashboard is mounted and what the viewer may do."""

    #: The URL path the dashboard is mounted at, without a trailing slash.
    base: str
    #: The CSRF token of the viewer's forms (empty when actions are off).
    csrf_token: str
    #: Whether action buttons are shown.
    actions: bool
    #: Milliseconds between live updates.
    refresh_ms: int
    title: str

    def url(self, path: str, **query: str | None) -> str:
        """Return the URL of *path* under the dashboard, with the non-empty *query* values."""
        kept = {k: v for k, v in query.items() if v}
        return self.base + path + ("?" + urlencode(kept) if kept else "")


@attrs.frozen
class Overview:
    """The counts the overview shows."""

    by_type: Mapping[str, Mapping[str, int]]
    #: Jobs that ended per slot: ``{"complete": [...], "failed": [...], ...}``.
    ended: Mapping[str, Sequence[int]]
    #: The start of the first slot, and the slot length in seconds.
    since: _dt.datetime
    interval: float
    recent: Sequence[AnyJob]


_NOTHING: Final = Html("")


def layout(ctx: Context, heading: str, live_src: str, body: Html, above: Html = _NOTHING) -> Html:
    """Return a whole page: navigation, *above*, then *body* in a region refreshed from *live_src*.

    An empty *live_src* makes a page that is not refreshed.
    """
    mode = "actions enabled" if ctx.actions else "read-only"
    return render(
        """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>$heading · $title</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="$css">
<script src="$js" defer></script>
</head>
<body data-refresh="$refresh">
<header>
<a class="brand" href="$home">$title</a>
<nav><a href="$home">Overview</a> <a href="$jobs">Jobs</a></nav>
<span class="mode">$mode</span>
</header>
<main>
<h1>$heading</h1>
$above
<div id="live" data-src="$live_src">$body</div>
</main>
</body>
</html>
""",
        heading=heading,
        title=ctx.title,
        css=ctx.url("/static/dashboard.css"),
        js=ctx.url("/static/dashboard.js"),
        refresh=ctx.refresh_ms,
        home=ctx.url("/"),
        jobs=ctx.url("/jobs"),
        mode=mode,
        live_src=live_src,
        body=body,
        above=above,
    )


def _time(value: _dt.datetime | None) -> Html:
    if value is None:
        return Html("")
    utc = value.astimezone(_dt.timezone.utc)
    return render(
        '<time datetime="$iso">$text</time>',
        iso=utc.isoformat(),
        text=utc.strftime("%Y-%m-%d %H:%M:%S"),
    )


def _status(status: str) -> Html:
    return render('<span class="status s-$status">$status</span>', status=status)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


def _short(value: Any) -> str:
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= _SUMMARY_LENGTH else text[: _SUMMARY_LENGTH - 1] + "…"


def _percent(progress: Any) -> float | None:
    """Return a progress value's share done from 0 to 100, if it names one."""
    value = progress.get("percent") if isinstance(progress, dict) else progress
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 100:
        return float(value)
    return None


# -- the overview --------------------------------------------------


def _chart(overview: Overview) -> Html:
    """Return an SVG bar chart of complete (up) and failed (down) jobs per slot."""
    complete, failed = overview.ended["complete"], overview.ended["failed"]
    slots = len(complete)
    peak = max([1, *complete, *failed])
    width, half, bar = 6 * slots, 60, 5
    bars = []
    for i, (up, down) in enumerate(zip(complete, failed, strict=True)):
        for count, kind, sign in ((up, "complete", -1), (down, "failed", 1)):
            if count:
                height = max(1, round(half * count / peak))
                y = half - height if sign < 0 else half
                bars.append(
                    render(
                        '<rect class="$kind" x="$x" y="$y" width="$w" height="$h">'
                        "<title>$count $kind</title></rect>",
                        kind=kind,
                        x=i * 6,
                        y=y,
                        w=bar,
                        h=height,
                        count=count,
                    )
                )
    return render(
        """<figure class="chart">
<svg viewBox="0 0 $width $height" width="100%" height="$height" role="img"
 aria-label="jobs that ended per $interval seconds"
 preserveAspectRatio="none"><line class="axis" x1="0" y1="$half" x2="$width" y2="$half"/>$bars</svg>
<figcaption>Complete (up) and failed (down) per $interval s since $since, peak $peak;
totals: <b class="t-complete">$n_complete</b> complete, <b class="t-failed">$n_failed</b> failed.
</figcaption></figure>""",
        width=width,
        height=2 * half,
        half=half,
        bars=join(bars),
        interval=f"{overview.interval:g}",
        since=_time(overview.since),
        peak=peak,
        n_complete=sum(complete),
        n_failed=sum(failed),
    )


def overview_page(ctx: Context, overview: Overview) -> Html:
    """Return the overview's live region: counts by status and type, throughput, newest jobs."""
    totals: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for per_status in overview.by_type.values():
        for status, count in per_status.items():
            totals[status] = totals.get(status, 0) + count
    cards = join(
        render(
            '<a class="card s-$status" href="$href"><span class="n" id="count-$status">$n</span>'
            "<span>$status</span></a>",
            status=status,
            href=ctx.url("/jobs", status=status),
            n=totals[status],
        )
        for status in STATUSES
    )
    head = join(render('<th class="num">$s</th>', s=status) for status in STATUSES)
    rows = join(
        render(
            '<tr><th><a href="$href">$type</a></th>$cells</tr>',
            href=ctx.url("/jobs", type=job_type),
            type=job_type,
            cells=join(
                render('<td class="num">$n</td>', n=per_status.get(status, 0))
                for status in STATUSES
            ),
        )
        for job_type, per_status in sorted(overview.by_type.items())
    )
    return render(
        """<section class="cards">$cards<span class="card total"><span class="n">$total</span>
<span>total</span></span></section>
<section><h2>Throughput</h2>$chart</section>
<section><h2>By type</h2>
<table class="types"><thead><tr><th>type</th>$head</tr></thead>
<tbody>$rows</tbody></table></section>
<section><h2>Newest jobs</h2>$recent</section>""",
        cards=cards,
        total=sum(totals.values()),
        chart=_chart(overview),
        head=head,
        rows=rows,
        recent=_job_table(ctx, overview.recent),
    )


# -- the job list --------------------------------------------------


def _job_row(ctx: Context, job: AnyJob) -> Html:
    meta = job.metadata
    progress = job.progress if isinstance(job, RunningJob) else None
    note = job.error if isinstance(job, FailedJob) else _short(progress)
    return render(
        '<tr data-id="$id"><td class="id"><a href="$href">$id</a></td><td>$type</td>'
        '<td>$status</td><td>$user</td><td>$created</td><td class="num">$attempt</td>'
        '<td class="note">$note</td></tr>',
        id=meta.id,
        href=ctx.url("/job", id=meta.id),
        type=meta.type,
        status=_status(job.status),
        user=meta.user_id,
        created=_time(meta.created),
        attempt=f"{meta.retry_count}/{meta.max_retries}",
        note=note,
    )


def _job_table(ctx: Context, jobs: Sequence[AnyJob]) -> Html:
    if not jobs:
        return Html('<p class="empty">No jobs.</p>')
    return render(
        """<table class="jobs"><thead><tr><th>id</th><th>type</th><th>status</th><th>user</th>
<th>created (UTC)</th><th>retries</th><th>progress / error</th></tr></thead>
<tbody>$rows</tbody></table>""",
        rows=join(_job_row(ctx, job) for job in jobs),
    )


def filter_form(ctx: Context, filters: Mapping[str, str]) -> Html:
    """Return the form that sets the job list's filters (outside the live region)."""
    options = join(
        render(
            '<option value="$v"$sel>$label</option>',
            v=value,
            sel=Html(" selected") if filters.get("status", "") == value else Html(""),
            label=value or "any status",
        )
        for value in ("", *STATUSES)
    )
    return render(
        """<form class="filters" method="get" action="$action">
<select name="status" aria-label="status">$options</select>
<input name="type" placeholder="type" value="$type" aria-label="type">
<input name="user" placeholder="user" value="$user" aria-label="user">
<input name="q" placeholder="id contains" value="$q" aria-label="id contains">
<button type="submit">Filter</button> <a href="$action">clear</a>
</form>""",
        action=ctx.url("/jobs"),
        options=options,
        type=filters.get("type", ""),
        user=filters.get("user", ""),
        q=filters.get("q", ""),
    )


def jobs_page(
    ctx: Context, jobs: Sequence[AnyJob], filters: Mapping[str, str], next_cursor: str | None
) -> Html:
    """Return the live region of the job list: one page of jobs and the links to the others."""
    links = []
    if filters.get("cursor"):
        links.append(
            render('<a href="$href">« newest</a>', href=ctx.url("/jobs", **_no_cursor(filters)))
        )
    if next_cursor is not None:
        links.append(
            render(
                '<a rel="next" href="$href">older »</a>',
                href=ctx.url("/jobs", **{**_no_cursor(filters), "cursor": next_cursor}),
            )
        )
    return render(
        '$table<nav class="pager">$links</nav>',
        table=_job_table(ctx, jobs),
        links=join(links, " "),
    )


def _no_cursor(filters: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in filters.items() if k != "cursor"}


# -- one job --------------------------------------------------

#: The actions a job in each status allows.
ACTIONS_BY_STATUS: Final[Mapping[str, tuple[str, ...]]] = {
    "pending": ("cancel",),
    "running": ("cancel",),
    "complete": ("delete",),
    "failed": ("retry", "delete"),
    "cancelled": ("delete",),
}


def _timeline(job: AnyJob) -> list[tuple[_dt.datetime, str]]:
    """Return the job's transitions that its record keeps, in time order."""
    events = [(job.metadata.created, "created (pending)")]
    for attempt in job.attempts:
        events.append((attempt.started_at, f"attempt {attempt.number} started on {attempt.worker}"))
        outcome = "cancelled" if attempt.error is None else f"failed: {attempt.error.describe()}"
        events.append((attempt.ended_at, f"attempt {attempt.number} {outcome}"))
    number = len(job.attempts) + 1
    started = getattr(job, "started_at", None)
    if isinstance(job, RunningJob):
        events.append((job.started_at, f"attempt {number} started on {job.claim.worker} (running)"))
    elif isinstance(job, CompleteJob):
        events.append((job.started_at, f"attempt {number} started on {job.worker or 'a worker'}"))
        events.append((job.completed_at, "complete"))
    elif isinstance(job, FailedJob):
        events.append((job.completed_at, f"failed: {job.error}"))
    elif isinstance(job, CancelledJob):
        if started is not None and not any(a.started_at == started for a in job.attempts):
            events.append((started, f"attempt {number} started"))
        events.append((job.completed_at, "cancelled"))
    if job.metadata.run_after is not None and job.status == "pending":
        events.append((job.metadata.run_after, "due (run after)"))
    return sorted(events, key=lambda event: event[0])


def _attempts(job: AnyJob) -> Html:
    if not job.attempts:
        return Html('<p class="empty">No attempt has ended with an error yet.</p>')
    rows = []
    for attempt in job.attempts:
        error = attempt.error
        trace = (
            render(
                '<details data-key="tb-$n"><summary>traceback</summary><pre>$tb</pre></details>',
                n=attempt.number,
                tb=error.traceback,
            )
            if error is not None and error.traceback
            else Html("")
        )
        rows.append(
            render(
                '<tr><td class="num">$n</td><td>$worker</td><td>$start</td><td>$end</td>'
                '<td class="num">$secs</td><td class="error">$error$trace</td></tr>',
                n=attempt.number,
                worker=attempt.worker,
                start=_time(attempt.started_at),
                end=_time(attempt.ended_at),
                secs=f"{(attempt.ended_at - attempt.started_at).total_seconds():.3f}",
                error="cancelled while running" if error is None else error.describe(),
                trace=trace,
            )
        )
    return render(
        """<table class="attempts"><thead><tr><th>#</th><th>worker</th><th>started</th>
<th>ended</th><th>seconds</th><th>error</th></tr></thead><tbody>$rows</tbody></table>""",
        rows=join(rows),
    )


def _action_forms(ctx: Context, job: AnyJob) -> Html:
    if not ctx.actions:
        return Html("")
    return join(
        render(
            """<form method="post" action="$action" class="action">
<input type="hidden" name="csrf_token" value="$token">
<input type="hidden" name="id" value="$id">
<button type="submit" name="action" value="$name" class="b-$name">$name</button></form>""",
            action=ctx.url("/action"),
            token=ctx.csrf_token,
            id=job.metadata.id,
            name=name,
        )
        for name in ACTIONS_BY_STATUS[job.status]
    )


def _progress(job: AnyJob, data: Mapping[str, Any]) -> Html:
    if not isinstance(job, RunningJob):
        return Html("")
    percent = _percent(data.get("progress"))
    bar = (
        render('<progress max="100" value="$v">$v%</progress>', v=f"{percent:g}")
        if percent is not None
        else Html("")
    )
    return render(
        '<section><h2>Progress</h2>$bar<pre id="progress">$text</pre></section>',
        bar=bar,
        text=_json(data.get("progress")),
    )


def job_page(ctx: Context, job: AnyJob, data: Mapping[str, Any], notice: str = "") -> Html:
    """Return the live region of one job's page; *data* is the job as JSON-safe values."""
    meta = job.metadata
    facts = [
        ("status", _status(job.status)),
        ("type", meta.type),
        ("user", meta.user_id),
        ("created", _time(meta.created)),
        ("priority", meta.priority),
        ("retries", f"{meta.retry_count} of {meta.max_retries}"),
    ]
    if meta.run_after is not None:
        facts.append(("run after", _time(meta.run_after)))
    if isinstance(job, RunningJob):
        facts.append(("worker", job.claim.worker))
    if isinstance(job, CompleteJob) and job.worker:
        facts.append(("worker", job.worker))
    if isinstance(job, FailedJob):
        facts.append(("error", job.error))
    result = (
        render('<section><h2>Result</h2><pre id="result">$r</pre></section>', r=_json(job.result))
        if isinstance(job, CompleteJob)
        else Html("")
    )
    timeline = join(
        render("<li>$when $what</li>", when=_time(when), what=what) for when, what in _timeline(job)
    )
    return render(
        """$notice<dl class="facts">$facts</dl>
<div class="actions">$actions</div>
$progress
<section><h2>Params</h2><pre id="params">$params</pre></section>
$result
<section><h2>Attempts</h2>$attempts</section>
<section><h2>Timeline</h2><ol class="timeline">$timeline</ol></section>""",
        notice=render('<p class="notice">$n</p>', n=notice) if notice else Html(""),
        facts=join(render("<dt>$k</dt><dd>$v</dd>", k=k, v=v) for k, v in facts),
        actions=_action_forms(ctx, job),
        progress=_progress(job, data),
        params=_json(data.get("params")),
        result=result,
        attempts=_attempts(job),
        timeline=timeline,
    )


def job_data(job: AnyJob, registry: Any) -> dict[str, Any]:
    """Return *job* as JSON-safe values, its registered classes unstructured."""
    return job_to_dict(job, registry)


def message_page(ctx: Context, heading: str, message: str) -> Html:
    """Return a page that only says something (an error, a refusal)."""
    return layout(ctx, heading, "", render('<p class="notice">$m</p>', m=message))

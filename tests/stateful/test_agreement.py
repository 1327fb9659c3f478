"""MemoryQueue and SQLiteQueue, driven by the same operations, must agree at every step.

One FakeClock drives both queues, built with the same options. Every rule
applies one operation to each queue and asserts the same outcome: the same
return value, or an exception of the same type. After every step, every job
ever created reads the same from both (``get_job``), and ``get_stats`` and
``list_jobs`` agree, order included.

Claim tokens are random per claim, so running jobs are compared with the
token replaced (:func:`normalized`); everything else must be equal. Each
running job of the ``running`` bundle is a pair: the same attempt as
claimed from each queue, so later writes use each queue's own claim.

Everything runs in the test's thread (``timeout=0``), so a failure replays.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Callable
from typing import Any

import attrs
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

import jobworker as jw
from jobworker import model
from jobworker.testing import FakeClock

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
LEASE = 30.0
# Recovered jobs back off (1, 2, 4 s), so run_after after a recovery is compared too.
POLICY = jw.RetryPolicy(base=1.0, factor=2.0, max_delay=4.0)
MAX_PAYLOAD = 200
TYPES = ("a", "b", "c")
USERS = ("u1", "u2")

Pair = tuple[jw.RunningJob[Any, Any], jw.RunningJob[Any, Any]]
#: ("returned", normalized value) or ("raised", exception type and its data)
Outcome = tuple[str, Any]


def normalized(value: Any) -> Any:
    """Return *value* with claim tokens replaced, so the two backends can be compared."""
    if isinstance(value, jw.RunningJob):
        return attrs.evolve(value, claim=jw.Claim("<token>", value.claim.worker))
    if isinstance(value, list):
        return [normalized(item) for item in value]
    return value


def described(exc: Exception) -> Any:
    """Return what must agree about an exception: its type, and a stale job's statuses."""
    if isinstance(exc, jw.StaleJobError):
        return (type(exc), exc.expected, exc.actual)
    return type(exc)


def nonnegative_priority(job: jw.PendingJob[Any]) -> bool:
    return job.metadata.priority >= 0


def bad_job(kind: str, job_id: str, now: dt.datetime) -> Any:
    """Return a job that create_job must refuse, of the *kind* given."""
    if kind == "set":
        return jw.new_job("a", {"tags": {1, 2}}, id=job_id, created=now)
    if kind == "nan":
        return jw.new_job("a", {"score": float("nan")}, id=job_id, created=now)
    if kind == "oversized":
        return jw.new_job("a", "é" * MAX_PAYLOAD, id=job_id, created=now)
    if kind == "surrogate-params":
        return jw.new_job("a", {"s": "\ud800"}, id=job_id, created=now)
    if kind == "running":
        pending = jw.new_job("a", {}, id=job_id, created=now)
        return model.start(pending, claim=model.new_claim("w"), now=now)
    # Metadata the constructor refuses, built as a careless caller could.
    fields: dict[str, Any] = {
        "surrogate-user": {"user_id": "\udc00"},
        "nul-type": {"type": "a\x00"},
        "priority-over-int32": {"priority": 2**31},
        "retry-count-over-max": {"retry_count": 2, "max_retries": 1},
    }[kind]
    with attrs.validators.disabled():
        meta = jw.JobMetadata(
            **{"id": job_id, "type": "a", "user_id": "", "created": now, **fields}
        )
    return jw.PendingJob(metadata=meta, params={})


class AgreementMachine(RuleBasedStateMachine):
    """The same operations on a MemoryQueue and a SQLiteQueue, compared step by step."""

    running = Bundle("running")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(EPOCH)
        options: dict[str, Any] = {
            "clock": self.clock,
            "lease_duration": LEASE,
            "retry_policy": POLICY,
            "max_payload": MAX_PAYLOAD,
        }
        self.tmp = tempfile.TemporaryDirectory()
        self.memory = jw.MemoryQueue(**options)
        self.sqlite = jw.SQLiteQueue(os.path.join(self.tmp.name, "jobs.sqlite3"), **options)
        self.ids: list[str] = []  # every id ever created, cleaned up or not
        self.created = 0
        self.bad = 0

    def teardown(self) -> None:
        self.memory.close()
        self.sqlite.close()
        self.tmp.cleanup()

    # -- applying one operation to both -----------------------------------------------------

    def agree(
        self, call: Callable[..., Any], pair: Pair | None = None
    ) -> tuple[list[Any], Outcome]:
        """Apply *call* to each queue (with its own job of *pair*); assert the same outcome.

        Returns each queue's raw return value (``None`` where it raised) and
        the shared outcome.
        """
        raw: list[Any] = []
        outcomes: list[Outcome] = []
        for n, queue in enumerate((self.memory, self.sqlite)):
            args = (queue,) if pair is None else (queue, pair[n])
            try:
                value = call(*args)
            except Exception as exc:  # broad: any exception is an outcome to compare
                raw.append(None)
                outcomes.append(("raised", described(exc)))
            else:
                raw.append(value)
                outcomes.append(("returned", normalized(value)))
        memory, sqlite = outcomes
        assert memory == sqlite, f"the backends disagree\nmemory: {memory}\nsqlite: {sqlite}"
        return raw, memory

    def next_created(self) -> dt.datetime:
        # Strictly increasing, so claim and list order are unique.
        self.created += 1
        return EPOCH + dt.timedelta(microseconds=self.created * 1013)

    # -- rules ------------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        _, outcome = self.agree(lambda q: q.get_stats())
        assert outcome == ("returned", dict.fromkeys(jw.STATUSES, 0))

    @rule(
        specs=st.lists(
            st.tuples(
                st.sampled_from(TYPES),
                st.integers(-1, 1),
                st.integers(0, 2),
                st.sampled_from([None, None, -5.0, 0.000_001, 5.0, 60.0]),
                st.sampled_from(USERS),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def create(self, specs: list[tuple[str, int, int, float | None, str]]) -> None:
        for job_type, priority, max_retries, delay, user in specs:
            created = self.next_created()
            # Ids sort unlike creation order, so ordering by id would be caught.
            job_id = f"job-{(self.created * 7919) % 10007:05d}"
            run_after = None if delay is None else self.clock.now() + dt.timedelta(seconds=delay)
            job = jw.new_job(
                job_type,
                {"n": self.created},
                id=job_id,
                user_id=user,
                max_retries=max_retries,
                priority=priority,
                run_after=run_after,
                created=created,
            )
            _, outcome = self.agree(lambda q, job=job: q.create_job(job))
            assert outcome == ("returned", job)
            self.ids.append(job_id)

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def create_duplicate(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids))
        job = jw.new_job("b", {"dup": True}, id=job_id, created=self.next_created())
        # Refused while the job exists; accepted again once it was cleaned up.
        self.agree(lambda q: q.create_job(job))

    @rule(
        kind=st.sampled_from(
            [
                "set",
                "nan",
                "oversized",
                "surrogate-params",
                "surrogate-user",
                "nul-type",
                "priority-over-int32",
                "running",
                "retry-count-over-max",
            ]
        )
    )
    def create_bad(self, kind: str) -> None:
        self.bad += 1
        job_id = f"bad-{self.bad}"
        job = bad_job(kind, job_id, self.next_created())
        _, outcome = self.agree(lambda q: q.create_job(job))
        assert outcome[0] == "raised"
        assert issubclass(outcome[1], jw.InvalidJobError)
        _, outcome = self.agree(lambda q: q.get_job(job_id))
        assert outcome == ("returned", None)

    @rule(
        target=running,
        types=st.sampled_from([None, ("a",), ("b",), ("a", "c"), ()]),
        with_predicate=st.booleans(),
    )
    def claim(self, types: tuple[str, ...] | None, with_predicate: bool) -> Any:
        predicate = nonnegative_priority if with_predicate else None
        raw, outcome = self.agree(
            lambda q: q.poll_next_pending_job(
                types=types, predicate=predicate, worker="machine", timeout=0
            )
        )
        if outcome == ("returned", None):
            return multiple()
        memory, sqlite = raw
        assert isinstance(memory, jw.RunningJob) and isinstance(sqlite, jw.RunningJob)
        return (memory, sqlite)

    @rule(pair=running, percent=st.integers(0, 100))
    def progress(self, pair: Pair, percent: int) -> None:
        self.agree(lambda q, job: q.update_job(attrs.evolve(job, progress={"pct": percent})), pair)

    @rule(pair=running, result=st.integers())
    def complete(self, pair: Pair, result: int) -> None:
        now = self.clock.now()
        self.agree(
            lambda q, job: q.update_job(
                model.complete(job, {"r": result}, now=now), "running", claim=job.claim
            ),
            pair,
        )

    @rule(pair=running, delay=st.sampled_from([0.0, 2.0]))
    def fail_or_retry(self, pair: Pair, delay: float) -> None:
        now = self.clock.now()
        self.agree(
            lambda q, job: q.update_job(
                model.fail_or_retry(job, "ValueError: boom", now=now, delay=delay),
                "running",
                claim=job.claim,
            ),
            pair,
        )

    @rule(pair=running)
    def release(self, pair: Pair) -> None:
        self.agree(
            lambda q, job: q.update_job(model.release(job), "running", claim=job.claim), pair
        )

    @rule(pair=running)
    def renew(self, pair: Pair) -> None:
        self.agree(lambda q, job: q.renew_lease(job), pair)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from([*self.ids, "no-such-job"]))
        self.agree(lambda q: q.cancel_job(job_id))

    @rule(text=st.sampled_from(["x\ud800", "a\x00b"]))
    def look_up_unstorable_text(self, text: str) -> None:
        # No job can carry such an id, type or user: every lookup finds nothing.
        self.agree(lambda q: q.get_job(text))
        self.agree(lambda q: q.cancel_job(text))
        self.agree(lambda q: q.list_jobs(type=text, user_id=text))
        self.agree(lambda q: q.poll_next_pending_job(types=[text], timeout=0))

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def stale_update(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(self.ids))
        raw, outcome = self.agree(lambda q: q.get_job(job_id))
        if outcome == ("returned", None):
            return
        status = raw[0].status
        wrong = data.draw(st.sampled_from([s for s in jw.STATUSES if s != status]))
        pair = (raw[0], raw[1])
        _, outcome = self.agree(
            lambda q, job: q.update_job(job, wrong, claim=getattr(job, "claim", None)), pair
        )
        assert outcome[0] == "raised"

    @rule(seconds=st.sampled_from([0.000_001, 0.5, 1.0, 4.0, 29.999_999, 30.0, 31.0, 3600.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(hours=st.sampled_from([0, 1, 24]))
    def cleanup(self, hours: int) -> None:
        self.agree(lambda q: q.cleanup_old_jobs(retention_hours=hours))

    # -- invariants -------------------------------------------------------------------------

    @invariant()
    def every_job_reads_the_same(self) -> None:
        for job_id in self.ids:
            self.agree(lambda q, job_id=job_id: q.get_job(job_id))

    @invariant()
    def stats_and_lists_agree(self) -> None:
        _, outcome = self.agree(lambda q: q.get_stats())
        _, listed = self.agree(lambda q: q.list_jobs(limit=10_000))
        assert outcome[0] == listed[0] == "returned"
        assert sum(outcome[1].values()) == len(listed[1])
        self.agree(lambda q: q.list_jobs(status="pending", user_id="u1", limit=3, offset=1))


# max_examples comes from the profile: 200 under CI.
AgreementMachine.TestCase.settings = settings(stateful_step_count=40)
TestAgreement = AgreementMachine.TestCase

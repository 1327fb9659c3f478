"""Pauses, concurrency limits and rate limits, driven step by step on every backend.

The queue runs in the test's thread with a FakeClock (polls with
``timeout=0``). Rules create jobs of four types, claim them (by any type, by
named types, through a predicate), end them, pause and resume types, and let
leases expire. After every step the store itself is read:

- running jobs of a limited type never exceed its limit (per key where the
  limit has one);
- no window of the rate's period ever holds more starts than its rate;
- a paused type is never claimed;
- and a poll that finds nothing leaves no job behind that it could have
  taken: every ready job it could see is paused or held back by a limit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import tempfile
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import jobworker as jw
from jobworker import model as m
from jobworker.testing import FakeClock
from jobworker.throttling import key_of
from tests.conftest import require_postgres, run_schema

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
LEASE = 30.0
RECOVERY = jw.RetryPolicy.immediate()
TYPES = ("lim", "key", "rate", "free")
LIMIT = 2
RATE, PERIOD = 2, 10.0


def registry() -> jw.JobTypeRegistry:
    types = jw.JobTypeRegistry()
    types.set_limits("lim", concurrency=LIMIT)
    types.set_limits("key", concurrency=1, key="acct")
    types.set_limits("rate", rate=RATE, period=PERIOD)
    return types


class LimitsMachine(RuleBasedStateMachine):
    def make_queue(self, clock: FakeClock) -> jw.JobQueue:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(EPOCH)
        self.queue = self.make_queue(self.clock)
        self.paused: set[str] = set()
        self.held: list[m.RunningJob[Any, Any]] = []
        self.rate_starts: list[dt.datetime] = []
        self.created = 0

    def teardown(self) -> None:
        self.queue.close()

    # -- rules ------------------------------------------------------------------------------

    @rule(
        job_type=st.sampled_from(TYPES),
        acct=st.sampled_from(["x", "y", None]),
        count=st.integers(1, 3),
    )
    def create(self, job_type: str, acct: str | None, count: int) -> None:
        params = {} if acct is None else {"acct": acct}
        for _ in range(count):
            self.created += 1
            job = jw.new_job(
                job_type, params, id=f"j{self.created}", max_retries=3, created=self.now()
            )
            self.queue.create_job(job)

    @rule(
        types=st.none() | st.sets(st.sampled_from(TYPES), min_size=1),
        with_predicate=st.booleans(),
        count=st.integers(1, 3),
    )
    def claim(self, types: set[str] | None, with_predicate: bool, count: int) -> None:
        predicate = (lambda job: True) if with_predicate else None
        for _ in range(count):
            job = self.queue.poll_next_pending_job(types=types, predicate=predicate, timeout=0)
            if job is None:
                self.check_nothing_claimable(types)
                return
            assert job.metadata.type not in self.paused, f"claimed paused {job.metadata.type}"
            if job.metadata.type == "rate":
                self.rate_starts.append(self.now())
            self.held.append(job)
            self.limits_hold()

    @rule(data=st.data(), outcome=st.sampled_from(["complete", "fail", "retry"]))
    def end(self, data: st.DataObject, outcome: str) -> None:
        if not self.held:
            return
        job = self.held.pop(data.draw(st.integers(0, len(self.held) - 1)))
        if outcome == "complete":
            new: m.AnyJob = m.complete(job, None, now=self.now())
        elif outcome == "fail":
            new = m.fail(job, "failed", now=self.now())
        else:
            new = m.fail_or_retry(job, "again", now=self.now(), delay=0.0)
        # Its lease may have expired and the job been recovered meanwhile.
        with contextlib.suppress(jw.LeaseLostError, jw.StaleJobError):
            self.queue.update_job(new, "running", claim=job.claim)

    @rule(job_type=st.sampled_from(TYPES))
    def pause(self, job_type: str) -> None:
        assert self.queue.pause_type(job_type) == (job_type not in self.paused)
        self.paused.add(job_type)

    @rule(job_type=st.sampled_from(TYPES))
    def resume(self, job_type: str) -> None:
        assert self.queue.resume_type(job_type) == (job_type in self.paused)
        self.paused.discard(job_type)

    @rule(seconds=st.sampled_from([0.5, 3.0, 10.0, LEASE + 1]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # -- the checks -------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.clock.now()

    def running(self) -> list[m.AnyJob]:
        return self.queue.list_jobs(status="running", limit=10_000)

    def rate_window_full(self) -> bool:
        since = self.now() - dt.timedelta(seconds=PERIOD)
        return sum(1 for at in self.rate_starts if at > since) >= RATE

    def check_nothing_claimable(self, types: set[str] | None) -> None:
        running = self.running()
        lim = sum(1 for job in running if job.metadata.type == "lim")
        busy_keys = {key_of_params(job.params) for job in running if job.metadata.type == "key"}
        for job in self.queue.list_jobs(status="pending", limit=10_000):
            meta = job.metadata
            if types is not None and meta.type not in types:
                continue
            if meta.run_after is not None and meta.run_after > self.now():
                continue
            held_back = (
                meta.type in self.paused
                or (meta.type == "lim" and lim >= LIMIT)
                or (meta.type == "key" and key_of_params(job.params) in busy_keys)
                or (meta.type == "rate" and self.rate_window_full())
            )
            assert held_back, f"{meta.id} ({meta.type}) was claimable but not claimed"

    @invariant()
    def limits_hold(self) -> None:
        running = self.running()
        assert sum(1 for job in running if job.metadata.type == "lim") <= LIMIT
        keys = [key_of_params(job.params) for job in running if job.metadata.type == "key"]
        assert len(keys) == len(set(keys)), f"two running jobs of one key: {keys}"
        for i, start in enumerate(self.rate_starts):
            window = [
                at for at in self.rate_starts[i:] if at < start + dt.timedelta(seconds=PERIOD)
            ]
            assert len(window) <= RATE

    @invariant()
    def pauses_are_stored(self) -> None:
        assert self.queue.paused_types() == self.paused


def key_of_params(params: Any) -> str:
    return key_of(json.dumps(params), "acct")


class MemoryLimitsMachine(LimitsMachine):
    def make_queue(self, clock: FakeClock) -> jw.JobQueue:
        return jw.MemoryQueue(
            clock=clock, lease_duration=LEASE, retry_policy=RECOVERY, registry=registry()
        )


class SQLiteLimitsMachine(LimitsMachine):
    def make_queue(self, clock: FakeClock) -> jw.JobQueue:
        self.tmp = tempfile.TemporaryDirectory()
        path = os.path.join(self.tmp.name, "jobs.sqlite3")
        return jw.SQLiteQueue(
            path, clock=clock, lease_duration=LEASE, retry_policy=RECOVERY, registry=registry()
        )

    def teardown(self) -> None:
        super().teardown()
        self.tmp.cleanup()


class PostgresLimitsMachine(LimitsMachine):
    # One schema for every example, emptied before each (see run_schema).

    def make_queue(self, clock: FakeClock) -> jw.JobQueue:
        from jobworker.queues.postgres import PostgresQueue

        queue = PostgresQueue(
            require_postgres(),
            schema=run_schema("limits machine"),
            migrate=True,
            notify=False,
            pool_size=2,
            clock=clock,
            lease_duration=LEASE,
            retry_policy=RECOVERY,
            registry=registry(),
        )
        names = queue.names
        queue._write(lambda tx: tx.execute(f"TRUNCATE {names.jobs}, {names.controls}"))
        return queue


MemoryLimitsMachine.TestCase.settings = settings(stateful_step_count=50)
SQLiteLimitsMachine.TestCase.settings = settings(stateful_step_count=50)
PostgresLimitsMachine.TestCase.settings = settings(stateful_step_count=50)
TestMemoryLimits = MemoryLimitsMachine.TestCase
TestSQLiteLimits = SQLiteLimitsMachine.TestCase
TestPostgresLimits = PostgresLimitsMachine.TestCase

"""The queue and a single-step worker, driven against a model of the semantics.

Everything runs in the test's thread: polls use ``timeout=0`` and the worker
is stepped with ``run_once(timeout=0)``, so a failure replays exactly. The
clock is a FakeClock; leases expire and scheduled jobs fall due only when a
rule advances it.

``QueueMachine`` knows nothing of a backend but ``make_queue``: a backend is
checked by subclassing it with its own ``make_queue`` (see ``MemoryMachine``).
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

import jobworker as jw
from jobworker import model
from jobworker.testing import FakeClock
from tests.conftest import require_postgres, run_schema

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
LEASE = 30.0
POLICY = jw.RetryPolicy(base=1.0, factor=2.0, max_delay=8.0)
# Jobs recovered from a lost worker are due at once, so a recovered job is
# soon claimed again and the old holder's late writes get tested.
RECOVERY = jw.RetryPolicy.immediate()
TYPES = ("a", "b")


#: The time limit of a ``hang`` job: its attempt times out in the worker.
HANG_LIMIT = 0.05


class ScriptedWorker(jw.JobWorker):
    """Does what the job's params say: ``ok``, ``raise``, ``permanent`` or ``hang``.

    A ``hang`` job computes until its time limit interrupts it.
    """

    def get_worker_name(self) -> str:
        return "scripted"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return True

    def execute_job(self, job: jw.AnyJob) -> Any:
        behaviour = job.params["behaviour"]
        if behaviour == "raise":
            raise ValueError("scripted failure")
        if behaviour == "permanent":
            raise jw.PermanentJobError("scripted permanent failure")
        if behaviour == "hang":
            deadline = time.monotonic() + 60.0
            spins = 0
            while time.monotonic() < deadline:
                spins += 1
            raise AssertionError(f"the time limit never interrupted the job ({spins} spins)")
        return {"done": job.metadata.id}


class PredicateRefusal(Exception):
    """Raised by a machine's predicate; carries the id of the job it was shown."""


@attrs.define
class ModelJob:
    """What the model expects of one job."""

    id: str
    type: str
    priority: int
    created: dt.datetime
    max_retries: int
    behaviour: str
    status: str = "pending"
    retry_count: int = 0
    run_after: dt.datetime | None = None
    token: str | None = None
    lease_until: dt.datetime | None = None
    ended_at: dt.datetime | None = None
    attempts: int = 0
    unique_key: str | None = None
    unique_states: frozenset[str] = jw.unique.DEFAULT_UNIQUE_STATES

    def holds_key(self) -> bool:
        return self.unique_key is not None and self.status in self.unique_states


#: Unique keys and scopes the machine gives jobs: few keys, so that they collide.
UNIQUE = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from(["k1", "k2"]),
        st.sampled_from([(), ("complete",), ("failed",), ("cancelled", "complete", "failed")]),
    ),
)


class QueueMachine(RuleBasedStateMachine):
    """The contract of DESIGN.md section 3, checked step by step."""

    running = Bundle("running")

    def make_queue(self, clock: FakeClock) -> jw.JobQueue:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(EPOCH)
        self.queue = self.make_queue(self.clock)
        self.worker_all = ScriptedWorker(self.queue, retry_policy=POLICY)
        self.worker_a = ScriptedWorker(self.queue, retry_policy=POLICY, job_types={"a"})
        self.jobs: dict[str, ModelJob] = {}
        self.terminal: dict[str, jw.AnyJob] = {}
        self.tokens: set[str] = set()
        self.created = 0

    def teardown(self) -> None:
        self.queue.close()

    # -- the model -----------------------------------------------------------------------

    def now(self) -> dt.datetime:
        return self.clock.now()

    def recover_expired(self) -> None:
        """Every queue call first recovers the jobs whose lease has expired."""
        for job in self.jobs.values():
            if job.status == "running" and job.lease_until <= self.now():
                self.attempt_failed(job, RECOVERY.delay(job.retry_count))

    def attempt_failed(self, job: ModelJob, delay: float, *, permanent: bool = False) -> None:
        job.token = None
        job.lease_until = None
        if not permanent and job.retry_count < job.max_retries:
            job.status = "pending"
            job.retry_count += 1
            job.run_after = self.now() + dt.timedelta(seconds=delay) if delay > 0 else None
        else:
            job.status = "failed"
            job.ended_at = self.now()

    def expected_claim(self, types: frozenset[str] | None) -> ModelJob | None:
        ready = [
            job
            for job in self.jobs.values()
            if job.status == "pending"
            and (job.run_after is None or job.run_after <= self.now())
            and (types is None or job.type in types)
        ]
        return min(ready, key=lambda job: (-job.priority, job.created), default=None)

    def claimed(self, expected: ModelJob | None, got: jw.RunningJob[Any, Any] | None) -> None:
        if expected is None:
            assert got is None
            return
        assert got is not None
        assert got.metadata.id == expected.id
        assert got.claim.token not in self.tokens, "a claim token was issued twice"
        self.tokens.add(got.claim.token)
        expected.status = "running"
        expected.token = got.claim.token
        expected.lease_until = self.now() + dt.timedelta(seconds=LEASE)
        expected.attempts += 1
        assert expected.attempts <= 1 + expected.max_retries

    # -- rules ---------------------------------------------------------------------------

    @initialize()
    def start(self) -> None:
        assert self.queue.get_stats() == dict.fromkeys(jw.STATUSES, 0)

    @rule(
        specs=st.lists(
            st.tuples(
                st.sampled_from(TYPES),
                st.integers(-1, 1),
                st.integers(0, 3),
                st.sampled_from(["ok", "ok", "raise", "permanent", "hang"]),
                st.sampled_from([0, 0, 5, 60]),
                UNIQUE,
            ),
            min_size=1,
            max_size=5,
        )
    )
    def create(self, specs: list[tuple[str, int, int, str, int, Any]]) -> None:
        self.recover_expired()
        for job_type, priority, max_retries, behaviour, delay, unique in specs:
            self.created += 1
            # Ids sort unlike creation order, so ordering by id would be caught.
            job_id = f"job-{(self.created * 7919) % 10007:05d}"
            # Strictly increasing created times make the expected order unique.
            created = EPOCH + dt.timedelta(microseconds=self.created)
            run_after = self.now() + dt.timedelta(seconds=delay) if delay else None
            scope = None
            if unique is not None:
                scope = jw.Unique(key=unique[0], states={"pending", "running", *unique[1]})
            new = jw.new_job(
                job_type,
                {"behaviour": behaviour},
                id=job_id,
                max_retries=max_retries,
                priority=priority,
                run_after=run_after,
                created=created,
                unique=scope,
                time_limit=HANG_LIMIT if behaviour == "hang" else None,
            )
            holder = self.key_holder(new.metadata.unique_key)
            if holder is not None:
                # The key is taken: refused, and nothing stored or changed.
                with pytest.raises(jw.UniqueKeyTakenError) as caught:
                    self.queue.create_job(new)
                assert caught.value.holder_id == holder.id
                assert self.queue.get_job(job_id) is None
                got, made = self.queue.create_or_get_job(new)
                assert not made and got.metadata.id == holder.id
                continue
            stored = self.queue.create_job(new)
            assert stored.status == "pending"
            self.jobs[job_id] = ModelJob(
                id=job_id,
                type=job_type,
                priority=priority,
                created=created,
                max_retries=max_retries,
                behaviour=behaviour,
                run_after=run_after,
                unique_key=new.metadata.unique_key,
                unique_states=new.metadata.unique_states,
            )

    def key_holder(self, key: str | None) -> ModelJob | None:
        """Return the job the model says holds *key*."""
        holders = [job for job in self.jobs.values() if job.unique_key == key and job.holds_key()]
        assert len(holders) <= 1
        return holders[0] if key is not None and holders else None

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def create_duplicate(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        before = self.queue.get_job(job_id)
        with pytest.raises(jw.DuplicateJobError):
            self.queue.create_job(jw.new_job("a", {"behaviour": "ok"}, id=job_id))
        self.recover_expired()
        assert self.queue.get_job(job_id) == before

    @rule(bad=st.sampled_from([{1, 2}, float("nan"), object()]))
    def create_unstorable(self, bad: object) -> None:
        before = self.queue.get_stats()
        with pytest.raises(jw.SerializationError):
            self.queue.create_job(jw.new_job("a", {"value": bad}, id="never-stored"))
        self.recover_expired()
        assert self.queue.get_job("never-stored") is None
        assert self.queue.get_stats() == before

    @rule(target=running, types=st.sampled_from([None, ("a",), ("b",), ("a", "b")]))
    def claim(self, types: tuple[str, ...] | None) -> Any:
        wanted = None if types is None else frozenset(types)
        self.recover_expired()
        expected = self.expected_claim(wanted)
        got = self.queue.poll_next_pending_job(types=types, worker="machine", timeout=0)
        self.claimed(expected, got)
        return got if got is not None else model.new_claim("nobody")

    @rule(which=st.sampled_from(["all", "a"]))
    def worker_step(self, which: str) -> None:
        worker = self.worker_all if which == "all" else self.worker_a
        self.recover_expired()
        expected = self.expected_claim(None if which == "all" else frozenset({"a"}))
        outcome = worker.run_once(timeout=0)
        if expected is None:
            assert outcome is None
            return
        assert outcome is not None
        assert outcome.job.metadata.id == expected.id
        expected.attempts += 1
        assert expected.attempts <= 1 + expected.max_retries
        if expected.behaviour == "ok":
            assert outcome.status == "complete"
            expected.status = "complete"
            expected.ended_at = self.now()
        else:
            permanent = expected.behaviour == "permanent"
            self.attempt_failed(expected, POLICY.delay(expected.retry_count), permanent=permanent)
            assert outcome.status == ("retry" if expected.status == "pending" else "failed")
            # The timeout transition: the watchdog recorded the attempt failed
            # under its claim, at the limit, with a JobTimeoutError.
            timed_out = isinstance(outcome.error, jw.JobTimeoutError)
            assert timed_out == (expected.behaviour == "hang")
            if timed_out:
                (last, *_) = reversed(outcome.job.attempts)
                assert last.error is not None and last.error.type_name == "JobTimeoutError"
                assert "time limit of 0.05s" in last.error.message

    def _write(self, job: Any, new: jw.AnyJob) -> jw.AnyJob | None:
        """update_job(new, "running") under *job*'s claim; None when the model says it fails."""
        self.recover_expired()
        mine = self.jobs.get(job.metadata.id)
        if mine is None:  # ended and cleaned up since
            with pytest.raises(jw.JobNotFoundError):
                self.queue.update_job(new, "running", claim=job.claim)
            return None
        if mine.status != "running" or mine.token != job.claim.token:
            with pytest.raises(jw.StaleJobError):
                self.queue.update_job(new, "running", claim=job.claim)
            return None
        return self.queue.update_job(new, "running", claim=job.claim)

    @rule(job=consumes(running), result=st.integers())
    def complete(self, job: Any, result: int) -> None:
        if not isinstance(job, jw.RunningJob):
            return
        stored = self._write(job, model.complete(job, result, now=self.now()))
        if stored is not None:
            assert jw.is_complete_job(stored) and stored.result == result
            mine = self.jobs[job.metadata.id]
            mine.status, mine.ended_at, mine.token = "complete", self.now(), None

    @rule(job=consumes(running), delay=st.sampled_from([0.0, 2.0]))
    def fail_or_retry(self, job: Any, delay: float) -> None:
        if not isinstance(job, jw.RunningJob):
            return
        new = model.fail_or_retry(job, "ValueError: boom", now=self.now(), delay=delay)
        stored = self._write(job, new)
        if stored is not None:
            self.attempt_failed(self.jobs[job.metadata.id], delay)
            assert stored.status == self.jobs[job.metadata.id].status

    @rule(job=running, percent=st.integers(0, 100))
    def progress(self, job: Any, percent: int) -> None:
        if not isinstance(job, jw.RunningJob):
            return
        self.recover_expired()
        mine = self.jobs.get(job.metadata.id)
        update = attrs.evolve(job, progress={"percentage": percent})
        if mine is None:  # ended and cleaned up since
            with pytest.raises(jw.JobNotFoundError):
                self.queue.update_job(update)
            return
        if mine.status != "running" or mine.token != job.claim.token:
            with pytest.raises(jw.StaleJobError):
                self.queue.update_job(update)
            return
        stored = self.queue.update_job(update)
        assert jw.is_running_job(stored) and stored.progress == {"percentage": percent}

    @rule(job=running)
    def renew(self, job: Any) -> None:
        if not isinstance(job, jw.RunningJob):
            return
        self.recover_expired()
        mine = self.jobs.get(job.metadata.id)
        held = mine is not None and mine.status == "running" and mine.token == job.claim.token
        assert self.queue.renew_lease(job) is held
        if held:
            assert mine is not None
            mine.lease_until = self.now() + dt.timedelta(seconds=LEASE)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        self.recover_expired()
        mine = self.jobs[job_id]
        cancellable = mine.status in ("pending", "running")
        assert self.queue.cancel_job(job_id) is cancellable
        if cancellable:
            mine.status, mine.ended_at, mine.token = "cancelled", self.now(), None

    def failed_ids(self) -> list[str]:
        return sorted(job.id for job in self.jobs.values() if job.status == "failed")

    @precondition(lambda self: self.failed_ids())
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        """An operator's retry: a failed job back to pending, compare-and-set on "failed"."""
        job_id = data.draw(st.sampled_from(self.failed_ids()))
        self.recover_expired()  # a failed job stays failed: recovery touches running ones
        stored = self.queue.get_job(job_id)
        assert jw.is_failed_job(stored)
        mine = self.jobs[job_id]
        holder = None if mine.holds_key() else self.key_holder(mine.unique_key)
        if holder is not None:
            # Back to pending would make a second holder of its key: refused.
            with pytest.raises(jw.UniqueKeyTakenError) as caught:
                self.queue.update_job(model.requeue(stored), "failed")
            assert caught.value.holder_id == holder.id
            assert self.queue.get_job(job_id) == stored
            return
        new = self.queue.update_job(model.requeue(stored), "failed")
        assert jw.is_pending_job(new)
        assert new.metadata.retry_count == 0 and new.metadata.run_after is None
        assert new.params == stored.params
        mine.status, mine.retry_count, mine.run_after = "pending", 0, None
        mine.ended_at, mine.token, mine.attempts = None, None, 0
        # It left the terminal states: its next ending is a new one.
        self.terminal.pop(job_id, None)

    @precondition(lambda self: len(self.failed_ids()) < len(self.jobs))
    @rule(data=st.data())
    def requeue_refused(self, data: st.DataObject) -> None:
        """Only a failed job can be requeued; any other is left as it is."""
        failed = set(self.failed_ids())
        job_id = data.draw(st.sampled_from(sorted(set(self.jobs) - failed)))
        self.recover_expired()
        mine = self.jobs[job_id]
        stored = self.queue.get_job(job_id)
        assert stored is not None
        back = jw.PendingJob(metadata=stored.metadata, params=stored.params)
        if mine.status != "failed":  # recovery may have failed it just now
            with pytest.raises(jw.StaleJobError):
                self.queue.update_job(back, "failed")
        if mine.status in ("complete", "cancelled"):
            with pytest.raises(jw.InvalidTransitionError):
                self.queue.update_job(back, mine.status)
        assert self.queue.get_job(job_id) == stored

    @rule()
    def cancel_missing(self) -> None:
        assert self.queue.cancel_job("no-such-job") is False

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def stale_update(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.jobs)))
        self.recover_expired()
        before = self.queue.get_job(job_id)
        assert before is not None
        wrong = data.draw(st.sampled_from([s for s in jw.STATUSES if s != before.status]))
        with pytest.raises(jw.StaleJobError):
            self.queue.update_job(before, wrong)
        assert self.queue.get_job(job_id) == before

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0, 10.0, 31.0, 31.0, 3600.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(hours=st.sampled_from([0, 1, 24]))
    def cleanup(self, hours: int) -> None:
        self.recover_expired()
        cutoff = self.now() - dt.timedelta(hours=hours)
        old = {
            job.id
            for job in self.jobs.values()
            if job.ended_at is not None and job.ended_at < cutoff
        }
        assert self.queue.cleanup_old_jobs(retention_hours=hours) == len(old)
        for job_id in old:
            del self.jobs[job_id]
            self.terminal.pop(job_id, None)
            assert self.queue.get_job(job_id) is None

    # -- predicates, hand-backs and leases ---------------------------------------------------

    def ready_in_order(self, types: frozenset[str] | None) -> list[ModelJob]:
        ready = [
            job
            for job in self.jobs.values()
            if job.status == "pending"
            and (job.run_after is None or job.run_after <= self.now())
            and (types is None or job.type in types)
        ]
        return sorted(ready, key=lambda job: (-job.priority, job.created))

    @rule(
        data=st.data(),
        types=st.sampled_from([None, ("a",), ("a", "b")]),
        ending=st.sampled_from(["accept", "raise", "cancel"]),
    )
    def predicate_claim(
        self, data: st.DataObject, types: tuple[str, ...] | None, ending: str
    ) -> None:
        """Poll with a predicate that turns some jobs down, then accepts, raises or cancels.

        A backend may claim a job before asking and hand it back on a no: the
        jobs turned down stay pending in their place, one cancelled meanwhile
        stays cancelled, and a predicate that raises leaves every job as it was.
        """
        self.recover_expired()
        ready = self.ready_in_order(None if types is None else frozenset(types))
        ids = [job.id for job in ready]
        refused = data.draw(st.sets(st.sampled_from(ids)) if ids else st.just(set()))
        cancelled: list[str] = []

        def predicate(job: jw.AnyJob) -> bool:
            job_id = job.metadata.id
            if job_id in refused:
                return False
            if ending == "raise":
                raise PredicateRefusal(job_id)
            if ending == "cancel" and not cancelled:
                cancelled.append(job_id)
                assert self.queue.cancel_job(job_id)
                return False
            return True

        left = [job for job in ready if job.id not in refused]
        if ending == "raise" and left:
            with pytest.raises(PredicateRefusal, match=left[0].id):
                self.queue.poll_next_pending_job(types=types, predicate=predicate, timeout=0)
            return
        got = self.queue.poll_next_pending_job(
            types=types, predicate=predicate, worker="machine", timeout=0
        )
        if ending == "cancel" and left:
            first = left.pop(0)
            assert cancelled == [first.id]
            first.status, first.ended_at, first.token = "cancelled", self.now(), None
        assert (got is None) == (not left), (ids, refused, cancelled, got)
        assert got is None or got.metadata.id == left[0].id, (ids, refused, cancelled, got)
        self.claimed(left[0] if left else None, got)

    @rule(job=running)
    def progress_then_worker_dies(self, job: Any) -> None:
        """A progress write keeps the lease tracked: the job is still recovered."""
        if not isinstance(job, jw.RunningJob):
            return
        self.recover_expired()
        mine = self.jobs.get(job.metadata.id)
        if mine is None or mine.status != "running" or mine.token != job.claim.token:
            return
        self.queue.update_job(attrs.evolve(job, progress={"percentage": 50}))
        self.clock.advance(LEASE)
        self.recover_expired()
        assert mine.token != job.claim.token
        stored = self.queue.get_job(job.metadata.id)
        assert stored is not None and stored.status == mine.status

    @rule(job=running)
    def renewal_after_a_failed_heartbeat(self, job: Any) -> None:
        """The heartbeat missed a renewal (it failed); the next one still holds the job."""
        if not isinstance(job, jw.RunningJob):
            return
        self.recover_expired()
        mine = self.jobs.get(job.metadata.id)
        if mine is None or mine.status != "running" or mine.token != job.claim.token:
            return
        assert mine.lease_until is not None
        # Two of three ticks lost, the lease not yet run out.
        gap = (mine.lease_until - self.now()).total_seconds() * 2 / 3
        self.clock.advance(gap)
        self.recover_expired()  # other jobs' leases may run out meanwhile
        assert self.queue.renew_lease(job)
        mine.lease_until = self.now() + dt.timedelta(seconds=LEASE)
        self.clock.advance(gap)
        self.recover_expired()
        stored = self.queue.get_job(job.metadata.id)
        assert isinstance(stored, jw.RunningJob) and stored.claim == job.claim

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def agrees_with_model(self) -> None:
        self.recover_expired()
        counts = dict.fromkeys(jw.STATUSES, 0)
        for mine in self.jobs.values():
            counts[mine.status] += 1
            job = self.queue.get_job(mine.id)
            assert job is not None, f"{mine.id} was lost"
            assert job.status == mine.status, (mine, job)
            meta = job.metadata
            assert meta.retry_count == mine.retry_count
            assert 0 <= meta.retry_count <= meta.max_retries
            if jw.is_running_job(job):
                assert job.claim.token == mine.token
            if jw.is_pending_job(job):
                assert meta.run_after == mine.run_after
            if isinstance(job, (jw.CompleteJob, jw.FailedJob)):
                assert job.started_at <= job.completed_at
            if jw.is_failed_job(job):
                assert job.error
            if jw.is_terminal(job):
                assert job.completed_at == mine.ended_at
                # A terminal job never changes again.
                assert self.terminal.setdefault(mine.id, job) == job
        # A key is never held by two jobs in its scoped states.
        holders: dict[str, str] = {}
        for job in self.queue.list_jobs(limit=10_000):
            if jw.holds_unique_key(job):
                key = job.metadata.unique_key
                assert key is not None
                assert key not in holders, f"{key} is held by {holders.get(key)} and {job}"
                holders[key] = job.metadata.id
        expected = {
            mine.unique_key: mine.id
            for mine in self.jobs.values()
            if mine.unique_key is not None and mine.holds_key()
        }
        assert holders == expected
        # Each job in exactly one state, and no job appears or vanishes.
        assert self.queue.get_stats() == counts
        assert len(self.queue.list_jobs(limit=10_000)) == len(self.jobs)


class MemoryMachine(QueueMachine):
    def make_queue(self, clock: FakeClock) -> jw.JobQueue:
        return jw.MemoryQueue(clock=clock, lease_duration=LEASE, retry_policy=RECOVERY)


class SQLiteMachine(QueueMachine):
    def make_queue(self, clock: FakeClock) -> jw.JobQueue:
        self.tmp = tempfile.TemporaryDirectory()
        path = os.path.join(self.tmp.name, "jobs.sqlite3")
        return jw.SQLiteQueue(path, clock=clock, lease_duration=LEASE, retry_policy=RECOVERY)

    def teardown(self) -> None:
        super().teardown()
        self.tmp.cleanup()


class PostgresMachine(QueueMachine):
    # One schema for every example, emptied before each (see run_schema).

    def make_queue(self, clock: FakeClock) -> jw.JobQueue:
        from jobworker.queues.postgres import PostgresQueue

        queue = PostgresQueue(
            require_postgres(),
            schema=run_schema("queue machine"),
            migrate=True,
            notify=False,
            pool_size=2,
            clock=clock,
            lease_duration=LEASE,
            retry_policy=RECOVERY,
        )
        queue._write(lambda tx: tx.execute(f"TRUNCATE {queue.names.jobs}"))
        return queue


# max_examples comes from the profile: 200 under CI.
MemoryMachine.TestCase.settings = settings(stateful_step_count=50)
SQLiteMachine.TestCase.settings = settings(stateful_step_count=50)
TestMemoryQueue = MemoryMachine.TestCase
PostgresMachine.TestCase.settings = settings(stateful_step_count=50)
TestSQLiteQueue = SQLiteMachine.TestCase
TestPostgresQueue = PostgresMachine.TestCase

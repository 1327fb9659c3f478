"""PostgreSQL behind a silent network partition, and connection errors that say why.

The partition is real: a worker process runs in a network namespace of its
own (``partition_worker.py``), joined to this one by a veth pair; a TCP relay
here forwards its connections to the server. A cut sets the veth link down:
packets are dropped, nothing is reset, as a failed switch does. (A relay
that merely stops forwarding would not do: its kernel still acknowledges
every packet, so the worker's sockets would never see the silence.)

Creating namespaces needs root and ``ip``: without them the tests skip, and
fail under ``CI``. The lease is 1.5 s; the cuts last 20 s and 120 s, longer
than the kernel's retransmission backoff lets a blocked socket notice a heal.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import jobworker as jw
from jobworker.queues.postgres import DatabaseClock
from tests.conftest import require_postgres

from .crash_harness import watch

LEASE = 1.5
# The queue's bound (half the lease, at least 1 s), and a connect's (at least 2 s).
BOUND = 1.0
CONNECT_BOUND = 2.0
CHILD = pathlib.Path(__file__).with_name("partition_worker.py")
ROOT = pathlib.Path(__file__).resolve().parents[2]


# -- connection errors ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    "conninfo, reason",
    [
        ("postgresql://postgres:s3cret@127.0.0.1:5432/jw_no_such_db", 'database "jw_no_such_db"'),
        ("postgresql://postgres:s3cret@127.0.0.1:{port}/test", "refused"),
        ("host=127.0.0.1 password=s3cret dbname", 'missing "=" after "dbname"'),
    ],
    ids=["missing-database", "refused-port", "syntax-error"],
)
def test_a_connection_error_says_why_at_once(conninfo: str, reason: str) -> None:
    require_postgres()
    began = time.monotonic()
    with pytest.raises(jw.BackendError) as raised:
        jw.PostgresQueue(conninfo.format(port=free_port()))
    assert time.monotonic() - began < 1.5
    message = str(raised.value)
    assert reason in message
    assert "s3cret" not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


class FlakyRelay:
    """A relay on loopback to the server that, once broken, drops each connection it accepts."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.broken = False
        self.dropped = 0
        self._open: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, name="relay")]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if self.broken:
                self.dropped += 1
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", 5432))
            self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                thread = threading.Thread(target=Partition._pump, args=(a, b), name="relay")
                thread.start()
                self._threads.append(thread)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(10.0)


def test_a_failed_clock_sample_is_retried_after_a_backoff_not_at_every_call() -> None:
    require_postgres()
    relay = FlakyRelay()
    try:
        clock = DatabaseClock(
            f"host=127.0.0.1 port={relay.port} user=postgres dbname=test", resync=0.0
        )
        first = clock.now()  # sampled through the relay
        relay.broken = True
        later = [clock.now() for _ in range(20)]
    finally:
        relay.close()
    # One failed try, then the last sample carried forward until the backoff ends.
    assert relay.dropped == 1
    assert first <= later[0] <= later[-1]


# -- the partition ------------------------------------------------------------------------


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


class Partition:
    """A network namespace, its veth link to this one, and a relay to the server."""

    def __init__(self) -> None:
        tag = os.getpid() % 250 + 1
        self.namespace = f"jwpart{os.getpid()}"
        self.host_if, self.ns_if = f"jwh{os.getpid()}", f"jwn{os.getpid()}"
        self.host_ip, ns_ip = f"10.203.{tag}.1", f"10.203.{tag}.2"
        run("ip", "netns", "add", self.namespace)
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        run("ip", "link", "set", self.ns_if, "netns", self.namespace)
        run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        inside = ("ip", "netns", "exec", self.namespace)
        run(*inside, "ip", "addr", "add", f"{ns_ip}/30", "dev", self.ns_if)
        run(*inside, "ip", "link", "set", self.ns_if, "up")
        run(*inside, "ip", "link", "set", "lo", "up")
        self.listener = socket.create_server((self.host_ip, 0))
        self.port = int(self.listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, name="relay")]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(("127.0.0.1", 5432))
            self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                thread = threading.Thread(target=self._pump, args=(a, b), name="relay")
                thread.start()
                self._threads.append(thread)

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        run("ip", "link", "set", self.host_if, "down")

    def heal(self) -> None:
        run("ip", "link", "set", self.host_if, "up")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        self.listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(10.0)
        with contextlib.suppress(subprocess.CalledProcessError):
            run("ip", "link", "del", self.host_if)
        with contextlib.suppress(subprocess.CalledProcessError):
            run("ip", "netns", "del", self.namespace)


@pytest.fixture
def partition() -> Iterator[Partition]:
    try:
        if os.geteuid() != 0 or shutil.which("ip") is None:
            raise PermissionError("needs root and the ip command")
        made = Partition()
    except (OSError, subprocess.CalledProcessError) as exc:
        message = f"cannot make a network namespace: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield made
    made.close()


def inside(partition: Partition) -> list[str]:
    return ["ip", "netns", "exec", partition.namespace]


class HostWorker(jw.JobWorker):
    """The healthy host: takes the jobs of type ``host``, and ``hold`` ones, at once."""

    def get_worker_name(self) -> str:
        return "healthy"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type in ("host", "hold")

    def execute_job(self, job: jw.AnyJob) -> Any:
        return {"by": "host"}


def read_events(path: pathlib.Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def logged(events: list[dict[str, Any]], text: str, after: float) -> list[dict[str, Any]]:
    return [e for e in events if "log" in e and text in e["msg"] and e["t"] >= after]


@pytest.mark.parametrize(
    "cut",
    # The two cuts, 13 and 80 leases long here: past the kernel's
    # retransmission backoff that used to keep a socket asleep after the heal.
    [20.0, pytest.param(120.0, marks=pytest.mark.slow)],
    ids=["cut-20s", "cut-120s"],
)
def test_a_cut_worker_notices_backs_off_and_resumes(
    cut: float,
    partition: Partition,
    postgres_schema: tuple[str, str],
    tmp_path: pathlib.Path,
) -> None:
    dsn, schema = postgres_schema
    events = tmp_path / "events.jsonl"
    inner = f"host={partition.host_ip} port={partition.port} user=postgres dbname=test"
    with jw.PostgresQueue(dsn, schema=schema, migrate=True, lease_duration=LEASE) as queue:
        child = subprocess.Popen(
            [
                *inside(partition),
                sys.executable,
                str(CHILD),
                inner,
                schema,
                str(LEASE),
                str(events),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            warm = queue.create_job(jw.new_job("part", {}, id="warm"))
            assert queue.wait_for_job(warm.metadata.id, timeout=10).status == "complete"
            # A job the cut worker holds through the cut and ends after the heal.
            queue.create_job(jw.new_job("hold", {"seconds": cut + 1.0}, id="held", max_retries=3))

            def held_by_cut() -> bool:
                job = queue.get_job("held")
                return isinstance(job, jw.RunningJob) and job.claim.worker.startswith("cut-")

            assert watch(held_by_cut, 10.0)
            healthy = HostWorker(queue, poll_interval=0.2)
            healthy.start_in_thread()
            try:
                cut_at = time.time()
                partition.cut()
                # The healthy host never stalls; it recovers the held job once its lease ends.
                queue.create_job(jw.new_job("host", {}, id="during-host"))
                assert queue.wait_for_job("during-host", timeout=5).status == "complete"
                queue.create_job(jw.new_job("part", {}, id="during-cut"))
                held = queue.wait_for_job("held", timeout=cut)
                assert held.status == "complete" and held.result == {"by": "host"}
                threading.Event().wait(cut_at + cut - time.time())  # the rest of the cut
                partition.heal()
                healed_at = time.time()
                queue.create_job(jw.new_job("part", {}, id="after-heal"))
                for job_id in ("during-cut", "after-heal"):
                    done = queue.wait_for_job(job_id, timeout=max(0.0, healed_at + 5 - time.time()))
                    assert done.status == "complete" and done.result == {"by": "cut"}, done
                resumed = time.time() - healed_at
                # The cut worker's late write of the held job is refused.
                assert watch(
                    lambda: bool(logged(read_events(events), "claim was lost", healed_at)), 10.0
                ), read_events(events)
                assert queue.get_job("held") == held
            finally:
                assert healthy.stop(timeout=10)
            child.stdin.close()  # type: ignore[union-attr]
            assert child.wait(timeout=60) == 0, child.stdout.read()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            assert child.stdout is not None
            child.stdout.close()
        assert queue.get_stats()["complete"] == 5  # nothing lost
    seen = read_events(events)
    losses = logged(seen, "PostgreSQL unreachable", cut_at)
    returns = logged(seen, "PostgreSQL reachable again", cut_at)
    figures = (
        f"loss logged {losses[0]['t'] - cut_at:.2f} s after the cut; " if losses else ""
    ) + f"resumed {resumed:.2f} s after the heal"
    # No call waited beyond its bound: a connect's, then the call's own.
    slow = [e for e in seen if "call" in e and e["t"] >= cut_at]
    assert max((e["took"] for e in slow), default=0.0) <= CONNECT_BOUND + BOUND + 0.5, slow
    # The loss is logged once, within about a lease; the return once, at INFO.
    assert [e["log"] for e in losses] == ["WARNING"], (figures, losses)
    assert losses[0]["t"] - cut_at <= LEASE + 0.5, figures
    assert [e["log"] for e in returns] == ["INFO"], (figures, returns)
    assert returns[0]["t"] - healed_at <= 5.0, figures
    # Each worker's loop logs the failure once, not once per try.
    loop_errors = [e for e in seen if e.get("log") in ("WARNING", "ERROR") and "loop" in e["msg"]]
    assert len(loop_errors) <= 2, loop_errors
    print(figures, f"; longest call {max((e['took'] for e in slow), default=0.0):.2f} s")

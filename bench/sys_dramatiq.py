"""Dramatiq: StubBroker and RedisBroker, drained by its Worker with ``worker_threads``.

The broker has its default middleware; the worker its default timeout
(``worker_timeout``, 1 s): a Redis consumer that finds nothing backs off and
polls again, up to that timeout, so its idle latency is a polling figure.
The StubBroker's consumer blocks on a ``queue.Queue``.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from _common import Done, StartSignal, drain_result, latency_loop, params, timed, traced_bytes
from _services import Services
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker


class _Acked(dramatiq.Middleware):
    """End a latency sample once the worker has acknowledged the message."""

    def __init__(self, system: _DramatiqSystem) -> None:
        self.system = system

    def after_ack(self, broker: Any, message: Any) -> None:
        if self.system.signal is not None:
            self.system.signal.ended()


class _DramatiqSystem:
    def __init__(self, services: Services) -> None:
        self.services = services
        logging.getLogger("dramatiq").setLevel(logging.WARNING)
        self.broker = self.make()
        self.broker.add_middleware(_Acked(self))
        dramatiq.set_broker(self.broker)
        self.done: Done | None = None
        self.signal: StartSignal | None = None

        @dramatiq.actor(broker=self.broker, queue_name="bench", max_retries=0)
        def noop(a: int, b: str) -> None:
            if self.signal is not None:
                self.signal.started()
            if self.done is not None:
                self.done.add()

        self.actor = noop

    def make(self) -> Any:
        raise NotImplementedError

    def _worker(self, threads: int) -> dramatiq.Worker:
        worker = dramatiq.Worker(self.broker, worker_threads=threads)
        worker.start()
        return worker

    def drain(self, n: int, threads: int) -> dict[str, Any]:
        with timed() as enq:
            for i in range(n):
                self.actor.send(**params(i))
        self.done = Done(n)
        worker = None
        try:
            with timed() as drain:
                worker = self._worker(threads)
                self.done.wait()
        finally:
            if worker is not None:
                worker.stop(timeout=60_000)
        return drain_result(n, enq[0], drain[0])

    def latency(self, samples: int, budget: float) -> dict[str, Any]:
        self.signal = StartSignal()
        worker = self._worker(1)
        try:
            out = latency_loop(lambda i: self.actor.send(**params(i)), self.signal, samples, budget)
        finally:
            worker.stop(timeout=60_000)
        return {"samples_us": out}

    def close(self) -> None:
        self.broker.close()


class Stub(_DramatiqSystem):
    def make(self) -> Any:
        return StubBroker()

    def memory(self, n: int) -> dict[str, Any]:
        def fill() -> object:
            for i in range(n):
                self.actor.send(**params(i))
            return None

        return {"bytes_per_job": traced_bytes(fill) / n, "method": "tracemalloc", "jobs": n}


class Redis(_DramatiqSystem):
    def make(self) -> Any:
        return RedisBroker(client=self.services.redis())

    def memory(self, n: int) -> dict[str, Any]:
        before = self.services.redis_size()
        for i in range(n):
            self.actor.send(**params(i))
        after = self.services.redis_size()
        return {"bytes_per_job": (after - before) / n, "method": "Redis MEMORY USAGE", "jobs": n}

"""procrastinate on the local PostgreSQL: its worker, with ``concurrency`` 1 or 4.

procrastinate is asyncio-first: the no-op task is an ``async def`` (a sync
task would run in a thread per job), jobs are deferred with ``defer_async``,
and one worker runs ``concurrency`` jobs at a time on its event loop. The
drain runs the worker in burst mode (``wait=False``: it stops once the queue
is empty). The idle worker of the latency workload listens for notifications
(``listen_notify=True``, its default). The schema is applied to this child's
own PostgreSQL schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import procrastinate
from _common import LATENCY_GAP, WAIT_TIMEOUT, drain_result, params
from _services import Services


class Procrastinate:
    def __init__(self, services: Services) -> None:
        self.services = services
        logging.getLogger("procrastinate").setLevel(logging.WARNING)
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=services.pg_dsn())
        )
        self.started: asyncio.Event | None = None
        self.ended: asyncio.Event | None = None
        self.started_at = 0.0
        # A sample ends when the worker has recorded the job's outcome, not when
        # the task returns: the next job must find the worker idle. The
        # manager's finish_job is that step; wrap it (this instance only).
        manager = self.app.job_manager
        finish_job = manager.finish_job

        async def finish_and_signal(*args: Any, **kwargs: Any) -> Any:
            result = await finish_job(*args, **kwargs)
            if self.ended is not None:
                self.ended.set()
            return result

        manager.finish_job = finish_and_signal  # type: ignore[method-assign]

        @self.app.task(name="noop", queue="bench")
        async def noop(a: int, b: str) -> None:
            if self.started is not None:
                self.started_at = time.perf_counter()
                self.started.set()

        self.task = noop

    def _run(self, coro: Any) -> Any:
        async def main() -> Any:
            async with self.app.open_async():
                await self.app.schema_manager.apply_schema_async()
                return await coro()

        return asyncio.run(main())

    def drain(self, n: int, threads: int) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            t0 = time.perf_counter()
            for i in range(n):
                await self.task.defer_async(**params(i))
            t1 = time.perf_counter()
            await self.app.run_worker_async(
                queues=["bench"], concurrency=threads, wait=False, install_signal_handlers=False
            )
            t2 = time.perf_counter()
            return drain_result(n, t1 - t0, t2 - t1)

        return self._run(go)  # type: ignore[no-any-return]

    def latency(self, samples: int, budget: float) -> dict[str, Any]:
        async def go() -> list[float]:
            self.started = asyncio.Event()
            self.ended = asyncio.Event()
            worker = asyncio.create_task(
                self.app.run_worker_async(
                    queues=["bench"], concurrency=1, wait=True, install_signal_handlers=False
                )
            )
            rng = random.Random(5)
            out: list[float] = []

            async def one(i: int) -> float:
                assert self.started is not None
                t0 = time.perf_counter()
                await self.task.defer_async(**params(i))
                assert self.ended is not None
                await asyncio.wait_for(self.started.wait(), WAIT_TIMEOUT)
                await asyncio.wait_for(self.ended.wait(), WAIT_TIMEOUT)
                self.started.clear()
                self.ended.clear()
                return (self.started_at - t0) * 1e6

            try:
                await one(-1)
                deadline = time.monotonic() + budget
                for i in range(samples):
                    # The same pacing as _common.latency_loop, on the event loop.
                    await asyncio.sleep(rng.uniform(*LATENCY_GAP))
                    out.append(await one(i))
                    if time.monotonic() > deadline:
                        break
            finally:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker
            return out

        return {"samples_us": self._run(go)}

    def memory(self, n: int) -> dict[str, Any]:
        async def go() -> dict[str, Any]:
            before = self.services.pg_size()
            chunk = 1_000
            for start in range(0, n, chunk):
                await self.task.batch_defer_async(
                    *(params(i) for i in range(start, min(n, start + chunk)))
                )
            after = self.services.pg_size()
            return {"bytes_per_job": (after - before) / n, "method": "table size", "jobs": n}

        return self._run(go)  # type: ignore[no-any-return]

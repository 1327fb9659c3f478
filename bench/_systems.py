"""The systems and workloads ``run.py`` knows, the sizes of each, and what does not apply."""

from __future__ import annotations

from typing import Any

import attrs

#: The workloads, in the order they run and are reported.
WORKLOADS = ("drain1", "drain4", "drain2p", "latency", "memory", "claims")


@attrs.frozen
class System:
    name: str  # the key on the command line and in the JSON
    label: str  # what the table and the chart call it
    module: str  # the bench/ module holding the class
    cls: str
    kind: str  # "baseline", "peer" or "jobworker"
    storage: str  # "memory", "sqlite", "postgres" or "redis": which sizes it gets
    note: str = ""  # how it runs, for the table
    na: dict[str, str] = attrs.field(factory=dict)  # workload -> why it does not apply
    sizes: dict[str, Any] = attrs.field(factory=dict)  # overrides of the storage's sizes


_PEER_CLAIMS = (
    "a peer claims inside its own worker loop, with no public single-claim call to time; "
    "the claim workload measures jobworker and the baselines"
)
_EXECUTOR_CLAIMS = "an executor has no claim call: its threads take work items internally"
_IN_PROCESS = "an in-process queue: a worker in another process cannot reach its jobs"
_PROCESSES_JOBWORKER = (
    "2 worker processes on one queue are measured for jobworker's SQLite and PostgreSQL "
    "queues; a peer's own way to run several workers is its drain4 (RQ's: 4 processes)"
)
#: The idle worker's poll interval of jobworker-postgres-poll, in seconds.
POSTGRES_POLL_INTERVAL = 0.05
_SAME_AS_NOTIFY = (
    "notifications change neither the rows stored nor the claim: see jobworker PostgresQueue"
)

SYSTEMS: dict[str, System] = {
    s.name: s
    for s in [
        System(
            "queue",
            "queue.Queue + threads",
            "sys_baseline",
            "StdQueue",
            "baseline",
            "memory",
            note="the limit for a threaded in-process queue",
            na={"drain2p": _IN_PROCESS},
        ),
        System(
            "executor",
            "ThreadPoolExecutor",
            "sys_baseline",
            "Executor",
            "baseline",
            "memory",
            na={"drain2p": _IN_PROCESS, "claims": _EXECUTOR_CLAIMS},
        ),
        System(
            "jobworker-memory",
            "jobworker MemoryQueue",
            "sys_jobworker",
            "Memory",
            "jobworker",
            "memory",
            na={"drain2p": _IN_PROCESS},
        ),
        System(
            "huey-memory",
            "Huey MemoryHuey",
            "sys_huey",
            "Memory",
            "peer",
            "memory",
            note="Consumer with thread workers, polling every 1 ms",
            na={"drain2p": _IN_PROCESS, "claims": _PEER_CLAIMS},
        ),
        System(
            "dramatiq-stub",
            "Dramatiq StubBroker",
            "sys_dramatiq",
            "Stub",
            "peer",
            "memory",
            note="Worker with worker_threads",
            na={"drain2p": _IN_PROCESS, "claims": _PEER_CLAIMS},
        ),
        System(
            "miniwal",
            "minimal WAL SQLite queue",
            "sys_baseline",
            "MiniWal",
            "baseline",
            "sqlite",
            note="one transaction per enqueue, claim and ack; consumers poll every 1 ms",
            na={"drain2p": _PROCESSES_JOBWORKER},
        ),
        System(
            "jobworker-sqlite",
            "jobworker SQLiteQueue",
            "sys_jobworker",
            "SQLite",
            "jobworker",
            "sqlite",
            note="leases on (always)",
        ),
        System(
            "huey-sqlite",
            "Huey SqliteHuey",
            "sys_huey",
            "SQLite",
            "peer",
            "sqlite",
            note="Consumer with thread workers, polling every 1 ms",
            na={"drain2p": _PROCESSES_JOBWORKER, "claims": _PEER_CLAIMS},
            sizes={"memory_jobs": 20_000},
        ),
        System(
            "jobworker-postgres",
            "jobworker PostgresQueue",
            "sys_jobworker",
            "Postgres",
            "jobworker",
            "postgres",
            note="notifications on",
        ),
        System(
            "jobworker-postgres-poll",
            "jobworker PostgresQueue, notifications off",
            "sys_jobworker",
            "PostgresPoll",
            "jobworker",
            "postgres",
            note=f"notify=False: an idle worker finds a job by polling, poll_interval "
            f"{POSTGRES_POLL_INTERVAL} s (JobWorker's default: 1 s); the latency gap spans it",
            na={"memory": _SAME_AS_NOTIFY, "claims": _SAME_AS_NOTIFY},
        ),
        System(
            "huey-postgres",
            "Huey PostgresHuey",
            "sys_huey",
            "Postgres",
            "peer",
            "postgres",
            note="Consumer with thread workers; blocking storage (LISTEN/NOTIFY)",
            na={"drain2p": _PROCESSES_JOBWORKER, "claims": _PEER_CLAIMS},
            sizes={"memory_jobs": 20_000},
        ),
        System(
            "procrastinate",
            "procrastinate",
            "sys_procrastinate",
            "Procrastinate",
            "peer",
            "postgres",
            note="one worker, concurrency 1 or 4 (asyncio), async no-op task",
            na={"drain2p": _PROCESSES_JOBWORKER, "claims": _PEER_CLAIMS},
        ),
        System(
            "dramatiq-redis",
            "Dramatiq RedisBroker",
            "sys_dramatiq",
            "Redis",
            "peer",
            "redis",
            note="Worker with worker_threads",
            na={"drain2p": _PROCESSES_JOBWORKER, "claims": _PEER_CLAIMS},
            sizes={"memory_jobs": 20_000},
        ),
        System(
            "rq",
            "RQ SimpleWorker",
            "sys_rq",
            "RQ",
            "peer",
            "redis",
            note="no thread worker: 1 worker is one SimpleWorker, 4 workers are 4 processes",
            na={"drain2p": _PROCESSES_JOBWORKER, "claims": _PEER_CLAIMS},
        ),
    ]
}

#: Sizes per storage class, full run. Ratios that targets use always compare
#: systems of one storage class, so they share these sizes.
SIZES: dict[str, dict[str, Any]] = {
    "memory": {
        "drain_jobs": 20_000,
        "latency_samples": 1_000,
        "memory_jobs": 100_000,
        "claim_backlogs": [1_000, 1_000_000],
        "claim_count": 1_000,
    },
    "sqlite": {
        "drain_jobs": 5_000,
        "latency_samples": 500,
        "memory_jobs": 100_000,
        "claim_backlogs": [1_000, 100_000],
        "claim_count": 500,
    },
    "postgres": {
        "drain_jobs": 2_000,
        "latency_samples": 300,
        "memory_jobs": 100_000,
        "claim_backlogs": [1_000, 100_000],
        "claim_count": 500,
    },
    "redis": {
        "drain_jobs": 2_000,
        "latency_samples": 300,
        "memory_jobs": 100_000,
        "claim_backlogs": [],
        "claim_count": 0,
    },
}

#: What --quick does to every size.
QUICK = {
    "drain_jobs": 0.1,
    "latency_samples": 0.2,
    "memory_jobs": 0.05,
    "claim_backlogs": None,  # replaced below
    "claim_count": 0.2,
}
QUICK_BACKLOGS = [1_000, 10_000]
#: Seconds a latency run may take at most (a peer that polls slowly gives fewer samples).
LATENCY_BUDGET = {"full": 20.0, "quick": 4.0}


def sizes_of(system: System, quick: bool) -> dict[str, Any]:
    """Return the sizes *system* runs with."""
    sizes = {**SIZES[system.storage], **system.sizes}
    if quick:
        for key, factor in QUICK.items():
            if key == "claim_backlogs":
                sizes[key] = QUICK_BACKLOGS if sizes[key] else []
            else:
                sizes[key] = max(1, int(sizes[key] * factor)) if sizes[key] else 0
    sizes["latency_budget"] = LATENCY_BUDGET["quick" if quick else "full"]
    return sizes

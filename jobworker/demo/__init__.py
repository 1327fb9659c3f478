"""The demo: a few hundred typed jobs, two kinds of worker, live progress.

Run it with ``python -m jobworker demo``. In a few seconds it shows what the
library does under load: jobs of two registered types (``generation`` and
``detection``) whose params, progress and results are frozen attrs classes;
workers that report progress and check for cancellation; retries with backoff
that end complete or, past ``max_retries``, failed; and jobs cancelled while
pending and while running. It ends with a summary and checks that every job
ended as planned and that the counts add up.

The seed decides everything but the timings: which jobs fail and how often,
and which are cancelled.
"""

from __future__ import annotations

from .jobs import (
    DemoWorker,
    DetectionParams,
    DetectionProgress,
    DetectionResult,
    DetectionWorker,
    GenerationParams,
    GenerationProgress,
    GenerationResult,
    GenerationWorker,
    SimulatedOutageError,
    build_registry,
)
from .run import run_demo
from .summary import DemoSummary, WorkerSummary, format_summary

__all__ = [
    "DemoSummary",
    "DemoWorker",
    "DetectionParams",
    "DetectionProgress",
    "DetectionResult",
    "DetectionWorker",
    "GenerationParams",
    "GenerationProgress",
    "GenerationResult",
    "GenerationWorker",
    "SimulatedOutageError",
    "WorkerSummary",
    "build_registry",
    "format_summary",
    "run_demo",
]

"""A worker for jobs of type "greet"."""

from typing import Any

import jobworker as jw
from jobworker.contrib.django import DjangoJobWorker


class GreetingWorker(DjangoJobWorker):
    def get_worker_name(self) -> str:
        return "greeter"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "greet"

    def execute_job(self, job: jw.AnyJob) -> dict[str, Any]:
        return {"greeting": f"Hello, {job.params['name']}!"}

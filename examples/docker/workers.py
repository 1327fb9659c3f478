"""The worker classes the image runs: ``jobworker worker workers:EmailWorker``."""

from __future__ import annotations

import logging

import jobworker as jw

log = logging.getLogger(__name__)


class EmailWorker(jw.JobWorker):
    """Send the emails of ``email`` jobs (here, it logs them)."""

    def get_worker_name(self) -> str:
        return "EmailWorker"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "email"

    def execute_job(self, job: jw.AnyJob) -> dict[str, str]:
        assert jw.is_running_job(job)
        to = job.params["to"]
        log.info("sending email to %s", to)
        return {"sent_to": to}

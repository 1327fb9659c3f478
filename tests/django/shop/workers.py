"""The shop's worker: ships an order through the ORM, in a worker thread."""

from __future__ import annotations

from typing import Any

import jobworker as jw
from jobworker.contrib.django import DjangoJobWorker, get_settings

from .models import Order


class ShipWorker(DjangoJobWorker):
    def get_worker_name(self) -> str:
        return "ship"

    def can_process_job(self, job: jw.AnyJob) -> bool:
        return job.metadata.type == "ship"

    def execute_job(self, job: jw.AnyJob) -> dict[str, Any]:
        orders = Order.objects.using(get_settings().database)
        order = orders.get(pk=job.params["order"])
        order.status = "shipped"
        order.save(update_fields=["status"])
        return {"order": order.pk, "shipped": orders.filter(status="shipped").count()}

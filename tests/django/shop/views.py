"""Views that enqueue work and show its outcome."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, JsonResponse

from jobworker.contrib.django import enqueue, get_queue, get_settings

from .models import Order
from .tasks import add


class Refused(Exception):
    pass


def create_order(request: HttpRequest) -> JsonResponse:
    """Create an order and its shipping job in one transaction; ``fail=1`` rolls both back."""
    db = get_settings().database
    try:
        with transaction.atomic(using=db):
            order = Order.objects.using(db).create(item=request.POST["item"])
            job = enqueue("ship", {"order": order.pk}, using=db)
            if request.POST.get("fail"):
                raise Refused
    except Refused:
        return JsonResponse({"error": "refused"}, status=400)
    return JsonResponse({"order": order.pk, "job": job.metadata.id}, status=201)


def show_order(request: HttpRequest, pk: int) -> JsonResponse:
    order = Order.objects.using(get_settings().database).get(pk=pk)
    job_id = request.GET.get("job")
    job = get_queue().get_job(job_id) if job_id else None
    return JsonResponse(
        {
            "status": order.status,
            "job": None if job is None else job.status,
            "result": getattr(job, "result", None),
        }
    )


def enqueue_add(request: HttpRequest) -> JsonResponse:
    result = add.enqueue(int(request.POST["a"]), int(request.POST["b"]))
    return JsonResponse({"id": result.id, "status": str(result.status)}, status=201)


def show_task(request: HttpRequest, result_id: str) -> JsonResponse:
    result = add.get_result(result_id)
    value = result.return_value if result.is_finished and not result.errors else None
    return JsonResponse({"status": str(result.status), "value": value})

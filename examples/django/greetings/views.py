"""Enqueue a job or a task, and show how it went."""

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from jobworker.contrib.django import enqueue, get_queue

from .tasks import shout as shout_task


@csrf_exempt
@require_POST
def greet(request: HttpRequest) -> JsonResponse:
    with transaction.atomic():
        # ... write your own models here: the job exists only if this commits.
        job = enqueue("greet", {"name": request.POST.get("name", "world")})
    return JsonResponse({"job": job.metadata.id}, status=201)


def show_job(request: HttpRequest, job_id: str) -> JsonResponse:
    job = get_queue().get_job(job_id)
    if job is None:
        return JsonResponse({"error": "no such job"}, status=404)
    return JsonResponse({"status": job.status, "result": getattr(job, "result", None)})


@csrf_exempt
@require_POST
def shout(request: HttpRequest) -> JsonResponse:
    result = shout_task.enqueue(request.POST.get("text", "hello"))
    return JsonResponse({"task": result.id}, status=201)


def show_task(request: HttpRequest, result_id: str) -> JsonResponse:
    result = shout_task.get_result(result_id)
    value = result.return_value if result.status == "SUCCESSFUL" else None
    return JsonResponse({"status": result.status, "value": value})

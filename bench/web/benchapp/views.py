"""Two endpoints that differ in one write: an INSERT of their own, or an enqueue."""

import time

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from jobworker.contrib.django import enqueue

from .models import Order


@csrf_exempt
def insert(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        Order.objects.create(item="book")
        Order.objects.create(item="receipt")
    return HttpResponse("ok")


@csrf_exempt
def enqueue_view(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        Order.objects.create(item="book")
        enqueue("bench", {"sent": time.time()})
    return HttpResponse("ok")

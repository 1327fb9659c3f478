"""The shop's tasks, written against Django's Tasks API (Django 6, or the 5.2 backport)."""

from __future__ import annotations

from typing import Any

import django

from jobworker.contrib.django import get_settings

from .models import Order

if django.VERSION >= (6, 0):
    from django.tasks import task
else:
    from django_tasks import task


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails", priority=10)
def send_email(to: str) -> str:
    return f"sent to {to}"


@task
def explode(message: str) -> None:
    raise ValueError(message)


@task(takes_context=True)
def flaky(context: Any, succeed_on: int) -> int:
    if context.attempt < succeed_on:
        raise RuntimeError(f"attempt {context.attempt} fails")
    return int(context.attempt)


@task
def count_orders() -> int:
    return Order.objects.using(get_settings().database).count()


@task
def leave(code: int) -> None:
    raise SystemExit(code)


@task(takes_context=True)
def worker_ids_while_running(context: Any) -> list[str]:
    return list(context.task_result.worker_ids)

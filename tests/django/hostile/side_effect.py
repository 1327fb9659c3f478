"""Importing this module leaves a visible mark: a job must never make a process import it."""

from __future__ import annotations

import os

import django

if django.VERSION >= (6, 0):
    from django.tasks import task
else:
    from django_tasks import task

os.environ["JOBWORKER_TEST_HOSTILE_IMPORTED"] = "1"


@task
def steal() -> str:
    return "stolen"

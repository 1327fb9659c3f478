"""A task for Django's Tasks framework (django.tasks on Django 6, the backport on 5.2)."""

import django

if django.VERSION >= (6, 0):
    from django.tasks import task
else:
    from django_tasks import task


@task(priority=10)
def shout(text: str) -> str:
    return text.upper()

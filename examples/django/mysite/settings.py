"""Settings of the jobworker Django example: jobs in the project's SQLite file."""

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS: list[str] = []
USE_TZ = True
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "jobworker.contrib.django",
    "greetings",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")  # the Tasks backport, on Django 5.2

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DATABASE", str(BASE_DIR / "db.sqlite3")),
        # Take the write lock when a transaction begins: the web process and
        # the workers write to the same file.
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}

# jobworker: the queue lives in the "default" database.
JOBWORKER = {
    "WORKERS": [
        "greetings.workers.GreetingWorker",
        # Runs the tasks of the TASKS backend below.
        "jobworker.contrib.django.tasks.TaskWorker",
    ],
    "CONCURRENCY": 2,
    # True: also run the workers inside the web process (from its first request).
    "START_WORKERS": os.environ.get("EXAMPLE_START_WORKERS") == "1",
}

# Django's Tasks framework, on jobworker.
TASKS = {
    "default": {
        "BACKEND": "jobworker.contrib.django.tasks.JobworkerBackend",
        "OPTIONS": {"max_retries": 2},
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"jobworker": {"handlers": ["console"], "level": "INFO"}},
}

"""Settings of the test project: SQLite in a file ("default") and PostgreSQL ("postgres").

``JOBWORKER_DJANGO_DATA`` names the folder of the SQLite files (the tests'
conftest sets it); ``JOBWORKER_TEST_POSTGRES`` the PostgreSQL server.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import django
from psycopg.conninfo import conninfo_to_dict

DATA = Path(os.environ.get("JOBWORKER_DJANGO_DATA", tempfile.gettempdir()))
POSTGRES = conninfo_to_dict(
    os.environ.get("JOBWORKER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
)

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost", "127.0.0.1"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "tests.django.project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "jobworker.contrib.django",
    "tests.django.shop",
]
if django.VERSION < (6, 0):
    INSTALLED_APPS.append("django_tasks")

MIDDLEWARE = [
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
        "NAME": str(DATA / "shop.sqlite3"),
        # Writers take the lock when the transaction begins, so a transaction
        # that reads first never fails to upgrade while a worker writes.
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
        "TEST": {"NAME": str(DATA / "test-shop.sqlite3")},
    },
    "postgres": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": POSTGRES.get("dbname", "test"),
        "USER": POSTGRES.get("user", "postgres"),
        "PASSWORD": POSTGRES.get("password", ""),
        "HOST": POSTGRES.get("host", "127.0.0.1"),
        "PORT": POSTGRES.get("port", "5432"),
        # One test database per test session, so that runs never collide.
        "TEST": {"NAME": f"test_jobworker_django_{os.getpid()}"},
    },
}

JOBWORKER = {
    "DATABASE": "default",
    "WORKERS": ["tests.django.shop.workers.ShipWorker"],
    "WORKER_OPTIONS": {"poll_interval": 0.5},
    "STOP_TIMEOUT": 30.0,
}

TASKS = {
    "default": {
        "BACKEND": "jobworker.contrib.django.tasks.JobworkerBackend",
        "QUEUES": ["default", "emails"],
    }
}

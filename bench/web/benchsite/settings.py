"""Settings of the load benchmark's Django site: the database comes from the environment.

``BENCH_DB`` is ``sqlite:PATH`` or ``postgresql:CONNINFO-DBNAME`` (a database
on the server named by ``BENCH_PG_HOST`` / ``BENCH_PG_USER``).
"""

import os

SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
ROOT_URLCONF = "benchsite.urls"
WSGI_APPLICATION = "benchsite.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["jobworker.contrib.django", "benchapp"]
MIDDLEWARE: list[str] = []
TEMPLATES: list[dict[str, object]] = []

_kind, _, _where = os.environ.get("BENCH_DB", "sqlite:/tmp/bench.sqlite3").partition(":")
if _kind == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": _where,
            # As the Django how-to advises: take the write lock when a
            # transaction begins, and wait for it as long as the queue does.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 5},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": _where,
            "USER": os.environ.get("BENCH_PG_USER", "postgres"),
            "HOST": os.environ.get("BENCH_PG_HOST", "127.0.0.1"),
            "PORT": os.environ.get("BENCH_PG_PORT", "5432"),
            "CONN_MAX_AGE": 60,
        }
    }

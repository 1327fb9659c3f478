"""The dashboard mounted in the test project: staff only, actions behind the CSRF token."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from django.test import Client

from jobworker.contrib.django import enqueue, get_queue


def client_for(username: str, *, staff: bool) -> Client:
    user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": staff})
    client = Client()
    client.force_login(user)
    return client


def token_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page)
    assert found is not None, page
    return found.group(1)


def test_staff_see_the_dashboard_under_its_prefix_and_others_do_not(db: str) -> None:
    job = enqueue("mail", {"to": "<b>bob</b>@example.com"}, using=db, user_id="bob")
    staff = client_for("ops", staff=True)
    overview = staff.get("/ops/jobs/")
    assert overview.status_code == 200
    page = overview.content.decode()
    assert 'href="/ops/jobs/static/dashboard.css"' in page
    assert 'data-src="/ops/jobs/live/"' in page
    assert staff.get("/ops/jobs/static/dashboard.js").status_code == 200
    shown = staff.get("/ops/jobs/job", {"id": job.metadata.id}).content.decode()
    assert "&lt;b&gt;bob&lt;/b&gt;@example.com" in shown and "<b>bob</b>" not in shown
    listing = staff.get("/ops/jobs/jobs", {"user": "bob"}).content.decode()
    assert job.metadata.id in listing

    assert Client().get("/ops/jobs/").status_code == 403
    assert client_for("visitor", staff=False).get("/ops/jobs/jobs").status_code == 403


def test_actions_need_staff_and_the_page_token(db: str) -> None:
    job = enqueue("mail", {"to": "x"}, using=db)
    job_id = job.metadata.id
    staff = client_for("ops", staff=True)
    page = staff.get("/ops/jobs/job", {"id": job_id}).content.decode()
    token = token_of(page)

    refused = staff.post("/ops/jobs/action", {"action": "cancel", "id": job_id})
    assert refused.status_code == 403
    wrong = staff.post(
        "/ops/jobs/action", {"action": "cancel", "id": job_id, "csrf_token": "0" * 64}
    )
    assert wrong.status_code == 403
    read_only = staff.post(
        "/ops/readonly/action", {"action": "cancel", "id": job_id, "csrf_token": token}
    )
    assert read_only.status_code == 403
    stored = get_queue().get_job(job_id)
    assert stored is not None and stored.status == "pending"

    done = staff.post("/ops/jobs/action", {"action": "cancel", "id": job_id, "csrf_token": token})
    assert done.status_code == 303
    assert done.headers["Location"].startswith("/ops/jobs/job?id=")
    stored = get_queue().get_job(job_id)
    assert stored is not None and stored.status == "cancelled"

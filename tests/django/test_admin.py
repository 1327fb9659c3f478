"""The admin's read-only view of jobs."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client

from jobworker.contrib.django import enqueue, get_queue
from jobworker.testing import run_pending
from tests.django.shop.models import Order
from tests.django.shop.workers import ShipWorker


def admin_client(db: str) -> Client:
    user, _ = User.objects.get_or_create(
        username="admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_lists_filters_searches_and_shows_jobs_read_only(db: str) -> None:
    order = Order.objects.using(db).create(item="chair")
    done = enqueue("ship", {"order": order.pk}, using=db)
    run_pending(ShipWorker(get_queue()))
    waiting = enqueue("mail", {"to": "bob@example.com"}, using=db, user_id="bob")
    client = admin_client(db)

    listing = client.get("/admin/jobworker/job/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert done.metadata.id in page and waiting.metadata.id in page
    assert "By status" in page and "By type" in page

    complete = client.get("/admin/jobworker/job/", {"status__exact": "complete"}).content.decode()
    assert done.metadata.id in complete and waiting.metadata.id not in complete
    by_type = client.get("/admin/jobworker/job/", {"type__exact": "mail"}).content.decode()
    assert waiting.metadata.id in by_type and done.metadata.id not in by_type
    found = client.get("/admin/jobworker/job/", {"q": "bob"}).content.decode()
    assert waiting.metadata.id in found and done.metadata.id not in found

    detail = client.get(f"/admin/jobworker/job/{done.metadata.id}/change/")
    assert detail.status_code == 200
    text = detail.content.decode()
    assert "shipped" in text and "Save" not in text  # the result, and no form to save

    assert client.get("/admin/jobworker/job/add/").status_code == 403
    assert client.get(f"/admin/jobworker/job/{done.metadata.id}/delete/").status_code == 403
    assert client.post(
        "/admin/jobworker/job/",
        {"action": "delete_selected", "_selected_action": [done.metadata.id]},
    ).status_code in (200, 302)
    assert get_queue().get_job(done.metadata.id) is not None


def test_the_admin_pauses_and_resumes_the_types_of_selected_jobs(db: str) -> None:
    mail = enqueue("mail", {"to": "ada@example.com"}, using=db)
    enqueue("ship", {"order": 1}, using=db)
    queue = get_queue()
    client = admin_client(db)

    action = {"action": "pause_types", "_selected_action": [mail.metadata.id]}
    assert client.post("/admin/jobworker/job/", action).status_code == 302
    assert queue.paused_types() == {"mail"}
    assert queue.poll_next_pending_job(types=["mail"]) is None

    resume = {"action": "resume_types", "_selected_action": [mail.metadata.id]}
    assert client.post("/admin/jobworker/job/", resume).status_code == 302
    assert queue.paused_types() == frozenset()
    claimed = queue.poll_next_pending_job(types=["mail"])
    assert claimed is not None and claimed.metadata.id == mail.metadata.id


def test_staff_without_the_change_permission_cannot_pause(db: str) -> None:
    mail = enqueue("mail", {"to": "ada@example.com"}, using=db)
    staff, _ = User.objects.get_or_create(username="viewer", defaults={"is_staff": True})
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = Client()
    client.force_login(staff)
    listing = client.get("/admin/jobworker/job/")
    assert listing.status_code == 200
    page = listing.content.decode()
    assert mail.metadata.id in page and "pause_types" not in page
    client.post(
        "/admin/jobworker/job/", {"action": "pause_types", "_selected_action": [mail.metadata.id]}
    )
    assert get_queue().paused_types() == frozenset()

"""The dashboard as a Flask blueprint: the app's queue, its hook, its CSRF token."""

from __future__ import annotations

import re

from flask import request

from jobworker.contrib.flask.dashboard import dashboard_blueprint

from .conftest import MakeApp
from .sample_app import jobs


def allow_admins(environ: object, action: str) -> bool:
    # Inside the request: the hook may read Flask's request like any view.
    return request.headers.get("X-Role") == "admin" or action == "view"


def test_the_blueprint_serves_the_apps_queue_and_guards_actions(
    make_app: MakeApp, queue_url: str
) -> None:
    app = make_app(JOBWORKER_QUEUE=queue_url)
    app.register_blueprint(
        dashboard_blueprint(authorize=allow_admins, actions=True), url_prefix="/ops"
    )
    with app.app_context():
        job = jobs.enqueue("greet", {"name": "<script>x</script>"})
    job_id = job.metadata.id
    client = app.test_client()

    overview = client.get("/ops/")
    assert overview.status_code == 200
    assert 'href="/ops/static/dashboard.css"' in overview.text
    page = client.get("/ops/job", query_string={"id": job_id})
    assert "&lt;script&gt;x&lt;/script&gt;" in page.text and "<script>x" not in page.text
    found = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', page.text)
    assert found is not None
    form = {"action": "cancel", "id": job_id, "csrf_token": found.group(1)}

    assert client.post("/ops/action", data=form).status_code == 403  # not an admin
    assert (
        client.post(
            "/ops/action", data={**form, "csrf_token": ""}, headers={"X-Role": "admin"}
        ).status_code
        == 403
    )
    with app.app_context():
        assert jobs.queue.get_job(job_id).status == "pending"
    done = client.post("/ops/action", data=form, headers={"X-Role": "admin"})
    assert done.status_code == 303
    with app.app_context():
        assert jobs.queue.get_job(job_id).status == "cancelled"

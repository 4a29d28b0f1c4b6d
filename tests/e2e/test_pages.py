import pytest

from tests.e2e.conftest import login

pytestmark = pytest.mark.e2e

PASSWORD = "pw-for-tests-123"


def in_server_thread(function, **kwargs):
    """Call ``function`` in a new thread (with its own database connection) and wait for it."""
    import threading

    from django.db import connection

    def call():
        try:
            function(**kwargs)
        finally:
            connection.close()

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()


def test_login_create_project_and_switch(page, live_server_url, make_user):
    make_user("erin", password=PASSWORD)
    page.goto(live_server_url + "/")
    assert "/login/" in page.url

    login(page, live_server_url, "erin", "wrong password")
    assert page.get_by_role("alert").inner_text().startswith("Your username and password did not match")

    login(page, live_server_url, "erin", PASSWORD)
    page.get_by_text("No project yet").wait_for()
    page.fill("input[name=name]", "Orsta <script>x</script>")
    page.click("text=Create project")
    page.get_by_role("heading", name="Orsta <script>x</script>").wait_for()
    assert page.get_by_role("status").inner_text() == "Project Orsta <script>x</script> created."
    options = page.locator("select[name=p] option").all_inner_texts()
    assert "Orsta <script>x</script>" in options


def test_run_page_streams_metrics_live_and_catches_up(
    page, live_server_url, make_user, make_project, make_source
):
    from control.services.metrics import PointIn, metric_points_ingest
    from control.services.runs import SourceWeight, run_create

    user = make_user("frank", password=PASSWORD)
    project = make_project(user, "live")
    source = make_source(project, "synth_math")
    run = run_create(project=project, user=user, name="demo run", sources=[SourceWeight(source, 1.0)])
    in_server_thread(
        metric_points_ingest,
        run=run,
        points=[PointIn(step=0, key="reward/accuracy", value=0.1, source="synth_math")],
    )

    login(page, live_server_url, "frank", PASSWORD)
    page.goto(f"{live_server_url}/runs/{run.pk}/")
    page.locator("#live-state", has_text="live").wait_for()
    chart = page.locator('.chart[data-key="reward/accuracy"]')
    chart.wait_for()

    # A point ingested while the page is open arrives over the websocket. The ingest runs in a
    # thread of its own, as in a web server: this one runs Playwright's event loop, and the
    # broadcast after commit cannot be sent from a thread with a running loop.
    in_server_thread(
        metric_points_ingest,
        run=run,
        points=[PointIn(step=1, key="reward/accuracy", value=0.4, source="synth_math")],
    )
    page.locator("#last-step", has_text="1").wait_for()
    # The page draws new points on its next animation frame, after the step counter moved.
    page.wait_for_function(
        "() => document.querySelector('.chart[data-key=\"reward/accuracy\"]').data[0].x.length >= 2"
    )
    xs = page.evaluate("() => document.querySelector('.chart[data-key=\"reward/accuracy\"]').data[0].x")
    assert xs == [0, 1]
    ys = page.evaluate("() => document.querySelector('.chart[data-key=\"reward/accuracy\"]').data[0].y")
    assert ys == [0.1, 0.4]

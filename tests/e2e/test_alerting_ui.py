"""Alerting in a real browser: alert rules made through the form (a refused field explained beside
it), the built-in rules restored and one switched off; a webhook channel whose secret is shown once
and whose test message reaches a local receiver; a rule firing on a run while its page is open (a
toast, a mark on the chart of its key at its step, the nav's count of open alerts); hostile rule
names shown as text; a viewer who cannot change rules.

Points reach the platform as a trainer sends them (a run-scoped token), so the live server judges
the rules and broadcasts the alert itself. Deliveries are sent by a Celery worker of this test.
Screenshots go to var/screenshots/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from tests.e2e.conftest import ROOT, login
from tests.e2e.test_run_page import WAIT_MS, Trainer, _open, _wait_chart

pytestmark = pytest.mark.e2e

PASSWORD = "pw-for-tests-123"
HOSTILE = '<img src=x onerror="window.__pwned=1">'
SCREENSHOTS = ROOT / "var" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}


@pytest.fixture
def server_env(celery_worker_queue) -> dict[str, str]:
    """The live server may save webhooks to loopback, and queues tasks for this test's worker."""
    return {
        "TRIUNE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
        "CELERY_TASK_DEFAULT_QUEUE": celery_worker_queue.queue,
    }


@pytest.fixture
def receiver(settings):
    """A webhook receiver on 127.0.0.1 that answers 200 and records each request; the worker (in
    this process) may reach it."""
    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    hits: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hits.append({"headers": dict(self.headers), "body": body})
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}/hooks/triune", hits=hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _overflowing(page) -> list[str]:
    return page.evaluate(
        """() => document.documentElement.scrollWidth <= window.innerWidth ? [] :
            [...document.querySelectorAll("body *")]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + "." + e.className)"""
    )


def _visible_fields(page) -> list[str]:
    return page.evaluate(
        "() => Array.from(document.querySelectorAll('#rule-form [data-field]'))"
        ".filter((box) => !box.hidden).map((box) => box.dataset.field)"
    )


def test_rules_are_made_through_the_form_restored_and_switched_off(
    page, live_server_url, make_user, make_project, add_member
):
    from control.models import AlertRule
    from control.services.alert_defaults import DEFAULT_RULES

    user = make_user("rhea", password=PASSWORD)
    project = make_project(user, "alerting demo")
    page.set_viewport_size(DESKTOP)
    login(page, live_server_url, "rhea", PASSWORD)
    page.goto(f"{live_server_url}/projects/{project.pk}/")
    page.get_by_role("link", name="Alert rules").click()
    page.wait_for_url(f"**/projects/{project.pk}/alert-rules/")
    page.get_by_text("No rule yet.").wait_for()
    page.get_by_role("link", name="New rule").click()
    page.wait_for_url("**/alert-rules/new/")

    # Only the fields of the chosen kind show; the conditions are the kind's.
    assert "stall_minutes" not in _visible_fields(page) and "change_by" not in _visible_fields(page)
    page.select_option("#id_kind", "change")
    shown = _visible_fields(page)
    assert {"key", "source", "condition", "change_by", "threshold", "window", "warmup", "combine"} <= set(
        shown
    )
    assert {"stall_minutes", "lifecycle_states", "denominator_key"}.isdisjoint(shown)
    assert page.locator("#id_condition").input_value() == "drop"
    offered = page.evaluate(
        "() => Array.from(document.querySelectorAll('#id_condition option:not([hidden])'), o => o.value)"
    )
    assert offered == ["drop", "rise"]
    page.select_option("#id_kind", "stall")
    assert set(_visible_fields(page)) == {
        "name",
        "kind",
        "stall_minutes",
        "run_ids",
        "run_tags",
        "severity",
    } | {
        "channels",
        "enabled",
    }
    page.select_option("#id_kind", "change")

    # A change by a negative fraction: the service's message beside the field, nothing created.
    page.fill("#id_name", HOSTILE)
    page.fill("#id_key", "reward/final")
    page.fill("#id_source", "synth_*")
    page.fill("#id_threshold", "-0.5")
    page.fill("#id_window", "10")
    page.fill("#id_warmup", "5")
    page.click("text=Create rule")
    error = page.locator("#error-threshold")
    error.wait_for()
    assert error.inner_text() == "a change rule needs a positive fraction or number of deviations"
    assert page.locator("#id_threshold").get_attribute("aria-invalid") == "true"
    assert page.locator("#id_name").input_value() == HOSTILE
    assert page.locator("#id_kind").input_value() == "change"
    assert AlertRule.objects.count() == 0
    _shoot(page, "alert-rule-form-error-desktop")

    page.fill("#id_threshold", "0.3")
    page.click("text=Create rule")
    page.wait_for_url(f"**/projects/{project.pk}/alert-rules/")
    rule = AlertRule.objects.get()
    assert (rule.name, rule.kind, rule.condition, rule.threshold) == (HOSTILE, "change", "drop", 0.3)
    assert (rule.source, rule.window, rule.warmup) == ("synth_*", 10, 5)
    row = page.locator(f'tr[data-rule="{rule.pk}"]')
    assert row.locator("td.name a").inner_text() == HOSTILE
    assert row.locator("td.watches").inner_text() == (
        "reward/final falls more than 30% below its median of the last 10 steps, "
        "after 5 steps, on sources synth_*"
    )
    assert page.evaluate("() => window.__pwned") is None

    page.get_by_role("button", name="Restore built-in rules").click()
    page.get_by_text(f"Restored {len(DEFAULT_RULES)} built-in rule(s)").wait_for()
    assert page.locator("table.rules tbody tr").count() == len(DEFAULT_RULES) + 1
    drop = AlertRule.objects.get(project=project, builtin="reward_drop")
    drop_row = page.locator(f'tr[data-rule="{drop.pk}"]')
    assert drop_row.locator("td.enabled .state").inner_text() == "on"
    drop_row.get_by_role("button", name="Disable final reward drop").click()
    page.get_by_text("Alert rule final reward drop disabled.").wait_for()
    assert drop_row.locator("td.enabled .state").inner_text() == "off"
    drop.refresh_from_db()
    assert drop.enabled is False
    _shoot(page, "alert-rules-desktop")

    # Delete after the confirmation; the others stay.
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name=f"Delete {HOSTILE}").click()
    page.get_by_text(f"Alert rule {HOSTILE} deleted, with its alerts.").wait_for()
    assert not AlertRule.objects.filter(pk=rule.pk).exists()
    assert AlertRule.objects.filter(project=project).count() == len(DEFAULT_RULES)
    page.set_viewport_size(NARROW)
    page.reload()
    assert _overflowing(page) == []
    _shoot(page, "alert-rules-narrow")

    # A viewer reads the rules and cannot change them.
    viewer = make_user("vera", password=PASSWORD)
    add_member(project, viewer, "viewer")
    page.context.clear_cookies()
    login(page, live_server_url, "vera", PASSWORD)
    page.goto(f"{live_server_url}/projects/{project.pk}/alert-rules/")
    page.get_by_text("You are a viewer of this project").wait_for()
    assert page.locator("table.rules tbody tr").count() == len(DEFAULT_RULES)
    assert page.locator("main button").count() == 0
    assert page.get_by_role("link", name="New rule").count() == 0
    response = page.goto(f"{live_server_url}/projects/{project.pk}/alert-rules/{drop.pk}/")
    assert response.status == 403
    assert "you are a viewer of project" in page.locator("main").inner_text()
    _shoot(page, "alert-rules-viewer-narrow")


def test_a_channel_secret_is_shown_once_and_a_test_reaches_the_webhook(
    page, live_server_url, make_user, make_project, receiver
):
    from control.models import AlertDelivery, NotificationChannel

    user = make_user("cleo", password=PASSWORD)
    project = make_project(user, "channels demo")
    page.set_viewport_size(DESKTOP)
    login(page, live_server_url, "cleo", PASSWORD)
    page.goto(f"{live_server_url}/projects/{project.pk}/alert-rules/")
    page.get_by_role("link", name="notification channels").click()
    page.wait_for_url(f"**/projects/{project.pk}/channels/")
    page.get_by_text("No channel yet").wait_for()

    page.fill("#id_name", HOSTILE)
    page.select_option("#id_kind", "webhook")
    page.fill("#id_url", receiver.url)
    page.click("text=Create channel")
    created = page.locator("#channel-created")
    created.wait_for()
    channel = NotificationChannel.objects.get()
    assert created.locator("h2").inner_text() == f"Channel {HOSTILE} created"
    assert "it will not be shown again" in created.inner_text()
    secret = page.locator("#channel-secret").input_value()
    assert secret == channel.secret and len(secret) >= 32
    assert page.evaluate("() => window.__pwned") is None
    _shoot(page, "channel-created-desktop")

    # Reloading the answer sends the form again: no second channel, and the secret is gone.
    page.reload()
    page.get_by_text("This form was already sent (or has expired); no channel was created.").wait_for()
    assert secret not in page.content()
    assert NotificationChannel.objects.count() == 1

    row = page.locator(f'tr[data-channel="{channel.pk}"]')
    assert row.locator("td.address").inner_text() == receiver.url
    row.get_by_role("button", name=f"Send a test to {HOSTILE}").click()
    page.get_by_text("is on its way; its state shows below.").wait_for()
    delivery = AlertDelivery.objects.get()
    sent = row.locator(f'li[data-delivery="{delivery.pk}"][data-state="sent"]')
    sent.wait_for(timeout=WAIT_MS)
    assert sent.locator(".status").inner_text() == "sent"
    assert sent.locator(".what").inner_text() == "test"
    assert sent.locator(".attempts").inner_text() == "1 attempt"
    assert len(receiver.hits) == 1
    hit = receiver.hits[0]
    stamp = hit["headers"]["X-Triune-Timestamp"]
    expected = hmac.new(secret.encode(), stamp.encode() + b"." + hit["body"], hashlib.sha256).hexdigest()
    assert hit["headers"]["X-Triune-Signature"] == f"sha256={expected}"
    _shoot(page, "channel-test-sent-desktop")

    page.set_viewport_size(NARROW)
    page.reload()
    assert _overflowing(page) == []
    _shoot(page, "channels-narrow")


@pytest.fixture
def watched_run(make_user, make_project, make_source):
    """A submitted run of two sources of user rita (who may write)."""
    from control.models import Run
    from control.services.runs import SourceWeight, run_create

    user = make_user("rita", password=PASSWORD)
    project = make_project(user, "watch")
    sources = [make_source(project, name, task_type="counting") for name in ("synth_counting", "synth_math")]
    run = run_create(
        project=project,
        user=user,
        name="tiny demo",
        sources=[SourceWeight(source, 1.0) for source in sources],
        total_steps=50,
    )
    Run.objects.filter(pk=run.pk).update(status="submitted", attempt=1, ray_submission_id="triune-test")
    run.refresh_from_db()
    return run


def _points(step: int, accuracy: float) -> list[tuple]:
    return [
        (step, "reward/accuracy", "synth_counting", accuracy),
        (step, "reward/accuracy", "synth_math", 0.7),
        (step, "reward/final", "synth_counting", accuracy),
        (step, "reward/final", "synth_math", 0.7),
        (step, "actor/pg_loss", "", 0.1),
    ]


def _alert_marks(page, chart: str) -> list[dict]:
    return page.evaluate(
        """(chart) => {
            const layout = document.querySelector(`.chart[data-key="${chart}"]`).layout;
            const notes = layout.annotations || [];
            return (layout.shapes || []).filter((s) => (s.name || "").startsWith("alert-")).map((s) => ({
                name: s.name, x: s.x0, text: notes.find((a) => a.name === s.name).text,
            }));
        }""",
        chart,
    )


def test_a_rule_firing_on_an_open_run_page_shows_a_toast_a_chart_mark_and_the_nav_count(
    page, live_server_url, watched_run, make_rule
):
    from control.models import Alert

    run = watched_run
    rule = make_rule(
        run.project,
        name=HOSTILE,
        key="reward/accuracy",
        source="synth_counting",
        condition="below",
        threshold=0.2,
    )
    trainer = Trainer(live_server_url, run)
    trainer.post([p for step in range(5) for p in _points(step, 0.6)])
    page.set_viewport_size(DESKTOP)
    errors = _open(page, live_server_url, run)
    badge = page.locator("#nav-open-alerts")
    assert badge.is_hidden()
    assert _alert_marks(page, "reward/accuracy") == []

    trainer.post(_points(5, 0.05))
    toast = page.locator("#toasts .toast")
    toast.wait_for(timeout=WAIT_MS)
    alert = Alert.objects.get()
    assert (alert.rule, alert.source, alert.key, alert.step) == (rule, "synth_counting", "reward/accuracy", 5)
    assert toast.get_attribute("role") == "status"
    assert toast.get_attribute("data-alert") == str(alert.pk)
    assert toast.locator(".toast-title").inner_text() == f"warning: {HOSTILE}"
    assert toast.locator(".toast-where").inner_text() == "source synth_counting · reward/accuracy · step 5"
    assert toast.locator(".toast-message").inner_text() == alert.message
    _wait_chart(
        page, "reward/accuracy", f"(div.layout.shapes || []).some((s) => s.name === 'alert-{alert.pk}')"
    )
    assert _alert_marks(page, "reward/accuracy") == [
        {"name": f"alert-{alert.pk}", "x": 5, "text": "⚠ synth_counting"}
    ]
    # The same source's final reward is another key: no mark there.
    assert _alert_marks(page, "reward/final") == []
    page.locator("#nav-open-alerts .count", has_text="1").wait_for(timeout=WAIT_MS)
    assert badge.is_visible()
    page.locator("#alerts-list li").wait_for()
    assert page.evaluate("() => window.__pwned") is None
    _shoot(page, "run-alert-fired-desktop")

    # The toast hides itself; a reload marks the alert from the API and counts it in the nav.
    toast.wait_for(state="detached", timeout=15_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator('figure[data-chart="reward/accuracy"]').screenshot(
        path=str(SCREENSHOTS / "run-alert-mark.png")
    )
    page.reload()
    page.locator("#live-state", has_text="live").wait_for(timeout=WAIT_MS)
    _wait_chart(
        page, "reward/accuracy", f"(div.layout.shapes || []).some((s) => s.name === 'alert-{alert.pk}')"
    )
    assert page.locator("#nav-open-alerts .count").inner_text() == "1"
    assert page.locator("#toasts .toast").count() == 0
    # A source hidden by the controls takes its marks along; on the wall-time axis the mark stays.
    page.locator(".source-option", has_text="synth_counting").locator("input").uncheck()
    _wait_chart(
        page, "reward/accuracy", "!(div.layout.shapes || []).some((s) => s.name.startsWith('alert-'))"
    )
    page.locator(".source-option", has_text="synth_counting").locator("input").check()
    page.select_option("#x-axis", "time")
    _wait_chart(
        page,
        "reward/accuracy",
        f"div.layout.xaxis.type === 'date' && div.layout.shapes.some((s) => s.name === 'alert-{alert.pk}')",
    )
    assert errors == []

"""The alert rules page: the list in words, the form with the service's messages beside each field,
switching a rule on and off, deleting, restoring the built-in rules, and who may do what."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="window.__pwned=1">'


@pytest.fixture
def browser(client, user):
    client.force_login(user)
    return client


def _rule(**fields):
    from control.models import AlertRule

    return AlertRule(**fields)


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"kind": "threshold", "key": "reward/accuracy", "condition": "below", "threshold": 0.5},
            "reward/accuracy below 0.5, on every source",
        ),
        (
            {"kind": "threshold", "key": "response_length/clip_ratio", "condition": "above", "threshold": 0.5}
            | {"window": 3, "source": "synth_*"},
            "response_length/clip_ratio above 0.5 for 3 steps in a row, on sources synth_*",
        ),
        (
            {"kind": "change", "key": "reward/final", "condition": "drop", "change_by": "fraction"}
            | {"threshold": 0.5, "window": 10, "warmup": 10, "source": "geo"},
            "reward/final falls more than 50% below its median of the last 10 steps, "
            "after 10 steps, on source geo",
        ),
        (
            {"kind": "change", "key": "grad_norm/vision.*", "condition": "rise", "change_by": "mad"}
            | {"threshold": 10.0, "window": 20, "combine": "max"},
            "the largest of grad_norm/vision.* rises more than 10 robust deviations above its median "
            "of the last 20 steps, on every source",
        ),
        (
            {"kind": "not_finite", "key": "actor/*", "run_ids": [3, 4]},
            "actor/* is NaN or infinite, on every source; runs 3, 4",
        ),
        (
            {"kind": "rate", "key": "reward_errors", "denominator_key": "count", "condition": "above"}
            | {"threshold": 0.01, "run_tags": ["vision"]},
            "reward_errors / count above 0.01, on every source; runs with a source tagged vision",
        ),
        ({"kind": "stall", "stall_minutes": 15}, "a running run reports nothing for 15 min"),
        ({"kind": "lifecycle", "lifecycle_states": ["failed", "lost"]}, "a run becomes failed or lost"),
    ],
)
def test_a_rule_is_described_in_words(fields, words):
    from webui.alert_rule_views import rule_summary

    assert rule_summary(_rule(**fields)) == words


def _post(**fields) -> dict:
    """A form as the page sends it for a threshold rule, with ``fields`` changed."""
    data = {
        "name": "accuracy low",
        "kind": "threshold",
        "key": "reward/accuracy",
        "combine": "each",
        "denominator_key": "",
        "source": "",
        "condition": "below",
        "change_by": "fraction",
        "threshold": "0.5",
        "window": "1",
        "warmup": "0",
        "stall_minutes": "10",
        "run_ids": "",
        "run_tags": "",
        "severity": "warning",
        "cooldown_seconds": "600",
        "auto_resolve_steps": "0",
        "enabled": "on",
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def _error_beside(page: str, field: str) -> str:
    match = re.search(rf'<span class="field-error" id="error-{field}">([^<]*)</span>', page)
    assert match, f"no message beside {field}"
    return match.group(1)


def test_the_list_says_what_each_rule_watches_and_escapes_names(browser, project, make_rule):
    from control.models import NotificationChannel

    channel = NotificationChannel.objects.create(
        project=project, name="ops <b>", kind="email", email="ops@example.com"
    )
    rule = make_rule(project, name=HOSTILE, source="synth_math", channels=[channel])
    page = browser.get(f"/projects/{project.pk}/alert-rules/").content.decode()
    assert HOSTILE not in page and "&lt;img src=x" in page
    assert "reward/accuracy below 0.5, on source synth_math" in page
    assert "ops &lt;b&gt;" in page
    assert f'action="/projects/{project.pk}/alert-rules/{rule.pk}/enabled/"' in page
    assert f"/projects/{project.pk}/alert-rules/new/" in page


def test_a_valid_form_creates_the_rule_with_the_fields_of_its_kind(browser, project):
    from control.models import AlertRule, NotificationChannel

    channel = NotificationChannel.objects.create(project=project, name="ops", kind="email", email="o@x.org")
    response = browser.post(
        f"/projects/{project.pk}/alert-rules/new/",
        _post(
            name="reward drop",
            kind="change",
            key="reward/final",
            condition="drop",
            threshold="0.3",
            window="5",
            warmup="4",
            source="synth_*",
            run_ids="7, 9,7",
            run_tags="vision, ",
            channels=[str(channel.pk)],
            stall_minutes="not a number",  # a stall field: not judged for a change rule
        ),
    )
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.pk}/alert-rules/"
    rule = AlertRule.objects.get(name="reward drop")
    assert (rule.kind, rule.key, rule.source, rule.condition) == ("change", "reward/final", "synth_*", "drop")
    assert (rule.threshold, rule.window, rule.warmup, rule.stall_minutes) == (0.3, 5, 4, 10)
    assert (rule.run_ids, rule.run_tags, rule.enabled) == ([7, 9], ["vision"], True)
    assert list(rule.channels.all()) == [channel]


def test_a_not_finite_rule_takes_its_own_condition(browser, project):
    from control.models import AlertRule

    response = browser.post(
        f"/projects/{project.pk}/alert-rules/new/",
        _post(name="nan", kind="not_finite", key="actor/*", condition="above", enabled=None),
    )
    assert response.status_code == 302
    rule = AlertRule.objects.get(name="nan")
    assert (rule.kind, rule.condition, rule.enabled) == ("not_finite", "not_finite", False)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        # The service's checks, as for the API:
        (
            {"kind": "change", "condition": "drop", "threshold": "0"},
            "threshold",
            "a change rule needs a positive fraction or number of deviations",
        ),
        ({"kind": "change", "condition": "above"}, "condition", "a change rule needs one of drop, rise"),
        (
            {"kind": "change", "condition": "rise", "change_by": "mad", "window": "2"},
            "window",
            "a median/MAD baseline needs a window of at least 3 steps",
        ),
        ({"key": ""}, "key", "required: the metric key (or prefix*) the rule watches"),
        (
            {"kind": "rate", "condition": "above", "key": "reward_errors"},
            "denominator_key",
            "required: the key the rate divides by (e.g. count)",
        ),
        # The form's:
        ({"window": "0"}, "window", "Ensure this value is greater than or equal to 1."),
        ({"threshold": "nan"}, "threshold", "Enter a number."),
        ({"key": "reward accuracy"}, "key", "a metric key such as reward/accuracy, or a prefix and *"),
        ({"run_ids": "3, x"}, "run_ids", "&#x27;x&#x27; is not a run id (a positive whole number)"),
        (
            {"kind": "lifecycle"},
            "lifecycle_states",
            "a non-empty list of run states: pending, queued, submitted, running, succeeded, failed, "
            "cancelling, cancelled, lost",
        ),
    ],
)
def test_a_refused_field_is_explained_beside_it_and_nothing_is_created(
    browser, project, fields, field, message
):
    from control.models import AlertRule

    response = browser.post(f"/projects/{project.pk}/alert-rules/new/", _post(**fields))
    assert response.status_code == 400
    page = response.content.decode()
    assert _error_beside(page, field) == message
    assert 'aria-invalid="true"' in page or field == "lifecycle_states"
    assert "Nothing was saved" in page
    assert AlertRule.objects.count() == 0


def test_a_name_taken_is_explained_beside_the_name(browser, project, make_rule):
    make_rule(project, name="taken")
    response = browser.post(f"/projects/{project.pk}/alert-rules/new/", _post(name="taken"))
    assert response.status_code == 400
    assert _error_beside(response.content.decode(), "name") == (
        "an alert rule named &#x27;taken&#x27; already exists in this project"
    )


def test_editing_shows_the_rule_and_saves_it(browser, project, make_rule):
    rule = make_rule(project, name="low", run_ids=[3, 4], run_tags=["a", "b"], window=2)
    page = browser.get(f"/projects/{project.pk}/alert-rules/{rule.pk}/").content.decode()
    assert 'value="3, 4"' in page and 'value="a, b"' in page and 'name="window" value="2"' in page
    response = browser.post(
        f"/projects/{project.pk}/alert-rules/{rule.pk}/", _post(name="low", threshold="0.25", run_ids="")
    )
    assert response.status_code == 302
    rule.refresh_from_db()
    assert (rule.threshold, rule.run_ids) == (0.25, [])
    refused = browser.post(f"/projects/{project.pk}/alert-rules/{rule.pk}/", _post(name="low", key=""))
    assert refused.status_code == 400
    rule.refresh_from_db()
    assert rule.key == "reward/accuracy"


def test_enable_disable_delete_and_restore(browser, project, make_rule):
    from control.models import AlertRule
    from control.services.alert_defaults import DEFAULT_RULES

    rule = make_rule(project, name="low")
    assert (
        browser.post(f"/projects/{project.pk}/alert-rules/{rule.pk}/enabled/", {"enabled": "0"}).status_code
        == 302
    )
    rule.refresh_from_db()
    assert rule.enabled is False
    browser.post(f"/projects/{project.pk}/alert-rules/{rule.pk}/enabled/", {"enabled": "1"})
    rule.refresh_from_db()
    assert rule.enabled is True

    response = browser.post(f"/projects/{project.pk}/alert-rules/restore/", follow=True)
    assert f"Restored {len(DEFAULT_RULES)} built-in rule(s): final reward drop," in response.content.decode()
    assert AlertRule.objects.filter(project=project).exclude(builtin="").count() == len(DEFAULT_RULES)
    again = browser.post(f"/projects/{project.pk}/alert-rules/restore/", follow=True)
    assert "Every built-in rule is already here" in again.content.decode()

    assert browser.post(f"/projects/{project.pk}/alert-rules/{rule.pk}/delete/").status_code == 302
    assert not AlertRule.objects.filter(pk=rule.pk).exists()
    assert browser.get(f"/projects/{project.pk}/alert-rules/{rule.pk}/delete/").status_code == 405


def test_a_viewer_reads_the_list_and_cannot_change_a_rule(client, project, make_rule, viewer):
    rule = make_rule(project, name="low")
    client.force_login(viewer)
    page = client.get(f"/projects/{project.pk}/alert-rules/").content.decode()
    assert "low" in page and "You are a viewer of this project" in page
    assert "<button" not in page.split("<main>")[1]
    assert client.get(f"/projects/{project.pk}/alert-rules/new/").status_code == 403
    assert client.get(f"/projects/{project.pk}/alert-rules/{rule.pk}/").status_code == 403
    assert client.post(f"/projects/{project.pk}/alert-rules/new/", _post(name="mine")).status_code == 403
    assert (
        client.post(f"/projects/{project.pk}/alert-rules/{rule.pk}/enabled/", {"enabled": "0"}).status_code
        == 403
    )
    assert client.post(f"/projects/{project.pk}/alert-rules/{rule.pk}/delete/").status_code == 403
    assert client.post(f"/projects/{project.pk}/alert-rules/restore/").status_code == 403
    rule.refresh_from_db()
    assert rule.enabled is True


def test_another_projects_rules_are_404(client, project, make_rule, other_user, make_project):
    rule = make_rule(project, name="low")
    client.force_login(other_user)
    assert client.get(f"/projects/{project.pk}/alert-rules/").status_code == 404
    theirs = make_project(other_user)
    assert client.get(f"/projects/{theirs.pk}/alert-rules/{rule.pk}/").status_code == 404
    assert client.post(f"/projects/{theirs.pk}/alert-rules/{rule.pk}/delete/").status_code == 404


def test_the_nav_counts_the_open_alerts_of_the_page_project_in_one_query(
    browser, project, make_rule, make_run, make_project, other_user
):
    from django.db import connection
    from django.test import RequestFactory
    from django.test.utils import CaptureQueriesContext
    from django.urls import resolve

    from control.models import Alert
    from webui.context_processors import open_alerts

    rule = make_rule(project, name="low")
    run = make_run(project)
    for state, source in (("firing", "a"), ("acknowledged", "b"), ("resolved", "c"), ("resolved", "d")):
        Alert.objects.create(rule=rule, run=run, source=source, step=1, message="m", state=state)
    foreign = make_project(other_user)
    Alert.objects.create(rule=make_rule(foreign), run=make_run(foreign), step=1, message="m")

    def badge(path: str, user) -> int:
        request = RequestFactory().get(path)
        request.user = user
        request.resolver_match = resolve(path)
        with CaptureQueriesContext(connection) as queries:
            count = open_alerts(request)["nav_open_alerts"]()
        assert len(queries) == 1
        return count

    user = project.created_by
    assert badge(f"/projects/{project.pk}/", user) == 2
    assert badge(f"/runs/{run.pk}/", user) == 2
    assert badge(f"/projects/{foreign.pk}/", user) == 0  # not a member
    page = browser.get(f"/runs/{run.pk}/").content.decode()
    assert re.search(r'id="nav-open-alerts"[^>]*><span class="count">2</span>', page)
    page = browser.get(f"/projects/{project.pk}/alert-rules/").content.decode()
    assert '<span class="count">2</span>' in page

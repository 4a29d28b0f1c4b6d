"""Alert rules and alerts through the REST API: create, edit, fire on ingest, acknowledge, resolve."""

from __future__ import annotations

import pytest

from tests.integration.control.helpers import assert_error, field_errors

pytestmark = pytest.mark.django_db

API = "/api/v1/"
ACC = "reward/accuracy"


@pytest.fixture
def owner(user, client_for):
    return client_for(user)


@pytest.fixture
def firing(project, run, make_rule, ingest):
    """A firing alert of ``run``."""
    from control.models import Alert

    make_rule(project, name="accuracy collapse")
    ingest(run, (5, ACC, "geo", 0.1))
    return Alert.objects.get(run=run)


def test_a_rule_created_through_the_api_fires_on_ingest_through_the_api(project, run, owner):
    from control.models import NotificationChannel

    channel = NotificationChannel.objects.create(
        project=project, name="oncall", kind="email", email="o@example.com"
    )
    rule = {
        "project": project.pk,
        "name": "format drop",
        "kind": "threshold",
        "key": "reward/format",
        "source": "geo",
        "condition": "below",
        "threshold": 0.25,
        "window": 2,
        "cooldown_seconds": 60,
        "severity": "error",
        "channels": [channel.pk],
    }
    created = owner.post(API + "alert-rules/", rule, format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert {k: body[k] for k in rule} == rule
    assert body["enabled"] is True
    points = [{"step": s, "key": "reward/format", "source": "geo", "value": 0.1} for s in (0, 1)]
    owner.post(API + f"runs/{run.pk}/metrics/", {"points": points}, format="json")
    alerts = owner.get(API + "alerts/", {"run": run.pk}).json()["results"]
    fields = ("rule_name", "source", "key", "severity", "state", "step", "value")
    assert [tuple(a[k] for k in fields) for a in alerts] == [
        ("format drop", "geo", "reward/format", "error", "firing", 1, 0.1)
    ]


def test_the_rule_defaults(project, owner):
    body = {"project": project.pk, "name": "r", "key": ACC, "condition": "below"}
    created = owner.post(API + "alert-rules/", body, format="json").json()
    names = ("kind", "source", "threshold", "window", "cooldown_seconds", "severity", "auto_resolve_steps")
    assert {k: created[k] for k in (*names, "channels", "builtin")} == {
        "kind": "threshold",
        "source": "",
        "threshold": 0.0,
        "window": 1,
        "cooldown_seconds": 600,
        "severity": "warning",
        "auto_resolve_steps": 0,
        "channels": [],
        "builtin": "",
    }
    assert created["combine"] == "each"


def test_the_layers_of_a_module_as_one_series(project, run, owner):
    body = {
        "project": project.pk,
        "name": "vision spike",
        "kind": "threshold",
        "key": "grad_norm/vision.*",
        "combine": "max",
        "condition": "above",
        "threshold": 100.0,
    }
    created = owner.post(API + "alert-rules/", body, format="json")
    assert created.status_code == 201 and created.json()["combine"] == "max"
    points = [
        {"step": 1, "key": f"grad_norm/vision.{i}", "source": "", "value": v}
        for i, v in enumerate([1.0, 500.0, 2.0])
    ]
    owner.post(API + f"runs/{run.pk}/metrics/", {"points": points}, format="json")
    alerts = owner.get(API + "alerts/", {"run": run.pk}).json()["results"]
    assert [(a["key"], a["value"]) for a in alerts] == [("grad_norm/vision.1", 500.0)]
    assert "grad_norm/vision.1 (the largest of grad_norm/vision.*)" in alerts[0]["message"]


def test_each_kind_says_what_it_lacks(project, owner):
    cases = [
        (
            {"kind": "threshold", "condition": "drop"},
            "condition",
            "a threshold rule needs one of above, below",
        ),
        ({"kind": "change", "condition": "drop", "threshold": 0}, "threshold", None),
        (
            {"kind": "change", "condition": "rise", "change_by": "mad", "threshold": 3, "window": 2},
            "window",
            None,
        ),
        ({"kind": "rate", "condition": "above", "threshold": 0.01}, "denominator_key", None),
        ({"kind": "lifecycle", "key": ""}, "lifecycle_states", None),
        ({"kind": "threshold", "key": "", "condition": "above"}, "key", None),
    ]
    for fields, field, message in cases:
        body = {"project": project.pk, "name": f"bad {field}", "key": ACC, **fields}
        response = owner.post(API + "alert-rules/", body, format="json")
        errors = field_errors(response)
        assert field in errors, (fields, errors)
        if message:
            assert errors[field] == [message]
    from control.models import AlertRule

    assert not AlertRule.objects.filter(project=project).exists()


def test_another_projects_channel_cannot_be_picked(project, make_project, other_user, owner):
    from control.models import NotificationChannel

    other = make_project(other_user)
    theirs = NotificationChannel.objects.create(project=other, name="x", kind="email", email="x@example.com")
    body = {"project": project.pk, "name": "r", "key": ACC, "condition": "below", "channels": [theirs.pk]}
    response = owner.post(API + "alert-rules/", body, format="json")
    assert field_errors(response) == {"channels": [f"no notification channel {theirs.pk} in this project"]}


def test_the_built_in_rules_come_back(project, owner):
    restored = owner.post(API + f"alert-rules/defaults/?project={project.pk}")
    assert restored.status_code == 200
    first = {r["builtin"] for r in restored.json()}
    assert {"reward_drop", "reward_errors", "failed", "stalled"} <= first
    again = owner.post(API + f"alert-rules/defaults/?project={project.pk}")
    assert again.json() == []
    missing = owner.post(API + "alert-rules/defaults/")
    assert field_errors(missing) == {"project": ["required: the project whose built-in rules to restore"]}


def test_a_duplicate_rule_name_is_409(project, owner, make_rule):
    make_rule(project, name="taken")
    body = {"project": project.pk, "name": "taken", "key": ACC, "condition": "below"}
    response = owner.post(API + "alert-rules/", body, format="json")
    assert_error(
        response, 409, code="conflict", message="an alert rule named 'taken' already exists in this project"
    )


def test_renaming_a_rule_to_a_taken_name_is_409(project, owner, make_rule):
    make_rule(project, name="taken")
    rule = make_rule(project, name="mine")
    response = owner.patch(API + f"alert-rules/{rule.pk}/", {"name": "taken"}, format="json")
    assert_error(
        response, 409, code="conflict", message="an alert rule named 'taken' already exists in this project"
    )
    rule.refresh_from_db()
    assert rule.name == "mine"


def test_the_same_rule_name_in_two_projects_is_fine(project, owner, make_rule, make_project, other_user):
    make_rule(make_project(other_user), name="taken")
    body = {"project": project.pk, "name": "taken", "key": ACC, "condition": "below"}
    assert owner.post(API + "alert-rules/", body, format="json").status_code == 201


def test_patching_a_rule_changes_only_what_is_sent(project, owner, make_rule):
    rule = make_rule(project, name="r", threshold=0.5, window=1)
    response = owner.patch(API + f"alert-rules/{rule.pk}/", {"window": 4, "enabled": False}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["threshold"], body["window"], body["enabled"]) == ("r", 0.5, 4, False)


@pytest.mark.parametrize(("field", "value"), [("condition", "x"), ("project", 2), ("key", "bad key!")])
def test_a_bad_patch_or_one_to_the_project_is_refused(field, value, project, owner, make_rule):
    rule = make_rule(project, name="r")
    response = owner.patch(API + f"alert-rules/{rule.pk}/", {field: value}, format="json")
    body = assert_error(response, 400, code="invalid")
    assert set(body["extra"]["fields"]) == {field}


def test_a_change_to_what_a_rule_watches_starts_its_state_afresh(project, run, owner, make_rule, ingest):
    from control.models import AlertState

    rule = make_rule(project, name="r", window=3)
    ingest(run, (0, ACC, "geo", 0.1), (1, ACC, "geo", 0.1))
    assert AlertState.objects.get(rule=rule).state["hold"] == 2
    response = owner.patch(
        API + f"alert-rules/{rule.pk}/", {"source": "chart", "threshold": 0.2}, format="json"
    )
    assert response.status_code == 200 and response.json()["source"] == "chart"
    assert not AlertState.objects.filter(rule=rule).exists()
    # A change of its name or cooldown keeps the state.
    ingest(run, (2, ACC, "chart", 0.1))
    owner.patch(API + f"alert-rules/{rule.pk}/", {"name": "renamed", "cooldown_seconds": 5}, format="json")
    assert AlertState.objects.get(rule=rule).state["hold"] == 1


def test_deleting_a_rule_deletes_its_alerts(project, owner, firing):
    response = owner.delete(API + f"alert-rules/{firing.rule_id}/")
    assert response.status_code == 204
    assert owner.get(API + "alerts/").json()["count"] == 0
    assert_error(owner.get(API + f"alert-rules/{firing.rule_id}/"), 404)


def test_acknowledge_then_resolve(owner, firing, user):
    from control.models import Alert

    acked = owner.post(API + f"alerts/{firing.pk}/acknowledge/")
    assert acked.status_code == 200, acked.content
    assert acked.json()["state"] == "acknowledged"
    assert acked.json()["acknowledged_at"] is not None
    assert Alert.objects.get(pk=firing.pk).acknowledged_by == user
    resolved = owner.post(API + f"alerts/{firing.pk}/resolve/")
    assert resolved.status_code == 200
    assert resolved.json()["state"] == "resolved"
    assert resolved.json()["resolved_at"] is not None


def test_a_firing_alert_can_be_resolved_directly(owner, firing):
    response = owner.post(API + f"alerts/{firing.pk}/resolve/")
    assert response.json()["state"] == "resolved"
    assert response.json()["acknowledged_at"] is None


@pytest.mark.parametrize(
    ("steps", "then", "message"),
    [
        (
            ["acknowledge"],
            "acknowledge",
            "alert {id} is acknowledged; only a firing alert can be acknowledged",
        ),
        (["resolve"], "acknowledge", "alert {id} is resolved; only a firing alert can be acknowledged"),
        (["resolve"], "resolve", "alert {id} is already resolved"),
        (["acknowledge", "resolve"], "resolve", "alert {id} is already resolved"),
        (
            ["acknowledge", "resolve"],
            "acknowledge",
            "alert {id} is resolved; only a firing alert can be acknowledged",
        ),
    ],
)
def test_wrong_transitions_are_409(steps, then, message, owner, firing):
    for step in steps:
        assert owner.post(API + f"alerts/{firing.pk}/{step}/").status_code == 200
    state = owner.get(API + "alerts/").json()["results"][0]["state"]
    response = owner.post(API + f"alerts/{firing.pk}/{then}/")
    assert_error(response, 409, code="conflict", message=message.format(id=firing.pk))
    assert owner.get(API + "alerts/").json()["results"][0]["state"] == state


def test_a_resolved_alert_lets_the_rule_fire_again(project, run, owner, make_rule, ingest):
    make_rule(project, name="r", cooldown_seconds=0)
    ingest(run, (0, ACC, "geo", 0.1))
    first = owner.get(API + "alerts/").json()["results"][0]["id"]
    owner.post(API + f"alerts/{first}/resolve/")
    ingest(run, (1, ACC, "geo", 0.1))
    states = [(a["step"], a["state"]) for a in owner.get(API + "alerts/").json()["results"]]
    assert states == [(1, "firing"), (0, "resolved")]  # newest first


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["geo", "chart"]),
        ({"state": "firing"}, ["geo"]),
        ({"state": "acknowledged"}, ["chart"]),
        ({"state": "resolved"}, []),
    ],
)
def test_alerts_filter_by_state(query, expected, project, run, owner, make_rule, ingest):
    make_rule(project, name="r")
    ingest(run, (0, ACC, "chart", 0.1))
    ingest(run, (0, ACC, "geo", 0.1))
    chart = owner.get(API + "alerts/").json()["results"][1]
    owner.post(API + f"alerts/{chart['id']}/acknowledge/")
    assert [a["source"] for a in owner.get(API + "alerts/", query).json()["results"]] == expected


def test_alerts_filter_by_run_and_project(project, make_run, owner, make_rule, ingest, make_project, user):
    make_rule(project, name="r")
    first, second = make_run(project), make_run(project)
    ingest(first, (0, ACC, "geo", 0.1))
    ingest(second, (0, ACC, "geo", 0.1))
    other = make_project(user)
    assert [a["run"] for a in owner.get(API + "alerts/", {"run": first.pk}).json()["results"]] == [first.pk]
    assert owner.get(API + "alerts/", {"project": project.pk}).json()["count"] == 2
    assert owner.get(API + "alerts/", {"project": other.pk}).json()["count"] == 0


def test_a_missing_alert_is_404(owner, project):
    assert_error(
        owner.post(API + "alerts/987654/acknowledge/"),
        404,
        message="alert 987654 does not exist or is not in one of your projects",
    )

"""Alert rules judged as points arrive, on a run's change of state, and on a stalled run.

At ingest each matching (rule, source, key) series is judged point by point by
:mod:`control.services.alert_engine` from its stored rolling state (``AlertState``), never by
reading the series back: a request costs a few queries whatever the run's length (the rules, the
states, the open alerts, one upsert of the states). An alert opens when a rule fires, at most one
open per rule, run and source, not again within the rule's cooldown, and resolves itself once the
condition has been clear for the rule's ``auto_resolve_steps``. Notifications leave through
Celery (``workers.tasks.alert_deliver``) and the run's websocket once the transaction commits,
so an ingest never waits on them.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from control.errors import Conflict, DomainError
from control.models import Alert, AlertRule, AlertState, MetricPoint, NotificationChannel, Project, Run
from control.pg_arrays import number_array, text_array
from control.services.alert_defaults import HINTS
from control.services.alert_engine import (
    RuleSpec,
    Verdict,
    clears,
    describe,
    fires,
    glob_matches,
    judge,
    source_matches,
)
from control.services.broadcast import broadcast_to_run, enqueue_task

if TYPE_CHECKING:
    from control.services.metrics import PointIn

ALERT_DELIVER_TASK = "workers.tasks.alert_deliver"
POINT_KINDS = (
    AlertRule.Kind.THRESHOLD,
    AlertRule.Kind.CHANGE,
    AlertRule.Kind.NOT_FINITE,
    AlertRule.Kind.RATE,
)
THRESHOLD_KEY = "detection/iou_threshold"
# Rate rules keep the numerator or denominator of a step whose other half has not come yet.
PENDING_STEPS = 8

_CONDITIONS = {
    AlertRule.Kind.THRESHOLD: ("above", "below"),
    AlertRule.Kind.RATE: ("above", "below"),
    AlertRule.Kind.CHANGE: ("drop", "rise"),
    AlertRule.Kind.NOT_FINITE: ("not_finite",),
}


# ---- rules ---------------------------------------------------------------------------------


def _refuse(field: str, message: str) -> DomainError:
    return DomainError(f"{field}: {message}", fields={field: [message]})


def _rule_check(rule: AlertRule) -> None:
    """The fields a rule of its kind needs, with a message that says what to fix."""
    kinds = AlertRule.Kind.values
    if rule.kind not in kinds:
        raise _refuse("kind", f"must be one of {', '.join(kinds)}")
    if rule.kind in POINT_KINDS:
        if not rule.key:
            raise _refuse("key", "required: the metric key (or prefix*) the rule watches")
        allowed = _CONDITIONS[rule.kind]
        if rule.condition not in allowed:
            raise _refuse("condition", f"a {rule.kind} rule needs one of {', '.join(allowed)}")
        if not math.isfinite(rule.threshold):
            raise _refuse("threshold", "must be a finite number")
        if rule.window < 1 or rule.window > 1000:
            raise _refuse("window", "must be between 1 and 1000 steps")
    if rule.combine not in AlertRule.Combine.values:
        raise _refuse("combine", "must be each or max")
    if rule.kind == AlertRule.Kind.CHANGE:
        if rule.change_by not in AlertRule.ChangeBy.values:
            raise _refuse("change_by", "must be fraction or mad")
        if rule.threshold <= 0:
            raise _refuse("threshold", "a change rule needs a positive fraction or number of deviations")
        if rule.change_by == AlertRule.ChangeBy.MAD and rule.window < 3:
            raise _refuse("window", "a median/MAD baseline needs a window of at least 3 steps")
    if rule.kind == AlertRule.Kind.RATE and not rule.denominator_key:
        raise _refuse("denominator_key", "required: the key the rate divides by (e.g. count)")
    if rule.kind == AlertRule.Kind.STALL and rule.stall_minutes < 1:
        raise _refuse("stall_minutes", "must be at least 1 minute")
    if rule.kind == AlertRule.Kind.LIFECYCLE:
        states = rule.lifecycle_states
        if not states or not isinstance(states, list) or not set(states) <= set(Run.Status.values):
            names = ", ".join(Run.Status.values)
            raise _refuse("lifecycle_states", f"a non-empty list of run states: {names}")
    if rule.severity not in AlertRule.Severity.values:
        raise _refuse("severity", "must be info, warning or error")
    if not isinstance(rule.run_ids, list) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in rule.run_ids
    ):
        raise _refuse("run_ids", "a list of run ids")
    if not isinstance(rule.run_tags, list) or not all(isinstance(t, str) for t in rule.run_tags):
        raise _refuse("run_tags", "a list of tag names")


def _channels_check(project: Project, channels: Iterable[NotificationChannel]) -> list[NotificationChannel]:
    channels = list(channels)
    for channel in channels:
        if channel.project_id != project.pk:
            raise _refuse("channels", f"channel {channel.pk} belongs to another project")
    return channels


def alert_rule_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    channels: Iterable[NotificationChannel] = (),
    **fields,
) -> AlertRule:
    """Create a rule after checking what its kind needs; a rule without a kind whose condition is
    not_finite is a not_finite rule (what older clients send)."""
    if "kind" not in fields and fields.get("condition") == AlertRule.Condition.NOT_FINITE:
        fields["kind"] = AlertRule.Kind.NOT_FINITE
    rule = AlertRule(project=project, created_by=user, **fields)
    _rule_check(rule)
    picked = _channels_check(project, channels)
    try:
        with transaction.atomic():
            rule.save()
            rule.channels.set(picked)
    except IntegrityError as exc:
        raise Conflict(f"an alert rule named {fields.get('name')!r} already exists in this project") from exc
    return rule


def alert_rule_update(
    *, rule: AlertRule, channels: Iterable[NotificationChannel] | None = None, **fields
) -> AlertRule:
    """Change a rule's settings; a change to what it judges starts its rolling state afresh."""
    judged = {"kind", "key", "source", "condition", "threshold", "window", "change_by", "warmup"}
    judged.update({"denominator_key", "combine"})
    restart = any(name in judged and getattr(rule, name) != value for name, value in fields.items())
    for name, value in fields.items():
        setattr(rule, name, value)
    _rule_check(rule)
    picked = None if channels is None else _channels_check(rule.project, channels)
    try:
        with transaction.atomic():
            rule.save()
            if picked is not None:
                rule.channels.set(picked)
            if restart:
                rule.states.all().delete()
    except IntegrityError as exc:
        raise Conflict(f"an alert rule named {rule.name!r} already exists in this project") from exc
    return rule


# ---- which rules watch a run ---------------------------------------------------------------


def _rules_for(run: Run, kinds: Sequence[str], rules: list[AlertRule] | None = None) -> list[AlertRule]:
    """The project's enabled rules of ``kinds`` (or ``rules``, already read) whose scope takes in ``run``."""
    if rules is None:
        rules = list(AlertRule.objects.filter(project_id=run.project_id, enabled=True, kind__in=kinds))
    tags: set[str] | None = None
    picked = []
    for rule in rules:
        if rule.run_ids and run.pk not in rule.run_ids:
            continue
        if rule.run_tags:
            if tags is None:
                tags = set(run.run_sources.values_list("data_source__tags__name", flat=True)) - {None}
            if not tags & set(rule.run_tags):
                continue
        picked.append(rule)
    return picked


def _spec(rule: AlertRule) -> RuleSpec:
    return RuleSpec(
        kind=rule.kind,
        condition=rule.condition,
        threshold=rule.threshold,
        window=rule.window,
        change_by=rule.change_by,
        warmup=rule.warmup,
    )


# ---- evaluation at ingest ------------------------------------------------------------------


def _series_of(points: Sequence[PointIn]) -> dict[tuple[str, str], list[tuple[int, float | None]]]:
    """Points by (key, source), in step order, one value a step (the last one given)."""
    by: dict[tuple[str, str], dict[int, float | None]] = {}
    for p in points:
        value = p.value if p.value is not None and math.isfinite(p.value) else None
        by.setdefault((p.key, p.source), {})[int(p.step)] = value
    return {k: sorted(v.items()) for k, v in by.items()}


def _rates(
    state: dict, numerator: list[tuple[int, float | None]], denominator: list[tuple[int, float | None]]
) -> tuple[dict, list[tuple[int, float | None]]]:
    """Ratios of the steps whose two halves are known (this batch, or waiting in the state)."""
    pending = {int(k): list(v) for k, v in state.get("pending", {}).items()}
    for step, value in numerator:
        pending.setdefault(step, [None, None])[0] = value
    for step, value in denominator:
        pending.setdefault(step, [None, None])[1] = value
    ready = []
    for step in sorted(pending):
        num, den = pending[step]
        if num is not None and den is not None:
            ready.append((step, num / den if den > 0 else None))
            del pending[step]
    kept = sorted(pending)[-PENDING_STEPS:]
    state = {**state, "pending": {str(k): pending[k] for k in kept}}
    return state, ready


def _iou_context(run: Run, step: int, since: int | None) -> str:
    """ "right after the IoU threshold rose to 0.95 at step 40" when it switched in the steps before
    the alert (its streak, or the last 10 steps)."""
    low = min(since if since is not None else step, step - 10)
    values = list(
        MetricPoint.objects.filter(run=run, key=THRESHOLD_KEY, source="", step__gte=low - 1, step__lte=step)
        .order_by("step")
        .values_list("step", "value")
    )
    switch = None
    for (_, before), (at, after) in zip(values, values[1:], strict=False):
        if before is not None and after is not None and after != before:
            switch = (at, before, after)
    if switch is None:
        return ""
    at, before, after = switch
    verb = "rose" if after > before else "fell"
    return f"right after the IoU threshold {verb} to {after:.4g} at step {at}"


def _open_alert(
    *, rule: AlertRule, run: Run, source: str, key: str, step: int, value: float | None, message: str
) -> Alert | None:
    """Create the alert, unless one is already open for (rule, run, source): then None."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                rule=rule,
                run=run,
                source=source,
                key=key,
                severity=rule.severity,
                step=step,
                value=value,
                message=message[:2000],
            )
    except IntegrityError:
        return None  # a concurrent request opened the same alert first: de-duplicated
    payload = {
        "id": alert.pk,
        "message": alert.message,
        "severity": alert.severity,
        "source": alert.source,
        "key": alert.key,
        "step": alert.step,
        "rule": rule.name,
    }
    transaction.on_commit(lambda: enqueue_task(ALERT_DELIVER_TASK, alert.pk))
    transaction.on_commit(lambda: broadcast_to_run(run.pk, {"type": "alerts.fired", "alert": payload}))
    return alert


def _resolve_open(alert_id: int, now) -> None:
    """The condition cleared: the alert, if still open, resolves itself."""
    still_open = Alert.objects.filter(pk=alert_id, state__in=Alert.OPEN)
    still_open.update(state=Alert.State.RESOLVED, resolved_at=now)


_STATE_TABLE = AlertState._meta.db_table
# In one round trip: a fingerprint of the project's enabled point rules (every column of every
# row, so any change to them shows), then their states on the run and their open alerts on it.
# No FOR UPDATE: metric_points_ingest has already updated the run's row in this transaction, and
# that row lock makes a second ingest of the same run wait until this one commits.
_BATCH_SQL = f"""
WITH rules AS MATERIALIZED (
    SELECT r.* FROM {AlertRule._meta.db_table} r
    WHERE r.project_id = %(project)s AND r.enabled AND r.kind = ANY(%(kinds)s::text[])
)
SELECT 'f', NULL::bigint, NULL::text, NULL::text,
       (SELECT md5(coalesce(string_agg(r::text, ',' ORDER BY r.id), '')) FROM rules r), NULL::bigint
UNION ALL
SELECT 's', rule_id, source, key, state::text, NULL FROM {_STATE_TABLE}
WHERE run_id = %(run)s AND rule_id IN (SELECT id FROM rules)
UNION ALL
SELECT 'a', rule_id, source, key, NULL, id FROM {Alert._meta.db_table}
WHERE run_id = %(run)s AND rule_id IN (SELECT id FROM rules) AND state IN ('firing', 'acknowledged')
"""
# project id -> (fingerprint, its enabled point rules): a web process reads a project's rules
# again only when they changed.
_RULES_SEEN: dict[int, tuple[str, list[AlertRule]]] = {}
_NO_RULES = hashlib.md5(b"").hexdigest()  # noqa: S324 - a fingerprint, not a secret
_STATES_UPSERT_SQL = f"""
INSERT INTO {_STATE_TABLE} (rule_id, run_id, source, key, state, updated_at)
SELECT t.rule_id, %s, t.source, t.key, t.state::jsonb, now()
FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[]) AS t(rule_id, source, key, state)
ON CONFLICT (rule_id, run_id, source, key)
DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at
"""
_compact = json.JSONEncoder(separators=(",", ":")).encode


def _combined(rule: AlertRule, matched: list[tuple[str, list]]) -> tuple[list, dict[int, str]]:
    """One series of the keys ``matched`` (one source): at each step the largest value (for a
    not_finite rule, a non-finite value wins), and which key it was."""
    by_step: dict[int, list[tuple[float | None, str]]] = {}
    for key, values in matched:
        for step, value in values:
            by_step.setdefault(step, []).append((value, key))
    combined, tops = [], {}
    for step in sorted(by_step):
        entries = by_step[step]
        bad = [key for value, key in entries if value is None]
        finite = [(value, key) for value, key in entries if value is not None]
        if rule.kind == AlertRule.Kind.NOT_FINITE and bad:
            value, top = None, bad[0]
        elif finite:
            value, top = max(finite)
        else:
            value, top = None, bad[0]
        combined.append((step, value))
        tops[step] = top
    return combined, tops


def _work_of(rules: list[AlertRule], series: dict) -> tuple[list, list]:
    """What each rule judges in a batch: (rule, state key, source, [(step, value)], top keys or
    None) for point rules, and (rule, key, source, numerator, denominator) for rate rules."""
    by_key: dict[str, dict[str, list]] = {}
    for (key, source), values in series.items():
        by_key.setdefault(key, {})[source] = values
    work, rate_work = [], []
    for rule in rules:
        if rule.kind == AlertRule.Kind.RATE:
            numerators = by_key.get(rule.key, {})
            denominators = by_key.get(rule.denominator_key, {})
            for source in sorted({*numerators, *denominators}):
                if source_matches(rule.source, source):
                    numerator = numerators.get(source, [])
                    denominator = denominators.get(source, [])
                    rate_work.append((rule, rule.key, source, numerator, denominator))
            continue
        keys = [k for k in by_key if glob_matches(rule.key, k)] if rule.key.endswith("*") else [rule.key]
        matched: dict[str, list[tuple[str, list]]] = {}
        for key in keys:
            for source, values in by_key.get(key, {}).items():
                if source_matches(rule.source, source):
                    matched.setdefault(source, []).append((key, values))
        for source, keyed in matched.items():
            if rule.combine == AlertRule.Combine.MAX and rule.key.endswith("*"):
                combined, tops = _combined(rule, keyed)
                work.append((rule, rule.key, source, combined, tops))
            else:
                work.extend((rule, key, source, values, None) for key, values in keyed)
    return work, rate_work


def alert_rules_evaluate(*, run: Run, points: Sequence[PointIn], previous_metric_at=None) -> list[Alert]:
    """Judge the project's point rules on newly ingested points of ``run``; returns the alerts opened.

    Runs inside the ingest's transaction, which holds the run's row lock (one ingest of a run at
    a time judges its states); the rules' fingerprint, the states and the open alerts are read in
    one query (the rules themselves only when their fingerprint changed) and the states written
    back in one.
    ``previous_metric_at``: when the run's points came before these (its open stall alerts
    resolve when that was over a minute ago).
    """
    if not points:
        return []
    now = timezone.now()
    if previous_metric_at is None or now - previous_metric_at > timedelta(minutes=1):
        _resolve_stalls(run)
    fingerprint = _NO_RULES
    stored: dict[tuple[int, str, str], str] = {}
    open_alerts: dict[tuple[int, str], tuple[int, str]] = {}  # (rule, source) -> (alert id, its key)
    with connection.cursor() as cursor:
        cursor.execute(_BATCH_SQL, {"project": run.project_id, "kinds": list(POINT_KINDS), "run": run.pk})
        for row, rule_id, source, key, text, alert_id in cursor.fetchall():
            if row == "f":
                fingerprint = text
            elif row == "s":
                stored[(rule_id, source, key)] = text
            else:
                open_alerts[(rule_id, source)] = (alert_id, key)
    if fingerprint == _NO_RULES:
        return []
    seen = _RULES_SEEN.get(run.project_id)
    if seen is None or seen[0] != fingerprint:
        enabled = AlertRule.objects.filter(project_id=run.project_id, enabled=True, kind__in=POINT_KINDS)
        seen = _RULES_SEEN[run.project_id] = (fingerprint, list(enabled))
    rules = _rules_for(run, POINT_KINDS, seen[1])
    work, rate_work = _work_of(rules, _series_of(points))
    if not work and not rate_work:
        return []
    changed: dict[tuple[int, str, str], dict] = {}
    opened: list[Alert] = []

    def state_of(rule: AlertRule, source: str, key: str) -> dict:
        ident = (rule.pk, source, key)
        if ident in changed:
            return changed[ident]
        raw = stored.get(ident)
        return json.loads(raw) if raw is not None else {}

    def judged(rule: AlertRule, key: str, source: str, values: list, state: dict, tops: dict | None) -> dict:
        spec = _spec(rule)
        for step, value in values:
            state, verdict = judge(spec, state, step, value)
            if verdict.holds is None:
                continue
            current = open_alerts.get((rule.pk, source))
            if current is not None:
                # Only the series that fired resolves it: under a key glob judged key by key, a
                # quiet sibling is clear all along.
                mine = tops is not None or current[1] == key
                if mine and clears(state, rule.auto_resolve_steps):
                    _resolve_open(current[0], now)
                    del open_alerts[(rule.pk, source)]
                continue
            if not fires(spec, verdict):
                continue
            fired_at = state.get("fired_at")
            if fired_at is not None and time.time() - fired_at < rule.cooldown_seconds:
                continue
            top = tops[step] if tops else None
            alert = _fire(rule, run, top or key, source, step, value, verdict, of=key if top else "")
            if alert is not None:
                opened.append(alert)
                open_alerts[(rule.pk, source)] = (alert.pk, alert.key)
                state = {**state, "fired_at": time.time(), "fired_step": step}
        return state

    for rule, key, source, values, tops in work:
        changed[(rule.pk, source, key)] = judged(rule, key, source, values, state_of(rule, source, key), tops)
    for rule, key, source, numerator, denominator in rate_work:
        state, ratios = _rates(state_of(rule, source, key), numerator, denominator)
        changed[(rule.pk, source, key)] = judged(rule, key, source, ratios, state, None)
    idents = list(changed)
    with connection.cursor() as cursor:
        cursor.execute(
            _STATES_UPSERT_SQL,
            [
                run.pk,
                number_array([r for r, _, _ in idents]),
                text_array([s for _, s, _ in idents]),
                text_array([k for _, _, k in idents]),
                text_array([_compact(changed[i]) for i in idents]),
            ],
        )
    return opened


def _fire(
    rule: AlertRule,
    run: Run,
    key: str,
    source: str,
    step: int,
    value: float | None,
    verdict: Verdict,
    *,
    of: str = "",
) -> Alert | None:
    """Open the alert of a rule that fired on ``key`` (``of``: the pattern whose largest key it was)."""
    context = ""
    if rule.kind in (AlertRule.Kind.CHANGE, AlertRule.Kind.THRESHOLD) and key.startswith("reward/"):
        context = _iou_context(run, step, verdict.since)
    message = describe(
        rule_name=rule.name,
        spec=_spec(rule),
        key=f"{key} (the largest of {of})" if of else key,
        source=source,
        step=step,
        value=value,
        verdict=verdict,
        denominator_key=rule.denominator_key,
        context=context,
        hint=HINTS.get(rule.builtin, ""),
    )
    return _open_alert(rule=rule, run=run, source=source, key=key, step=step, value=value, message=message)


# ---- runs: their state, and stalls ---------------------------------------------------------


def alert_rules_on_run_state(*, run: Run) -> list[Alert]:
    """Lifecycle rules on a run that just reached ``run.status``."""
    opened = []
    for rule in _rules_for(run, [AlertRule.Kind.LIFECYCLE]):
        if run.status not in rule.lifecycle_states:
            continue
        why = f" ({run.error})" if run.error else ""
        where = f"at step {run.last_step}" if run.last_step >= 0 else "before its first step"
        message = f"{rule.name}: run {run.name!r} is {run.status} {where}, attempt {run.attempt}{why}"
        hint = HINTS.get(rule.builtin, "")
        alert = _open_alert(
            rule=rule,
            run=run,
            source="",
            key="",
            step=max(run.last_step, 0),
            value=None,
            message=message + (f"; {hint}" if hint else ""),
        )
        if alert is not None:
            opened.append(alert)
    return opened


def alerts_check_stalls(*, now=None) -> list[Alert]:
    """Stall rules on every running run: no new point for the rule's minutes (since the attempt
    began running, when none came yet). Called by the beat's reconciliation."""
    now = now or timezone.now()
    rules = list(AlertRule.objects.filter(enabled=True, kind=AlertRule.Kind.STALL))
    if not rules:
        return []
    opened = []
    projects = {rule.project_id for rule in rules}
    for run in Run.objects.filter(status=Run.Status.RUNNING, project_id__in=projects):
        last = run.last_metric_at or run.attempt_started_at
        if last is None:
            continue
        for rule in _rules_for(run, [AlertRule.Kind.STALL]):
            if now - last < timedelta(minutes=rule.stall_minutes):
                continue
            minutes = int((now - last).total_seconds() // 60)
            hint = HINTS.get(rule.builtin, "")
            message = (
                f"{rule.name}: run {run.name!r} reported nothing for {minutes} minutes "
                f"(last step {run.last_step})" + (f"; {hint}" if hint else "")
            )
            step = max(run.last_step, 0)
            alert = _open_alert(rule=rule, run=run, source="", key="", step=step, value=None, message=message)
            if alert is not None:
                opened.append(alert)
    return opened


def _resolve_stalls(run: Run) -> None:
    """New points: the run's open stall alerts resolve themselves."""
    Alert.objects.filter(run=run, rule__kind=AlertRule.Kind.STALL, state__in=Alert.OPEN).update(
        state=Alert.State.RESOLVED, resolved_at=timezone.now()
    )


# ---- alerts by hand ------------------------------------------------------------------------


def alert_acknowledge(*, alert: Alert, user: AbstractBaseUser) -> Alert:
    if alert.state != Alert.State.FIRING:
        raise Conflict(f"alert {alert.pk} is {alert.state}; only a firing alert can be acknowledged")
    alert.state = Alert.State.ACKNOWLEDGED
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = user
    alert.save(update_fields=["state", "acknowledged_at", "acknowledged_by"])
    return alert


def alert_resolve(*, alert: Alert, user: AbstractBaseUser | None = None) -> Alert:
    if alert.state == Alert.State.RESOLVED:
        raise Conflict(f"alert {alert.pk} is already resolved")
    alert.state = Alert.State.RESOLVED
    alert.resolved_at = timezone.now()
    alert.resolved_by = user
    alert.save(update_fields=["state", "resolved_at", "resolved_by"])
    return alert

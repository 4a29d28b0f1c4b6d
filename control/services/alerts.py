from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from control.errors import Conflict, DomainError
from control.models import Alert, AlertRule, MetricPoint, Project, Run
from control.services.broadcast import broadcast_to_run, enqueue_task

if TYPE_CHECKING:
    from control.services.metrics import PointIn

ALERT_DELIVER_TASK = "workers.tasks.alert_deliver"


def condition_holds(condition: str, value: float | None, threshold: float) -> bool:
    """Whether one value violates a rule (a missing value stands for NaN/inf)."""
    if condition == AlertRule.Condition.NOT_FINITE:
        return value is None or not math.isfinite(value)
    if value is None or not math.isfinite(value):
        return False
    if condition == AlertRule.Condition.ABOVE:
        return value > threshold
    if condition == AlertRule.Condition.BELOW:
        return value < threshold
    raise ValueError(f"unknown condition {condition!r}")


def alert_rule_create(*, project: Project, user: AbstractBaseUser, **fields) -> AlertRule:
    if fields.get("condition") not in AlertRule.Condition.values:
        allowed = ", ".join(AlertRule.Condition.values)
        raise DomainError(f"condition must be one of {allowed}", fields={"condition": ["invalid"]})
    try:
        with transaction.atomic():
            return AlertRule.objects.create(project=project, created_by=user, **fields)
    except IntegrityError as exc:
        raise Conflict(f"an alert rule named {fields.get('name')!r} already exists in this project") from exc


def alert_rule_update(*, rule: AlertRule, **fields) -> AlertRule:
    """Change a rule's settings; renaming it to a name taken in its project is a conflict."""
    for name, value in fields.items():
        setattr(rule, name, value)
    try:
        with transaction.atomic():
            rule.save()
    except IntegrityError as exc:
        raise Conflict(f"an alert rule named {rule.name!r} already exists in this project") from exc
    return rule


def alert_rules_evaluate(*, run: Run, points: Sequence[PointIn]) -> list[Alert]:
    """Evaluate the project's enabled rules on newly ingested points of ``run``.

    A rule fires for a (run, source) when its condition held on the last
    ``window`` points of the series; it does not fire again while an alert for the
    same rule, run and source is open, nor within the cooldown after the last one.
    When the condition stops holding, a firing alert resolves itself.
    """
    rules = list(AlertRule.objects.filter(project_id=run.project_id, enabled=True))
    if not rules:
        return []
    latest: dict[tuple[str, str], PointIn] = {}
    for p in points:
        current = latest.get((p.key, p.source))
        if current is None or p.step >= current.step:
            latest[(p.key, p.source)] = p
    fired: list[Alert] = []
    now = timezone.now()
    for rule in rules:
        for (key, source), point in latest.items():
            if key != rule.key or (rule.source and rule.source != source):
                continue
            values = list(
                MetricPoint.objects.filter(run=run, key=key, source=source, step__lte=point.step)
                .order_by("-step")
                .values_list("value", flat=True)[: rule.window]
            )
            holds = len(values) == rule.window and all(
                condition_holds(rule.condition, v, rule.threshold) for v in values
            )
            open_alert = Alert.objects.filter(rule=rule, run=run, source=source, state__in=Alert.OPEN).first()
            if not holds:
                if open_alert is not None and open_alert.state == Alert.State.FIRING:
                    open_alert.state = Alert.State.RESOLVED
                    open_alert.resolved_at = now
                    open_alert.save(update_fields=["state", "resolved_at"])
                continue
            if open_alert is not None:
                continue
            last = Alert.objects.filter(rule=rule, run=run, source=source).order_by("-fired_at").first()
            if last is not None and (now - last.fired_at).total_seconds() < rule.cooldown_seconds:
                continue
            value = point.value if point.value is not None and math.isfinite(point.value) else None
            where = f" on source {source}" if source else ""
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        rule=rule,
                        run=run,
                        source=source,
                        step=point.step,
                        value=value,
                        message=f"{rule.name}: {key}{where} is {point.value} at step {point.step} "
                        f"({rule.get_condition_display().replace('threshold', str(rule.threshold))})",
                    )
            except IntegrityError:
                continue  # a concurrent ingest of this run opened the same alert first: de-duplicated
            fired.append(alert)
            transaction.on_commit(lambda a=alert: enqueue_task(ALERT_DELIVER_TASK, a.pk))
            transaction.on_commit(
                lambda a=alert: broadcast_to_run(
                    run.pk, {"type": "alerts.fired", "alert": {"id": a.pk, "message": a.message}}
                )
            )
    return fired


def alert_acknowledge(*, alert: Alert, user: AbstractBaseUser) -> Alert:
    if alert.state != Alert.State.FIRING:
        raise Conflict(f"alert {alert.pk} is {alert.state}; only a firing alert can be acknowledged")
    alert.state = Alert.State.ACKNOWLEDGED
    alert.acknowledged_at = timezone.now()
    alert.acknowledged_by = user
    alert.save(update_fields=["state", "acknowledged_at", "acknowledged_by"])
    return alert


def alert_resolve(*, alert: Alert) -> Alert:
    if alert.state == Alert.State.RESOLVED:
        raise Conflict(f"alert {alert.pk} is already resolved")
    alert.state = Alert.State.RESOLVED
    alert.resolved_at = timezone.now()
    alert.save(update_fields=["state", "resolved_at"])
    return alert

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, paginated, query_choice, query_int
from control.models import Alert, AlertRule, NotificationChannel
from control.selectors.alerts import alert_rules_list, alerts_list
from control.selectors.projects import check_can_write, object_get_for_user, project_get_for_user
from control.services.alert_defaults import alert_defaults_ensure
from control.services.alerts import alert_acknowledge, alert_resolve, alert_rule_create, alert_rule_update

RULE_FIELDS = [
    "name",
    "kind",
    "key",
    "source",
    "condition",
    "threshold",
    "window",
    "change_by",
    "warmup",
    "combine",
    "denominator_key",
    "stall_minutes",
    "lifecycle_states",
    "run_ids",
    "run_tags",
    "severity",
    "cooldown_seconds",
    "auto_resolve_steps",
    "channels",
    "enabled",
]
# A metric key, or a prefix ending in * (every key with it).
KEY_PATTERN = r"^(?:[A-Za-z0-9_./@:+\-]{1,200}\*?|\*)$"


class AlertRuleOutput(serializers.ModelSerializer):
    channels = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = AlertRule
        fields = ["id", "project", *RULE_FIELDS, "builtin", "created_at"]


class _RuleFields(StrictSerializer):
    """The settable fields of a rule; which ones a kind needs is checked by the service."""

    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=AlertRule.Kind.choices)
    key = serializers.RegexField(KEY_PATTERN, allow_blank=True)
    source = serializers.CharField(max_length=200, allow_blank=True)
    condition = serializers.ChoiceField(choices=AlertRule.Condition.choices)
    threshold = serializers.FloatField()
    window = serializers.IntegerField(min_value=1, max_value=1000)
    change_by = serializers.ChoiceField(choices=AlertRule.ChangeBy.choices)
    warmup = serializers.IntegerField(min_value=0, max_value=100_000)
    combine = serializers.ChoiceField(choices=AlertRule.Combine.choices)
    denominator_key = serializers.RegexField(r"^[A-Za-z0-9_./@:+\-]{0,200}$", allow_blank=True)
    stall_minutes = serializers.IntegerField(min_value=1, max_value=7 * 24 * 60)
    lifecycle_states = serializers.ListField(
        child=serializers.ChoiceField(choices=[(s, s) for s in ("succeeded", "failed", "cancelled", "lost")]),
        max_length=4,
    )
    run_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), max_length=1000)
    run_tags = serializers.ListField(child=serializers.CharField(max_length=100), max_length=100)
    severity = serializers.ChoiceField(choices=AlertRule.Severity.choices)
    cooldown_seconds = serializers.IntegerField(min_value=0, max_value=7 * 24 * 3600)
    auto_resolve_steps = serializers.IntegerField(min_value=0, max_value=100_000)
    channels = serializers.ListField(child=serializers.IntegerField(min_value=1), max_length=50)
    enabled = serializers.BooleanField()


class AlertRuleInput(_RuleFields):
    project = serializers.IntegerField(min_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if name not in ("project", "name"):
                field.required = False


class AlertRulePatchInput(_RuleFields):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.required = False


def _channels(project, ids: list[int] | None):
    """The project's channels named by ``ids``; an id that is not one of them is a 400."""
    if ids is None:
        return None
    found = {c.pk: c for c in NotificationChannel.objects.filter(project=project, pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise ValidationError({"channels": [f"no notification channel {missing[0]} in this project"]})
    return [found[i] for i in dict.fromkeys(ids)]


class AlertOutput(serializers.ModelSerializer):
    rule_name = serializers.CharField(source="rule.name", read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "rule",
            "rule_name",
            "run",
            "source",
            "key",
            "severity",
            "state",
            "step",
            "value",
            "message",
            "fired_at",
            "acknowledged_at",
            "resolved_at",
        ]


class AlertRuleListCreateApi(ProjectApi):
    @extend_schema(parameters=[OpenApiParameter("project", int)], responses=AlertRuleOutput(many=True))
    def get(self, request):
        qs = alert_rules_list(user=request.user, project_id=query_int(request, "project"))
        return paginated(self, qs, AlertRuleOutput)

    @extend_schema(request=AlertRuleInput, responses={201: AlertRuleOutput})
    def post(self, request):
        data = AlertRuleInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        project = project_get_for_user(user=request.user, project_id=v.pop("project"), write=True)
        channels = _channels(project, v.pop("channels", None)) or []
        rule = alert_rule_create(project=project, user=request.user, channels=channels, **v)
        return Response(AlertRuleOutput(rule).data, status=201)


class AlertRuleDefaultsApi(ProjectApi):
    pagination_class = None  # the whole list, never paged

    @extend_schema(
        parameters=[OpenApiParameter("project", int, required=True)],
        request=None,
        responses={200: AlertRuleOutput(many=True)},
        description="Create the built-in rules the project lacks (deleted ones come back); lists them.",
    )
    def post(self, request):
        project_id = query_int(request, "project")
        if project_id is None:
            raise ValidationError({"project": ["required: the project whose built-in rules to restore"]})
        project = project_get_for_user(user=request.user, project_id=project_id, write=True)
        created = alert_defaults_ensure(project=project, user=request.user)
        return Response(AlertRuleOutput(created, many=True).data)


class AlertRuleDetailApi(ProjectApi):
    def _get(self, request, rule_id: int) -> AlertRule:
        return object_get_for_user(AlertRule.objects.all(), user=request.user, pk=rule_id, label="alert rule")

    @extend_schema(responses=AlertRuleOutput)
    def get(self, request, rule_id: int):
        return Response(AlertRuleOutput(self._get(request, rule_id)).data)

    @extend_schema(request=AlertRulePatchInput, responses=AlertRuleOutput)
    def patch(self, request, rule_id: int):
        rule = self._get(request, rule_id)
        check_can_write(user=request.user, project=rule.project)
        data = AlertRulePatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        channels = _channels(rule.project, v.pop("channels", None))
        rule = alert_rule_update(rule=rule, channels=channels, **v)
        return Response(AlertRuleOutput(rule).data)

    @extend_schema(responses={204: None})
    def delete(self, request, rule_id: int):
        rule = self._get(request, rule_id)
        check_can_write(user=request.user, project=rule.project)
        rule.delete()
        return Response(status=204)


class AlertListApi(ProjectApi):
    @extend_schema(
        parameters=[
            OpenApiParameter("project", int),
            OpenApiParameter("run", int),
            OpenApiParameter("state", str),
        ],
        responses=AlertOutput(many=True),
    )
    def get(self, request):
        qs = alerts_list(
            user=request.user,
            project_id=query_int(request, "project"),
            run_id=query_int(request, "run"),
            state=query_choice(request, "state", Alert.State.values),
        )
        return paginated(self, qs, AlertOutput)


def _alert_for(request, alert_id: int) -> Alert:
    alert = object_get_for_user(
        Alert.objects.select_related("rule__project"),
        user=request.user,
        pk=alert_id,
        label="alert",
        project_path="rule__project",
    )
    check_can_write(user=request.user, project=alert.rule.project)
    return alert


class AlertAcknowledgeApi(ProjectApi):
    @extend_schema(request=None, responses=AlertOutput)
    def post(self, request, alert_id: int):
        return Response(
            AlertOutput(alert_acknowledge(alert=_alert_for(request, alert_id), user=request.user)).data
        )


class AlertResolveApi(ProjectApi):
    @extend_schema(request=None, responses=AlertOutput)
    def post(self, request, alert_id: int):
        alert = alert_resolve(alert=_alert_for(request, alert_id), user=request.user)
        return Response(AlertOutput(alert).data)

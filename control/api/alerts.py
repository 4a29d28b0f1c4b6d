from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, paginated, query_choice, query_int
from control.models import Alert, AlertRule
from control.selectors.alerts import alert_rules_list, alerts_list
from control.selectors.projects import check_can_write, object_get_for_user, project_get_for_user
from control.services.alerts import alert_acknowledge, alert_resolve, alert_rule_create, alert_rule_update

RULE_FIELDS = [
    "name",
    "key",
    "source",
    "condition",
    "threshold",
    "window",
    "cooldown_seconds",
    "webhook_url",
    "email",
    "enabled",
]


class AlertRuleOutput(serializers.ModelSerializer):
    class Meta:
        model = AlertRule
        fields = ["id", "project", *RULE_FIELDS, "created_at"]


class AlertRuleInput(StrictSerializer):
    project = serializers.IntegerField(min_value=1)
    name = serializers.CharField(max_length=200)
    key = serializers.RegexField(r"^[A-Za-z0-9_./@:+\-]{1,200}$")
    source = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    condition = serializers.ChoiceField(choices=AlertRule.Condition.choices)
    threshold = serializers.FloatField(default=0.0)
    window = serializers.IntegerField(min_value=1, max_value=1000, default=1)
    cooldown_seconds = serializers.IntegerField(min_value=0, max_value=7 * 24 * 3600, default=600)
    webhook_url = serializers.URLField(max_length=1000, required=False, allow_blank=True, default="")
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    enabled = serializers.BooleanField(default=True)


class AlertRulePatchInput(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    threshold = serializers.FloatField(required=False)
    window = serializers.IntegerField(min_value=1, max_value=1000, required=False)
    cooldown_seconds = serializers.IntegerField(min_value=0, max_value=7 * 24 * 3600, required=False)
    webhook_url = serializers.URLField(max_length=1000, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)


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
        rule = alert_rule_create(project=project, user=request.user, **v)
        return Response(AlertRuleOutput(rule).data, status=201)


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
        rule = alert_rule_update(rule=rule, **data.validated_data)
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
        return Response(AlertOutput(alert_resolve(alert=_alert_for(request, alert_id))).data)

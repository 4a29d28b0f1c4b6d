"""API tokens: a user's personal tokens, and the run-scoped tokens of a run's jobs.

A run-scoped token is made when an attempt is submitted and handed to the job; it dies when the run
ends. The run's editors (its project's owners and members) list a run's tokens and revoke one;
nobody sees a token's secret after its creation, and a run token never reads this API.
"""

from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, paginated
from control.errors import NotFound
from control.models import ApiToken, Run
from control.selectors.projects import check_can_write, object_get_for_user
from control.selectors.tokens import personal_token_get, personal_tokens, run_token_get, run_tokens
from control.services.tokens import api_token_create, api_token_revoke


class TokenOutput(serializers.ModelSerializer):
    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"]


class TokenCreatedOutput(TokenOutput):
    token = serializers.CharField(read_only=True, help_text="shown once; store it now")

    class Meta(TokenOutput.Meta):
        fields = [*TokenOutput.Meta.fields, "token"]


class TokenInput(StrictSerializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("must be in the future")
        return value


class TokenListCreateApi(ProjectApi):
    @extend_schema(responses=TokenOutput(many=True))
    def get(self, request):
        qs = personal_tokens(user=request.user)
        return paginated(self, qs, TokenOutput)

    @extend_schema(request=TokenInput, responses={201: TokenCreatedOutput})
    def post(self, request):
        data = TokenInput(data=request.data)
        data.is_valid(raise_exception=True)
        token, raw = api_token_create(user=request.user, **data.validated_data)
        body = TokenOutput(token).data
        body["token"] = raw
        return Response(body, status=201)


class TokenDetailApi(ProjectApi):
    @extend_schema(responses={204: None})
    def delete(self, request, token_id: int):
        token = personal_token_get(user=request.user, token_id=token_id)
        if token is None:
            raise NotFound(f"token {token_id} does not exist or is not yours")
        api_token_revoke(token=token)
        return Response(status=204)


class RunTokenOutput(serializers.ModelSerializer):
    live = serializers.SerializerMethodField(help_text="whether the token still authenticates")

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "run",
            "name",
            "prefix",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "live",
        ]

    def get_live(self, token: ApiToken) -> bool:
        expired = token.expires_at is not None and token.expires_at <= timezone.now()
        return token.revoked_at is None and not expired and not token.run.is_terminal


def _editable_run(request, run_id: int) -> Run:
    """The run if the caller may change it: 404 outside its project, 403 for a viewer."""
    run = object_get_for_user(
        Run.objects.select_related("project"), user=request.user, pk=run_id, label="run"
    )
    check_can_write(user=request.user, project=run.project)
    return run


class RunTokenListApi(ProjectApi):
    @extend_schema(responses=RunTokenOutput(many=True))
    def get(self, request, run_id: int):
        """The tokens of the run's jobs (one per attempt submitted), newest first, without their secret."""
        return paginated(self, run_tokens(run=_editable_run(request, run_id)), RunTokenOutput)


class RunTokenDetailApi(ProjectApi):
    @extend_schema(responses={204: None})
    def delete(self, request, run_id: int, token_id: int):
        """Revoke a token of the run: the job that holds it can no longer write the run's metrics."""
        run = _editable_run(request, run_id)
        token = run_token_get(run=run, token_id=token_id)
        if token is None:
            raise NotFound(f"token {token_id} is not a token of run {run.pk}")
        api_token_revoke(token=token)
        return Response(status=204)

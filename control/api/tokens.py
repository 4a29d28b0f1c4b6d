from __future__ import annotations

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, paginated
from control.errors import NotFound
from control.models import ApiToken
from control.selectors.tokens import personal_token_get, personal_tokens
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

"""The signed-in user's personal API tokens: list, create (the raw value shown once), revoke.

Run-scoped tokens belong to training jobs and never appear here. The raw value of
a new token is rendered in the answer to the creating POST only: it is never put
in a URL, a redirect or the session, and the page is sent with ``no-store``. Each
rendered create form carries a one-time id kept in the session, so reloading the
answer (the browser re-sends the POST) creates no second token.
"""

from __future__ import annotations

from datetime import datetime

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from control.models import ApiToken
from control.selectors.tokens import personal_tokens
from control.services.tokens import RAW_TOKEN_PREFIX, api_token_create, api_token_revoke
from webui.access import form_id_new, form_id_take

TOKENS_PER_PAGE = 50


class TokenCreateForm(forms.Form):
    """The fields of control.services.tokens.api_token_create that a person chooses."""

    name = forms.CharField(max_length=100, strip=True)
    expires_at = forms.DateTimeField(required=False)  # a datetime-local input, read as UTC
    form_id = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def clean_expires_at(self) -> datetime | None:
        value = self.cleaned_data.get("expires_at")
        now = timezone.now()
        if value is not None and value <= now:
            raise forms.ValidationError(f"must be in the future; it is now {now:%Y-%m-%d %H:%M} UTC")
        return value


def _personal_tokens(request: HttpRequest) -> QuerySet[ApiToken]:
    # The same rows as GET /api/v1/tokens/ (control/api/tokens.py): the user's own, not run-scoped.
    return personal_tokens(user=request.user)


def _page(request: HttpRequest) -> Page:
    return Paginator(_personal_tokens(request), TOKENS_PER_PAGE).get_page(request.GET.get("page"))


def _render(
    request: HttpRequest, form: TokenCreateForm, *, created: ApiToken | None = None, raw: str = ""
) -> HttpResponse:
    now = timezone.now()
    context = {
        "form": form,
        "page": _page(request),
        "now": now,
        "expires_min": now.strftime("%Y-%m-%dT%H:%M"),  # the datetime-local input's lower bound
        "created": created,
        "raw_token": raw,
        "raw_prefix": RAW_TOKEN_PREFIX,
    }
    return render(request, "webui/tokens.html", context)


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def tokens_page(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _render(request, TokenCreateForm(initial={"form_id": form_id_new(request, "token")}))
    if not form_id_take(request, "token", request.POST.get("form_id", "")):
        messages.error(
            request,
            "This form was already sent (or has expired); no token was created. "
            "A token's value is shown only once, right after it is created.",
        )
        return redirect("tokens")
    form = TokenCreateForm(request.POST)
    if not form.is_valid():
        # The same input and errors, under a new form id: the one just sent is spent.
        data = request.POST.copy()
        data["form_id"] = form_id_new(request, "token")
        form = TokenCreateForm(data)
        form.is_valid()
        return _render(request, form)
    token, raw = api_token_create(
        user=request.user, name=form.cleaned_data["name"], expires_at=form.cleaned_data["expires_at"]
    )
    fresh = TokenCreateForm(initial={"form_id": form_id_new(request, "token")})
    return _render(request, fresh, created=token, raw=raw)


@require_POST
@login_required
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = _personal_tokens(request).filter(pk=token_id).first()
    if token is None:
        raise Http404(f"token {token_id} does not exist or is not yours")
    api_token_revoke(token=token)
    messages.success(
        request,
        f"Revoked token {token.name} ({RAW_TOKEN_PREFIX}{token.prefix}…); it no longer authenticates.",
    )
    return redirect("tokens")

"""Reads of notification channels and their deliveries, and how a channel's address is shown.

A channel's address is a secret: a webhook URL carries the key that lets anyone post into the
receiving chat, and an e-mail address is personal. The project's editors (owners, members) read it
whole; its viewers read it masked, and so are the delivery errors that quote it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from control.models import AlertDelivery, NotificationChannel
from control.selectors.projects import visible_to


def notification_channels_list(
    *, user: AbstractBaseUser, project_id: int | None = None
) -> QuerySet[NotificationChannel]:
    qs = visible_to(NotificationChannel.objects.all(), user=user)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    return qs


def channel_deliveries(*, channel: NotificationChannel) -> QuerySet[AlertDelivery]:
    """The channel's deliveries, the most recent first."""
    return channel.deliveries.select_related("alert").order_by("-created_at", "-id")


MASK = "…"
# A webhook URL shows the last characters of its path and query only when at least this many
# characters remain hidden: "/hook" shows nothing of itself.
URL_TAIL_SHOWN, URL_TAIL_HIDDEN = 4, 12


def url_masked(url: str) -> str:
    """``url`` with its scheme and host, and at most the last 4 characters of the rest.

    >>> url_masked("https://hooks.slack.com/services/T0000/B0000/XXXXXXXXabcd")
    'https://hooks.slack.com/…abcd'
    >>> url_masked("http://127.0.0.1:9/hook"), url_masked("not a url")
    ('http://127.0.0.1:9/…', '…')
    """
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- an invalid port raises ValueError only when read
    except ValueError:
        return MASK
    host = parts.netloc.rpartition("@")[2]  # never a user name or password
    if parts.scheme not in ("http", "https") or not host:
        return MASK
    rest = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
    rest += f"#{parts.fragment}" if parts.fragment else ""
    tail = rest[-URL_TAIL_SHOWN:] if len(rest) >= URL_TAIL_SHOWN + URL_TAIL_HIDDEN else ""
    return f"{parts.scheme}://{host}/{MASK}{tail}"


def email_masked(email: str) -> str:
    """``email`` with the first character of its local part and its domain.

    >>> email_masked("alice@example.com"), email_masked("no-at-sign")
    ('a…@example.com', '…')
    """
    if not email:
        return ""
    local, at, domain = email.rpartition("@")
    if not (local and at and domain):
        return MASK
    return f"{local[0]}{MASK}@{domain}"


def channel_address(*, channel: NotificationChannel, whole: bool) -> tuple[str, str]:
    """The channel's (url, email) as a reader sees them: whole for an editor, else masked."""
    if whole:
        return channel.url, channel.email
    return url_masked(channel.url), email_masked(channel.email)


def channel_text_redacted(*, channel: NotificationChannel, text: str) -> str:
    """``text`` (a delivery's error) with the channel's address, or its first 100 characters that
    a refusal quotes, masked."""
    for secret, masked in (
        (channel.url, url_masked(channel.url)),
        (channel.email, email_masked(channel.email)),
    ):
        for piece in (secret, secret[:100]):
            if piece:
                text = text.replace(piece, masked)
    return text

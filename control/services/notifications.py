"""Notification channels of a project (signed webhooks and e-mail) and the deliveries of alerts to them.

A fired alert is handed to :func:`alert_notify` by the ``workers.tasks.alert_deliver`` task: one
``AlertDelivery`` per enabled channel of its rule, each sent by its own ``workers.tasks.delivery_send``
task, which retries with back-off and records every attempt.

A webhook is a POST of Slack-compatible JSON, signed the way Slack and Stripe sign theirs: the
header ``X-Triune-Signature: sha256=<hex>`` is the HMAC-SHA256, keyed with the channel's secret, of
``f"{timestamp}.{body}"``, the timestamp (Unix seconds) sent in ``X-Triune-Timestamp`` so that a
receiver can refuse an old message replayed.

Webhook URLs are chosen by project members, and the worker that posts to them sits inside the
network: a URL that reaches a loopback, private, link-local (cloud metadata at 169.254.169.254)
or otherwise non-public address is refused (server-side request forgery, OWASP SSRF prevention
cheat sheet), unless its host is listed in ``TRIUNE_WEBHOOK_ALLOWED_HOSTS``. The check runs when a
channel is saved and again right before each send, whose connection goes to the very address that
was checked (a name that resolves elsewhere by then cannot slip through), and redirects are never
followed.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import time
from functools import partial
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from control.errors import Conflict, DomainError
from control.models import Alert, AlertDelivery, NotificationChannel, Project
from control.services.broadcast import enqueue_task

logger = logging.getLogger(__name__)

DELIVERY_SEND_TASK = "workers.tasks.delivery_send"
WEBHOOK_TIMEOUT_S = 10
TIMESTAMP_HEADER = "X-Triune-Timestamp"
SIGNATURE_HEADER = "X-Triune-Signature"
# Slack's attachment colours: a named one or a hex code.
SEVERITY_COLORS = {"info": "#439FE0", "warning": "warning", "error": "danger"}


class DeliveryError(Exception):
    """A delivery that did not go through; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry


def _refuse(field: str, message: str) -> DomainError:
    return DomainError(f"{field}: {message}", fields={field: [message]})


# ---- the SSRF guard ------------------------------------------------------------------------


def address_refusal(address: str) -> str | None:
    """Why a webhook may not connect to ``address``, or None when it is a public address.

    An IPv6 address that carries an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``,
    NAT64 ``64:ff9b::/96``) is judged by the IPv4 address it reaches.

    >>> address_refusal("93.184.215.14") is None
    True
    >>> address_refusal("::ffff:169.254.169.254")
    'link-local'
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in ipaddress.IPv6Network("64:ff9b::/96"):
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    for reason, refused in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("non-public", not ip.is_global),
    ):
        if refused:
            return reason
    return None


def _url_parts(url: str) -> SplitResult:
    """``url`` split, once it is a well-formed http(s) URL with a host and no credentials."""
    if not url:
        raise _refuse("url", "required: a webhook needs an http or https URL")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise _refuse("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError as exc:
        raise _refuse("url", f"not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https"):
        raise _refuse("url", f"must be an http or https URL, got {url[:100]!r}")
    if not parts.hostname:
        raise _refuse("url", "must name a host, e.g. https://hooks.example.com/...")
    if parts.username is not None or parts.password is not None:
        raise _refuse("url", "must not carry a user name or password")
    return parts


def _allowed_hosts() -> set[str]:
    return {host.strip().lower().strip("[]") for host in settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS if host}


def webhook_addresses(url: str) -> list[str]:
    """The addresses a webhook to ``url`` may connect to, once every one is checked.

    The host must resolve, and every address it resolves to must be public (one private address
    among public ones is enough to refuse: a resolver may hand out either), unless the host is
    listed in ``TRIUNE_WEBHOOK_ALLOWED_HOSTS``.
    """
    parts = _url_parts(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise _refuse("url", f"the host {host[:100]!r} does not resolve") from exc
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise _refuse("url", f"the host {host[:100]!r} does not resolve")
    if host in _allowed_hosts():
        return addresses
    for address in addresses:
        reason = address_refusal(address)
        if reason is not None:
            raise _refuse(
                "url",
                f"the host {host[:100]!r} resolves to {address}, a {reason} address: webhooks may only "
                "reach public addresses (an administrator may list the host in TRIUNE_WEBHOOK_ALLOWED_HOSTS)",
            )
    return addresses


def webhook_url_check(url: str) -> None:
    """Refuse (DomainError naming ``url``) a webhook URL that is not http(s), does not resolve, or
    reaches a non-public address of a host not listed in ``TRIUNE_WEBHOOK_ALLOWED_HOSTS``."""
    webhook_addresses(url)


# ---- channels ------------------------------------------------------------------------------


def _channel_check(channel: NotificationChannel) -> None:
    """What a channel of its kind needs, with a message naming the field to fix."""
    if not channel.name.strip():
        raise _refuse("name", "must not be blank")
    if channel.kind not in NotificationChannel.Kind.values:
        raise _refuse("kind", f"must be one of {', '.join(NotificationChannel.Kind.values)}")
    if channel.kind == NotificationChannel.Kind.WEBHOOK:
        if channel.email:
            raise _refuse("email", "a webhook channel takes a url, not an e-mail address")
        if len(channel.url) > 1000:
            raise _refuse("url", "must be at most 1000 characters")
        webhook_url_check(channel.url)
    else:
        if channel.url:
            raise _refuse("url", "an e-mail channel takes an e-mail address, not a url")
        if not channel.email:
            raise _refuse("email", "required: an e-mail channel needs an address")
        try:
            validate_email(channel.email)
        except ValidationError as exc:
            raise _refuse("email", f"not a valid e-mail address: {channel.email[:100]!r}") from exc


def _save(channel: NotificationChannel) -> NotificationChannel:
    try:
        with transaction.atomic():
            channel.save()
    except IntegrityError as exc:
        raise Conflict(
            f"a notification channel named {channel.name!r} already exists in this project"
        ) from exc
    return channel


def channel_create(*, project: Project, user: AbstractBaseUser, **fields) -> NotificationChannel:
    """Create a channel of ``project``; its signing secret is generated here and shown once."""
    channel = NotificationChannel(project=project, created_by=user, **fields)
    _channel_check(channel)
    return _save(channel)


def channel_update(*, channel: NotificationChannel, **fields) -> NotificationChannel:
    """Change a channel's name, kind, address or whether it is enabled; checked as on creation."""
    for name, value in fields.items():
        setattr(channel, name, value)
    _channel_check(channel)
    return _save(channel)


def channel_delete(*, channel: NotificationChannel) -> None:
    """Delete a channel, its deliveries and its place in the rules that named it."""
    channel.delete()


# ---- what is sent --------------------------------------------------------------------------


def webhook_signature(*, secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 keyed with ``secret`` of ``f"{timestamp}.{body}"``.

    >>> webhook_signature(secret="k", timestamp="1", body=b"{}")[:7]
    'sha256='
    """
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _run_url(run_id: int) -> str:
    return f"{settings.PUBLIC_URL.rstrip('/')}/runs/{run_id}/"


def webhook_payload(alert: Alert) -> dict:
    """The Slack-compatible body of an alert (``text`` plus one attachment that links to the run)."""
    fields = [
        {"title": "Severity", "value": alert.severity, "short": True},
        {"title": "Source", "value": alert.source or "global", "short": True},
        {"title": "Step", "value": str(alert.step), "short": True},
    ]
    if alert.key:
        fields.append({"title": "Key", "value": alert.key, "short": True})
    if alert.value is not None:
        fields.append({"title": "Value", "value": f"{alert.value:.6g}", "short": True})
    fields.append({"title": "Rule", "value": alert.rule.name, "short": True})
    return {
        "text": f":rotating_light: {alert.message}",
        "attachments": [
            {
                "title": alert.run.name,
                "title_link": _run_url(alert.run_id),
                "color": SEVERITY_COLORS.get(alert.severity, "warning"),
                "fields": fields,
                "ts": int(alert.fired_at.timestamp()),
            }
        ],
    }


def _test_text(channel: NotificationChannel) -> str:
    return (
        f"Test notification from Triune: the channel {channel.name!r} of project "
        f"{channel.project.name!r} works."
    )


def channel_test_payload(channel: NotificationChannel) -> dict:
    """The body of a test webhook."""
    project_url = f"{settings.PUBLIC_URL.rstrip('/')}/projects/{channel.project_id}/"
    return {
        "text": f":white_check_mark: {_test_text(channel)}",
        "attachments": [{"title": channel.project.name, "title_link": project_url}],
    }


def _one_line(text: str) -> str:
    """A mail header may not hold a line break."""
    return " ".join(text.split())


def email_message(alert: Alert) -> tuple[str, str]:
    """The subject and body of an alert's e-mail."""
    subject = _one_line(f"[Triune] {alert.severity} {alert.rule.name}")[:200]
    lines = [
        alert.message,
        "",
        f"Run: {alert.run.name} ({_run_url(alert.run_id)})",
        f"Source: {alert.source or 'global'}",
        f"Step: {alert.step}",
    ]
    if alert.key:
        lines.append(f"Key: {alert.key}")
    if alert.value is not None:
        lines.append(f"Value: {alert.value:.6g}")
    return subject, "\n".join(lines) + "\n"


# ---- sending -------------------------------------------------------------------------------


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to one of ``addresses`` (already checked), whatever the host resolves to now."""

    def __init__(self, host: str, port: int, *, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = addresses

    def _pinned_socket(self) -> socket.socket:
        error: OSError | None = None
        for address in self._addresses:
            try:
                return socket.create_connection((address, self.port), self.timeout)
            except OSError as exc:
                error = exc
        raise error or OSError("no address to connect to")

    def connect(self) -> None:
        self.sock = self._pinned_socket()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """The same over TLS, the certificate checked against the URL's host name."""

    default_port = http.client.HTTPS_PORT

    def __init__(self, host: str, port: int, *, addresses: list[str], timeout: float) -> None:
        super().__init__(host, port, addresses=addresses, timeout=timeout)
        self._tls = ssl.create_default_context()

    def connect(self) -> None:
        super().connect()
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self.host)


def _post_webhook(url: str, *, body: bytes, headers: dict[str, str]) -> None:
    """POST ``body`` to ``url`` at an address checked just now; anything but a 2xx raises."""
    try:
        addresses = webhook_addresses(url)
    except DomainError as exc:
        raise DeliveryError(f"refused: {exc.message}", retry=False) from exc
    parts = urlsplit(url)
    connection_class = _PinnedHTTPSConnection if parts.scheme == "https" else _PinnedHTTPConnection
    port = parts.port or connection_class.default_port
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = connection_class(parts.hostname, port, addresses=addresses, timeout=WEBHOOK_TIMEOUT_S)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(64 * 1024)
    except (OSError, http.client.HTTPException) as exc:
        raise DeliveryError(f"the webhook could not be reached: {type(exc).__name__}: {exc}"[:500]) from exc
    finally:
        connection.close()
    if 300 <= response.status < 400:
        raise DeliveryError(f"the webhook answered HTTP {response.status}; redirects are not followed")
    if not 200 <= response.status < 300:
        raise DeliveryError(f"the webhook answered HTTP {response.status}")


def _send_webhook(delivery: AlertDelivery, payload: dict) -> None:
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Triune-Webhook/1",
        "X-Triune-Delivery": str(delivery.pk),
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: webhook_signature(secret=delivery.channel.secret, timestamp=timestamp, body=body),
    }
    _post_webhook(delivery.channel.url, body=body, headers=headers)


def _send_email(delivery: AlertDelivery, subject: str, text: str) -> None:
    try:
        send_mail(subject, text, None, [delivery.channel.email], fail_silently=False)
    except (OSError, ValueError) as exc:  # smtplib's errors are OSErrors
        raise DeliveryError(f"the e-mail could not be sent: {type(exc).__name__}: {exc}"[:500]) from exc


def _send(delivery: AlertDelivery) -> None:
    channel = delivery.channel
    if delivery.alert is None:
        if channel.kind == NotificationChannel.Kind.WEBHOOK:
            _send_webhook(delivery, channel_test_payload(channel))
        else:
            _send_email(delivery, _one_line(f"[Triune] test of {channel.name}")[:200], _test_text(channel))
        return
    if channel.kind == NotificationChannel.Kind.WEBHOOK:
        _send_webhook(delivery, webhook_payload(delivery.alert))
    else:
        _send_email(delivery, *email_message(delivery.alert))


def delivery_send(*, delivery_id: int, final: bool = True) -> AlertDelivery | None:
    """Send a pending delivery once, recording the attempt: ``sent`` with its time, or the error.

    On failure it raises :class:`DeliveryError` after recording it; the delivery becomes
    ``failed`` when this was the ``final`` attempt or when trying again cannot help (a webhook
    refused by the SSRF guard), and stays ``pending`` otherwise. A missing delivery, or one
    already sent or failed, is left alone (None or the delivery as it is).
    """
    delivery = (
        AlertDelivery.objects.select_related("channel__project", "alert__rule", "alert__run")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None or delivery.state != AlertDelivery.State.PENDING:
        return delivery
    delivery.attempts += 1
    try:
        _send(delivery)
    except DeliveryError as exc:
        delivery.last_error = exc.message[:2000]
        if final or not exc.retry:
            delivery.state = AlertDelivery.State.FAILED
        delivery.save(update_fields=["attempts", "last_error", "state"])
        logger.warning(
            "delivery %s to channel %s, attempt %s: %s",
            delivery.pk,
            delivery.channel_id,
            delivery.attempts,
            exc.message,
        )
        raise
    delivery.state = AlertDelivery.State.SENT
    delivery.sent_at = timezone.now()
    delivery.last_error = ""
    delivery.save(update_fields=["attempts", "last_error", "state", "sent_at"])
    return delivery


def _enqueue(deliveries: list[AlertDelivery]) -> None:
    for delivery in deliveries:
        transaction.on_commit(partial(enqueue_task, DELIVERY_SEND_TASK, delivery.pk))


def alert_notify(*, alert_id: int) -> list[AlertDelivery]:
    """One delivery per enabled channel of the alert's rule, each sent by a task of its own.

    A channel that already has a delivery of this alert gets no second one, so a task run twice
    (a redelivered message) notifies once.
    """
    alert = Alert.objects.select_related("rule").filter(pk=alert_id).first()
    if alert is None:
        return []
    channels = alert.rule.channels.filter(enabled=True).exclude(deliveries__alert=alert)
    with transaction.atomic():
        deliveries = [AlertDelivery.objects.create(alert=alert, channel=channel) for channel in channels]
        _enqueue(deliveries)
    return deliveries


def channel_send_test(*, channel: NotificationChannel, user: AbstractBaseUser) -> AlertDelivery:
    """A test message to ``channel`` (enabled or not), sent like an alert's."""
    with transaction.atomic():
        delivery = AlertDelivery.objects.create(alert=None, channel=channel, test=True)
        _enqueue([delivery])
    logger.info("test delivery %s of channel %s asked by user %s", delivery.pk, channel.pk, user.pk)
    return delivery

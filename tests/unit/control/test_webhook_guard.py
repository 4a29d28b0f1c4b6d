"""Which webhook URLs and addresses are refused (control.services.notifications), and the signature.

The resolver is replaced by a table, so no test here asks DNS anything; only numeric hosts
("2130706433", "0x7f.1") go to the real getaddrinfo, which parses them without a lookup.
"""

from __future__ import annotations

import doctest
import hashlib
import hmac
import socket

import pytest

from control.errors import DomainError
from control.services import notifications
from control.services.notifications import (
    address_refusal,
    webhook_addresses,
    webhook_signature,
    webhook_url_check,
)

URL = "https://hooks.example.com/services/T000/B000/XXXX"
HINT = (
    ": webhooks may only reach public addresses (an administrator may list the host in "
    "TRIUNE_WEBHOOK_ALLOWED_HOSTS)"
)


@pytest.fixture
def resolve(monkeypatch):
    """``resolve(*addresses)``: every host now resolves to ``addresses``; returns the hosts asked."""
    asked: list[str] = []

    def answer(*addresses: str) -> list[str]:
        def getaddrinfo(host, port, *args, **kwargs):
            asked.append(host)
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in addresses
            ]

        monkeypatch.setattr(notifications.socket, "getaddrinfo", getaddrinfo)
        return asked

    return answer


@pytest.fixture
def no_dns(monkeypatch):
    """Fail a test that resolves anything: a malformed URL is refused before any lookup."""

    def getaddrinfo(*args, **kwargs):
        raise AssertionError("resolved a URL that should have been refused first")

    monkeypatch.setattr(notifications.socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def allowed(settings):
    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = []
    return settings


def test_the_doctests_hold():
    assert doctest.testmod(notifications).failed == 0


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # the metadata service of AWS, GCP and Azure
        ("169.254.0.1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT, RFC 6598
        ("192.0.2.1", "private"),  # documentation, RFC 5737
        ("198.18.0.1", "private"),  # benchmarking, RFC 2544
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("ff02::1", "multicast"),
        ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 address
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ],
)
def test_a_non_public_address_is_refused(address, reason, resolve, allowed):
    assert address_refusal(address) == reason
    resolve(address)
    with pytest.raises(DomainError) as caught:
        webhook_url_check(URL)
    message = f"the host 'hooks.example.com' resolves to {address}, a {reason} address{HINT}"
    assert caught.value.message == f"url: {message}"
    assert caught.value.fields == {"url": [message]}


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "172.32.0.1", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::ffff:8.8.8.8"],
)
def test_a_public_address_is_accepted(address, resolve, allowed):
    assert address_refusal(address) is None
    asked = resolve(address)
    webhook_url_check(URL)
    assert asked == ["hooks.example.com"]


def test_every_address_of_the_host_is_checked(resolve, allowed):
    # A resolver may answer either address: one private among public ones is enough to refuse.
    resolve("93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c", "10.0.0.7")
    with pytest.raises(DomainError) as caught:
        webhook_url_check(URL)
    assert caught.value.fields == {
        "url": [f"the host 'hooks.example.com' resolves to 10.0.0.7, a private address{HINT}"]
    }


def test_the_checked_addresses_are_returned_once_each(resolve, allowed):
    resolve("93.184.215.14", "93.184.215.14", "8.8.8.8")
    assert webhook_addresses(URL) == ["93.184.215.14", "8.8.8.8"]


@pytest.mark.parametrize("listed", ["hooks.example.com", "HOOKS.Example.com", " hooks.example.com "])
def test_an_allow_listed_host_may_reach_a_private_address(listed, resolve, allowed):
    allowed.TRIUNE_WEBHOOK_ALLOWED_HOSTS = ["alertmanager", listed]
    resolve("10.0.0.5")
    assert webhook_addresses(URL) == ["10.0.0.5"]
    # Only the host listed: another name resolving to the same address is still refused.
    with pytest.raises(DomainError):
        webhook_url_check("https://other.example.com/hook")


def test_an_allow_listed_literal_address(allowed):
    allowed.TRIUNE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    assert webhook_addresses("http://127.0.0.1:9000/hook") == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "required: a webhook needs an http or https URL"),
        ("ftp://hooks.example.com/x", "must be an http or https URL, got 'ftp://hooks.example.com/x'"),
        ("javascript:alert(1)", "must be an http or https URL, got 'javascript:alert(1)'"),
        ("file:///etc/passwd", "must be an http or https URL, got 'file:///etc/passwd'"),
        (
            "gopher://127.0.0.1:6379/_FLUSHALL",
            "must be an http or https URL, got 'gopher://127.0.0.1:6379/_FLUSHALL'",
        ),
        ("hooks.example.com/x", "must be an http or https URL, got 'hooks.example.com/x'"),
        ("http://", "must name a host, e.g. https://hooks.example.com/..."),
        ("https:///path", "must name a host, e.g. https://hooks.example.com/..."),
        ("https://user:pw@hooks.example.com/", "must not carry a user name or password"),
        ("https://hooks.example.com@127.0.0.1/", "must not carry a user name or password"),
        ("https://hooks.example.com:99999/", "not a valid URL (Port out of range 0-65535)"),
        ("https://[::1/", "not a valid URL (Invalid IPv6 URL)"),
        ("https://hooks.example .com/", "must not contain spaces or control characters"),
        ("https://hooks.example.com/\r\nX-Injected: 1", "must not contain spaces or control characters"),
        ("https://hooks.example.com/\x00", "must not contain spaces or control characters"),
    ],
)
def test_a_malformed_url_is_refused_before_any_lookup(url, message, no_dns, allowed):
    with pytest.raises(DomainError) as caught:
        webhook_url_check(url)
    assert caught.value.fields == {"url": [message]}
    assert caught.value.message == f"url: {message}"


def test_a_host_that_does_not_resolve_is_refused(monkeypatch, allowed):
    def getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(notifications.socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(DomainError) as caught:
        webhook_url_check("https://nowhere.invalid/hook")
    assert caught.value.fields == {"url": ["the host 'nowhere.invalid' does not resolve"]}


@pytest.mark.parametrize(
    ("url", "host", "address", "reason"),
    [
        ("http://127.0.0.1:8000/api/v1/projects/", "127.0.0.1", "127.0.0.1", "loopback"),
        ("http://[::1]:6379/", "::1", "::1", "loopback"),
        ("http://169.254.169.254/latest/meta-data/iam/", "169.254.169.254", "169.254.169.254", "link-local"),
        (
            "http://[::ffff:169.254.169.254]/",
            "::ffff:169.254.169.254",
            "::ffff:169.254.169.254",
            "link-local",
        ),
        ("http://2130706433/", "2130706433", "127.0.0.1", "loopback"),  # 127.0.0.1 as one number
        ("http://0x7f.1/", "0x7f.1", "127.0.0.1", "loopback"),  # a short hex form inet_aton reads
        ("http://0/", "0", "0.0.0.0", "unspecified"),
    ],
)
def test_literal_and_disguised_addresses_are_refused(url, host, address, reason, allowed):
    with pytest.raises(DomainError) as caught:
        webhook_url_check(url)
    assert caught.value.fields == {
        "url": [f"the host {host!r} resolves to {address}, a {reason} address{HINT}"]
    }


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body():
    # printf '%s' '1700000000.{"text":"hi"}' | openssl dgst -sha256 -hmac 's3cret'
    expected = "sha256=a4abab2c9ec335a751cf8c3848e413a84a4e0eef17a9660d993911fafacadb66"
    assert webhook_signature(secret="s3cret", timestamp="1700000000", body=b'{"text":"hi"}') == expected


@pytest.mark.parametrize(
    ("secret", "timestamp", "body"),
    [
        ("s3cret", "1700000001", b'{"text":"hi"}'),
        ("s3cret", "1700000000", b'{"text":"hi!"}'),
        ("other", "1700000000", b'{"text":"hi"}'),
    ],
)
def test_the_signature_changes_with_the_secret_the_time_and_the_body(secret, timestamp, body):
    signature = webhook_signature(secret=secret, timestamp=timestamp, body=body)
    assert signature != "sha256=a4abab2c9ec335a751cf8c3848e413a84a4e0eef17a9660d993911fafacadb66"
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={mac}"

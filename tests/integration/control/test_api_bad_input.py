"""Bad input to every JSON endpoint: a 4xx with a message that says what to fix, never a 500."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from tests.integration.control.helpers import assert_error, field_errors, send, send_raw

pytestmark = pytest.mark.django_db

API = "/api/v1/"


@dataclass(frozen=True)
class Write:
    """A JSON write endpoint with a valid body, to break one field at a time."""

    method: str
    route: str
    body: object  # callable of the World ids
    ok: int

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.route}"


WRITES = [
    Write("post", "projects/", lambda ids: {"name": "fresh"}, 201),
    Write("patch", "projects/{project}/", lambda ids: {"description": "new"}, 200),
    Write("post", "projects/{project}/members/", lambda ids: {"username": "newbie", "role": "viewer"}, 201),
    Write("patch", "data-sources/{source}/", lambda ids: {"description": "d", "tags": ["a"]}, 200),
    Write("post", "tags/", lambda ids: {"project": ids["project"], "name": "fresh"}, 201),
    Write(
        "post",
        "runs/",
        lambda ids: {
            "project": ids["project"],
            "name": "r2",
            "sources": [{"data_source": ids["source"]}],
            "launch": False,
        },
        201,
    ),
    Write(
        "post", "runs/{run}/metrics/", lambda ids: {"points": [{"step": 1, "key": "k", "value": 1.0}]}, 200
    ),
    Write(
        "post",
        "alert-rules/",
        lambda ids: {"project": ids["project"], "name": "r", "key": "reward/format", "condition": "above"},
        201,
    ),
    Write("patch", "alert-rules/{rule}/", lambda ids: {"threshold": 0.25}, 200),
    Write("post", "tokens/", lambda ids: {"name": "ci"}, 201),
    Write(
        "post", "uploads/", lambda ids: {"project": ids["project"], "filename": "a.jsonl", "size": 10}, 201
    ),
]
WRITE_IDS = [w.id for w in WRITES]


def _path(route: str, world) -> str:
    return API + route.format(**world.ids())


@pytest.fixture
def owner(world, client_for):
    return client_for(world.owner)


@pytest.mark.parametrize("write", WRITES, ids=WRITE_IDS)
def test_the_valid_body_is_accepted(write, world, owner):
    # The baseline every case below breaks in one place.
    response = send(owner, write.method, _path(write.route, world), write.body(world.ids()))
    assert response.status_code == write.ok, response.content[:300]


@pytest.mark.parametrize(
    "raw",
    [
        '{"name": ',
        "{'name': 'x'}",
        "{name: 1}",
        '{"a": 1,}',
        "\ufeff{}",
        "nul\x00",
        '{"a": NaN}',
        '{"a": Infinity}',
    ],
)
@pytest.mark.parametrize("write", WRITES, ids=WRITE_IDS)
def test_malformed_json_is_400_with_a_message(write, raw, world, owner):
    response = send_raw(owner, write.method, _path(write.route, world), raw.encode("utf-8", "surrogatepass"))
    body = assert_error(response, 400, code="parse_error")
    assert body["message"].startswith("JSON parse error - ")


@pytest.mark.parametrize(
    ("raw", "kind"),
    [("[]", "list"), ('[{"name": "x"}]', "list"), ('"name"', "str"), ("12", "int"), ("true", "bool")],
)
@pytest.mark.parametrize("write", WRITES, ids=WRITE_IDS)
def test_a_body_that_is_not_an_object_is_400(write, raw, kind, world, owner):
    response = send_raw(owner, write.method, _path(write.route, world), raw)
    assert_error(response, 400, code="invalid", message=f"expected a JSON object, got {kind}")
    assert field_errors(response) == {"non_field_errors": [f"expected a JSON object, got {kind}"]}


@pytest.mark.parametrize("write", WRITES, ids=WRITE_IDS)
def test_a_null_body_is_400(write, world, owner):
    response = send_raw(owner, write.method, _path(write.route, world), "null")
    assert_error(response, 400, code="invalid")


@pytest.mark.parametrize("write", WRITES, ids=WRITE_IDS)
def test_an_unknown_field_is_400_naming_it(write, world, owner):
    body = {**write.body(world.ids()), "is_admin": True, "<b>x</b>": 1}
    errors = field_errors(send(owner, write.method, _path(write.route, world), body))
    assert set(errors) == {"is_admin", "<b>x</b>"}
    assert errors["is_admin"][0].startswith("unknown field; allowed fields are: ")


def test_the_unknown_field_message_lists_the_allowed_ones(world, owner):
    errors = field_errors(
        owner.post(API + "tags/", {"project": 1, "name": "t", "colour": "#fff"}, format="json")
    )
    assert errors == {"colour": ["unknown field; allowed fields are: color, name, project"]}


def test_an_unknown_field_inside_a_metric_point_is_400_naming_it(world, owner):
    points = [{"step": 1, "key": "k", "value": 1.0}, {"step": 2, "key": "k", "value": 1.0, "unit": "s"}]
    response = owner.post(_path("runs/{run}/metrics/", world), {"points": points}, format="json")
    body = assert_error(response, 400, code="invalid")
    # The message names the point by its index in the batch.
    assert body["message"] == "points: 1: unit: unknown field; allowed fields are: key, source, step, value"
    assert body["extra"]["fields"] == {
        "points": {"1": {"unit": ["unknown field; allowed fields are: key, source, step, value"]}}
    }


def test_an_unsupported_content_type_is_415(world, owner):
    response = send_raw(owner, "post", API + "tags/", "project=1&name=x", content_type="text/plain")
    assert_error(
        response,
        415,
        code="unsupported_media_type",
        message='Unsupported media type "text/plain" in request.',
    )


# (endpoint, field, longest allowed): a string one longer and one of 10,000 characters are refused.
STRING_LIMITS = [
    ("post", "projects/", "name", 100),
    ("post", "projects/", "description", 5000),
    ("patch", "projects/{project}/", "name", 100),
    ("patch", "projects/{project}/", "description", 5000),
    ("post", "projects/{project}/members/", "username", 150),
    ("patch", "data-sources/{source}/", "description", 5000),
    ("post", "tags/", "name", 64),
    ("post", "runs/", "name", 200),
    ("post", "runs/", "description", 5000),
    ("post", "runs/", "compute_target", 200),
    ("post", "alert-rules/", "name", 200),
    ("post", "alert-rules/", "source", 200),
    ("patch", "alert-rules/{rule}/", "name", 200),
    ("post", "tokens/", "name", 100),
    ("post", "uploads/", "filename", 255),
]


def _body_for(method: str, route: str, world) -> dict:
    write = next(w for w in WRITES if (w.method, w.route) == (method, route))
    return write.body(world.ids())


@pytest.mark.parametrize("extra", [1, 10_000], ids=["limit+1", "10k"])
@pytest.mark.parametrize(("method", "route", "name", "limit"), STRING_LIMITS)
def test_an_overlong_string_is_400(method, route, name, limit, extra, world, owner):
    length = limit + 1 if extra == 1 else 10_000
    body = {**_body_for(method, route, world), name: "a" * length}
    errors = field_errors(send(owner, method, _path(route, world), body))
    assert errors == {name: [f"Ensure this field has no more than {limit} characters."]}


# A user name must name an existing user, a file name must end in a known suffix.
FREE_TEXT_LIMITS = [row for row in STRING_LIMITS if row[2] not in ("username", "filename")]


@pytest.mark.parametrize(("method", "route", "name", "limit"), FREE_TEXT_LIMITS)
def test_a_string_at_the_limit_is_accepted(method, route, name, limit, world, owner):
    body = {**_body_for(method, route, world), name: "a" * limit}
    response = send(owner, method, _path(route, world), body)
    assert response.status_code in (200, 201), response.content[:300]
    assert response.json()[name] == "a" * limit


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("key", "k" * 201, "Ensure this field has no more than 200 characters."),
        ("key", "k" * 10_000, "Ensure this field has no more than 200 characters."),
        ("source", "s" * 201, "Ensure this field has no more than 200 characters."),
        ("source", "s" * 10_000, "Ensure this field has no more than 200 characters."),
    ],
)
def test_an_overlong_metric_key_or_source_is_400(field, value, message, world, owner):
    point = {"step": 1, "key": "k", "value": 1.0, field: value}
    response = owner.post(_path("runs/{run}/metrics/", world), {"points": [point]}, format="json")
    body = assert_error(response, 400, code="invalid")
    assert body["message"].startswith(f"points: 0: {field}: {message}")


def test_an_overlong_tag_in_a_source_patch_is_400(world, owner):
    body = {"tags": ["ok", "t" * 10_000]}
    response = owner.patch(_path("data-sources/{source}/", world), body, format="json")
    assert_error(response, 400, message="tags: 1: Ensure this field has no more than 64 characters.")


# Stored and returned exactly: the API is JSON, escaping is the page's job.
HOSTILE_KEPT = [
    "Robert'); DROP TABLE control_run;--",
    "' OR '1'='1",
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "日本語のデータ ✓ 🚀",
    "\u202eevil\u202c",  # right-to-left override
    "a\u0301\u0301\u0301",  # combining marks
    "${jndi:ldap://x}",
    "../../etc/passwd",
    "%00%27",
    "tab\tand\nnewline",
]
# (endpoint, the field that is stored, the route that reads it back)
STORED_TEXT = [
    ("post", "projects/", "name", "projects/{id}/"),
    ("post", "projects/", "description", "projects/{id}/"),
    ("post", "tags/", "name", "tags/{id}/"),
    ("post", "runs/", "name", "runs/{id}/"),
    ("post", "runs/", "description", "runs/{id}/"),
    ("post", "alert-rules/", "name", "alert-rules/{id}/"),
    ("post", "tokens/", "name", None),
]


@pytest.mark.parametrize("value", HOSTILE_KEPT)
@pytest.mark.parametrize(
    ("method", "route", "name", "read"), STORED_TEXT, ids=[f"{r}{n}" for _, r, n, _ in STORED_TEXT]
)
def test_hostile_strings_are_stored_verbatim(method, route, name, read, value, world, owner):
    from control.models import Run

    body = {**_body_for(method, route, world), name: value}
    response = send(owner, method, _path(route, world), body)
    assert response.status_code == 201, response.content[:300]
    assert response["Content-Type"] == "application/json"
    assert response.json()[name] == value
    if read is not None:
        again = owner.get(API + read.format(id=response.json()["id"]))
        assert again.json()[name] == value
    assert Run.objects.count() >= 2  # the table is still there


SOURCE_RULE = "must be empty or up to 200 letters, digits, '_', '.' or '-' (a source name of the run)"


@pytest.mark.parametrize(
    "value", [*HOSTILE_KEPT, '<a href="https://evil.example/login" target="_self">Re-login required</a>']
)
def test_a_metric_source_outside_the_source_name_rule_is_refused_and_tags_are_stored_verbatim(
    value, world, owner
):
    from control.models import MetricPoint

    before = MetricPoint.objects.count()
    point = {"step": 1, "key": "reward/final", "source": value, "value": 0.5}
    response = owner.post(_path("runs/{run}/metrics/", world), {"points": [point]}, format="json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["message"] == f"points: 0: source: {SOURCE_RULE}"
    assert MetricPoint.objects.count() == before
    tag = value[:64]
    response = owner.patch(_path("data-sources/{source}/", world), {"tags": [tag]}, format="json")
    assert response.status_code == 200, response.content[:300]
    assert response.json()["tags"] == [tag]
    listed = owner.get(API + "data-sources/", {"tag": tag}).json()["results"]
    assert [s["id"] for s in listed] == [world.source.pk]


@pytest.mark.parametrize("value", [*HOSTILE_KEPT, "a" * 150])
def test_a_hostile_member_name_is_simply_not_found(value, world, owner):
    response = owner.post(
        _path("projects/{project}/members/", world), {"username": value, "role": "viewer"}, format="json"
    )
    assert_error(response, 404, code="not_found", message=f"no user named {value!r}")


@pytest.mark.parametrize(
    ("method", "route", "name", "read"), STORED_TEXT, ids=[f"{r}{n}" for _, r, n, _ in STORED_TEXT]
)
def test_a_nul_byte_in_a_string_is_400(method, route, name, read, world, owner):
    body = {**_body_for(method, route, world), name: "before\x00after"}
    errors = field_errors(send(owner, method, _path(route, world), body))
    assert errors == {name: ["Null characters are not allowed."]}


LONE_SURROGATE = '"a\\ud800b"'


@pytest.mark.parametrize(
    ("method", "route", "name", "read"), STORED_TEXT, ids=[f"{r}{n}" for _, r, n, _ in STORED_TEXT]
)
def test_a_lone_surrogate_is_400(method, route, name, read, world, owner):
    # Valid JSON, but no UTF-8 text: PostgreSQL cannot store it.
    body = json.dumps(_body_for(method, route, world))[:-1] + f', "{name}": {LONE_SURROGATE}}}'
    response = send_raw(owner, method, _path(route, world), body)
    assert_error(
        response, 400, code="invalid", message=f"{name}: Surrogate characters are not allowed: U+D800."
    )


@pytest.mark.parametrize(
    "config",
    [{"note": "a\x00b"}, {"a\x00": 1}, {"nested": [{"deep": "\x00"}]}],
    ids=["value", "key", "nested"],
)
def test_a_nul_in_the_run_config_is_400(config, world, owner):
    # jsonb refuses \u0000: the check must find it in keys and at any depth.
    body = {**_body_for("post", "runs/", world), "config": config}
    errors = field_errors(owner.post(API + "runs/", body, format="json"))
    assert errors == {"config": ["config must not contain NUL characters (\\u0000)"]}


@pytest.mark.parametrize("where", ['{"note": "a\\udc00"}', '{"a\\ud800": 1}', '{"l": [["\\udfff"]]}'])
def test_a_lone_surrogate_in_the_run_config_is_400(where, world, owner):
    raw = json.dumps(_body_for("post", "runs/", world))[:-1] + f', "config": {where}}}'
    errors = field_errors(send_raw(owner, "post", API + "runs/", raw))
    assert errors == {"config": ["config must not contain lone surrogates (\\ud800-\\udfff)"]}


def test_a_run_config_nested_past_32_levels_is_400_and_32_is_accepted(world, owner):
    def nest(levels):  # levels of dicts: {"a": {"a": ... {"a": 1}}}
        value = 1
        for _ in range(levels):
            value = {"a": value}
        return value

    body = {**_body_for("post", "runs/", world), "config": nest(33)}
    errors = field_errors(owner.post(API + "runs/", body, format="json"))
    assert errors == {"config": ["config is nested deeper than 32 levels"]}
    body["config"] = nest(32)
    response = owner.post(API + "runs/", body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["config"] == nest(32)


def test_a_deeply_nested_body_is_400(world, owner):
    raw = '{"name": "x", "config": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = send_raw(owner, "post", API + "runs/", raw)
    assert_error(
        response, 400, code="parse_error", message="JSON parse error - the body is nested too deeply"
    )


def test_hostile_run_config_values_are_stored_verbatim(world, owner):
    config = {
        "lr": 1e-6,
        "note": "<script>x</script>",
        "sql": "'; DROP TABLE x;--",
        "uni": "日本 🚀",
        "n": None,
    }
    body = {**_body_for("post", "runs/", world), "config": config}
    response = owner.post(API + "runs/", body, format="json")
    assert response.status_code == 201, response.content
    assert owner.get(API + f"runs/{response.json()['id']}/").json()["config"] == config


def test_a_run_config_over_64_kb_is_400(world, owner):
    body = {**_body_for("post", "runs/", world), "config": {"blob": "x" * 70_000}}
    errors = field_errors(owner.post(API + "runs/", body, format="json"))
    assert errors == {"config": ["config is larger than 64 kB"]}


# (endpoint, field, a value of the wrong type, the message)
WRONG_TYPES = [
    ("post", "projects/", "name", ["x"], "Not a valid string."),
    ("post", "projects/", "name", {"a": 1}, "Not a valid string."),
    ("post", "projects/", "name", None, "This field may not be null."),
    ("post", "projects/", "name", "", "This field may not be blank."),
    ("post", "projects/", "name", "   ", "This field may not be blank."),
    ("post", "projects/{project}/members/", "role", "admin", '"admin" is not a valid choice.'),
    ("post", "projects/{project}/members/", "role", ["owner"], "\"['owner']\" is not a valid choice."),
    ("patch", "data-sources/{source}/", "tags", "reasoning", 'Expected a list of items but got type "str".'),
    ("patch", "data-sources/{source}/", "tags", {"a": 1}, 'Expected a list of items but got type "dict".'),
    ("patch", "data-sources/{source}/", "task_type", "poetry", '"poetry" is not a valid choice.'),
    ("post", "tags/", "project", "abc", "A valid integer is required."),
    ("post", "tags/", "project", 1.5, "A valid integer is required."),
    ("post", "tags/", "project", True, "A valid integer is required."),
    ("post", "tags/", "project", [1], "A valid integer is required."),
    ("post", "tags/", "project", 0, "Ensure this value is greater than or equal to 1."),
    ("post", "tags/", "project", -1, "Ensure this value is greater than or equal to 1."),
    ("post", "tags/", "color", "red", "This value does not match the required pattern."),
    ("post", "runs/", "total_steps", "many", "A valid integer is required."),
    ("post", "runs/", "total_steps", 0, "Ensure this value is greater than or equal to 1."),
    ("post", "runs/", "total_steps", 10**8, "Ensure this value is less than or equal to 10000000."),
    ("post", "runs/", "config", [1, 2], 'Expected a dictionary of items but got type "list".'),
    ("post", "runs/", "config", "lr=1", 'Expected a dictionary of items but got type "str".'),
    ("post", "runs/", "preset", "gpt-5", '"gpt-5" is not a valid choice.'),
    ("post", "runs/", "sources", {"data_source": 1}, 'Expected a list of items but got type "dict".'),
    ("post", "runs/", "sources", [], "This list may not be empty."),
    ("post", "runs/", "sources", "1", 'Expected a list of items but got type "str".'),
    ("post", "runs/", "sources", [1], "expected a JSON object, got int"),
    ("post", "alert-rules/", "threshold", "high", "A valid number is required."),
    ("post", "alert-rules/", "threshold", "NaN", "A valid number is required."),
    ("post", "alert-rules/", "threshold", "-Infinity", "A valid number is required."),
    ("post", "alert-rules/", "window", 0, "Ensure this value is greater than or equal to 1."),
    ("post", "alert-rules/", "window", 1001, "Ensure this value is less than or equal to 1000."),
    ("post", "alert-rules/", "cooldown_seconds", -1, "Ensure this value is greater than or equal to 0."),
    ("post", "alert-rules/", "condition", "sideways", '"sideways" is not a valid choice.'),
    ("post", "alert-rules/", "key", "reward accuracy", "This value does not match the required pattern."),
    ("post", "alert-rules/", "key", "", "required: the metric key (or prefix*) the rule watches"),
    ("post", "alert-rules/", "key", "reward/*/final", "This value does not match the required pattern."),
    ("post", "alert-rules/", "enabled", "maybe", "Must be a valid boolean."),
    ("post", "alert-rules/", "kind", "sometimes", '"sometimes" is not a valid choice.'),
    ("post", "alert-rules/", "severity", "critical", '"critical" is not a valid choice.'),
    ("post", "alert-rules/", "channels", "1", 'Expected a list of items but got type "str".'),
    ("post", "alert-rules/", "run_ids", {"a": 1}, 'Expected a list of items but got type "dict".'),
    ("post", "alert-rules/", "warmup", -1, "Ensure this value is greater than or equal to 0."),
    ("patch", "alert-rules/{rule}/", "threshold", [0.5], "A valid number is required."),
    ("patch", "alert-rules/{rule}/", "name", "", "This field may not be blank."),
    ("post", "tokens/", "expires_at", "tomorrow", None),
    ("post", "tokens/", "expires_at", 12, None),
    ("post", "uploads/", "size", 0, "Ensure this value is greater than or equal to 1."),
    ("post", "uploads/", "size", "big", "A valid integer is required."),
]


@pytest.mark.parametrize(
    ("method", "route", "name", "value", "message"),
    WRONG_TYPES,
    ids=[f"{m} {r} {n}={v!r:.20}" for m, r, n, v, _ in WRONG_TYPES],
)
def test_a_wrong_type_is_400_naming_the_field(method, route, name, value, message, world, owner):
    body = {**_body_for(method, route, world), name: value}
    error = assert_error(send(owner, method, _path(route, world), body), 400, code="invalid")
    assert set(error["extra"]["fields"]) == {name}
    assert error["message"].startswith(f"{name}: ")
    if message is not None:
        assert message in error["message"], error


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"key": "k", "value": 1.0}, "step: This field is required."),
        ({"step": -1, "key": "k", "value": 1.0}, "step: Ensure this value is greater than or equal to 0."),
        (
            {"step": 2**31, "key": "k", "value": 1.0},
            "step: Ensure this value is less than or equal to 2147483647.",
        ),
        ({"step": "one", "key": "k", "value": 1.0}, "step: A valid integer is required."),
        ({"step": 1.5, "key": "k", "value": 1.0}, "step: A valid integer is required."),
        (
            {"step": 1, "key": "reward accuracy", "value": 1.0},
            "key: This value does not match the required pattern.",
        ),
        ({"step": 1, "key": "", "value": 1.0}, "key: This field may not be blank."),
        ({"step": 1, "key": "a\x00b", "value": 1.0}, "key: Null characters are not allowed."),
        ({"step": 1, "key": "k", "value": "high"}, "value: A valid number is required."),
        ({"step": 1, "key": "k", "value": [1]}, "value: A valid number is required."),
        ({"step": 1, "key": "k", "value": "nan"}, "value: A valid number is required."),
        ({"step": 1, "key": "k"}, "value: This field is required."),
        ({"step": 1, "key": "k", "value": 1.0, "source": ["a"]}, "source: Not a valid string."),
        (
            {"step": 1, "key": "k", "value": 1.0, "source": "a\x00"},
            "source: Null characters are not allowed.",
        ),
        ("point", "expected a JSON object, got str"),
    ],
)
def test_a_bad_metric_point_is_400_with_a_message(point, message, world, owner):
    from control.models import MetricPoint

    before = MetricPoint.objects.count()
    good = {"step": 0, "key": "k", "value": 0.5}
    # One bad point refuses the whole batch: a batch is stored whole or not at all.
    response = owner.post(_path("runs/{run}/metrics/", world), {"points": [good, point]}, format="json")
    body = assert_error(response, 400, code="invalid")
    assert body["message"].split("; ")[0] == f"points: 1: {message}"
    assert MetricPoint.objects.count() == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "points: This field is required."),
        ({"points": []}, "points: This list may not be empty."),
        ({"points": {"step": 1}}, 'points: Expected a list of items but got type "dict".'),
        ({"points": None}, "points: This field may not be null."),
    ],
)
def test_a_bad_metric_batch_is_400(body, message, world, owner):
    response = owner.post(_path("runs/{run}/metrics/", world), body, format="json")
    assert_error(response, 400, code="invalid", message=message)


def test_a_body_with_a_huge_project_id_is_handled(world, owner):
    response = owner.post(API + "tags/", {"project": 10**20, "name": "x"}, format="json")
    assert response.status_code in (400, 404)
    assert_error(response, response.status_code)


# ------------------------------------------------------------------------------------------- query strings

LISTS = ["projects/", "datasets/", "data-sources/", "tags/", "runs/", "alert-rules/", "alerts/", "tokens/"]
ALL_LISTS = [*LISTS, "runs/{run}/metrics/", "projects/{project}/members/"]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"page": "0"}, "page", "must be a positive integer, got '0'"),
        ({"page": "-1"}, "page", "must be a positive integer, got '-1'"),
        ({"page": "abc"}, "page", "must be a positive integer, got 'abc'"),
        ({"page": "1.5"}, "page", "must be a positive integer, got '1.5'"),
        ({"page": ""}, "page", "must be a positive integer, got ''"),
        ({"page": "²"}, "page", "must be a positive integer, got '²'"),
        ({"page_size": "100000"}, "page_size", "must be an integer from 1 to 500, got '100000'"),
        ({"page_size": "0"}, "page_size", "must be an integer from 1 to 500, got '0'"),
        ({"page_size": "-5"}, "page_size", "must be an integer from 1 to 500, got '-5'"),
        ({"page_size": "abc"}, "page_size", "must be an integer from 1 to 500, got 'abc'"),
        ({"page_size": "9" * 5000}, "page_size", f"must be an integer from 1 to 500, got '{'9' * 50}'"),
        ({"page_size": "²"}, "page_size", "must be an integer from 1 to 500, got '²'"),
    ],
)
@pytest.mark.parametrize("route", ALL_LISTS)
def test_a_malformed_page_is_400_naming_it(route, query, field, message, world, owner):
    response = owner.get(_path(route, world), query)
    assert field_errors(response) == {field: [message]}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"page": "9" * 30}, f"page {'9' * 30} is out of range: there are 1 page(s)"),
        ({"page": "9" * 5000}, f"page {'9' * 50} is out of range: there are 1 page(s)"),
        ({"page": "2"}, "page 2 is out of range: there are 1 page(s)"),
    ],
)
@pytest.mark.parametrize("route", ALL_LISTS)
def test_a_page_past_the_last_is_404_with_a_message(route, query, message, world, owner):
    response = owner.get(_path(route, world), query)
    assert_error(response, 404, code="not_found", message=message)


@pytest.mark.parametrize("route", ALL_LISTS)
def test_pages_walk_the_whole_list(route, world, owner):
    # Pages of a third of the list: their concatenation is the whole list, in order, without repeats.
    full = owner.get(_path(route, world), {"page_size": "500"}).json()
    size = max(1, -(-full["count"] // 3))
    seen = []
    page = 1
    while True:
        response = owner.get(_path(route, world), {"page": str(page), "page_size": str(size)})
        assert response.status_code == 200
        body = response.json()
        seen.extend(body["results"])
        if body["next"] is None:
            break
        page += 1
    assert seen == full["results"]
    assert len(seen) == full["count"]


INT_PARAMS = [
    *[
        (route, "project")
        for route in ["datasets/", "data-sources/", "tags/", "runs/", "alert-rules/", "alerts/"]
    ],
    ("alerts/", "run"),
]


@pytest.mark.parametrize("value", ["abc", "1.5", "1e3", "0x10", "[1]"])
@pytest.mark.parametrize(("route", "name"), INT_PARAMS)
def test_a_query_param_of_the_wrong_type_is_400(route, name, value, world, owner):
    response = owner.get(API + route, {name: value})
    assert field_errors(response) == {name: [f"must be an integer, got {value!r}"]}


@pytest.mark.parametrize("route", ["datasets/", "data-sources/", "tags/", "runs/", "alert-rules/", "alerts/"])
def test_an_out_of_range_query_int_is_400(route, world, owner):
    assert field_errors(owner.get(API + route, {"project": str(2**31)})) == {"project": ["out of range"]}


@pytest.mark.parametrize("value", ["abc", "-", "9" * 40])
def test_a_bad_after_step_is_400(value, world, owner):
    errors = field_errors(owner.get(_path("runs/{run}/metrics/", world), {"after_step": value}))
    assert set(errors) == {"after_step"}


HOSTILE_QUERY = ["x\x00y", "' OR 1=1 --", "<script>", "%", "\\", "日本", "a" * 5000, "\ufffd"]


@pytest.mark.parametrize(
    "value",
    HOSTILE_QUERY,
    ids=["nul", "sql", "script", "percent", "backslash", "unicode", "long", "replacement"],
)
@pytest.mark.parametrize(
    ("route", "name"),
    [
        ("data-sources/", "search"),
        ("data-sources/", "tag"),
        ("runs/{run}/metrics/", "key"),
        ("runs/{run}/metrics/", "source"),
    ],
)
def test_hostile_text_query_params_never_fail(route, name, value, world, owner):
    response = owner.get(_path(route, world), {name: value})
    if "\x00" in value:
        assert_error(response, 400, code="invalid", message=f"{name}: must not contain NUL characters")
    else:
        assert response.status_code == 200, response.content[:300]
        assert response.json()["results"] == []


@pytest.mark.parametrize("value", [*HOSTILE_QUERY, "runing", "RUNNING"])
@pytest.mark.parametrize(
    ("route", "name", "allowed"),
    [
        (
            "data-sources/",
            "task_type",
            "math, puzzle, science, chart, ocr, counting, detection, grounding, other",
        ),
        (
            "runs/",
            "status",
            "pending, queued, submitted, running, succeeded, failed, cancelling, cancelled, lost",
        ),
        ("alerts/", "state", "firing, acknowledged, resolved"),
    ],
)
def test_an_unknown_choice_filter_is_400_naming_the_choices(route, name, allowed, value, world, owner):
    response = owner.get(_path(route, world), {name: value})
    if "\x00" in value:
        assert_error(response, 400, code="invalid", message=f"{name}: must not contain NUL characters")
    else:
        assert_error(
            response, 400, code="invalid", message=f"{name}: must be one of {allowed}, got {value[:50]!r}"
        )


def test_search_treats_like_wildcards_literally(world, owner, make_source):
    make_source(world.project, name="chart_qa")
    names = lambda q: [s["name"] for s in owner.get(API + "data-sources/", {"search": q}).json()["results"]]  # noqa: E731
    assert names("_") == ["chart_qa", "geo_math"]  # both names hold a literal underscore
    assert names("%") == []
    assert names("CHART") == ["chart_qa"]


@pytest.mark.parametrize(
    "route",
    [
        "projects/{n}/",
        "datasets/{n}/",
        "data-sources/{n}/",
        "tags/{n}/",
        "runs/{n}/",
        "runs/{n}/metrics/",
        "alert-rules/{n}/",
    ],
)
@pytest.mark.parametrize("n", [0, 987654, 2**31, 2**63, 10**30])
def test_a_missing_or_huge_id_in_the_path_is_404(route, n, world, owner):
    response = owner.get(API + route.format(n=n))
    body = assert_error(response, 404, code="not_found")
    assert f"{n} does not exist" in body["message"]


def test_an_unknown_api_path_is_a_json_404(world, owner):
    response = owner.get(API + "nothing-here/")
    assert_error(response, 404, code="not_found", message="no API endpoint at /api/v1/nothing-here/")


@pytest.mark.parametrize(
    ("method", "route"), [("put", "projects/{project}/"), ("delete", "runs/{run}/"), ("patch", "tags/")]
)
def test_a_method_that_is_not_served_is_405(method, route, world, owner):
    response = send(owner, method, _path(route, world), {})
    body = assert_error(response, 405, code="method_not_allowed")
    assert body["message"] == f'Method "{method.upper()}" not allowed.'


# ------------------------------------------------------------------------------------------- samples

SAMPLES = "data-sources/{source}/samples/"


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"split": "validation"}, 404, "split must be one of train, test, got 'validation'"),
        ({"split": "x" * 5000}, 404, f"split must be one of train, test, got {'x' * 20!r}"),
        ({"offset": "-1"}, 400, "offset must be >= 0 and limit in [1, 50]"),
        ({"limit": "51"}, 400, "offset must be >= 0 and limit in [1, 50]"),
        ({"limit": "-3"}, 400, "offset must be >= 0 and limit in [1, 50]"),
        ({"limit": "abc"}, 400, "limit: must be an integer, got 'abc'"),
        ({"offset": str(2**40)}, 400, "offset: out of range"),
    ],
)
def test_a_bad_sample_page_is_refused(query, status, message, world, owner):
    assert_error(owner.get(_path(SAMPLES, world), query), status, message=message)


def test_a_source_without_files_has_an_empty_sample_page(world, owner):
    body = owner.get(_path(SAMPLES, world), {"offset": str(2**31 - 1)}).json()
    assert body["results"] == []


@pytest.mark.parametrize("index", [0, 10**30])
def test_a_missing_sample_is_404(index, world, owner):
    base = _path(SAMPLES, world)
    message = f"geo_math has 10 train samples; no sample {index}"
    assert_error(owner.get(base + f"train/{index}/images/0/"), 404, message=message)
    scored = owner.post(base + f"train/{index}/score/", {"response": "\\boxed{4}"}, format="json")
    assert_error(scored, 404, message=message)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "response"),
        ({"response": "x" * 100_001}, "response"),
        ({"response": "x", "step": -1}, "step"),
        ({"response": "x", "total_steps": 0}, "total_steps"),
        ({"response": "x", "total_steps": 10**309}, "total_steps"),
        ({"response": "x", "step": 10**309}, "step"),
        ({"response": "x", "temperature": 1}, "temperature"),
        ({"response": ["x"]}, "response"),
    ],
)
def test_a_bad_score_request_is_400(body, field, world, owner):
    response = owner.post(_path(SAMPLES, world) + "train/0/score/", body, format="json")
    assert set(field_errors(response)) == {field}

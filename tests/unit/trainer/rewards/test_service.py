"""The reward service over real HTTP, and its client."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys

import pytest

from trainer.rewards import RewardClient, RewardPool, RewardRequest, RewardServiceError, score_request
from trainer.rewards.service import RewardService

TOKEN = "test-token-0123456789"
MATH = {"verifier": "mathverify", "ground_truth": "\\boxed{4}"}
DET = {
    "verifier": "detection",
    "ground_truth": "<answer>\n[{'bbox_2d': [10, 10, 100, 100], 'label': 'dog'}]\n</answer>",
}


@pytest.fixture(scope="module")
def service():
    """``python -m trainer.rewards.service`` on a free port; stopped at the end."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainer.rewards.service",
            "--port",
            "0",
            "--token",
            TOKEN,
            "--workers",
            "2",
            "--timeout-s",
            "2",
            "--max-body-mb",
            "1",
        ],  # fmt: skip
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = process.stdout.readline()  # "reward service listening on http://127.0.0.1:PORT with 2 workers"
    assert line.startswith("reward service listening on http://127.0.0.1:"), line
    address = line.split()[4]
    yield address
    process.terminate()
    assert process.wait(timeout=30) == 0


def _post(address: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    host, port = address.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/v1/score", body=body, headers=headers)
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read())
    finally:
        conn.close()


def _items(*requests: dict) -> bytes:
    return json.dumps({"items": list(requests)}).encode()


AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def test_health(service):
    assert RewardClient(service, TOKEN).health() == [True]


def test_same_results_as_in_process(service):
    requests = [
        RewardRequest("<think>\nx\n</think>\n<answer>\n\\boxed{4}\n</answer>", MATH, data_source="m"),
        RewardRequest("\\boxed{5}", MATH, data_source="m"),
        RewardRequest(
            "\n<answer>\n[{'bbox_2d': [10, 10, 100, 90], 'label': 'dog'}]\n</answer>",
            DET,
            step=3,
            total_steps=10,
            iou_schedule=[[0.5, 0.5], [1.0, 0.9]],
        ),  # fmt: skip
        RewardRequest(
            "\n<answer>\n[{'bbox_2d': [5, 5, 50, 45], 'label': 'dog'}]\n</answer>",
            dict(DET, verifier_parm={"det_verifier_normalized": True}),
            image_size=(500, 500),
        ),  # fmt: skip
        RewardRequest("x", {"verifier": "nope"}),
    ] * 5
    with RewardClient(service, TOKEN, batch_size=4) as client:
        assert client.score(requests) == [score_request(r) for r in requests]


def test_wrong_or_missing_token_is_401(service):
    body = _items({"response": "x", "reward_model": MATH})
    status, reply = _post(service, body, dict(AUTH, Authorization="Bearer wrong"))
    assert status == 401
    message = "a valid 'Authorization: Bearer <token>' header is required"
    assert reply == {"message": message, "code": "unauthorized",
                     "extra": {}}  # fmt: skip
    assert _post(service, body, {"Content-Type": "application/json"})[0] == 401
    with pytest.raises(RewardServiceError, match="HTTP 401"):
        RewardClient(service, "wrong").score([RewardRequest("x", MATH)])


def test_oversized_body_is_413(service):
    body = _items({"response": "x" * (2 * 1024 * 1024), "reward_model": MATH})
    status, reply = _post(service, body, AUTH)
    assert status == 413
    assert reply["code"] == "too_large"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"{not json",
            "the body is not valid JSON: Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1)",
        ),
        (b"[]", 'the body must be an object {"items": [...]}'),
        (_items(), "items must be a non-empty list"),
        (_items({"reward_model": MATH}), "items[0].response must be a string, got NoneType"),
        (_items({"response": "x", "reward_model": "m"}), "items[0].reward_model must be an object, got str"),
        (
            _items({"response": "x", "reward_model": MATH, "step": -1}),
            "items[0].step must be an int >= 0, got -1",
        ),
        (
            _items({"response": "x", "reward_model": MATH, "image_size": [1]}),
            "items[0].image_size must be [width, height] or null, got [1]",
        ),
        (
            _items({"response": "x", "reward_model": MATH, "extra": 1}),
            "items[0] has unknown fields ['extra']; known: response, reward_model, step, total_steps, "
            "image_size, data_source, iou_schedule",
        ),
    ],
)
def test_malformed_requests_are_400(service, body, message):
    status, reply = _post(service, body, AUTH)
    assert (status, reply["message"]) == (400, message)


def test_wrong_content_type_is_415(service):
    assert _post(service, b"{}", dict(AUTH, **{"Content-Type": "text/plain"}))[0] == 415


def test_client_spreads_over_addresses_and_retries_a_dead_one(service):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    requests = [RewardRequest(f"\\boxed{{{n % 6}}}", MATH) for n in range(40)]
    client = RewardClient([dead, service], TOKEN, batch_size=5, retries=2, backoff_s=0.0)
    results = client.score(requests)
    assert [r.rewards["accuracy_reward"] for r in results] == [1.0 if n % 6 == 4 else 0.0 for n in range(40)]
    assert all(r.error is None for r in results)
    assert client.failures == 4  # the 4 chunks that started on the dead address, each retried once


def test_unreachable_service_scores_zero_with_an_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    results = RewardClient(dead, TOKEN, retries=1, backoff_s=0.0).score([RewardRequest("\\boxed{4}", MATH)])
    assert results[0].rewards == {"accuracy_reward": 0.0, "format_reward": 0.0, "final_reward": 0.0}
    assert results[0].error.startswith(
        "error: reward service unavailable after 2 attempts: ConnectionRefusedError"
    )


def test_a_request_that_is_not_json_scores_zero(service):
    results = RewardClient(service, TOKEN).score(
        [RewardRequest("x", dict(MATH, format_ratio=float("nan"))), RewardRequest("\\boxed{4}", MATH)]
    )
    assert (
        results[0].error
        == "error: the request is not JSON-serialisable: Out of range float values are not JSON compliant"
    )
    assert results[1].rewards["accuracy_reward"] == 1.0


def test_in_process_service_binds_to_localhost_and_splits_on_413():
    with RewardPool(workers=1, timeout_s=10) as pool, RewardService(pool, TOKEN, max_body_bytes=4000) as svc:
        assert svc.address.startswith("http://127.0.0.1:")
        # each item is ~1.1 KB: a batch of 8 is over the limit, halves of 2 fit
        requests = [RewardRequest("\\boxed{4}" + " " * 1000, MATH) for _ in range(8)]
        results = RewardClient(svc.address, TOKEN, batch_size=8).score(requests)
        assert [r.rewards["accuracy_reward"] for r in results] == [1.0] * 8


def test_service_refuses_to_start_without_a_token():
    env = {key: value for key, value in os.environ.items() if key != "TRIUNE_REWARD_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "trainer.rewards.service", "--port", "0"], env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert "give a token with --token or $TRIUNE_REWARD_TOKEN" in done.stderr

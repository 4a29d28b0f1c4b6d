"""The vLLM backend on a real engine against the HF backend and the trainer, on the tiny models.

Both backends decode the same policy: greedy responses must be the same token for token,
vLLM's log-probs of its sampled tokens must be the trainer's (up to the vision tokens that
vLLM's logit bias takes out of the softmax), and a change of the policy's weights, the
vision tower's included, must reach the engine before the next generation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.algo.update import recompute_logprobs
from trainer.models import build_tiny_model
from trainer.rollout import HFRolloutBackend
from trainer.rollout.vllm_backend import VLLMRolloutBackend, vllm_cpu_build

from . import greedy_probe

ROOT = Path(__file__).resolve().parents[2]
NEW_TOKENS = 24


# the probe's three prompts (two images, one text-only) and a smaller image
PROMPTS = [*greedy_probe.PROMPTS, greedy_probe.image_prompt("Read the text.", (56, 84), (240, 240, 240))]


def tokens(rollouts):
    return [r.response_ids.tolist() for r in rollouts]


@pytest.fixture(scope="module")
def engines():
    """The tiny Qwen2-VL policy and both backends on it (one vLLM engine per test process)."""
    torch.manual_seed(0)
    model, processor = build_tiny_model("qwen2_vl", seed=0)
    vllm = VLLMRolloutBackend(model, processor, max_batch_size=16, record_logprobs=True)
    hf = HFRolloutBackend(model, processor, max_batch_size=16, record_logprobs=True)
    yield model, processor, vllm, hf
    vllm.close()


def test_this_environment_runs_the_cpu_build():
    assert torch.cuda.is_available() or vllm_cpu_build()


def test_greedy_responses_are_the_hf_backends(engines):
    _, _, vllm, hf = engines
    ours = vllm.generate(PROMPTS, n=2, max_new_tokens=NEW_TOKENS, greedy=True)
    theirs = hf.generate(PROMPTS, n=2, max_new_tokens=NEW_TOKENS, greedy=True)
    assert tokens(ours) == tokens(theirs)
    assert [r.prompt_index for r in ours] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [r.clipped for r in ours] == [r.clipped for r in theirs]
    assert [r.response_text for r in ours] == [r.response_text for r in theirs]
    # The image prompts' responses differ from one another: the images reached the model.
    assert len({tuple(t) for t in tokens(ours)[::2]}) == len(PROMPTS)


@pytest.mark.parametrize("arch", ["qwen2_5_vl", "qwen3_vl"])
def test_greedy_responses_of_the_other_architectures(arch):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.vllm.greedy_probe", arch]
    probe = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert probe.returncode == 0, probe.stderr[-3000:]
    responses = json.loads(probe.stdout.strip().splitlines()[-1])
    assert responses["vllm"] == responses["hf"]
    assert len({tuple(tokens) for tokens in responses["vllm"]}) == 3  # each prompt its own response


def test_sampled_logprobs_are_the_trainers(engines):
    model, processor, vllm, _ = engines
    rollouts = vllm.generate(PROMPTS, n=4, max_new_tokens=NEW_TOKENS, temperature=1.0, seed=3)
    assert len(rollouts) == 16
    recomputed = recompute_logprobs(
        model, rollouts, pad_token_id=processor.tokenizer.pad_token_id, micro_batch_size=8
    )
    for rollout, trainer_logprobs in zip(rollouts, recomputed, strict=True):
        difference = rollout.logprobs - trainer_logprobs
        # vLLM's softmax leaves out the vision tokens (logit bias -100), so each of its
        # log-probs is a little higher; stale or wrong weights would be off by far more.
        assert difference.min() > -1e-3, difference
        assert difference.max() < 0.02, difference


def test_a_seed_repeats_its_samples_and_another_does_not(engines):
    _, _, vllm, _ = engines
    first = vllm.generate(PROMPTS, n=3, max_new_tokens=NEW_TOKENS, seed=11)
    again = vllm.generate(PROMPTS, n=3, max_new_tokens=NEW_TOKENS, seed=11)
    other = vllm.generate(PROMPTS, n=3, max_new_tokens=NEW_TOKENS, seed=12)
    assert tokens(first) == tokens(again)
    assert tokens(first) != tokens(other)
    # The samples of a prompt are not copies of one another.
    assert len({tuple(t) for t in tokens(first)[:3]}) > 1


@pytest.mark.parametrize("part", ["model.visual.", "model.language_model."])
def test_an_update_reaches_the_engine(engines, part):
    model, _, vllm, hf = engines
    before = tokens(vllm.generate(PROMPTS, n=1, max_new_tokens=NEW_TOKENS, greedy=True))
    saved = {name: p.detach().clone() for name, p in model.named_parameters()}
    generator = torch.Generator().manual_seed(5)
    try:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.startswith(part) and param.dim() > 1:
                    param.add_(torch.randn(param.shape, generator=generator) * param.std())
        after = vllm.generate(PROMPTS, n=1, max_new_tokens=NEW_TOKENS, greedy=True)
        assert tokens(after) == tokens(hf.generate(PROMPTS, n=1, max_new_tokens=NEW_TOKENS, greedy=True))
        changed = [b != a for b, a in zip(before, tokens(after), strict=True)]
        if part == "model.visual.":
            # A new vision tower changes what the image prompts see, and only them.
            assert changed == [True, False, True, True]
        else:
            assert all(changed)
    finally:
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(saved[name])
    restored = tokens(vllm.generate(PROMPTS, n=1, max_new_tokens=NEW_TOKENS, greedy=True))
    assert restored == before


ENGINES = {
    "one process": [],
    # Two FSDP workers on a Ray instance of the run's own: each has its engine, and a worker
    # without prompts in a step (2 prompts, greedy evaluation of 1 row a source) still joins
    # the gathering of the sharded weights that the other's push runs.
    "two fsdp workers on ray": [
        "engine.kind=ray",
        "engine.workers=2",
        "engine.cpus_per_worker=1",
        "engine.sharding=fsdp",
        "engine.timeout_s=120",
    ],
}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_training_run_with_the_vllm_backend(tmp_path, engine):
    def trainer(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "trainer", *args]
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)

    synth = trainer("synth", "--out", str(tmp_path / "synth"), "--per-source", "4", "--image-size", "56")
    assert synth.returncode == 0, synth.stderr
    overrides = [
        f"data.root={tmp_path / 'synth'}",
        "rollout.backend=vllm",
        "rollout.prompts_per_step=2",
        "rollout.n=2",
        "rollout.max_response_length=12",
        "total_steps=2",
        "eval.every=2",
        "eval.max_samples_per_source=1",
        "reward.workers=1",
        *ENGINES[engine],
    ]
    sets = [arg for override in overrides for arg in ("--set", override)]
    out = tmp_path / "out"
    run = trainer("train", "--config", "tiny-cpu-demo", *sets, "--output-dir", str(out), "--threads", "1")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert any(line.startswith("train: finished 2 step(s) in ") for line in run.stdout.splitlines())
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    points = [point for point in map(json.loads, lines) if "event" not in point]
    global_lengths = [p for p in points if p["key"] == "response_length/mean" and p["source"] is None]
    lengths = {p["step"]: p["value"] for p in global_lengths}
    assert sorted(lengths) == [1, 2] and all(0 < value <= 12 for value in lengths.values())

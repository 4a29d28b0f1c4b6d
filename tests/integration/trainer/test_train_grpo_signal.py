"""The learning-signal metrics of a real tiny step, and dynamic sampling (``algo.dynamic_sampling``).

The tiny model generates and updates for real; the scorer is replaced by one that hands out
rewards from a script, so that the groups' rewards (and the expected metrics) are known.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

import trainer.engine.loop as loop
from trainer.config import build_run_spec, config_from_dict
from trainer.engine import Session, open_session, run_loop
from trainer.engine.step import StepResult, train_step
from trainer.monitor import LengthBaseline
from trainer.rewards import RewardRequest, RewardResult

from .conftest import small_config

KEYS = ("grpo/frac_zero_std", "grpo/reward_std", "grpo/adv_abs_mean", "response_length/drift")


class ScriptedScorer:
    """Final rewards taken in turn from ``script`` (one list per call, the last one repeated)."""

    def __init__(self, *script: Sequence[float]) -> None:
        self.script = [list(rewards) for rewards in script]
        self.calls = 0

    def score(self, items: Sequence[RewardRequest]) -> list[RewardResult]:
        rewards = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        values = [rewards[i % len(rewards)] for i in range(len(items))]
        return [RewardResult({"accuracy_reward": v, "format_reward": 0.0, "final_reward": v}) for v in values]

    def close(self) -> None:
        pass


@pytest.fixture
def session_with(synth_dir: Path, tmp_path: Path, monkeypatch):
    """``open(scorer, **sections)``: a session of the small config whose scorer is ``scorer``."""
    opened: list[Session] = []

    def open_(scorer: ScriptedScorer, **sections) -> Session:
        monkeypatch.setattr(loop, "build_scorer", lambda *args: scorer)
        config = config_from_dict(small_config(synth_dir, **sections))
        spec = build_run_spec(config, run_id="signal-test")
        session = open_session(config, list(spec.sources), output_dir=tmp_path / "out", checkpoints=False)
        opened.append(session)
        return session

    yield open_
    for session in opened:
        session.close()


def _groups(result: StepResult, source: str | None) -> dict[int, list[float]]:
    groups: dict[int, list[float]] = {}
    for rollout, reward in zip(result.rollouts, result.results, strict=True):
        if source is None or result.items[rollout.prompt_index].source == source:
            groups.setdefault(rollout.prompt_index, []).append(reward.rewards["final_reward"])
    return groups


def _expected(result: StepResult, source: str | None) -> dict[str, float]:
    """The three group statistics recomputed by hand from the step's own rewards."""
    groups = _groups(result, source)
    rewards = torch.tensor([r.rewards["final_reward"] for r in result.results])
    ids = [r.prompt_index for r in result.rollouts]
    advantages = []
    for g, members in groups.items():
        index = [i for i, gid in enumerate(ids) if gid == g]
        values = rewards[index]
        std = float(values.std()) if len(index) > 1 else 0.0  # unbiased, as the update's advantage
        constant = len(set(members)) == 1
        advantages += [0.0 if constant else abs(float(v - values.mean())) / (std + 1e-6) for v in values]
    return {
        "grpo/frac_zero_std": sum(len(set(m)) == 1 for m in groups.values()) / len(groups),
        "grpo/reward_std": statistics.fmean(statistics.pstdev(m) for m in groups.values()),
        "grpo/adv_abs_mean": statistics.fmean(advantages),
    }


def test_a_step_reports_the_learning_signal_per_source_and_for_all(session_with) -> None:
    # 4 prompts x 3 responses, in prompt order: (1, 0, 0) mixed, (0.5, 0.5, 0.5) constant,
    # (0, 0, 1) mixed, (1, 1, 1) constant
    scorer = ScriptedScorer([1.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    session = session_with(scorer, rollout={"prompts_per_step": 4, "n": 3, "max_response_length": 8})
    first = train_step(session.state, session.runtime)
    sources = sorted({item.source for item in first.items})
    for source in [*sources, None]:
        for key in KEYS:
            assert (source, key) in first.metrics, f"{key} of {source} is missing"
        expected = _expected(first, source)
        for key, value in expected.items():
            assert first.metrics[(source, key)] == pytest.approx(value, abs=1e-5), (source, key)
        assert first.metrics[(source, "response_length/drift")] == 0.0  # the first step is the baseline
    # over the whole step, by hand: 2 of 4 groups constant; population std of (1, 0, 0) is
    # sqrt(2)/3 = 0.471405 for both mixed groups -> (2 * 0.471405) / 4; a mixed group's
    # advantages are 2/sqrt(3) = 1.154700 once and 1/sqrt(3) = 0.577350 twice -> 2 * 2.309401 / 12
    assert first.metrics[(None, "grpo/frac_zero_std")] == 0.5
    assert first.metrics[(None, "grpo/reward_std")] == pytest.approx(0.235702, abs=1e-6)
    assert first.metrics[(None, "grpo/adv_abs_mean")] == pytest.approx(0.384900, abs=1e-5)

    second = train_step(session.state, session.runtime)
    lengths = [r.response_length for r in first.rollouts + second.rollouts]
    baseline = sum(lengths) / len(lengths)  # both steps are among the first five
    now = statistics.fmean(r.response_length for r in second.rollouts)
    assert second.metrics[(None, "response_length/drift")] == pytest.approx(now - baseline)
    assert session.state.length_baselines[None] == LengthBaseline(len(lengths), sum(lengths), 2)


def test_the_length_baselines_are_checkpointed_and_restored(synth_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(
        small_config(synth_dir, reward={"workers": 1}, checkpoint={"every": 1, "keep_last": 1})
    )
    sources = list(build_run_spec(config, run_id="drift").sources)
    with open_session(config, sources, output_dir=tmp_path / "out") as session:
        run_loop(session, max_steps=2)
        saved = dict(session.state.length_baselines)
    assert saved[None].steps == 2
    with open_session(config, sources, output_dir=tmp_path / "out", resume="latest") as resumed:
        assert resumed.state.step == 2
        assert resumed.state.length_baselines == saved
        # a state saved before the drift metric existed starts its baselines afresh
        older = resumed.state.state_dict()
        del older["length_baselines"]
        resumed.state.load_state_dict(older)
        assert resumed.state.length_baselines == {}


# -- dynamic sampling ----------------------------------------------------------------------------

DYNAMIC = {"dynamic_sampling": {"enabled": True, "max_retries": 2}}


def _weights(session: Session) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in session.state.policy.model.state_dict().items()}


def _unchanged(session: Session, before: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(before[k], v) for k, v in session.state.policy.model.state_dict().items())


def test_groups_that_stay_constant_are_refilled_then_dropped(session_with) -> None:
    scorer = ScriptedScorer([0.0])  # every group of every round: no signal
    session = session_with(scorer, algo=DYNAMIC)
    before = _weights(session)
    result = train_step(session.state, session.runtime)
    assert scorer.calls == 3  # the step's prompts, then two rounds of refills
    assert len(result.items) == 2 + 2 + 2
    first = [item.source for item in result.items[:2]]
    assert [item.source for item in result.items[2:4]] == first  # each refill of its group's source
    assert [item.source for item in result.items[4:]] == first
    assert session.state.sampler.draws == 2  # refills are not mixture draws
    metrics = result.metrics
    assert metrics[(None, "grpo/groups_refilled")] == 4.0
    assert metrics[(None, "grpo/groups_dropped")] == 2.0
    for source in set(first):
        assert metrics[(source, "grpo/groups_refilled")] == 2.0 * first.count(source)
        assert metrics[(source, "grpo/groups_dropped")] == 1.0 * first.count(source)
    assert metrics[(None, "count")] == 12.0  # every response sampled: 6 groups of 2
    assert metrics[(None, "grpo/frac_zero_std")] == 1.0
    assert metrics[(None, "actor/optimizer_steps")] == 0.0  # nothing left to train on
    assert metrics[(None, "actor/skipped_steps")] == 0.0 and session.state.nan_streak == 0
    assert _unchanged(session, before)
    assert session.state.step == 1


def test_a_refill_with_a_signal_replaces_the_constant_group(session_with) -> None:
    # first round: (0, 0) and (1, 1), both constant; the refills: (1, 0) and (1, 0)
    scorer = ScriptedScorer([0.0, 0.0, 1.0, 1.0], [1.0, 0.0])
    session = session_with(scorer, algo=DYNAMIC)
    before = _weights(session)
    result = train_step(session.state, session.runtime)
    assert scorer.calls == 2 and len(result.items) == 4
    assert result.metrics[(None, "grpo/groups_refilled")] == 2.0
    assert result.metrics[(None, "grpo/groups_dropped")] == 0.0
    assert result.metrics[(None, "grpo/frac_zero_std")] == 0.5  # 2 of the 4 groups sampled
    assert result.metrics[(None, "actor/optimizer_steps")] == 1.0
    assert not _unchanged(session, before)


def test_no_retries_only_drops(session_with) -> None:
    scorer = ScriptedScorer([0.0, 0.0, 1.0, 0.0])  # group 0 constant, group 1 mixed
    session = session_with(scorer, algo={"dynamic_sampling": {"enabled": True, "max_retries": 0}})
    result = train_step(session.state, session.runtime)
    assert scorer.calls == 1 and len(result.items) == 2
    assert result.metrics[(None, "grpo/groups_refilled")] == 0.0
    assert result.metrics[(None, "grpo/groups_dropped")] == 1.0
    assert result.metrics[(result.items[0].source, "grpo/groups_dropped")] == 1.0
    assert result.metrics[(None, "actor/optimizer_steps")] == 1.0  # group 1 is trained on


def test_off_changes_nothing(session_with) -> None:
    scorer = ScriptedScorer([0.0])
    session = session_with(scorer, algo={"dynamic_sampling": {"enabled": False, "max_retries": 2}})
    result = train_step(session.state, session.runtime)
    assert scorer.calls == 1 and len(result.items) == 2 and session.state.sampler.draws == 2
    assert not any(key.startswith("grpo/groups_") for _, key in result.metrics)
    assert result.metrics[(None, "grpo/frac_zero_std")] == 1.0
    assert result.metrics[(None, "actor/optimizer_steps")] == 1.0  # the update runs, as it always did

"""Verifiers that misbehave on purpose, imported by the pool's workers in the pool tests."""

from __future__ import annotations

import os
import time

from trainer.rewards import Verifier, register_verifier


class _Base(Verifier):
    def validate(self, reward_model):
        pass


@register_verifier("test_sleep")
class Sleep(_Base):
    """Sleeps ``ground_truth`` seconds."""

    def score(self, response, reward_model, context):
        time.sleep(float(reward_model["ground_truth"]))
        return {"accuracy_reward": 1.0, "format_reward": 0.0}


@register_verifier("test_crash")
class Crash(_Base):
    """Kills its process, as a segfault in a C extension would."""

    def score(self, response, reward_model, context):
        os._exit(3)


@register_verifier("test_hog")
class Hog(_Base):
    """Allocates ``ground_truth`` MiB."""

    def score(self, response, reward_model, context):
        block = bytearray(int(reward_model["ground_truth"]) * 1024 * 1024)
        return {"accuracy_reward": float(len(block) > 0), "format_reward": 0.0}


@register_verifier("test_pid")
class Pid(_Base):
    """Reports the worker's process id."""

    extra_keys = ("pid_reward",)

    def score(self, response, reward_model, context):
        return {"accuracy_reward": 1.0, "format_reward": 0.0, "pid_reward": float(os.getpid())}

"""The alert rules every project starts with: what V-Triune's per-source monitoring exists to catch.

Each is an ordinary rule (``builtin`` names it), so it can be switched off or tuned; deleting one
and asking for the defaults again brings it back as it was.
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser

from control.models import AlertRule, Project

# builtin -> the rule's fields, and a hint (where to look) added to its messages.
DEFAULT_RULES: dict[str, dict] = {
    "reward_drop": {
        "name": "final reward drop",
        "kind": "change",
        "key": "reward/final",
        "condition": "drop",
        "change_by": "fraction",
        "threshold": 0.5,
        "window": 10,
        "warmup": 10,
        "severity": "warning",
        "auto_resolve_steps": 10,
    },
    "truncation": {
        "name": "responses truncated",
        "kind": "threshold",
        "key": "response_length/clip_ratio",
        "condition": "above",
        "threshold": 0.5,
        "window": 3,
        "severity": "warning",
        "auto_resolve_steps": 5,
    },
    "length_explosion": {
        "name": "response length explosion",
        "kind": "change",
        "key": "response_length/mean",
        "condition": "rise",
        "change_by": "mad",
        "threshold": 8.0,
        "window": 20,
        "warmup": 10,
        "severity": "warning",
        "auto_resolve_steps": 10,
    },
    "reward_errors": {
        "name": "reward errors",
        "kind": "rate",
        "key": "reward_errors",
        "denominator_key": "count",
        "condition": "above",
        "threshold": 0.01,
        "window": 1,
        "severity": "error",
        "auto_resolve_steps": 5,
    },
    "non_finite": {
        "name": "non-finite loss or gradient",
        "kind": "not_finite",
        "key": "actor/*",
        "source": "",
        "condition": "not_finite",
        "severity": "error",
    },
    "vision_grad_spike": {
        "name": "vision gradient spike",
        "kind": "change",
        "key": "grad_norm/vision.*",
        "condition": "rise",
        "combine": "max",
        "change_by": "mad",
        "threshold": 10.0,
        "window": 20,
        "warmup": 10,
        "severity": "warning",
        "auto_resolve_steps": 10,
    },
    "language_grad_spike": {
        "name": "language gradient spike",
        "kind": "change",
        "key": "grad_norm/language.*",
        "condition": "rise",
        "combine": "max",
        "change_by": "mad",
        "threshold": 10.0,
        "window": 20,
        "warmup": 10,
        "severity": "warning",
        "auto_resolve_steps": 10,
    },
    "stalled": {
        "name": "run stalled",
        "kind": "stall",
        "stall_minutes": 15,
        "severity": "warning",
    },
    "failed": {
        "name": "run failed or lost",
        "kind": "lifecycle",
        "lifecycle_states": ["failed", "lost"],
        "severity": "error",
    },
}

HINTS: dict[str, str] = {
    "reward_drop": "see Per source → Rewards and the IoU threshold section",
    "truncation": "see Per source → Response length; raise rollout.max_response_length or check the prompt",
    "length_explosion": "see Per source → Response length and the source's truncation",
    "reward_errors": "see System → reward errors and the job's log for verifier timeouts",
    "non_finite": "see Optimisation; the job's log shows where the loss diverged",
    "vision_grad_spike": "see Optimisation → Gradient norm per layer (vision)",
    "language_grad_spike": "see Optimisation → Gradient norm per layer (language)",
    "stalled": "see the job's log and the Ray dashboard",
    "failed": "see the run's error and its log",
}


def alert_defaults_ensure(*, project: Project, user: AbstractBaseUser | None) -> list[AlertRule]:
    """Create the built-in rules the project lacks (by ``builtin``); returns those created.

    A name already taken by a rule of the user's own is left alone (the default is skipped).
    """
    have = set(project.alert_rules.exclude(builtin="").values_list("builtin", flat=True))
    names = set(project.alert_rules.values_list("name", flat=True))
    created = []
    for builtin, fields in DEFAULT_RULES.items():
        if builtin in have or fields["name"] in names:
            continue
        created.append(AlertRule.objects.create(project=project, created_by=user, builtin=builtin, **fields))
    return created

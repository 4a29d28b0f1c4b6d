"""Writes of compute targets (admins only; the API checks who asks)."""

from __future__ import annotations

import re
from typing import NoReturn

from control.errors import Conflict, DomainError
from control.models import ComputeTarget, Run

# The runtime_env keys a job may be given (Ray's RuntimeEnv); anything else is a typo.
RUNTIME_ENV_KEYS = ("env_vars", "pip", "conda", "working_dir", "py_modules", "container", "image_uri")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_runtime_env(runtime_env: dict) -> None:
    unknown = sorted(str(key) for key in runtime_env if key not in RUNTIME_ENV_KEYS)
    if unknown:
        message = (
            f"runtime_env key {unknown[0][:100]!r} is not allowed; runtime_env may hold "
            f"{', '.join(RUNTIME_ENV_KEYS)}"
        )
        raise DomainError(message, fields={"runtime_env": [message]})
    env_vars = runtime_env.get("env_vars", {})
    # Ray takes env_vars as a mapping of names to strings; anything else fails every submission.
    if not isinstance(env_vars, dict) or not all(
        isinstance(key, str) and ENV_NAME.match(key) and isinstance(value, str)
        for key, value in env_vars.items()
    ):
        message = (
            'runtime_env.env_vars must map environment variable names to strings, e.g. {"HF_HOME": "/cache"}'
        )
        raise DomainError(message, fields={"runtime_env": [message]})


def _address_required() -> NoReturn:
    message = "a registered cluster needs the address of its Ray Jobs API, e.g. http://ray-head:8265"
    raise DomainError(message, fields={"address": [message]})


def compute_target_save(*, target: ComputeTarget | None, **fields: object) -> ComputeTarget:
    """Create a target (``target`` None) or change one; the local target keeps its name and address.

    Runs name their target, so a target whose runs have not ended keeps its name; and only the
    local target has no address (an empty address is what makes a target local).
    """
    runtime_env = fields.get("runtime_env")
    if runtime_env is not None:
        _check_runtime_env(runtime_env)
    if target is None:
        name = str(fields.get("name", ""))
        if ComputeTarget.objects.filter(name=name).exists():
            message = f"a compute target named {name!r} exists already; choose another name"
            raise Conflict(message, fields={"name": [message]})
        if not fields.get("address"):
            _address_required()
        return ComputeTarget.objects.create(**fields)
    if target.name == ComputeTarget.LOCAL and (
        fields.get("name", target.name) != target.name or fields.get("address")
    ):
        raise Conflict("the local target's name and address are fixed (it is the head ./triune up starts)")
    if target.name != ComputeTarget.LOCAL and "address" in fields and not fields["address"]:
        _address_required()
    if "name" in fields and fields["name"] != target.name:
        if ComputeTarget.objects.filter(name=fields["name"]).exists():
            message = f"a compute target named {fields['name']!r} exists already; choose another name"
            raise Conflict(message, fields={"name": [message]})
        in_use = Run.objects.filter(compute_target=target.name).exclude(status__in=Run.TERMINAL).count()
        if in_use:
            raise Conflict(
                f"{in_use} run(s) that have not ended name compute target {target.name!r}; wait for them or "
                "cancel them before renaming it"
            )
    for name, value in fields.items():
        setattr(target, name, value)
    target.save()
    return target

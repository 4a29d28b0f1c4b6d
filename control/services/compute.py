"""Writes of compute targets (admins only; the API checks who asks)."""

from __future__ import annotations

from control.errors import Conflict, DomainError
from control.models import ComputeTarget


def compute_target_save(*, target: ComputeTarget | None, **fields: object) -> ComputeTarget:
    """Create a target (``target`` None) or change one; the local target keeps its name and address."""
    runtime_env = fields.get("runtime_env")
    if runtime_env is not None and not all(
        key in {"env_vars", "pip", "conda", "working_dir", "py_modules", "container", "image_uri"}
        for key in runtime_env
    ):
        raise DomainError(
            "runtime_env may hold env_vars, pip, conda, working_dir, py_modules, container or image_uri",
            fields={"runtime_env": ["unknown key"]},
        )
    if target is None:
        name = str(fields.get("name", ""))
        if ComputeTarget.objects.filter(name=name).exists():
            raise Conflict(f"a compute target named {name!r} exists already", fields={"name": ["taken"]})
        if not fields.get("address"):
            raise DomainError(
                "a registered cluster needs the address of its Ray Jobs API (http://head:8265)",
                fields={"address": ["required"]},
            )
        return ComputeTarget.objects.create(**fields)
    if target.name == ComputeTarget.LOCAL and (
        fields.get("name", target.name) != target.name or fields.get("address")
    ):
        raise Conflict("the local target's name and address are fixed (it is the head ./triune up starts)")
    if "name" in fields and fields["name"] != target.name:
        if ComputeTarget.objects.filter(name=fields["name"]).exists():
            raise Conflict(f"a compute target named {fields['name']!r} exists already")
    for name, value in fields.items():
        setattr(target, name, value)
    target.save()
    return target

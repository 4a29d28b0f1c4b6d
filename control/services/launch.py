"""From a run in the database to a Ray job: the trainer config, the checks, the submission.

The run's config is the preset with the run's data sources (their stored files as fsspec
URIs) and the user's overrides on top, validated by the trainer's own schema, so the platform
refuses exactly what the trainer would refuse, and names the field (``config.algo.lr``).
"""

from __future__ import annotations

import copy
import shlex
from typing import Any, NoReturn

from django.conf import settings

from control.errors import DomainError
from control.models import ComputeTarget, Run
from control.ray_jobs import RayTarget, read_token
from control.storage import fs_path, join, storage, storage_uri

SUBMIT_TASK = "workers.tasks.run_submit"
STOP_TASK = "workers.tasks.run_stop"
RUN_TOKEN_ENV = "TRIUNE_RUN_TOKEN"
# Sections of a run's config the platform owns: the sources come from the run itself.
PLATFORM_FIELDS = {
    ("data", "sources"): "set the run's sources (and their weights) instead of config.data.sources",
    ("data", "root"): "the run's sources carry their own file URIs; remove config.data.root",
    ("tracking", "http"): "the platform sets config.tracking.http for its runs; remove it",
    ("output_dir",): "the platform puts a run's output under its storage folder; remove config.output_dir",
    ("total_steps",): "set the run's total_steps field instead of config.total_steps",
}
# Longest field name an error names: a config key may be kilobytes long.
FIELD_NAME_MAX = 200


class LaunchError(DomainError):
    """A run that cannot be launched; ``fields`` names every offending field."""


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: mappings merge key by key, anything else replaces.

    >>> deep_merge({"algo": {"lr": 1, "n": 2}}, {"algo": {"lr": 3}})
    {'algo': {'lr': 3, 'n': 2}}
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def run_folder(run: Run) -> str:
    """The run's folder in storage (a path of the storage filesystem)."""
    _, root = storage()
    return join(root, "runs", str(run.pk))


def run_output_dir(run: Run) -> str:
    """Where the job writes checkpoints, metric files and its exported model."""
    return join(run_folder(run), "output")


def run_output_location(run: Run) -> str:
    """The run's output folder as the trainer is given it: a path on local storage, else a URI
    (``s3://bucket/runs/7/output``) that the job's nodes reach through fsspec."""
    path = run_output_dir(run)
    if fs_path(settings.STORAGE_URL) is not None:
        return path
    fs, _ = storage()
    return storage_uri(fs, path)


def submission_id(run: Run) -> str:
    """Ray's id of the run's current attempt: a retried submission reuses it, so Ray refuses a second job."""
    return f"triune-run-{run.pk}-attempt-{run.attempt}"


def compute_target_get(name: str) -> ComputeTarget:
    """The compute target ``name``, enabled or not: a disabled target still stops and reconciles its runs.

    ``local`` always exists: it is recreated if its row was deleted.
    """
    if name == ComputeTarget.LOCAL:
        ComputeTarget.objects.get_or_create(
            name=name, defaults={"description": "The Ray head started by ./triune up (or RAY_ADDRESS)."}
        )
    target = ComputeTarget.objects.filter(name=name).first()
    if target is None:
        _refuse_target(f"compute target {name!r} does not exist")
    return target


def compute_target_for_launch(name: str) -> ComputeTarget:
    """The compute target a run is launched on: it must exist and be enabled."""
    target = compute_target_get(name)
    if not target.enabled:
        _refuse_target(f"compute target {name!r} is disabled")
    return target


def _refuse_target(problem: str) -> NoReturn:
    names = ", ".join(ComputeTarget.objects.filter(enabled=True).values_list("name", flat=True))
    message = f"{problem}; choose one of: {names or '(none enabled)'}"
    raise LaunchError(message, fields={"compute_target": [message]})


def ray_target(target: ComputeTarget) -> RayTarget:
    """Address and credentials of a compute target's Jobs API."""
    if target.is_local:
        token = read_token(env_var="RAY_AUTH_TOKEN", token_path=settings.RAY_AUTH_TOKEN_PATH)
        return RayTarget.create(settings.TRIUNE_RAY_JOBS_URL, token)
    return RayTarget.create(target.address, read_token(env_var=target.auth_token_env))


def target_offers(target: ComputeTarget) -> dict[str, float]:
    """CPUs and GPUs a target offers; the local head's come from TRIUNE_RAY_CPUS/GPUS."""
    offered = {k.upper(): float(v) for k, v in (target.resources or {}).items() if _is_number(v)}
    if target.is_local:
        import os

        offered.setdefault("CPU", settings.TRIUNE_RAY_CPUS or float(os.cpu_count() or 1))
        offered.setdefault("GPU", settings.TRIUNE_RAY_GPUS)
    return offered


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _config_problems_to_fields(problems) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for item in problems:
        name = f"config.{item.field}" if item.field else "config"
        if item.field.startswith("data.sources"):
            # The platform writes data.sources from the run's sources: file problems are theirs.
            name = "sources"
        if len(name) > FIELD_NAME_MAX:
            # An unknown key of a user's config is echoed in its field name: keep an error short.
            name = name[: FIELD_NAME_MAX - 3] + "..."
        fields.setdefault(name, []).append(item.message)
    return fields


def _platform_field_problems(config: dict) -> dict[str, list[str]]:
    """Platform-owned fields the user's overrides set, even to null (the platform sets them all)."""
    fields: dict[str, list[str]] = {}
    for path, message in PLATFORM_FIELDS.items():
        node: Any = config
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and path[-1] in node:
            fields["config." + ".".join(path)] = [message]
    return fields


def _source_entries(run: Run) -> tuple[list[dict], dict[str, list[str]]]:
    entries: list[dict] = []
    fields: dict[str, list[str]] = {}
    for item in run.run_sources.select_related("data_source").order_by("id"):
        source = item.data_source
        files = source.files or {}
        train, test = list(files.get("train") or []), list(files.get("test") or [])
        if source.train_count == 0 or not train:
            fields.setdefault("sources", []).append(
                f"data source {source.name!r} (id {source.pk}) has no train rows; choose a source with a "
                "train split"
            )
            continue
        entries.append({"name": source.name, "weight": item.weight, "train": train, "test": test})
    return entries, fields


def run_config_data(run: Run) -> dict[str, Any]:
    """The preset with the run's sources and overrides, before validation (raises LaunchError)."""
    from trainer.config import ConfigError
    from trainer.config.loader import read_config_data

    overrides = run.config or {}
    fields = _platform_field_problems(overrides)
    entries, source_fields = _source_entries(run)
    fields.update(source_fields)
    if fields:
        raise LaunchError(_summary(fields), fields=fields)
    try:
        data = read_config_data(run.preset)
    except ConfigError as exc:
        raise LaunchError(str(exc), fields={"preset": [str(exc)]}) from None
    data.setdefault("data", {})
    data["data"]["sources"] = entries
    data["data"]["root"] = None
    data = deep_merge(data, overrides)
    data["total_steps"] = run.total_steps
    data["output_dir"] = run_output_location(run)
    return data


def preset_defaults(preset: str) -> dict[str, Any]:
    """The preset's whole config with the schema's defaults filled in, as JSON values.

    What a run's ``config`` overrides start from: the launch form shows these and keeps only
    the fields that differ. Placeholders (``<path/to/...>``) are left in; the launch check names them.
    """
    from trainer.config import ConfigError, config_from_dict, known_presets
    from trainer.config.loader import read_config_data

    if preset not in known_presets():
        # A name only: read_config_data would also open a file path.
        message = f"preset must be one of {', '.join(known_presets())}, got {preset[:100]!r}"
        raise LaunchError(message, fields={"preset": [message]})
    try:
        return config_from_dict(read_config_data(preset), preset).model_dump(mode="json")
    except ConfigError as exc:
        raise LaunchError(str(exc), fields={"preset": [str(exc)]}) from None


def run_train_config(run: Run):
    """The validated trainer config of ``run``; :class:`LaunchError` names every problem."""
    from trainer.config import ConfigError, config_from_dict

    data = run_config_data(run)
    try:
        return config_from_dict(data, f"run {run.pk}")
    except ConfigError as exc:
        fields = _config_problems_to_fields(exc.problems)
        raise LaunchError(_summary(fields), fields=fields) from None


def _summary(fields: dict[str, list[str]]) -> str:
    parts = [f"{name}: {messages[0]}" for name, messages in list(fields.items())[:5]]
    more = len(fields) - len(parts)
    return "the run cannot be launched: " + "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _training_workers(config) -> dict[str, float]:
    """CPUs and GPUs the run's training workers reserve besides its entrypoint (engine.kind ray)."""
    engine = config.engine
    if engine.kind != "ray":
        return {"CPU": 0.0, "GPU": 0.0}
    return {"CPU": engine.workers * engine.cpus_per_worker, "GPU": engine.workers * engine.gpus_per_worker}


def run_launch_check(run: Run):
    """Every launch-time check of ``run``; returns (config, target) or raises LaunchError."""
    from trainer.config import ConfigError, build_run_spec

    if not 1 <= run.total_steps <= 10_000_000:
        message = f"total_steps must be between 1 and 10000000, got {run.total_steps}"
        raise LaunchError(message, fields={"total_steps": [message]})
    target = compute_target_for_launch(run.compute_target)
    config = run_train_config(run)
    fields: dict[str, list[str]] = {}
    wants_eval = config.eval.every > 0 or config.eval.before_training
    if wants_eval and config.data.test_fraction == 0:
        for source in config.data.sources:
            if not source.test:
                fields.setdefault("sources", []).append(
                    f"evaluation is on but data source {source.name!r} has no test split; set "
                    "config.eval.every=0 and config.eval.before_training=false, or config.data.test_fraction "
                    "> 0 to hold out train rows, or choose sources with a test split"
                )
    offered = target_offers(target)
    workers = _training_workers(config)
    for resource, asked in (("CPU", run.num_cpus), ("GPU", run.num_gpus)):
        have = offered.get(resource)
        if have is None:
            continue
        field = "num_gpus" if resource == "GPU" else "num_cpus"
        if asked > have:
            fields[field] = [
                f"the run asks for {asked:g} {resource}(s) but compute target {target.name!r} offers "
                f"{have:g}; set {field} to at most {have:g} or choose a compute target that offers more"
            ]
        elif asked + workers[resource] > have:
            per = "cpus_per_worker" if resource == "CPU" else "gpus_per_worker"
            fields["config.engine.workers"] = [
                f"the run's entrypoint holds {asked:g} {resource}(s) and its {config.engine.workers} "
                f"training workers {workers[resource]:g}, {asked + workers[resource]:g} in all, but compute "
                f"target {target.name!r} offers {have:g}; lower {field}, config.engine.workers or "
                f"config.engine.{per}"
            ]
    fields.update(_config_problems_to_fields(_model_path_problems(config, target)))
    if fields:
        raise LaunchError(_summary(fields), fields=fields)
    try:
        build_run_spec(
            config, run_id=str(run.pk), platform_url=settings.TRIUNE_JOB_PLATFORM_URL, check_model=False
        )
    except ConfigError as exc:
        fields = _config_problems_to_fields(exc.problems)
        raise LaunchError(_summary(fields), fields=fields) from None
    return config, target


def _model_path_problems(config, target: ComputeTarget) -> list:
    """``model.path`` checks: all of them on the local target, only the placeholder on a remote one.

    A checkpoint on a remote cluster's nodes cannot be looked at from here (the job reports a
    missing one), but a placeholder left from a preset (``<path/to/...>``, the rule of
    ``trainer.config.runspec``) is wrong on every cluster.
    """
    from trainer.config import check_model_path

    problems = check_model_path(config)
    if target.is_local:
        return problems
    path = config.model.path
    return problems if "<" in path and ">" in path else []


def run_spec_write(run: Run, config) -> str:
    """Write the run spec under the run's folder (atomically) and return its URI."""
    from trainer.config import build_run_spec

    spec = build_run_spec(
        config, run_id=str(run.pk), platform_url=settings.TRIUNE_JOB_PLATFORM_URL, check_model=False
    )
    fs, _ = storage()
    folder = run_folder(run)
    fs.makedirs(folder, exist_ok=True)
    path = join(folder, "spec.json")
    tmp = join(folder, f".spec.json.{run.attempt}.tmp")
    with fs.open(tmp, "w") as handle:
        handle.write(spec.to_json())
    fs.mv(tmp, path)
    return storage_uri(fs, path)


def entrypoint(run: Run, spec_uri: str) -> str:
    """``python -m trainer train --spec URI``, resuming from the newest checkpoint after attempt 1."""
    threads = max(1, int(run.num_cpus))
    parts = ["python", "-m", "trainer", "train", "--spec", spec_uri, "--threads", str(threads)]
    if run.attempt > 1:
        parts += ["--resume", "auto"]
    return shlex.join(parts)


def job_runtime_env(target: ComputeTarget, *, token: str) -> dict:
    """The target's default runtime env with the platform's URL and the run's token added."""
    env = copy.deepcopy(target.runtime_env or {})
    env_vars = dict(env.get("env_vars") or {})
    env_vars.update(
        {
            RUN_TOKEN_ENV: token,
            "TRIUNE_PLATFORM_URL": settings.TRIUNE_JOB_PLATFORM_URL,
            "HF_HUB_OFFLINE": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            # Ray sends SIGKILL this long after SIGTERM: long enough to finish the step under way,
            # save a checkpoint and flush the metrics (Ray's default of 3 s is not).
            "RAY_JOB_STOP_WAIT_TIME_S": str(int(settings.TRIUNE_JOB_STOP_WAIT_S)),
        }
    )
    env["env_vars"] = env_vars
    return env

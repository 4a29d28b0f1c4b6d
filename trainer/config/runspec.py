"""The run spec: what the platform hands a training job (``python -m trainer train --spec URI``).

A run spec is a :class:`TrainConfig` plus what the job must not work out for itself: the run
id, the concrete data files (glob patterns expanded to absolute fsspec URIs when the platform
builds it, so a job started later reads exactly the same files) and the tracking settings
(``config.tracking.http`` points at the platform). It is JSON, read through fsspec, so it can
live on local disk or S3. Tokens are never in it: the job reads them from its environment.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import fsspec
from pydantic import Field, ValidationError, model_validator

from trainer.config.errors import ConfigError, ConfigProblem, config_error_from_validation
from trainer.config.schema import (
    NAME_PATTERN,
    DataSourceConfig,
    HttpTrackingConfig,
    NonEmptyStr,
    Section,
    TrainConfig,
    problem,
)

MAX_SPEC_BYTES = 16 << 20
_GLOB_CHARS = frozenset("*?[")


class ResolvedSource(Section):
    """A data source with concrete file URIs (no patterns)."""

    name: str = Field(pattern=NAME_PATTERN, description="Name of the source in data.sources.")
    weight: float = Field(gt=0, description="Mixture weight, as in data.sources.")
    train: list[NonEmptyStr] = Field(min_length=1, description="Training file URIs, sorted.")
    test: list[NonEmptyStr] = Field(default_factory=list, description="Evaluation file URIs, sorted.")
    images: NonEmptyStr | None = Field(None, description="Base URI of JSONL image paths.")


class RunSpec(Section):
    """A run as the platform submits it; ``to_json`` and :func:`load_run_spec` round-trip it."""

    version: Literal[1] = Field(1, description="Format version of the run spec.")
    run_id: str = Field(pattern=NAME_PATTERN, description="Id of the run on the platform.")
    config: TrainConfig
    sources: list[ResolvedSource] = Field(min_length=1, description="config.data.sources, resolved.")

    @model_validator(mode="after")
    def _consistent(self) -> RunSpec:
        want = [s.name for s in self.config.data.sources]
        got = [s.name for s in self.sources]
        if want != got:
            problem("sources", f"names {got} must equal config.data.sources names {want}, in order")
        http = self.config.tracking.http
        if http is not None and http.run_id != self.run_id:
            problem(
                "config.tracking.http.run_id", f"must equal run_id ({self.run_id!r}), got {http.run_id!r}"
            )
        return self

    def to_json(self) -> str:
        """Pretty JSON that :func:`load_run_spec` reads back to an equal spec."""
        return self.model_dump_json(indent=2)


def _is_placeholder(text: str) -> bool:
    return "<" in text and ">" in text


def join_root(root: str | None, name: str) -> str:
    """``name`` under ``root`` unless it is absolute or a URI (``s3://...``, ``/data/...``)."""
    if root is None or "://" in name or name.startswith("/"):
        return name
    return f"{root.rstrip('/')}/{name}"


def resolve_uris(
    patterns: Sequence[str], field: str, root: str | None = None
) -> tuple[list[str], list[ConfigProblem]]:
    """Expand glob patterns and check plain paths exist; returns absolute URIs and the problems found.

    Relative names are taken under ``root``. Matches of one pattern are sorted, so the order
    never depends on the file system.
    """
    uris: list[str] = []
    problems: list[ConfigProblem] = []
    for index, name in enumerate(patterns):
        where = f"{field}[{index}]"
        pattern = join_root(root, name)
        try:
            fs, path = fsspec.core.url_to_fs(pattern)
        except (ImportError, ValueError) as exc:
            problems.append(ConfigProblem(where, f"cannot open {pattern!r}: {exc}"))
            continue
        if any(ch in path for ch in _GLOB_CHARS):
            matches = sorted(m for m in fs.glob(path) if fs.isfile(m))
            if not matches:
                problems.append(ConfigProblem(where, f"no file matches {pattern!r}"))
        elif fs.isfile(path):
            matches = [path]
        else:
            problems.append(ConfigProblem(where, f"file not found: {pattern!r}"))
            continue
        uris.extend(fs.unstrip_protocol(m) for m in matches)
    return uris, problems


def check_model_path(config: TrainConfig) -> list[ConfigProblem]:
    """Problems with ``model.path``: a placeholder left in, or a checkpoint directory that is missing."""
    path = config.model.path
    if config.model.is_tiny:
        return []
    if _is_placeholder(path):
        return [
            ConfigProblem(
                "model.path",
                f"{path!r} is a placeholder; override it with model.path=/path/to/checkpoint",
            )
        ]
    protocol, local = fsspec.core.split_protocol(path)
    if protocol is not None and protocol not in ("file", "local"):
        return _remote_model_problems(path)
    if not (Path(local) / "config.json").is_file():
        return [
            ConfigProblem(
                "model.path",
                f"{path!r} is not a checkpoint directory (no config.json); give a local Hugging Face "
                "checkpoint, a URI of one (s3://bucket/models/name), or tiny:<arch>:<size>",
            )
        ]
    return []


def _remote_model_problems(uri: str) -> list[ConfigProblem]:
    """A ``model.path`` URI must name a Hugging Face directory that this machine can read."""
    try:
        fs, root = fsspec.core.url_to_fs(uri)
        found = fs.isfile(f"{root.rstrip('/')}/config.json")
    except (ImportError, ValueError) as exc:  # no file system for the protocol, or a bad URI
        return [ConfigProblem("model.path", f"{uri!r} cannot be read: {exc}")]
    except Exception as exc:  # noqa: BLE001 - any store error (credentials, network) is the user's to fix
        return [ConfigProblem("model.path", f"{uri!r} cannot be read: {type(exc).__name__}: {exc}")]
    if not found:
        return [
            ConfigProblem(
                "model.path", f"{uri!r} is not a checkpoint directory (no config.json at {uri.rstrip('/')}/)"
            )
        ]
    return []


def resolve_sources(config: TrainConfig) -> tuple[list[ResolvedSource], list[ConfigProblem]]:
    """Every data source of ``config`` with its files resolved, and the problems found."""
    root = config.data.root
    if root is not None and _is_placeholder(root):
        message = f"{root!r} is a placeholder; override it with data.root=/path/to/data"
        return [], [ConfigProblem("data.root", message)]
    resolved: list[ResolvedSource] = []
    problems: list[ConfigProblem] = []
    for index, source in enumerate(config.data.sources):
        train, bad_train = resolve_uris(source.train, f"data.sources[{index}].train", root)
        test, bad_test = resolve_uris(source.test, f"data.sources[{index}].test", root)
        problems += bad_train + bad_test
        if train:
            resolved.append(_resolved(source, train, test, root))
    return resolved, problems


def _resolved(
    source: DataSourceConfig, train: list[str], test: list[str], root: str | None
) -> ResolvedSource:
    images = join_root(root, source.images) if source.images is not None else None
    return ResolvedSource(name=source.name, weight=source.weight, train=train, test=test, images=images)


def build_run_spec(
    config: TrainConfig,
    *,
    run_id: str,
    platform_url: str | None = None,
    check_model: bool = True,
) -> RunSpec:
    """Resolve ``config`` into a run spec; every missing file is reported at once.

    ``platform_url`` turns on HTTP tracking to that platform for ``run_id`` (other HTTP
    settings keep the config's values when it has them).
    """
    sources, problems = resolve_sources(config)
    if check_model:
        problems = check_model_path(config) + problems
    if problems:
        raise ConfigError(f"run {run_id}", problems)
    data = config.model_dump()
    if platform_url is not None:
        http = dict(data["tracking"].get("http") or {})
        http.update(url=platform_url, run_id=run_id)
        data["tracking"]["http"] = HttpTrackingConfig.model_validate(http).model_dump()
    payload = {"run_id": run_id, "config": data, "sources": [s.model_dump() for s in sources]}
    try:
        return RunSpec.model_validate(payload)
    except ValidationError as exc:
        raise config_error_from_validation(exc, RunSpec, f"run {run_id}") from None


def run_spec_from_json(text: str | bytes, origin: str = "<run spec>") -> RunSpec:
    """Parse and validate run-spec JSON."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(origin, [ConfigProblem("", f"is not valid JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise ConfigError(origin, [ConfigProblem("", f"must be a JSON object, got {type(data).__name__}")])
    try:
        return RunSpec.model_validate(data)
    except ValidationError as exc:
        raise config_error_from_validation(exc, RunSpec, origin) from None


def load_run_spec(uri: str) -> RunSpec:
    """Read a run spec from a path or fsspec URI (``file://``, ``s3://``, ``memory://``)."""
    try:
        with fsspec.open(uri, "rb") as handle:
            raw = handle.read(MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(uri, [ConfigProblem("", "run spec not found")]) from None
    except (ImportError, ValueError, OSError) as exc:
        raise ConfigError(uri, [ConfigProblem("", f"cannot read run spec: {exc}")]) from None
    if len(raw) > MAX_SPEC_BYTES:
        raise ConfigError(uri, [ConfigProblem("", f"run spec is larger than {MAX_SPEC_BYTES} bytes")])
    return run_spec_from_json(raw, uri)

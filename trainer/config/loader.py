"""Load a :class:`TrainConfig` from a YAML file or a named preset, with dotted CLI overrides.

YAML is read with a loader that follows YAML 1.2's core schema for scalars: ``1e-6`` is a
float (PyYAML's YAML 1.1 rules make it a string), ``yes``/``no``/``on``/``off`` stay strings,
``010`` is not octal and ``1:30`` is not sexagesimal. A key given twice in one mapping is an
error rather than a silent overwrite.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from trainer.config.errors import ConfigError, ConfigProblem, config_error_from_validation, join_path
from trainer.config.schema import TrainConfig

PRESETS_DIR = Path(__file__).resolve().parents[2] / "presets"
MAX_CONFIG_BYTES = 1 << 20


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars and duplicate-key detection."""


_Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9_]*)$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+.0123456789"),
    ),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", ["<"]),
):
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # an unhashable key fails in construct_mapping with PyYAML's own message
        if duplicate:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice (line {mark.line + 1})", mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml(text: str, origin: str) -> Any:
    """Parse YAML text with the project's scalar rules; errors name ``origin``, line and column."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader derives from SafeLoader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(exc.problem).split())
        raise ConfigError(origin, [ConfigProblem("", f"invalid YAML{where}: {problem}")]) from None
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise ConfigError(origin, [ConfigProblem("", f"invalid YAML: {problem}")]) from None


def known_presets() -> list[str]:
    """Names of the presets shipped in ``presets/`` (file names without ``.yaml``)."""
    if not PRESETS_DIR.is_dir():
        return []
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def resolve_config_path(path_or_preset: str | Path) -> Path:
    """A YAML file path as given, or the preset of that name; a clear error if neither exists."""
    path = Path(path_or_preset)
    if path.is_file():
        return path
    name = str(path_or_preset)
    if name in known_presets():
        return PRESETS_DIR / f"{name}.yaml"
    raise ConfigError(
        name,
        [
            ConfigProblem(
                "",
                f"no such file or preset: {name!r}; give a YAML file path or one of the presets: "
                f"{', '.join(known_presets()) or '(none found)'}",
            )
        ],
    )


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``"algo.lr=1e-5"`` → ``(["algo", "lr"], 1e-05)``; a number segment indexes a list.

    The value is parsed as a YAML scalar or flow collection (``[vit, connector]``, ``null``).
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError("overrides", [ConfigProblem("", f"override {text!r} must look like key=value")])
    parts: list[str | int] = []
    for segment in key.split("."):
        if not segment:
            raise ConfigError("overrides", [ConfigProblem("", f"override {text!r} has an empty key segment")])
        parts.append(int(segment) if segment.isdigit() else segment)
    return parts, parse_yaml(raw, f"override {key}")


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A deep copy of ``data`` with each ``key=value`` override set; missing sections are created."""
    result: dict[str, Any] = copy.deepcopy(dict(data))
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            here = join_path(*parts[: depth + 1])
            if isinstance(part, int):
                if not isinstance(node, list) or not 0 <= part < len(node):
                    raise ConfigError("overrides", [ConfigProblem(here, "no such list item to override")])
                node = node[part]
                continue
            if not isinstance(node, dict):
                raise ConfigError(
                    "overrides", [ConfigProblem(here, "is not a section, cannot set keys in it")]
                )
            child = node.setdefault(part, {})
            if child is None:
                child = node[part] = {}
            node = child
        last = parts[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or not 0 <= last < len(node):
                raise ConfigError(
                    "overrides", [ConfigProblem(join_path(*parts), "no such list item to override")]
                )
            node[last] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(
                "overrides",
                [ConfigProblem(join_path(*parts[:-1]), "is not a section, cannot set keys in it")],
            )
    return result


def config_from_dict(data: Any, origin: str = "<dict>") -> TrainConfig:
    """Validate a parsed config mapping; every problem is reported at once as a :class:`ConfigError`."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            origin,
            [
                ConfigProblem(
                    "", f"must be a mapping of sections (model, data, ...), got {type(data).__name__}"
                )
            ],
        )
    try:
        return TrainConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise config_error_from_validation(exc, TrainConfig, origin) from None


def read_config_data(path_or_preset: str | Path) -> dict[str, Any]:
    """The raw mapping of a config file or preset, before validation."""
    path = resolve_config_path(path_or_preset)
    return _read_mapping(path)


def _read_mapping(path: Path) -> dict[str, Any]:
    origin = str(path)
    raw = path.read_bytes()
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            origin, [ConfigProblem("", f"is {len(raw)} bytes; a config is at most {MAX_CONFIG_BYTES}")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            origin, [ConfigProblem("", f"is not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    data = parse_yaml(text, origin)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            origin,
            [
                ConfigProblem(
                    "", f"must be a mapping of sections (model, data, ...), got {type(data).__name__}"
                )
            ],
        )
    return data


def load_config(path_or_preset: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Load a YAML config file (or a preset by name, e.g. ``tiny-cpu-demo``) and apply overrides.

    >>> load_config("tiny-cpu-demo", ["algo.lr=1e-5"]).algo.lr
    1e-05
    """
    path = resolve_config_path(path_or_preset)
    data = _read_mapping(path)
    overrides = list(overrides)
    origin = str(path)
    if overrides:
        data = apply_overrides(data, overrides)
        origin += " with overrides " + " ".join(overrides)
    return config_from_dict(data, origin)


def config_to_yaml(config: TrainConfig) -> str:
    """The config as YAML that :func:`load_config` reads back to an equal config."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)

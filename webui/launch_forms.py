"""The launch form: parsing its fields, the run's config overrides, and where each error is shown.

A run's ``config`` holds only what differs from its preset: each hyper-parameter field that
still shows the preset's value is left out, and the "advanced" YAML mapping is merged on top.
Errors of the launch check name dotted fields (``config.algo.lr``, ``sources``, ``num_gpus``);
:func:`error_place` says beside which part of the form each one goes.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django import forms

from control.models import DataSource, Run
from control.services.launch import deep_merge
from control.services.runs import PRESETS

# The API's limits (control.api.runs.RunInput), so that the form refuses what the API refuses.
MAX_SOURCES = 200
MAX_WEIGHT = 1e9
MAX_ADVANCED_CHARS = 64_000
# An advanced mapping is walked at most this many values deep and this many values in all:
# YAML aliases can make a few bytes stand for a tree too large to store.
ADVANCED_MAX_DEPTH = 32
ADVANCED_MAX_VALUES = 20_000
IOU_NAMES = ("dynamic", "average")
IOU_WORDS = (
    "write dynamic, average, a fixed threshold such as 0.9, or fraction:threshold pairs such as "
    "0.1:0.85, 0.25:0.95, 1.0:0.99"
)
NUMBER = {"invalid": "must be a number"}
WHOLE = {"invalid": "must be a whole number"}


@dataclass(frozen=True)
class ConfigField:
    """A form field that sets one field of the trainer config."""

    name: str  # the form field
    path: tuple[str, ...]  # where it goes in the config
    label: str
    hint: str = ""
    # True: an empty box is null ("use algo.lr"); False: an empty box keeps the preset's value.
    blank_is_null: bool = False

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


MODEL_PATH = ConfigField(
    "model_path",
    ("model", "path"),
    "Model",
    "a local Hugging Face checkpoint directory, or tiny:<arch>:<size> for a random-init model built offline",
)
HYPER_FIELDS: tuple[ConfigField, ...] = (
    ConfigField(
        "warm_start_steps",
        ("warm_start", "steps"),
        "Warm-start steps",
        "supervised steps on the sources' ground truths before GRPO; 0 = none (a random-init model "
        "is almost never rewarded)",
    ),
    ConfigField(
        "warm_start_target",
        ("warm_start", "target_accuracy"),
        "Warm-start target accuracy",
        "stop warm-starting a source once it answers this share of held-out rows right (e.g. 0.5), "
        "so that GRPO starts it with room to learn; empty = train every source for all the steps",
        True,
    ),
    ConfigField("algo_lr", ("algo", "lr"), "Learning rate", "AdamW learning rate of every trained group"),
    ConfigField("lr_vit", ("model", "lr", "vit"), "LR of the vision tower", "empty = algo.lr", True),
    ConfigField("lr_connector", ("model", "lr", "connector"), "LR of the connector", "empty = algo.lr", True),
    ConfigField("lr_llm", ("model", "lr", "llm"), "LR of the language model", "empty = algo.lr", True),
    ConfigField("rollout_n", ("rollout", "n"), "Responses per prompt", "the GRPO group size, at least 2"),
    ConfigField("rollout_temperature", ("rollout", "temperature"), "Sampling temperature"),
    ConfigField(
        "rollout_max_response_length", ("rollout", "max_response_length"), "Longest response (tokens)"
    ),
    ConfigField(
        "iou_schedule",
        ("reward", "iou_schedule"),
        "IoU threshold schedule",
        "dynamic, average, a number in [0.5, 0.99], or fraction:threshold pairs "
        "(0.1:0.85, 0.25:0.95, 1.0:0.99)",
    ),
)
CONFIG_FIELDS: tuple[ConfigField, ...] = (MODEL_PATH, *HYPER_FIELDS)
# Form fields that are fields of the run itself; an error naming one is shown beside it.
RUN_FIELDS = ("name", "description", "preset", "total_steps", "compute_target", "num_cpus", "num_gpus")
TOP = "__all__"


def format_number(value: object) -> str:
    """A number as the form shows it: ``repr`` of a float (``0.0002``, ``1e-06``), integers plain.

    >>> format_number(2e-4), format_number(1e-6), format_number(8), format_number(1.0)
    ('0.0002', '1e-06', '8', '1.0')
    """
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def format_iou_schedule(value: object) -> str:
    """The schedule as typed in the form.

    >>> format_iou_schedule([[0.1, 0.85], [1.0, 0.99]]), format_iou_schedule("dynamic")
    ('0.1:0.85, 1.0:0.99', 'dynamic')
    """
    if isinstance(value, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2 for p in value):
        return ", ".join(f"{format_number(a)}:{format_number(b)}" for a, b in value)
    return format_number(value) if not isinstance(value, str) else value


def parse_iou_schedule(text: str) -> str | float | list[list[float]]:
    """``dynamic``, ``average``, a number, or ``fraction:threshold`` pairs; ranges are the schema's to check.

    >>> parse_iou_schedule("0.1:0.85, 0.25:0.95 1.0:0.99")
    [[0.1, 0.85], [0.25, 0.95], [1.0, 0.99]]
    >>> parse_iou_schedule(" 0.9 "), parse_iou_schedule("average")
    (0.9, 'average')
    """
    words = text.strip()
    if words in IOU_NAMES:
        return words
    number = _finite(words)
    if number is not None:
        return number
    pairs: list[list[float]] = []
    for token in re.split(r"[,;\s]+", words):
        if not token:
            continue
        fraction, sep, threshold = token.partition(":")
        a, b = _finite(fraction), _finite(threshold)
        if not sep or a is None or b is None:
            raise forms.ValidationError(f"{IOU_WORDS}; {token[:40]!r} is none of these")
        pairs.append([a, b])
    if not pairs:
        raise forms.ValidationError(IOU_WORDS)
    return pairs


def _finite(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def field_value(field: ConfigField, value: object) -> str:
    """A config value as its form field shows it."""
    if field.name == "iou_schedule":
        return format_iou_schedule(value)
    return value if isinstance(value, str) else format_number(value)


def get_path(data: Any, path: Iterable[str]) -> tuple[bool, Any]:
    """``(True, value)`` when ``data`` holds ``path``, else ``(False, None)``."""
    node = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def set_path(data: dict, path: Sequence[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value


def preset_values(defaults: dict[str, Any]) -> dict[str, str]:
    """The form's values for a preset: its config fields and its total_steps."""
    values = {field.name: field_value(field, get_path(defaults, field.path)[1]) for field in CONFIG_FIELDS}
    values["total_steps"] = format_number(defaults.get("total_steps", ""))
    return values


def parse_advanced(text: str) -> dict[str, Any]:
    """The advanced box: a YAML mapping of config sections (empty = nothing), JSON values only."""
    from trainer.config import ConfigError
    from trainer.config.loader import parse_yaml

    if not text.strip():
        return {}
    try:
        data = parse_yaml(text, "the advanced box")
    except ConfigError as exc:
        raise forms.ValidationError(exc.problems[0].message) from None
    except RecursionError:
        raise forms.ValidationError(f"is nested deeper than {ADVANCED_MAX_DEPTH} levels") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise forms.ValidationError(
            f"must be a YAML mapping of config sections, such as 'algo: {{warmup_ratio: 0.1}}'; got a "
            f"{type(data).__name__}"
        )
    problem = _json_problem(data)
    if problem:
        raise forms.ValidationError(problem)
    return data


def _json_problem(value: dict) -> str | None:
    """Why ``value`` is not plain JSON: mappings with string keys, lists, strings, numbers, booleans, null."""
    stack: list[tuple[Any, str, int]] = [(value, "", 1)]
    seen = 0
    while stack:
        item, where, depth = stack.pop()
        seen += 1
        if seen > ADVANCED_MAX_VALUES:
            return f"holds more than {ADVANCED_MAX_VALUES} values"
        if depth > ADVANCED_MAX_DEPTH:
            return f"is nested deeper than {ADVANCED_MAX_DEPTH} levels"
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{where or 'the mapping'}: key {str(key)[:40]!r} must be a string"
                stack.append((child, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))
        elif isinstance(item, float) and not math.isfinite(item):
            return f"{where}: infinite and NaN numbers are not allowed"
        elif not isinstance(item, str | int | float | bool) and item is not None:
            return (
                f"{where}: a {type(item).__name__} is not allowed; use numbers, strings, true/false, null, "
                "lists and mappings"
            )
    return None


def dump_advanced(data: dict) -> str:
    """YAML that :func:`parse_advanced` reads back as ``data``; JSON (YAML too) when plain YAML would not."""
    import yaml

    from trainer.config.loader import parse_yaml

    if not data:
        return ""
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    try:
        if parse_yaml(text, "advanced") == data:
            return text
    except ValueError:
        pass
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


class LaunchForm(forms.Form):
    """A run's fields, its hyper-parameters and its mixture; ``clean`` builds ``mixture``.

    The sources come as checkboxes named ``source`` (their ids) and weights named
    ``weight_<id>``; problems with them are in :attr:`problems` under ``sources`` and
    ``weight_<id>``, which are not form fields.
    """

    name = forms.CharField(max_length=200)
    description = forms.CharField(max_length=5000, required=False)
    preset = forms.ChoiceField(choices=[(p, p) for p in PRESETS])
    total_steps = forms.IntegerField(min_value=1, max_value=10_000_000, error_messages=WHOLE)
    compute_target = forms.CharField(max_length=200)
    num_cpus = forms.FloatField(min_value=0, max_value=4096, error_messages=NUMBER)
    num_gpus = forms.FloatField(min_value=0, max_value=1024, error_messages=NUMBER)
    model_path = forms.CharField(max_length=4096, required=False)
    warm_start_steps = forms.IntegerField(
        required=False, min_value=0, max_value=1_000_000, error_messages=WHOLE
    )
    warm_start_target = forms.FloatField(required=False, error_messages=NUMBER)
    algo_lr = forms.FloatField(required=False, error_messages=NUMBER)
    lr_vit = forms.FloatField(required=False, error_messages=NUMBER)
    lr_connector = forms.FloatField(required=False, error_messages=NUMBER)
    lr_llm = forms.FloatField(required=False, error_messages=NUMBER)
    rollout_n = forms.IntegerField(required=False, error_messages=WHOLE)
    rollout_temperature = forms.FloatField(required=False, error_messages=NUMBER)
    rollout_max_response_length = forms.IntegerField(required=False, error_messages=WHOLE)
    iou_schedule = forms.CharField(max_length=4000, required=False)
    advanced = forms.CharField(max_length=MAX_ADVANCED_CHARS, required=False, strip=False)

    def __init__(self, *args: Any, sources: Sequence[DataSource], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sources = {source.pk: source for source in sources}
        self.problems: dict[str, list[str]] = {}

    def clean_iou_schedule(self) -> str | float | list[list[float]] | None:
        text = self.cleaned_data.get("iou_schedule", "")
        return parse_iou_schedule(text) if text.strip() else None

    def clean_advanced(self) -> dict[str, Any]:
        return parse_advanced(self.cleaned_data.get("advanced", ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        cleaned["mixture"] = self._mixture()
        return cleaned

    def _mixture(self) -> list[tuple[DataSource, float]]:
        mixture: list[tuple[DataSource, float]] = []
        for raw in dict.fromkeys(self.data.getlist("source")):
            source = self.sources.get(int(raw)) if raw.isdigit() else None
            if source is None:
                self.problems.setdefault("sources", []).append(
                    f"data source {raw[:20]!r} does not exist in this project"
                )
                continue
            text = self.data.get(f"weight_{source.pk}", "").strip()
            weight = _finite(text)
            if weight is None or not 0 < weight <= MAX_WEIGHT:
                got = repr(text[:20]) if weight is None else text[:20]
                self.problems[f"weight_{source.pk}"] = [
                    f"weight of {source.name} must be a number > 0 and <= {MAX_WEIGHT:g}, got {got}"
                ]
                continue
            mixture.append((source, weight))
        if not mixture and not self.problems:
            self.problems["sources"] = ["a run needs at least one data source; check one in the table"]
        if len(mixture) > MAX_SOURCES:
            self.problems["sources"] = [f"a run mixes at most {MAX_SOURCES} sources, got {len(mixture)}"]
        return mixture

    def is_complete(self) -> bool:
        """Valid, sources included."""
        return self.is_valid() and not self.problems

    def config(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The run's config overrides: fields that differ from ``defaults``, the advanced mapping on top."""
        overrides: dict[str, Any] = {}
        for field in CONFIG_FIELDS:
            value = self.cleaned_data.get(field.name)
            if value in (None, "") and not field.blank_is_null:
                continue  # an empty box keeps the preset's value
            if value != get_path(defaults, field.path)[1]:
                set_path(overrides, field.path, value)
        return deep_merge(overrides, self.cleaned_data.get("advanced") or {})


def error_place(name: str, advanced: dict[str, Any]) -> str:
    """The part of the form beside which an error about the dotted field ``name`` is shown.

    >>> error_place("config.algo.lr", {}), error_place("config.algo.lr", {"algo": {"lr": 1}})
    ('algo_lr', 'advanced')
    >>> error_place("config.reward.iou_schedule[1]", {}), error_place("config.eval.every", {})
    ('iou_schedule', 'advanced')
    >>> error_place("sources", {}), error_place("num_gpus", {}), error_place("launch", {})
    ('sources', 'num_gpus', '__all__')
    """
    if name == "sources" or name.startswith(("sources.", "sources[")):
        return "sources"
    if name in RUN_FIELDS:
        return name
    if name != "config" and not name.startswith("config."):
        return TOP
    path = name.removeprefix("config").lstrip(".")
    parts = [p for p in re.split(r"\.|\[\d+\]", path) if p]
    if parts and get_path(advanced, parts)[0]:
        return "advanced"
    for field in CONFIG_FIELDS:
        if path == field.dotted or path.startswith((field.dotted + ".", field.dotted + "[")):
            return field.name
    return "advanced"


def place_errors(fields: dict[str, list[str]], advanced: dict[str, Any]) -> dict[str, list[str]]:
    """Messages by dotted field, regrouped by the part of the form they are shown beside."""
    placed: dict[str, list[str]] = {}
    for name, messages in fields.items():
        where = error_place(name, advanced)
        # Beside a form field its own name is implied; elsewhere the dotted name says what is wrong.
        own = name == TOP or where in (*RUN_FIELDS, "sources", *(f.name for f in CONFIG_FIELDS))
        for message in messages:
            placed.setdefault(where, []).append(str(message) if own else f"{name}: {message}")
    return placed


def clone_values(run: Run, defaults: dict[str, Any]) -> dict[str, str]:
    """The form's values for a copy of ``run``: its config split into the fields and the advanced rest."""
    rest = copy.deepcopy(run.config or {})
    values = preset_values(defaults)
    for field in CONFIG_FIELDS:
        found, value = _pop_path(rest, field.path)
        if found:
            values[field.name] = field_value(field, value)
    values.update(
        {
            "name": f"{run.name} (clone)"[:200],
            "description": run.description,
            "preset": run.preset,
            "total_steps": str(run.total_steps),
            "compute_target": run.compute_target,
            "num_cpus": format_number(run.num_cpus),
            "num_gpus": format_number(run.num_gpus),
            "advanced": dump_advanced(rest),
        }
    )
    return values


def _pop_path(data: dict, path: Sequence[str]) -> tuple[bool, Any]:
    """Take ``path`` out of ``data``, and the mappings on its way that it leaves empty."""
    found, parent = get_path(data, path[:-1])
    if not found or not isinstance(parent, dict) or path[-1] not in parent:
        return False, None
    value = parent.pop(path[-1])
    for depth in range(len(path) - 1, 0, -1):
        _, node = get_path(data, path[:depth])
        if node:
            break
        get_path(data, path[: depth - 1])[1].pop(path[depth - 1])
    return True, value

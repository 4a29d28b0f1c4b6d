"""Config errors that name the dotted field and say what to fix.

pydantic reports a location tuple and a generic message ("Input should be greater than 0");
:func:`config_error_from_validation` turns each into ``ConfigProblem("algo.lr", "must be > 0,
got -1.0")``. Unknown keys list the known ones and suggest the closest.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from trainer.config.schema import PATTERN_WORDS, brief


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config: ``field`` is a dotted path like ``data.sources[0].weight``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class ConfigError(ValueError):
    """A config (file, overrides or run spec) that cannot be used; ``problems`` lists every reason."""

    def __init__(self, origin: str, problems: Sequence[ConfigProblem]) -> None:
        self.origin = origin
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid config {origin}:\n{lines}")


def join_path(*parts: str | int) -> str:
    """``("data", "sources", 0, "weight")`` → ``"data.sources[0].weight"``; ``"[1]"`` parts attach."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "":
            continue
        elif part.startswith("[") or not out:
            out += part
        else:
            out += f".{part}"
    return out


def _unwrap(annotation: Any) -> Any:
    """The model class inside ``X | None`` or ``list[X]``, else the annotation itself."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                return _unwrap(arg)
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return _unwrap(args[0]) if args else annotation
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return annotation


def _items(count: object) -> str:
    return "one item" if count == 1 else f"{count} items"


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The section model found by following ``loc`` from ``root`` (list indices skipped)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = _unwrap(model.model_fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


_TYPE_WORDS = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
}

_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}


def _problem(root: type[BaseModel], error: Any) -> ConfigProblem:
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    field = join_path(*loc)
    if kind == "triune_config":
        return ConfigProblem(join_path(*loc, ctx["field"]), ctx["message"])
    if kind == "extra_forbidden":
        parent = _model_at(root, loc[:-1])
        known = sorted(parent.model_fields) if parent else []
        hint = ""
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        if close:
            hint = f"did you mean {close[0]}? "
        return ConfigProblem(field, f"unknown key; {hint}known keys: {', '.join(known)}")
    if kind == "missing":
        return ConfigProblem(field, "is required but missing")
    if kind in _BOUNDS:
        bound = next(iter(ctx.values()))
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return ConfigProblem(field, f"must be {_BOUNDS[kind]} {bound}, got {brief(value)}")
    if kind == "literal_error":
        return ConfigProblem(field, f"must be {ctx['expected']}, got {brief(value)}")
    if kind in ("too_short", "too_long"):
        if isinstance(value, str):
            limit = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
            word = "at least" if kind == "too_short" else "at most"
            return ConfigProblem(field, f"must have {word} {limit} characters, got {len(value)}")
        if kind == "too_short":
            return ConfigProblem(
                field, f"must list at least {_items(ctx.get('min_length'))}, got {len(value)}"
            )
        return ConfigProblem(field, f"must list at most {_items(ctx.get('max_length'))}, got {len(value)}")
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return ConfigProblem(field, "must not be empty")
    if kind in ("string_too_short", "string_too_long"):
        limit = ctx.get("min_length", ctx.get("max_length"))
        word = "at least" if kind == "string_too_short" else "at most"
        return ConfigProblem(field, f"must have {word} {limit} characters, got {len(value)}")
    if kind == "string_pattern_mismatch":
        words = PATTERN_WORDS.get(ctx["pattern"], f"match {ctx['pattern']}")
        return ConfigProblem(field, f"must be {words}, got {brief(value)}")
    if kind in _TYPE_WORDS:
        if kind in ("model_type", "model_attributes_type"):
            model = _model_at(root, loc)
            if model is not None:
                keys = ", ".join(sorted(model.model_fields))
                return ConfigProblem(field, f"must be a section with keys {keys}; got {brief(value)}")
        return ConfigProblem(
            field, f"must be {_TYPE_WORDS[kind]}, got {brief(value)} ({type(value).__name__})"
        )
    message = str(error.get("msg", "is invalid"))
    return ConfigProblem(field, f"{message[:1].lower()}{message[1:]}, got {brief(value)}")


def config_error_from_validation(exc: ValidationError, root: type[BaseModel], origin: str) -> ConfigError:
    """Convert a pydantic ``ValidationError`` raised while validating ``root``."""
    return ConfigError(origin, [_problem(root, error) for error in exc.errors()])

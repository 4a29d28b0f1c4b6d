"""The sample schema (DESIGN.md §3), shared by the trainer and the upload validator.

One row is one sample::

    data_source   str, the source name metrics are split by
    images        list of {bytes, path} (parquet, Hugging Face Image layout)
                  or list of paths into an uploaded archive (JSONL)
    prompt        list of {role, content}; "<image>" marks where each image goes
    ability       str, the task family (informational)
    reward_model  dict, checked by trainer.rewards.validate_reward_model
    extra_info    optional dict (id, image_path)

:func:`validate_sample` returns every problem it finds as a :class:`SampleError`
(a dotted field path and a message that says what to fix) instead of raising,
so an upload can report all bad rows at once.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trainer.data.images import DEFAULT_MAX_IMAGE_PIXELS, ImageError, check_image

MAX_SOURCE_CHARS = 200
MAX_ABILITY_CHARS = 200
MAX_ID_CHARS = 1_000
# Sum of the prompt's message contents; longer prompts cannot fit any context window we train with.
MAX_PROMPT_CHARS = 100_000
MAX_IMAGES = 64
ROLES = ("system", "user", "assistant")
IMAGE_MARKER = "<image>"
# Unicode category Cc: C0 controls, DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SCALARS = (str, int, float, bool, bytes, list, type(None))
TASK_TYPES = ("math", "puzzle", "science", "chart", "ocr", "counting", "detection", "grounding")

# Takes an image path from a JSONL row, returns the image's bytes (raises on a missing file).
ImageResolver = Callable[[str], bytes]


@dataclass(frozen=True, slots=True)
class SampleError:
    """One problem in one sample: ``field`` is a dotted path such as ``reward_model.ground_truth``."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def drop_nulls(value: Any) -> Any:
    """Return ``value`` with ``None`` entries removed from every nested dict.

    Parquet stores a struct column with one schema for every row, so a field
    absent from a sample reads back as null (Orsta-Data-47k's math rows carry a
    ``verifier_parm`` whose every entry is null). Null means absent; a dict left
    empty is dropped too.

    >>> drop_nulls({"a": 1, "b": None, "c": {"d": None}})
    {'a': 1}
    """
    if not _is_mapping(value):
        return value
    cleaned = {}
    for key, item in value.items():
        if item is None:
            continue
        if _is_mapping(item):
            item = drop_nulls(item)
            if not item:
                continue
        cleaned[key] = item
    return cleaned


def _is_mapping(value: Any) -> bool:
    # The exact-type test first: isinstance against the Mapping ABC is several times slower,
    # and rows read from files are plain dicts.
    return type(value) is dict or (type(value) not in _SCALARS and isinstance(value, Mapping))


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _preview(text: str, limit: int = 40) -> str:
    """A short repr of a possibly hostile string, for messages."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _name_errors(field: str, value: Any, limit: int) -> list[SampleError]:
    """Checks shared by short identifying strings (data_source, ability)."""
    if not isinstance(value, str):
        return [SampleError(field, f"must be a string, got {_type_name(value)}")]
    if not value.strip():
        return [SampleError(field, "must be a non-empty string")]
    if len(value) > limit:
        return [SampleError(field, f"is {len(value)} characters long; the limit is {limit}")]
    if _CONTROL.search(value):
        return [
            SampleError(field, f"must not contain control characters (NUL, newline, ...): {_preview(value)}")
        ]
    return []


def _prompt_errors(prompt: Any) -> tuple[list[SampleError], int | None]:
    """Errors of the prompt and the number of ``<image>`` markers (None when unknown)."""
    if not isinstance(prompt, list):
        return [
            SampleError("prompt", f"must be a list of {{role, content}} messages, got {_type_name(prompt)}")
        ], None
    if not prompt:
        return [SampleError("prompt", "must hold at least one message")], None
    errors: list[SampleError] = []
    markers = 0
    total = 0
    for index, message in enumerate(prompt):
        field = f"prompt[{index}]"
        if not _is_mapping(message):
            errors.append(
                SampleError(field, f"must be a {{role, content}} object, got {_type_name(message)}")
            )
            continue
        role = message.get("role")
        if role not in ROLES:
            shown = _preview(role) if isinstance(role, str) else _type_name(role)
            errors.append(SampleError(f"{field}.role", f"must be one of {', '.join(ROLES)}; got {shown}"))
        content = message.get("content")
        if not isinstance(content, str):
            errors.append(SampleError(f"{field}.content", f"must be a string, got {_type_name(content)}"))
            continue
        if "\x00" in content:
            errors.append(SampleError(f"{field}.content", "must not contain NUL characters"))
        markers += content.count(IMAGE_MARKER)
        total += len(content)
    if total > MAX_PROMPT_CHARS:
        errors.append(SampleError("prompt", f"holds {total} characters; the limit is {MAX_PROMPT_CHARS}"))
    if not any(_is_mapping(m) and m.get("role") == "user" for m in prompt):
        errors.append(SampleError("prompt", "must hold at least one message with role 'user'"))
    return errors, markers


def _image_bytes(
    field: str, image: Any, resolve_image: ImageResolver | None
) -> tuple[bytes | None, SampleError | None]:
    """The bytes of one ``images`` entry, resolving a path when needed."""
    path: Any = None
    if isinstance(image, str):
        path = image
    elif _is_mapping(image):
        data = image.get("bytes")
        if data is not None:
            if not isinstance(data, bytes | bytearray | memoryview):
                return None, SampleError(f"{field}.bytes", f"must be binary, got {_type_name(data)}")
            return bytes(data), None
        path = image.get("path")
        if path is None:
            return None, SampleError(field, "has neither bytes nor path")
        if not isinstance(path, str):
            return None, SampleError(f"{field}.path", f"must be a string, got {_type_name(path)}")
    else:
        return None, SampleError(
            field, f"must be a {{bytes, path}} object or a path string, got {_type_name(image)}"
        )
    if not path or "\x00" in path:
        return None, SampleError(
            field, f"image path must be a non-empty string without NUL: {_preview(path)}"
        )
    if resolve_image is None:
        return None, SampleError(
            field, f"image path {_preview(path)} given but no image archive to read it from"
        )
    try:
        return resolve_image(path), None
    except (OSError, KeyError, ValueError) as exc:
        return None, SampleError(field, f"cannot read image {_preview(path)}: {exc}")


def _images_errors(
    images: Any,
    *,
    check_images: bool,
    decode_images: bool,
    max_image_pixels: int,
    resolve_image: ImageResolver | None,
) -> tuple[list[SampleError], int | None]:
    if not isinstance(images, list):
        return [SampleError("images", f"must be a list of images, got {_type_name(images)}")], None
    if len(images) > MAX_IMAGES:
        return [SampleError("images", f"holds {len(images)} images; the limit is {MAX_IMAGES}")], None
    errors: list[SampleError] = []
    for index, image in enumerate(images):
        field = f"images[{index}]"
        if not check_images:
            if not isinstance(image, str | Mapping):
                errors.append(
                    SampleError(
                        field, f"must be a {{bytes, path}} object or a path string, got {_type_name(image)}"
                    )
                )
            continue
        data, error = _image_bytes(field, image, resolve_image)
        if error is not None:
            errors.append(error)
            continue
        try:
            check_image(data, max_pixels=max_image_pixels, decode=decode_images)
        except ImageError as exc:
            errors.append(SampleError(field, str(exc)))
    return errors, len(images)


# Verdicts on reward_model dicts already seen. Checking one can mean parsing its ground
# truth with math-verify (about a millisecond); datasets repeat ground truths a lot
# (\boxed{2}, \boxed{\text{yes}}), so caching by content keeps validation at streaming speed.
_REWARD_MODEL_CACHE: OrderedDict[str, tuple[SampleError, ...]] = OrderedDict()
_REWARD_MODEL_CACHE_SIZE = 8192
_REWARD_MODEL_CACHE_MAX_KEY = 4096
_REWARD_MODEL_CACHE_LOCK = threading.Lock()


def _check_reward_model(reward_model: dict[str, Any]) -> tuple[SampleError, ...]:
    # Imported here: the rewards package pulls in math-verify and pycocotools, which
    # a caller that only reads data should not pay for.
    from trainer.rewards import RewardModelError, validate_reward_model

    try:
        validate_reward_model(reward_model)
    except RewardModelError as exc:
        field = str(getattr(exc, "field", "") or "")
        if not field.startswith("reward_model"):
            field = f"reward_model.{field}" if field else "reward_model"
        return (SampleError(field, str(exc)),)
    return ()


def _reward_model_errors(reward_model: Any) -> list[SampleError]:
    if not _is_mapping(reward_model):
        return [SampleError("reward_model", f"must be an object, got {_type_name(reward_model)}")]
    cleaned = drop_nulls(reward_model)
    # repr distinguishes 1 from 1.0 and True, and round-trips floats: equal keys, equal dicts.
    key = repr(cleaned)
    if len(key) > _REWARD_MODEL_CACHE_MAX_KEY:
        return list(_check_reward_model(cleaned))
    with _REWARD_MODEL_CACHE_LOCK:
        errors = _REWARD_MODEL_CACHE.get(key)
        if errors is not None:
            _REWARD_MODEL_CACHE.move_to_end(key)
            return list(errors)
    errors = _check_reward_model(cleaned)
    with _REWARD_MODEL_CACHE_LOCK:
        _REWARD_MODEL_CACHE[key] = errors
        if len(_REWARD_MODEL_CACHE) > _REWARD_MODEL_CACHE_SIZE:
            _REWARD_MODEL_CACHE.popitem(last=False)
    return list(errors)


def _extra_info_errors(extra_info: Any) -> list[SampleError]:
    if extra_info is None:
        return []
    if not _is_mapping(extra_info):
        return [SampleError("extra_info", f"must be an object or null, got {_type_name(extra_info)}")]
    errors = []
    for key in ("id", "image_path"):
        value = extra_info.get(key)
        if value is None:
            continue
        field = f"extra_info.{key}"
        if not isinstance(value, str):
            errors.append(SampleError(field, f"must be a string or null, got {_type_name(value)}"))
        elif len(value) > MAX_ID_CHARS:
            errors.append(SampleError(field, f"is {len(value)} characters long; the limit is {MAX_ID_CHARS}"))
        elif "\x00" in value:
            errors.append(SampleError(field, "must not contain NUL characters"))
    return errors


def validate_sample(
    row: Mapping[str, Any],
    *,
    check_images: bool = True,
    decode_images: bool = False,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    resolve_image: ImageResolver | None = None,
) -> list[SampleError]:
    """Every problem of one sample, in field order; an empty list means the sample is valid.

    ``check_images`` reads each image's header (format, pixel limit against
    decompression bombs, aspect ratio) and checks the file is whole
    (:func:`trainer.data.images.check_image`); ``decode_images`` also decodes
    every pixel, the strictest and by far the costliest check. ``resolve_image``
    maps a JSONL image path to its bytes. Fields outside the schema are ignored.

    >>> validate_sample({"data_source": "mm_math"})[0]
    SampleError(field='images', message='is required')
    """
    if not _is_mapping(row):
        return [SampleError("row", f"must be an object with the sample fields, got {_type_name(row)}")]
    errors: list[SampleError] = []
    for field in ("data_source", "images", "prompt", "ability", "reward_model"):
        if field not in row or row[field] is None:
            errors.append(SampleError(field, "is required"))
    present = {e.field for e in errors}
    if "data_source" not in present:
        errors += _name_errors("data_source", row["data_source"], MAX_SOURCE_CHARS)
    image_count = None
    if "images" not in present:
        image_errors, image_count = _images_errors(
            row["images"],
            check_images=check_images,
            decode_images=decode_images,
            max_image_pixels=max_image_pixels,
            resolve_image=resolve_image,
        )
        errors += image_errors
    markers = None
    if "prompt" not in present:
        prompt_errors, markers = _prompt_errors(row["prompt"])
        errors += prompt_errors
    if image_count is not None and markers is not None and image_count != markers:
        errors.append(
            SampleError(
                "prompt",
                f"has {markers} {IMAGE_MARKER} marker(s) but the sample has {image_count} image(s);"
                f" put one {IMAGE_MARKER} where each image goes",
            )
        )
    if "ability" not in present:
        errors += _name_errors("ability", row["ability"], MAX_ABILITY_CHARS)
    if "reward_model" not in present:
        errors += _reward_model_errors(row["reward_model"])
    errors += _extra_info_errors(row.get("extra_info"))
    return errors


# Ordered: the first task whose keyword occurs wins ("chart_math" is a chart source).
_TASK_KEYWORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("grounding", ("ground", "refcoco", "refer")),
    ("detection", ("detect", "v3det", "coco", "object365", "objects365")),
    ("ocr", ("ocr",)),
    ("counting", ("count",)),
    ("chart", ("chart",)),
    ("science", ("science", "physics", "chemistry", "biology")),
    ("puzzle", ("puzzle", "pattern")),
    ("math", ("math", "geo")),
)
_TEXT_ANSWER_TASKS = ("math", "puzzle", "science", "chart", "ocr", "counting")
_TASKS_OF_VERIFIER = {
    "detection": ("detection", "grounding"),
    "mathverify": _TEXT_ANSWER_TASKS,
    "choice": _TEXT_ANSWER_TASKS,
    "exact": _TEXT_ANSWER_TASKS,
    "number": _TEXT_ANSWER_TASKS,
}


def task_type(row: Mapping[str, Any]) -> str:
    """Infer the task type (one of :data:`TASK_TYPES`) from ability, verifier and data_source.

    Keywords are looked up in ``ability`` first, then in ``data_source``; the
    verifier restricts the candidates (``detection`` → detection or grounding,
    the text-answer verifiers ``mathverify``, ``choice``, ``exact``, ``number`` →
    the six others) and gives the default when no keyword matches.

    >>> task_type({"ability": "cv_grounding", "reward_model": {"verifier": "detection"}})
    'grounding'
    >>> task_type({"data_source": "mm_math", "reward_model": {"verifier": "mathverify"}})
    'math'
    """
    reward_model = row.get("reward_model")
    verifier = reward_model.get("verifier") if isinstance(reward_model, Mapping) else None
    verifier = verifier.lower() if isinstance(verifier, str) else ""
    allowed = _TASKS_OF_VERIFIER.get(verifier, TASK_TYPES)
    for key in ("ability", "data_source"):
        text = row.get(key)
        if not isinstance(text, str):
            continue
        text = text.lower()
        for task, keywords in _TASK_KEYWORDS:
            if task in allowed and any(keyword in text for keyword in keywords):
                return task
    return allowed[0]

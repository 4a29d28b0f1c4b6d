"""Fingerprints that tell whether a checkpoint belongs to this run: config, data files, model.

A resumed run is only "the same run" if it trains the same thing on the same data with the
same model. Each fingerprint is a plain JSON-able value stored in the checkpoint's manifest;
the ``*_differences`` functions compare a saved one with the current one and return one
human-readable line per difference (empty list: compatible).

- **config**: the config minus what does not change the trajectory (``output_dir``,
  ``checkpoint``, ``tracking``, ``eval``, and where the data files live: ``data.root`` and the
  file patterns of ``data.sources``, whose content the data fingerprint checks instead);
- **data**: per source and split, each file's URI, size, modification time and SHA-256. A file
  whose size and mtime are unchanged is taken as unchanged without reading it; otherwise its
  content hash decides (so a copied or moved data set still resumes, an edited one does not);
- **model**: the model type and every parameter's name and shape.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fsspec
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from torch import nn

from trainer.config import ResolvedSource, TrainConfig

# Top-level config sections that never change what a step computes.
# engine: where the policy trains does not change the update (it equals the single-process one),
# so a run may resume on another number of workers (their sampling seeds differ, per rank).
IGNORED_SECTIONS: tuple[str, ...] = ("output_dir", "checkpoint", "tracking", "eval", "engine")
# Per-source fields that say where files are; the data fingerprint checks their content.
IGNORED_SOURCE_FIELDS: tuple[str, ...] = ("train", "test", "images")
HASH_CHUNK = 1 << 20

FileEntry = dict[str, Any]
Hasher = Callable[[str], str]


def canonical_json(value: object) -> str:
    """Sorted-key compact JSON: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest(value: object) -> str:
    """SHA-256 of the canonical JSON of ``value``.

    >>> digest({"b": 1, "a": 2}) == digest({"a": 2, "b": 1})
    True
    """
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def config_identity(config: TrainConfig) -> dict[str, Any]:
    """The part of ``config`` that a resumed run must share with the saved one (JSON)."""
    from trainer.checkpoint.remote import portable_location

    data = config.model_dump(mode="json")
    data["model"]["path"] = portable_location(data["model"]["path"])  # a staged copy: the URI it is of
    for key in IGNORED_SECTIONS:
        data.pop(key, None)
    data["data"].pop("root", None)
    for source in data["data"]["sources"]:
        for key in IGNORED_SOURCE_FIELDS:
            source.pop(key, None)
    return data


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, item in value.items():
            out |= _flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out = {}
        for index, item in enumerate(value):
            out |= _flatten(item, f"{prefix}[{index}]")
        return out
    return {prefix: value}


def config_defaults(model: type[BaseModel] = TrainConfig, prefix: str = "") -> dict[str, object]:
    """The default of every config field that has one, by dotted key, as JSON values.

    A field added to the config after a checkpoint was saved is absent from its manifest; at its
    default it trains as the checkpoint did (:func:`config_differences` uses these).

    >>> config_defaults()["algo.dynamic_sampling.enabled"]
    False
    """
    out: dict[str, object] = {}
    for name, info in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out |= config_defaults(annotation, key)
        elif not info.is_required():
            out[key] = to_jsonable_python(info.get_default(call_default_factory=True))
    return out


def config_differences(
    saved: Mapping[str, Any], current: Mapping[str, Any], defaults: Mapping[str, object] | None = None
) -> list[str]:
    """``"algo.lr: 0.0001 in the checkpoint, 0.001 now"`` for every field that differs.

    With ``defaults`` (dotted key → value), a key the checkpoint lacks counts as its default.

    >>> config_differences({"algo": {"lr": 1e-4}}, {"algo": {"lr": 1e-3}})
    ['algo.lr: 0.0001 in the checkpoint, 0.001 now']
    >>> config_differences({}, {"algo": {"lr": 1e-3}}, defaults={"algo.lr": 1e-3})
    []
    """
    old, new = _flatten(saved), _flatten(current)
    for key, value in (defaults or {}).items():
        if key not in old and key in new:
            old[key] = value
    lines = []
    for key in sorted(set(old) | set(new)):
        if old.get(key, "<absent>") != new.get(key, "<absent>"):
            lines.append(
                f"{key}: {json.dumps(old.get(key, '<absent>'))} in the checkpoint, "
                f"{json.dumps(new.get(key, '<absent>'))} now"
            )
    return lines


def file_sha256(uri: str) -> str:
    """SHA-256 of a file's bytes, read through fsspec in 1 MiB chunks."""
    hasher = hashlib.sha256()
    with fsspec.open(uri, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _mtime(info: Mapping[str, Any]) -> str | None:
    """The modification stamp fsspec reports (local: ``mtime``; object stores: ETag or LastModified)."""
    for key in ("mtime", "ETag", "etag", "LastModified", "last_modified", "updated"):
        if info.get(key) is not None:
            return str(info[key])
    return None


class DataFingerprinter:
    """Fingerprints data files, hashing each (uri, size, mtime) once per process."""

    def __init__(self, hasher: Hasher = file_sha256) -> None:
        self._hasher = hasher
        self._hashes: dict[tuple[str, int, str | None], str] = {}

    def entry(self, uri: str) -> FileEntry:
        fs, path = fsspec.core.url_to_fs(uri)
        info = fs.info(path)
        size, mtime = int(info.get("size") or 0), _mtime(info)
        key = (uri, size, mtime)
        if key not in self._hashes:
            self._hashes[key] = self._hasher(uri)
        return {"uri": uri, "size": size, "mtime": mtime, "sha256": self._hashes[key]}

    def fingerprint(self, sources: Sequence[ResolvedSource]) -> list[dict[str, Any]]:
        """Per source: name, weight and the entries of its train and test files, in order."""
        return [
            {
                "name": source.name,
                "weight": source.weight,
                "train": [self.entry(uri) for uri in source.train],
                "test": [self.entry(uri) for uri in source.test],
            }
            for source in sources
        ]


def _file_changes(
    name: str, split: str, saved: Sequence[FileEntry], now: Sequence[str], hasher: Hasher
) -> list[str]:
    if len(saved) != len(now):
        old = ", ".join(e["uri"].rsplit("/", 1)[-1] for e in saved) or "none"
        new = ", ".join(u.rsplit("/", 1)[-1] for u in now) or "none"
        return [f"{name} {split}: {len(saved)} file(s) in the checkpoint ({old}), {len(now)} now ({new})"]
    lines = []
    for entry, uri in zip(saved, now, strict=True):
        label = f"{name} {split} {uri}"
        try:
            fs, path = fsspec.core.url_to_fs(uri)
            info = fs.info(path)
        except (OSError, ValueError) as exc:
            lines.append(f"{label}: cannot be read ({exc})")
            continue
        size, mtime = int(info.get("size") or 0), _mtime(info)
        if size != entry["size"]:
            lines.append(f"{label}: {entry['size']} bytes in the checkpoint, {size} now")
        elif uri == entry["uri"] and mtime == entry["mtime"]:
            continue
        elif hasher(uri) != entry["sha256"]:
            lines.append(f"{label}: same size but different content (SHA-256) than in the checkpoint")
    return lines


def data_differences(
    saved: Sequence[Mapping[str, Any]], sources: Sequence[ResolvedSource], *, hasher: Hasher = file_sha256
) -> list[str]:
    """Changes of the data since the checkpoint, one line each (sources, weights, files)."""
    old_names = [s["name"] for s in saved]
    new_names = [s.name for s in sources]
    if old_names != new_names:
        return [f"sources {old_names} in the checkpoint, {new_names} now"]
    lines = []
    for entry, source in zip(saved, sources, strict=True):
        if entry["weight"] != source.weight:
            lines.append(f"{source.name} weight: {entry['weight']} in the checkpoint, {source.weight} now")
        lines += _file_changes(source.name, "train", entry["train"], source.train, hasher)
        lines += _file_changes(source.name, "test", entry["test"], source.test, hasher)
    return lines


def model_signature(model: nn.Module) -> dict[str, Any]:
    """Model type, parameter count and a digest of every parameter's name and shape."""
    shapes = {name: list(param.shape) for name, param in model.state_dict().items()}
    config = getattr(model, "config", None)
    return {
        "model_type": getattr(config, "model_type", type(model).__name__),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "tensors": len(shapes),
        "shapes": digest(shapes),
    }


def model_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Why the checkpoint's model cannot be loaded into this run's model (empty: it can)."""
    if saved.get("shapes") == current.get("shapes") and saved.get("model_type") == current.get("model_type"):
        return []

    def words(sig: Mapping[str, Any]) -> str:
        return (
            f"{sig.get('model_type')} with {sig.get('parameters')} parameters in {sig.get('tensors')} tensors"
        )

    return [f"the checkpoint holds a {words(saved)}; this run builds a {words(current)}"]

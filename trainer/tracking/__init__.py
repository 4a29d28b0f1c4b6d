"""Where a run's metrics go: the :class:`Tracker` interface and its sinks.

The monitor computes ``{(source, key): value}``; a tracker records it. Sinks: :class:`JsonlSink`
(append-only file, one point per line), :class:`ConsoleSink` (a progress line per step),
:class:`HttpSink` (the platform's ingest API, spooling when it is away) and :class:`MultiSink`
(all of them at once). :func:`build_tracker` assembles them from a ``TrackingConfig``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from trainer.config.schema import TrackingConfig
from trainer.tracking.base import MultiSink, Point, Tracker, metrics_to_points
from trainer.tracking.console import ConsoleSink, format_duration
from trainer.tracking.http_sink import HttpSink, HttpSinkError, metrics_endpoint
from trainer.tracking.jsonl import JsonlSink, read_points
from trainer.tracking.progress import ProgressBar


def _under(output_dir: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else output_dir / path


def build_tracker(
    config: TrackingConfig,
    *,
    output_dir: str | Path,
    total_steps: int,
    environ: Mapping[str, str] | None = None,
) -> MultiSink:
    """The sinks ``config`` turns on; relative file names are taken under ``output_dir``.

    The HTTP sink's token is read from the environment variable the config names; a missing
    one is an error here, before training starts, not a silent loss of every metric.
    """
    env = os.environ if environ is None else environ
    out = Path(output_dir)
    sinks: list[Tracker] = []
    if config.jsonl is not None:
        sinks.append(JsonlSink(_under(out, config.jsonl)))
    if config.console:
        sinks.append(ConsoleSink(total_steps))
    if config.http is not None:
        http = config.http
        token = env.get(http.token_env, "")
        if not token:
            raise ValueError(
                f"tracking.http: environment variable {http.token_env} is empty or not set; it must hold "
                "the run-scoped token the platform issued"
            )
        sinks.append(
            HttpSink(
                http.url,
                http.run_id,
                token,
                spool_path=_under(out, http.spool),
                batch_size=http.batch_size,
                timeout_s=http.timeout_s,
                retry_interval_s=http.retry_interval_s,
                close_wait_s=http.close_wait_s,
            )
        )
    return MultiSink(sinks)


__all__ = [
    "ConsoleSink",
    "HttpSink",
    "HttpSinkError",
    "JsonlSink",
    "MultiSink",
    "Point",
    "ProgressBar",
    "Tracker",
    "build_tracker",
    "format_duration",
    "metrics_endpoint",
    "metrics_to_points",
    "read_points",
]

"""A run's job log from a byte offset: Ray's live log while the job runs, the stored copy after."""

from __future__ import annotations

from dataclasses import dataclass

from control import ray_jobs
from control.models import Run
from control.ray_jobs import RayUnavailable
from control.services.launch import compute_target_get, ray_target, submission_id
from control.services.run_outputs import run_log_stored

MAX_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class LogChunk:
    attempt: int
    offset: int
    next_offset: int
    size: int
    text: str
    origin: str  # "ray", "storage" or "none"
    complete: bool


def run_log_chunk(*, run: Run, attempt: int | None = None, offset: int = 0) -> LogChunk:
    """Up to 1 MiB of the attempt's log from byte ``offset``; ``complete`` once the attempt ended."""
    attempt = run.attempt if attempt is None else attempt
    live = attempt == run.attempt and run.status in Run.ACTIVE
    data: bytes | None = None
    origin = "none"
    if not live:
        data = run_log_stored(run=run, attempt=attempt)
        origin = "storage" if data is not None else "none"
    if data is None and attempt >= 1 and run.ray_submission_id:
        job = run.ray_submission_id if attempt == run.attempt else None
        if job is None:
            job = submission_id(Run(pk=run.pk, attempt=attempt))
        try:
            data = ray_jobs.logs(ray_target(compute_target_get(run.compute_target)), job).encode()
            origin = "ray"
        except RayUnavailable:
            data = None
    data = data or b""
    start = min(max(offset, 0), len(data))
    piece = data[start : start + MAX_CHUNK_BYTES]
    text, used = _decode(piece, last=start + len(piece) >= len(data))
    return LogChunk(
        attempt=attempt,
        offset=start,
        next_offset=start + used,
        size=len(data),
        text=text,
        origin=origin,
        complete=not live,
    )


def _decode(piece: bytes, *, last: bool) -> tuple[str, int]:
    """The text of ``piece`` and the bytes it used: a UTF-8 character cut at the end of a chunk
    that is not the log's last is left for the next chunk."""
    if not last:
        for cut in range(len(piece), max(len(piece) - 4, 0), -1):
            try:
                return piece[:cut].decode("utf-8"), cut
            except UnicodeDecodeError:
                continue
    return piece.decode("utf-8", errors="replace"), len(piece)

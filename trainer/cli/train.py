"""``python -m trainer train``: run GRPO training from a config (or preset) or a run spec.

``--resume`` continues from the newest complete checkpoint of ``checkpoint.dir`` (default
``<output_dir>/checkpoints``) and refuses to start when there is none; ``--resume auto`` does
the same but starts from step 0 when there is none (what the platform passes from a run's
second attempt on); ``--resume PATH`` continues from a given checkpoint. The steps that follow
are those the uninterrupted run would have taken. A checkpoint of another config is refused
unless ``--resume-force``; one of changed data files or of another model always is.

SIGTERM (a cancelled Ray job) or SIGINT (Ctrl-C) stops the run after the step under way: it
saves a checkpoint of the last finished step (unless it has one), flushes the metrics, prints
``train: stopped by SIGTERM after step N; checkpoint in PATH`` and exits 143 (SIGINT: 130).
The stop waits for the current step to end (a stop during the last step lets the run finish,
exit 0); a second signal ends the process at once, killed by that signal, without a checkpoint.

``output_dir`` and ``checkpoint.dir`` may be fsspec URIs (``s3://bucket/runs/7``) that every node
of a cluster reads: the run then works in a local staging folder and copies each checkpoint up
(marker last) and, with ``--resume``, the newest complete one down first
(:mod:`trainer.checkpoint.remote`).

Exit status: 0 when the run finished, 2 when it could not start (an invalid config, a missing
file, data that fails the pre-flight checks, a checkpoint that cannot be resumed; every
problem is listed and nothing was trained), 1 when it stopped on the way (too many
non-finite losses in a row, too many unusable rows), 143 when stopped by SIGTERM, 130 by SIGINT.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from trainer.cli.args import add_config_arguments, positive_int
from trainer.config import (
    ConfigError,
    ConfigProblem,
    ResolvedSource,
    RunSpec,
    TrainConfig,
    apply_overrides,
    build_run_spec,
    check_model_path,
    config_from_dict,
    config_to_yaml,
    load_config,
    load_run_spec,
)
from trainer.config.errors import config_error_from_validation
from trainer.config.loader import resolve_config_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from trainer.checkpoint import Checkpoint
    from trainer.checkpoint.remote import RemoteOutputs
    from trainer.checkpoint.uploads import Snapshot, Uploads
    from trainer.engine import StopRequest

LOCAL_RUN_ID = "local"
# --resume values (trainer.checkpoint.LATEST, AUTO), spelled out: importing trainer.checkpoint
# loads torch, which a config error or --help should not wait for.
LATEST = "latest"
AUTO = "auto"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``train`` command."""
    add_config_arguments(parser, set_example="rollout.n=4")
    parser.add_argument("--output-dir", help="where metrics and the resolved config go (config: output_dir)")
    parser.add_argument(
        "--steps",
        type=positive_int,
        help="run at most this many steps now; schedules stay relative to total_steps",
    )
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--resume",
        nargs="?",
        const=LATEST,
        metavar="PATH|auto",
        help="continue from the newest complete checkpoint (auto: or start from step 0 when there is "
        "none), or from the checkpoint (directory) PATH",
    )
    parser.add_argument(
        "--resume-force",
        action="store_true",
        help="resume even from a checkpoint saved with another config (the differences are printed)",
    )


def _with_spec(uri: str, overrides: list[str]) -> tuple[TrainConfig, list[ResolvedSource]]:
    spec = load_run_spec(uri)
    if not overrides:
        problems = check_model_path(spec.config)
        if problems:
            raise ConfigError(uri, problems)
        return spec.config, list(spec.sources)
    origin = f"{uri} with overrides {' '.join(overrides)}"
    data = apply_overrides(spec.config.model_dump(mode="json"), overrides)
    config = config_from_dict(data, origin)
    payload = {"run_id": spec.run_id, "config": config.model_dump(), "sources": spec.sources}
    try:
        spec = RunSpec.model_validate(payload)
    except ValidationError as exc:
        raise config_error_from_validation(exc, RunSpec, origin) from None
    problems = check_model_path(spec.config)
    if problems:
        raise ConfigError(origin, problems)
    return spec.config, list(spec.sources)


def resolve(args: argparse.Namespace) -> tuple[TrainConfig, list[ResolvedSource]]:
    """The config and its resolved data files; raises :class:`ConfigError` with every problem."""
    if args.spec is not None:
        config, sources = _with_spec(args.spec, args.overrides)
    else:
        config = load_config(args.config, args.overrides)
        try:
            sources = list(build_run_spec(config, run_id=LOCAL_RUN_ID).sources)
        except ConfigError as exc:  # name the file the user gave, not the run id
            origin = str(resolve_config_path(args.config))
            if args.overrides:
                origin += " with overrides " + " ".join(args.overrides)
            raise ConfigError(origin, exc.problems) from None
    if args.output_dir is not None:
        if not args.output_dir.strip():
            raise ConfigError("--output-dir", [ConfigProblem("", "must not be empty")])
        config = config.model_copy(update={"output_dir": args.output_dir})
    return config, sources


def run(args: argparse.Namespace) -> int:
    """Resolve, check, train; print one line per problem and return the exit status."""
    resume = getattr(args, "resume", None)
    if getattr(args, "resume_force", False) and resume is None:
        print("train: --resume-force only applies with --resume", file=sys.stderr)
        return 2
    try:
        config, sources = resolve(args)
    except ConfigError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2

    import torch

    from trainer.engine import stop_on_signals

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from trainer.checkpoint.remote import is_remote, remote_outputs

    config = _local_locations(config)
    if is_remote(config.model.path):
        try:
            config = _staged_model(config)
        except OSError as exc:
            print(
                f"train: cannot copy model.path {config.model.path}: {type(exc).__name__}: {exc}",
                file=sys.stderr,
            )
            return 2
    remote = remote_outputs(config.output_dir, config.checkpoint.dir)
    with stop_on_signals() as stop:  # until the trackers are flushed and the reward workers stopped
        if remote is None:
            return _train(config, sources, args, resume, stop)
        return _train_staged(config, sources, args, resume, stop, remote)


def _local_locations(config: TrainConfig) -> TrainConfig:
    """``file://`` URIs in ``output_dir``, ``checkpoint.dir`` and ``model.path`` as the paths they name."""
    from trainer.checkpoint.remote import local_location

    checkpoint = config.checkpoint
    if checkpoint.dir is not None:
        checkpoint = checkpoint.model_copy(update={"dir": local_location(checkpoint.dir)})
    output_dir = local_location(config.output_dir)
    model = config.model.model_copy(update={"path": local_location(config.model.path)})
    return config.model_copy(update={"output_dir": output_dir, "checkpoint": checkpoint, "model": model})


def _staged_model(config: TrainConfig) -> TrainConfig:
    """``config`` with a ``model.path`` URI replaced by this node's copy of it (made when needed)."""
    from trainer.checkpoint.remote_model import stage_model

    path = stage_model(config.model.path, log=lambda line: print(line, flush=True))
    return config.model_copy(update={"model": config.model.model_copy(update={"path": str(path)})})


def _train_staged(
    config: TrainConfig,
    sources: list[ResolvedSource],
    args: argparse.Namespace,
    resume: str | None,
    stop: StopRequest,
    remote: RemoteOutputs,
) -> int:
    """Train in local staging folders mirrored to the remote ``output_dir`` / ``checkpoint.dir``."""
    where = " and ".join(m.uri for m in (remote.outputs, remote.checkpoints) if m is not None)
    skipped: list[str] = []
    try:
        pulled = remote.prepare(resume=resume is not None, skipped=skipped)
    except OSError as exc:
        print(f"train: cannot use {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    for line in skipped:
        print(f"train: passed over a remote checkpoint: {line}", flush=True)
    if pulled is not None:
        print(f"train: copied the checkpoint of step {pulled.step} from {where}", flush=True)
    update: dict = {}
    if remote.output_dir is not None:
        update["output_dir"] = str(remote.output_dir)
    if remote.checkpoint_dir is not None and config.checkpoint.dir is not None:
        update["checkpoint"] = config.checkpoint.model_copy(update={"dir": str(remote.checkpoint_dir)})
    staged = config.model_copy(update=update)
    staging = remote.output_dir or remote.checkpoint_dir
    print(f"train: outputs staged in {staging}, copied to {where}", flush=True)

    uploads, copied = _reported_uploads(remote, where)

    def copy_up(checkpoint: Checkpoint) -> None:
        try:
            uploads.submit(checkpoint)
        except OSError as exc:
            print(f"train: warning: could not copy {checkpoint.path} to {where}: {exc}", file=sys.stderr)

    status = 1
    try:
        status = _train(staged, sources, args, resume, stop, after_checkpoint=copy_up)
        return status
    finally:
        pending = uploads.pending
        if pending:
            print(f"train: waiting for the copy of the {_what(pending[-1])} to {where}", flush=True)
        uploads.close()
        try:
            remote.push_outputs()
        except OSError as exc:
            print(f"train: warning: could not copy the outputs to {where}: {exc}", file=sys.stderr)
        else:
            if status == 0 and config.total_steps in copied:  # the finished run is all in remote storage
                for folder in remote.remove_staging():
                    print(f"train: removed the staging folder {folder}: the finished run is in {where}")


def _what(snapshot: Snapshot) -> str:
    kind = "checkpoint" if snapshot.checkpoint is not None else "outputs"
    return f"{kind} of step {snapshot.step}"


def _reported_uploads(remote: RemoteOutputs, where: str) -> tuple[Uploads, set[int]]:
    """The background copies of a staged run, each outcome printed; and the steps copied so far."""
    from trainer.checkpoint.layout import checkpoint_name
    from trainer.checkpoint.uploads import Uploads

    copied: set[int] = set()

    def on_copied(snapshot: Snapshot) -> None:
        copied.add(snapshot.step)
        if remote.checkpoints is not None:
            target = f"{remote.checkpoints.uri.rstrip('/')}/{checkpoint_name(snapshot.step)}"
            print(f"train: checkpoint of step {snapshot.step} copied to {target}", flush=True)

    def on_failed(snapshot: Snapshot, exc: BaseException) -> None:
        copied.discard(snapshot.step)
        print(
            f"train: warning: could not copy the {_what(snapshot)} to {where}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )

    def on_dropped(snapshot: Snapshot, newer: Snapshot) -> None:
        print(
            f"train: the {_what(snapshot)} was not copied to {where}: "
            f"step {newer.step}, newer, is copied instead",
            flush=True,
        )

    uploads = Uploads(remote, on_copied=on_copied, on_failed=on_failed, on_dropped=on_dropped)
    return uploads, copied


def _train(
    config: TrainConfig,
    sources: list[ResolvedSource],
    args: argparse.Namespace,
    resume: str | None,
    stop: StopRequest,
    *,
    after_checkpoint: Callable[[Checkpoint], None] | None = None,
) -> int:
    from trainer.engine import EngineFailure, PreflightError, TrainingStopped, open_session, run_loop
    from trainer.sft.warm_start import warm_started

    started = time.perf_counter()
    try:
        config = warm_started(config, sources, log=lambda line: print(line, flush=True))
    except PreflightError as exc:
        print(f"train: warm-start: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"train: warm-start failed: {exc}", file=sys.stderr)
        return 1
    try:
        session = open_session(
            config, sources, resume=resume, resume_force=getattr(args, "resume_force", False)
        )
    except PreflightError as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    except EngineFailure as exc:
        print(f"train: cannot start: {exc}", file=sys.stderr)
        return 1
    if session.checkpoints is not None:
        session.checkpoints.after_save = after_checkpoint
    with session:
        out = session.output_dir
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(config_to_yaml(config), encoding="utf-8")
        print(
            f"train: {len(sources)} source(s), {session.rows_checked} row(s) checked, output in {out}",
            flush=True,
        )
        if session.resumed_from is not None:
            print(
                f"train: resumed from {session.resumed_from.path} at step {session.state.step}",
                flush=True,
            )
            if session.state.step >= config.total_steps:
                print(f"train: nothing to do: the run already did its {config.total_steps} step(s)")
                return 0
        elif resume == AUTO:
            print(f"train: no checkpoint yet in {session.checkpoint_dir}; starting from step 0", flush=True)
        try:
            summary = run_loop(session, max_steps=args.steps, stop=stop)
        except (TrainingStopped, PreflightError) as exc:
            checkpoint = getattr(exc, "checkpoint", None)
            if checkpoint is not None:
                print(f"train: checkpoint of step {session.state.step} in {checkpoint}", flush=True)
            print(f"train: {exc}", file=sys.stderr)
            return 1
        except EngineFailure as exc:
            from trainer.checkpoint import latest_complete

            last = latest_complete(session.checkpoint_dir) if session.checkpoint_dir is not None else None
            where = f"resume from {last.path} with --resume latest" if last else "no checkpoint was written"
            print(f"train: stopped at step {session.state.step + 1}: {exc}; {where}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:  # SIGINT before the handler was in place, or outside the main thread
            print(f"train: interrupted after step {session.state.step}", file=sys.stderr)
            return 130
    # The session is closed: the metrics are delivered (or spooled) and the reward workers gone.
    if summary.stopped_by is not None:
        where = f"checkpoint in {summary.last_checkpoint}" if summary.last_checkpoint else "no checkpoint"
        print(f"train: stopped by {summary.stopped_by} after step {session.state.step}; {where}", flush=True)
        return stop.exit_status
    elapsed = time.perf_counter() - started
    metrics_file = Path(out) / config.tracking.jsonl if config.tracking.jsonl else None
    where = f"; metrics in {metrics_file}" if metrics_file is not None else ""
    if summary.checkpoints:
        last = summary.checkpoints[-1]
        print(f"train: checkpoint in {last}; the policy as a Hugging Face model in {last / 'policy'}")
    print(f"train: finished {summary.steps} step(s) in {elapsed:.1f} s{where}", flush=True)
    return 0

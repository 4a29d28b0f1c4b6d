"""The warm-start a run does itself before GRPO (``warm_start.steps`` > 0).

A random-init model is almost never rewarded, so a run launched from the platform on one would
log rewards of 0 throughout. With ``warm_start.steps`` set, the run first trains the model
supervised on its own sources' ground truths (:func:`trainer.sft.run_sft`), writes it to
``<output_dir>/warm_start`` and starts GRPO from there. A later attempt of the same run (a resume)
finds that directory and reuses it, as long as it was made with the same options from the same
model; otherwise it is made again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from trainer.checkpoint.remote import portable_location
from trainer.config import ResolvedSource, TrainConfig
from trainer.sft.train import SUMMARY_FILE, SFTOptions, run_sft

WARM_START_DIR = "warm_start"


def warm_start_options(config: TrainConfig) -> SFTOptions:
    """The :class:`SFTOptions` of ``config.warm_start`` (about ten progress lines in all)."""
    section = config.warm_start
    return SFTOptions(
        steps=section.steps,
        batch_size=section.batch_size,
        lr=section.lr,
        warmup_steps=min(10, section.steps),
        log_every=max(1, section.steps // 10),
        target_accuracy=section.target_accuracy,
        eval_every=section.eval_every,
        eval_rows=section.eval_rows,
    )


def _made_by(directory: Path) -> dict | None:
    """The options and base model a finished warm-start directory records, or None."""
    try:
        record = json.loads((directory / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record.get("warm_start") if isinstance(record, dict) else None


def warm_started(
    config: TrainConfig,
    sources: Sequence[ResolvedSource],
    *,
    log: Callable[[str], None] = print,
) -> TrainConfig:
    """``config`` with ``model.path`` on its warm-started model, made first when needed.

    Unchanged when ``warm_start.steps`` is 0. The model is written atomically: an attempt stopped
    half-way leaves no directory that a resume would take for finished.
    """
    if not config.warm_start.steps:
        return config
    out = Path(config.output_dir) / WARM_START_DIR
    options = warm_start_options(config)
    wanted = {
        "base_model": portable_location(config.model.path),
        "steps": options.steps,
        "batch_size": options.batch_size,
        "lr": options.lr,
        "seed": config.seed,
    }
    if options.target_accuracy is not None:  # records of warm-starts without a target stay valid
        wanted |= {
            "target_accuracy": options.target_accuracy,
            "eval_every": options.eval_every,
            "eval_rows": options.eval_rows,
        }
    if _made_by(out) == wanted:
        log(f"train: warm-start: reusing {out}")
    else:
        log(
            f"train: warm-start: {options.steps} supervised step(s) of {options.batch_size} sample(s) "
            f"at lr {options.lr:g} from {config.model.path}"
        )
        summary = run_sft(config, sources, options, out_dir=out, log=log, record={"warm_start": wanted})
        last = summary.losses[-1] if summary.losses else float("nan")
        log(f"train: warm-start: done in {summary.seconds:.1f} s, final loss {last:.4f}; model in {out}")
    model = config.model.model_copy(update={"path": str(out)})
    return config.model_copy(update={"model": model})

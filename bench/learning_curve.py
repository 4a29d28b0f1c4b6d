"""Does the CPU demo learn? SFT warm-start, then GRPO with the advantage sign +1 and -1 (the control).

Usage::

    python bench/learning_curve.py [--out var/learning_curve] [--data var/synth-lc] [--threads 1]
        [--sft-threads 2] [--sft-steps 1200] [--grpo-steps 200] [--png docs/learning_curve.png]
        [--set KEY=VALUE ...]

What it runs, all on the ``tiny-cpu-demo`` preset (``--set`` overrides apply to every stage):

1. ``python -m trainer synth`` data, if ``--data`` has none yet (2,000 rows per source, 10 %
   held out: 200 test rows per source, all of them evaluated);
2. ``python -m trainer sft`` for ``--sft-steps`` steps: the warm-start both runs start from;
3. ``python -m trainer train`` twice from that model, at the same time on one core each
   (``--sequential``: one after the other), identical except for ``algo.advantage_sign``:
   ``1`` (GRPO) and ``-1`` (the control, which pushes the policy away from rewarded
   responses). Each evaluates greedily on the held-out rows of every source before training
   and every ``eval.every`` steps;
4. a PNG of the held-out ``eval/accuracy`` of each source over the steps, both runs side by
   side, with a band of ±2 standard errors around the starting value (binomial noise of the
   held-out estimate), and a table with a verdict per source.

A source *learns* when its mean accuracy over the last two evaluations exceeds its start by
more than two standard errors of the difference (√(2·p(1−p)/n), p the start, n its test rows),
and the control's does not. ``summary.json`` in ``--out`` holds every number. Figures and the
wall time of each stage are printed; the plot needs matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RUNS = {"grpo": 1, "control": -1}  # run name -> algo.advantage_sign
PER_SOURCE = 2000
TEST_FRACTION = 0.1
TEST_ROWS = round(PER_SOURCE * TEST_FRACTION)  # every held-out row is evaluated
IMAGE_SIZE = 112


def _command(args: tuple[str, ...], threads: int) -> list[str]:
    command = [sys.executable, "-m", "trainer", *args]
    if args[0] != "synth":
        command += ["--threads", str(threads)]
    return command


def _failure(args: tuple[str, ...], code: int, log: Path) -> RuntimeError:
    tail = log.read_text(encoding="utf-8").splitlines()[-15:]
    return RuntimeError(f"python -m trainer {args[0]} exited {code}; the end of {log}:\n" + "\n".join(tail))


def _trainer(*args: str, log: Path, threads: int) -> float:
    """Run ``python -m trainer ARGS`` with its output in ``log``; return its wall time (raises on failure)."""
    return _trainers({"job": (args, log)}, threads=threads)["job"]


def _trainers(jobs: dict[str, tuple[tuple[str, ...], Path]], *, threads: int) -> dict[str, float]:
    """Run several ``python -m trainer`` commands at once; ``{name: wall time}`` (raises if one fails)."""
    started = time.perf_counter()
    running: dict[str, tuple[subprocess.Popen, Any]] = {}
    try:
        for name, (args, log) in jobs.items():
            handle = log.open("w", encoding="utf-8")
            process = subprocess.Popen(
                _command(args, threads), cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT
            )
            running[name] = (process, handle)
        timings: dict[str, float] = {}
        for name, (process, handle) in running.items():
            code = process.wait()
            handle.close()
            timings[name] = time.perf_counter() - started
            if code != 0:
                args, log = jobs[name]
                raise _failure(args, code, log)
        return timings
    finally:
        for process, handle in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
            handle.close()


def eval_curves(metrics_file: Path, key: str = "eval/accuracy") -> dict[str, dict[int, float]]:
    """``{source: {step: value}}`` of ``key`` in a run's metrics JSONL (the last value of a step wins)."""
    curves: dict[str, dict[int, float]] = defaultdict(dict)
    for line in metrics_file.read_text(encoding="utf-8").splitlines():
        try:
            point = json.loads(line)
        except json.JSONDecodeError:
            continue
        if point.get("key") == key and point.get("source"):
            curves[point["source"]][int(point["step"])] = float(point["value"])
    return dict(curves)


def verdict(curve: dict[int, float], n: int) -> dict[str, float]:
    """Start, end (mean of the last two evaluations), gain and the noise threshold of one curve.

    >>> v = verdict({0: 0.2, 50: 0.3, 100: 0.5}, 100)
    >>> round(v["gain"], 3), round(v["threshold"], 3)
    (0.2, 0.113)
    """
    steps = sorted(curve)
    start = curve[steps[0]]
    end = sum(curve[s] for s in steps[-2:]) / len(steps[-2:])
    p = min(max(start, 1.0 / n), 1.0 - 1.0 / n)  # a start of 0 or 1 still has some noise
    threshold = 2.0 * math.sqrt(2.0 * p * (1.0 - p) / n)
    return {"start": start, "end": end, "gain": end - start, "threshold": threshold}


def plot(
    curves: dict[str, dict[str, dict[int, float]]],
    out: Path,
    title: str,
    bands: dict[str, tuple[float, float]] | None = None,
) -> None:
    """Per-source held-out accuracy of every run, one panel per source, written to ``out`` (PNG).

    ``bands`` maps a source to the (low, high) accuracy its noise explains, shaded in its panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = sorted({s for run in curves.values() for s in run})
    columns = 4
    rows = math.ceil(len(sources) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False, sharex=True)
    styles = {
        "grpo": ("tab:blue", "-", "GRPO (advantage sign +1)"),
        "control": ("tab:red", "--", "control (sign -1)"),
    }
    for ax, source in zip(axes.flat, sources, strict=False):
        for run, (color, style, label) in styles.items():
            curve = curves.get(run, {}).get(source)
            if curve:
                steps = sorted(curve)
                ax.plot(steps, [curve[s] for s in steps], style, color=color, marker="o", ms=3, label=label)
        if bands and source in bands:
            ax.axhspan(*bands[source], color="grey", alpha=0.15, lw=0)
        ax.set_title(source, fontsize=9)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(sources) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("training step", fontsize=8, y=0.06)
    fig.supylabel("held-out accuracy (greedy)", fontsize=8)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="var/learning_curve", help="working directory of the experiment")
    parser.add_argument("--data", default="var/synth-lc", help="synthetic data (generated when missing)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each GRPO run")
    parser.add_argument(
        "--sft-threads", type=int, default=2, help="torch threads of the warm-start (it runs alone)"
    )
    parser.add_argument("--sft-steps", type=int, default=1200)
    parser.add_argument("--sft-batch-size", type=int, default=16)
    parser.add_argument("--sft-lr", type=float, default=2e-3)
    parser.add_argument("--grpo-steps", type=int, default=None, help="total_steps of each run (preset's)")
    parser.add_argument("--runs", default="grpo,control", help="which runs: grpo, control or both")
    parser.add_argument(
        "--sequential", action="store_true", help="run GRPO and the control one after the other"
    )
    parser.add_argument("--png", default=None, help="where the plot goes (default: <out>/learning_curve.png)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    out, data = (ROOT / args.out).resolve(), (ROOT / args.data).resolve()
    out.mkdir(parents=True, exist_ok=True)
    # One list of overrides for every stage and for reading the config back below.
    overrides = [f"data.root={data}", f"eval.max_samples_per_source={TEST_ROWS}", *args.overrides]
    if args.grpo_steps is not None:
        overrides.append(f"total_steps={args.grpo_steps}")
    common = ["--config", "tiny-cpu-demo", *(arg for o in overrides for arg in ("--set", o))]
    timings: dict[str, float] = {}
    if not (data / "manifest.json").is_file():
        timings["synth"] = _trainer(
            "synth",
            "--out",
            str(data),
            "--per-source",
            str(PER_SOURCE),
            "--test-fraction",
            str(TEST_FRACTION),
            "--image-size",
            str(IMAGE_SIZE),
            log=out / "synth.log",
            threads=args.threads,
        )
    sft_dir = out / "sft"
    timings["sft"] = _trainer(
        "sft",
        *common,
        "--out",
        str(sft_dir),
        "--steps",
        str(args.sft_steps),
        "--batch-size",
        str(args.sft_batch_size),
        "--lr",
        str(args.sft_lr),
        "--log-every",
        "50",
        log=out / "sft.log",
        threads=args.sft_threads,
    )
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    jobs: dict[str, tuple[tuple[str, ...], Path]] = {}
    for run in runs:
        run_dir = out / run
        if (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").unlink()  # a fresh curve, not appended to an old one
        jobs[run] = (
            (
                "train",
                *common,
                "--set",
                f"model.path={sft_dir}",
                "--set",
                f"algo.advantage_sign={RUNS[run]}",
                "--set",
                "checkpoint.every=0",
                "--output-dir",
                str(run_dir),
            ),
            out / f"{run}.log",
        )
    if args.sequential:
        for run, (job_args, log) in jobs.items():
            timings[run] = _trainer(*job_args, log=log, threads=args.threads)
    else:  # one core each: the two runs take the wall time of one
        timings |= _trainers(jobs, threads=args.threads)
    curves = {run: eval_curves(out / run / "metrics.jsonl") for run in runs}

    from trainer.config import load_config

    cap = load_config("tiny-cpu-demo", overrides).eval.max_samples_per_source
    n = min(TEST_ROWS, cap or TEST_ROWS)
    table: dict[str, dict[str, Any]] = {}
    for run, by_source in curves.items():
        for source, curve in by_source.items():
            table.setdefault(source, {})[run] = verdict(curve, n)
    for runs in table.values():
        grpo, control = runs.get("grpo"), runs.get("control")
        runs["learns"] = bool(
            grpo
            and grpo["gain"] > grpo["threshold"]
            and (control is None or control["gain"] <= control["threshold"])
        )
    summary = {"timings_s": timings, "eval_samples_per_source": n, "sources": table, "curves": curves}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    print(f"held-out accuracy, {n} test rows per source (start -> mean of the last two evaluations)")
    print(f"{'source':<16} {'GRPO':>17} {'control (sign -1)':>19} {'2 SE':>6}  learns")
    for source in sorted(table):
        runs = table[source]
        cells = []
        for run in ("grpo", "control"):
            v = runs.get(run)
            cells.append(f"{v['start']:.2f} -> {v['end']:.2f} ({v['gain']:+.2f})" if v else "-")
        threshold = (runs.get("grpo") or runs.get("control") or {}).get("threshold", float("nan"))
        learns = "yes" if runs["learns"] else "no"
        print(f"{source:<16} {cells[0]:>17} {cells[1]:>19} {threshold:>6.2f}  {learns}")
    print("wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()))
    png = Path(args.png) if args.png else out / "learning_curve.png"
    try:
        plot(
            curves,
            png if png.is_absolute() else ROOT / png,
            "tiny-cpu-demo: SFT warm-start, then GRPO vs control (grey: start ± 2 SE)",
            {
                source: (v["start"] - v["threshold"], v["start"] + v["threshold"])
                for source, runs in table.items()
                if (v := runs.get("grpo") or runs.get("control"))
            },
        )
        print(f"plot: {png}")
    except ImportError:
        print("plot: skipped (matplotlib is not installed)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())

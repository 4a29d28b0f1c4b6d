"""Does the CPU demo learn, on every seed? SFT warm-start, then GRPO and a sign-flipped control.

Usage::

    python bench/learning_curve.py [--seeds 0,1,2] [--parallel-seeds] [--out var/learning_curve]
        [--data var/synth-lc] [--threads 1] [--sft-threads 2] [--sft-steps 2000] [--sft-target 0.5]
        [--grpo-steps N]
        [--variant NAME:KEY=VALUE,KEY=VALUE ...] [--reuse-warm-start] [--report-only]
        [--png docs/learning_curve.png] [--set KEY=VALUE ...]

Each seed is a fully independent experiment on the ``tiny-cpu-demo`` preset, in ``<out>/seed-<S>``
(``--set`` overrides apply to every stage of every seed):

1. ``python -m trainer synth --seed S`` data in ``<data>/seed-<S>``, if it has none yet (2,000 rows
   per source, 10 % held out: 200 test rows per source, all of them evaluated);
2. ``python -m trainer sft`` with ``seed=S`` for ``--sft-steps`` steps: the warm-start every run
   of that seed starts from. With ``--sft-target`` (default 0.5; 0 trains every source to the end)
   it stops training a source once it answers that share of its dev rows right;
3. ``python -m trainer train`` from that model with ``seed=S``, once per run, all at the same time
   on ``--threads`` each (``--sequential``: one after the other): ``grpo`` (``algo.advantage_sign:
   1``), ``control`` (``-1``: pushes the policy away from rewarded responses) and each
   ``--variant`` (GRPO with more overrides). Each evaluates greedily on the held-out rows of every
   source before training and every ``eval.every`` steps;
4. a PNG of the held-out ``eval/accuracy`` of each source over the steps, every seed's runs in
   one panel per source, with each seed's band of ±2 standard errors around its start.

A source *learns* on a seed when its mean accuracy over the last two evaluations exceeds its start
by more than two standard errors of the difference (√(2·p(1−p)/n), p the start, n its test rows)
and the control's does not. The verdict over seeds is that it learns on every one of them; the
mean gain and its spread (sample standard deviation over seeds) are reported beside it.
``summary.json`` in ``--out`` holds every number. Figures and the wall time of each stage of each
seed are printed; the plot needs matplotlib (``pip install matplotlib``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
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
    curves: dict[int, dict[str, dict[str, dict[int, float]]]],
    out: Path,
    title: str,
    bands: dict[int, dict[str, tuple[float, float]]] | None = None,
) -> None:
    """Per-source held-out accuracy of every run of every seed, one panel per source (PNG at ``out``).

    ``curves`` is ``{seed: {run: {source: {step: accuracy}}}}``; ``bands`` maps a seed and a source
    to the (low, high) accuracy its noise explains, shaded in that source's panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = sorted({s for runs in curves.values() for run in runs.values() for s in run})
    run_names = sorted({run for runs in curves.values() for run in runs}, key=_run_order)
    palette = ["tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink", "tab:olive"]
    colors = {"grpo": "tab:blue", "control": "tab:red"}
    colors |= {
        run: palette[i % len(palette)] for i, run in enumerate(r for r in run_names if r not in colors)
    }
    markers = "osD^v<>P"
    columns = 4
    rows = math.ceil(len(sources) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False, sharex=True)
    for ax, source in zip(axes.flat, sources, strict=False):
        for index, (seed, runs) in enumerate(sorted(curves.items())):
            for run in run_names:
                curve = runs.get(run, {}).get(source)
                if not curve:
                    continue
                steps = sorted(curve)
                ax.plot(
                    steps,
                    [curve[s] for s in steps],
                    "--" if run == "control" else "-",
                    color=colors[run],
                    marker=markers[index % len(markers)],
                    ms=3,
                    lw=1,
                    alpha=0.85,
                    label=f"{_run_label(run)}, seed {seed}",
                )
            if bands and source in bands.get(seed, {}):
                ax.axhspan(*bands[seed][source], color="grey", alpha=0.12, lw=0)
        ax.set_title(source, fontsize=9)
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(sources) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=min(6, max(1, len(labels))), fontsize=7, frameon=False
    )
    legend_rows = math.ceil(len(labels) / 6) if labels else 1
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("training step", fontsize=8, y=0.02 + 0.03 * legend_rows)
    fig.supylabel("held-out accuracy (greedy)", fontsize=8)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * legend_rows, 1, 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def _run_order(run: str) -> tuple[int, str]:
    return ({"grpo": 0, "control": 1}.get(run, 2), run)


def _run_label(run: str) -> str:
    return {"grpo": "GRPO", "control": "control (sign -1)"}.get(run, run)


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``NAME:KEY=VALUE,KEY=VALUE`` -> ``(NAME, ["KEY=VALUE", ...])``, refusing what cannot be one.

    >>> parse_variant("lr4:algo.lr=4e-4,rollout.n=16")
    ('lr4', ['algo.lr=4e-4', 'rollout.n=16'])
    """
    name, _, rest = text.partition(":")
    overrides = [o.strip() for o in rest.split(",") if o.strip()]
    if not name.isidentifier() or name in RUNS or not overrides or any("=" not in o for o in overrides):
        raise argparse.ArgumentTypeError(
            "a variant is NAME:KEY=VALUE[,KEY=VALUE...] with NAME a word other than grpo or control,"
            f" got {text!r}"
        )
    return name, overrides


def seed_table(curves: dict[str, dict[str, dict[int, float]]], n: int) -> dict[str, dict[str, Any]]:
    """``{source: {run: verdict, ..., "learns": bool}}`` of one seed's runs (see :func:`verdict`)."""
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
    return table


def across_seeds(tables: dict[int, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per source and run, over seeds: every gain, the mean gain and its spread, and the verdict.

    A source learns when it learns on every seed; the control collapses when its gain is at most
    its noise on every seed.

    >>> gains = ((1, 0.2), (2, 0.3))
    >>> t = {s: {"x": {"grpo": {"gain": g, "threshold": 0.1}, "learns": g > 0.1}} for s, g in gains}
    >>> a = across_seeds(t)["x"]
    >>> grpo = a["runs"]["grpo"]
    >>> a["learns_every_seed"], round(grpo["mean_gain"], 2), round(grpo["sd_gain"], 3)
    (True, 0.25, 0.071)
    """
    sources = sorted({source for table in tables.values() for source in table})
    result: dict[str, dict[str, Any]] = {}
    for source in sources:
        per_seed = {seed: table[source] for seed, table in tables.items() if source in table}
        runs: dict[str, dict[str, Any]] = {}
        for run in sorted({r for v in per_seed.values() for r in v if r != "learns"}, key=_run_order):
            gains = [v[run]["gain"] for v in per_seed.values() if run in v]
            runs[run] = {
                "gains": gains,
                "mean_gain": statistics.fmean(gains),
                "sd_gain": statistics.stdev(gains) if len(gains) > 1 else 0.0,
                "min_gain": min(gains),
                "beats_noise_every_seed": all(
                    v[run]["gain"] > v[run]["threshold"] for v in per_seed.values()
                ),
            }
        control_seeds = [v["control"] for v in per_seed.values() if "control" in v]
        result[source] = {
            "seeds": sorted(per_seed),
            "learns_every_seed": len(per_seed) == len(tables) and all(v["learns"] for v in per_seed.values()),
            "learns_on": sum(bool(v["learns"]) for v in per_seed.values()),
            "control_collapses": all(c["gain"] <= c["threshold"] for c in control_seeds),
            "runs": runs,
        }
    return result


def run_seed(
    seed: int,
    *,
    out: Path,
    data: Path,
    overrides: list[str],
    variants: dict[str, list[str]],
    runs: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """One independent experiment: data, warm-start and every run on ``seed``; its curves and timings."""
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"data.root={data}", *overrides, f"seed={seed}"]
    common = ["--config", "tiny-cpu-demo", *(arg for o in overrides for arg in ("--set", o))]
    timings: dict[str, float] = {}
    if not (data / "manifest.json").is_file():
        timings["synth"] = _trainer(
            "synth",
            "--out",
            str(data),
            "--seed",
            str(seed),
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
    if args.reuse_warm_start and (sft_dir / "config.json").is_file():
        print(f"seed {seed}: reusing the warm-start in {sft_dir}", flush=True)
    else:
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
            *(
                ("--target-accuracy", str(args.sft_target), "--eval-every", str(args.sft_eval_every))
                if args.sft_target
                else ()
            ),
            log=out / "sft.log",
            threads=args.sft_threads,
        )
    jobs: dict[str, tuple[tuple[str, ...], Path]] = {}
    for run in runs:
        run_dir = out / run
        if (run_dir / "metrics.jsonl").exists():
            (run_dir / "metrics.jsonl").unlink()  # a fresh curve, not appended to an old one
        extra = [f"algo.advantage_sign={RUNS.get(run, 1)}", *variants.get(run, [])]
        jobs[run] = (
            (
                "train",
                *common,
                "--set",
                f"model.path={sft_dir}",
                "--set",
                "checkpoint.every=0",
                *(arg for o in extra for arg in ("--set", o)),
                "--output-dir",
                str(run_dir),
            ),
            out / f"{run}.log",
        )
    grpo_started = time.perf_counter()
    if args.sequential:
        for job_args, log in jobs.values():
            _trainer(*job_args, log=log, threads=args.threads)
    else:  # one core each: the runs take the wall time of one
        _trainers(jobs, threads=args.threads)
    timings["grpo"] = time.perf_counter() - grpo_started
    curves = {run: eval_curves(out / run / "metrics.jsonl") for run in runs}
    return {"timings_s": timings, "curves": curves, "warm_start": warm_start_record(sft_dir)}


def warm_start_record(sft_dir: Path) -> dict[str, Any]:
    """Steps of the warm-start, and (with a target) when each source reached it and the dev evaluations."""
    try:
        summary = json.loads((sft_dir / "sft_summary.json").read_text(encoding="utf-8"))["summary"]
    except (OSError, ValueError, KeyError):
        return {}
    return {key: summary.get(key) for key in ("steps", "seconds", "reached", "evaluations")}


def _cell(v: dict[str, float] | None) -> str:
    return f"{v['start']:.2f}->{v['end']:.2f} ({v['gain']:+.2f})" if v else "-"


def print_report(
    tables: dict[int, dict[str, dict[str, Any]]], summary: dict[str, dict[str, Any]], n: int
) -> None:
    print(f"held-out accuracy, {n} test rows per source (start -> mean of the last two evaluations)")
    for seed, table in sorted(tables.items()):
        runs = sorted({r for v in table.values() for r in v if r != "learns"}, key=_run_order)
        print(f"\nseed {seed}")
        print(f"{'source':<16} " + " ".join(f"{_run_label(r):>21}" for r in runs) + f" {'2 SE':>6}  learns")
        for source in sorted(table):
            cells = " ".join(f"{_cell(table[source].get(r)):>21}" for r in runs)
            v = table[source].get("grpo") or table[source].get("control") or {}
            learns = "yes" if table[source]["learns"] else "no"
            print(f"{source:<16} {cells} {v.get('threshold', float('nan')):>6.2f}  {learns}")
    print(f"\nover {len(tables)} seed(s): GRPO gain mean ± sd (min), learns on every seed, control collapses")
    for source, row in summary.items():
        grpo = row["runs"].get("grpo")
        gain = f"{grpo['mean_gain']:+.2f} ± {grpo['sd_gain']:.2f} ({grpo['min_gain']:+.2f})" if grpo else "-"
        others = "  ".join(
            f"{run} {v['mean_gain']:+.2f} ± {v['sd_gain']:.2f}"
            for run, v in row["runs"].items()
            if run not in RUNS
        )
        learns = f"{'yes' if row['learns_every_seed'] else 'no'} ({row['learns_on']}/{len(tables)})"
        collapses = "yes" if row["control_collapses"] else "no"
        print(f"{source:<16} {gain:>24}  {learns:>9}  {collapses:>3}  {others}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, each a whole experiment (0)")
    parser.add_argument(
        "--parallel-seeds", action="store_true", help="run the seeds at the same time (needs their cores)"
    )
    parser.add_argument("--out", default="var/learning_curve", help="working directory of the experiment")
    parser.add_argument("--data", default="var/synth-lc", help="synthetic data (generated when missing)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each GRPO run")
    parser.add_argument(
        "--sft-threads", type=int, default=2, help="torch threads of the warm-start (it runs alone)"
    )
    parser.add_argument("--sft-steps", type=int, default=2000)
    parser.add_argument("--sft-batch-size", type=int, default=16)
    parser.add_argument("--sft-lr", type=float, default=2e-3)
    parser.add_argument(
        "--sft-target",
        type=float,
        default=0.5,
        help="stop warm-starting a source once its dev accuracy reaches this (trainer sft --target-accuracy)",
    )
    parser.add_argument("--sft-eval-every", type=int, default=200, help="steps between those evaluations")
    parser.add_argument(
        "--reuse-warm-start",
        action="store_true",
        help="skip the warm-start of a seed whose <out>/seed-<S>/sft already holds a model",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="run nothing: report and plot the curves already in --out"
    )
    parser.add_argument("--grpo-steps", type=int, default=None, help="total_steps of each run (preset's)")
    parser.add_argument("--runs", default="grpo,control", help="which runs: grpo, control or both")
    parser.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=[],
        type=parse_variant,
        metavar="NAME:KEY=VALUE,...",
        help="another GRPO run with these overrides, beside grpo and control (repeatable)",
    )
    parser.add_argument(
        "--sequential", action="store_true", help="run GRPO, the control and the variants one after the other"
    )
    parser.add_argument("--png", default=None, help="where the plot goes (default: <out>/learning_curve.png)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds takes comma-separated integers, got {args.seeds!r}")
    if not seeds or len(set(seeds)) != len(seeds):
        parser.error(f"--seeds takes distinct integers, got {args.seeds!r}")
    variants = dict(args.variants)
    runs = [r.strip() for r in args.runs.split(",") if r.strip()] + list(variants)

    out, data = (ROOT / args.out).resolve(), (ROOT / args.data).resolve()
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"eval.max_samples_per_source={TEST_ROWS}", *args.overrides]
    if args.grpo_steps is not None:
        overrides.append(f"total_steps={args.grpo_steps}")

    def one(seed: int) -> dict[str, Any]:
        return run_seed(
            seed,
            out=out / f"seed-{seed}",
            data=data / f"seed-{seed}",
            overrides=overrides,
            variants=variants,
            runs=runs,
            args=args,
        )

    if args.report_only:  # the curves the runs left, complete or not
        results = {
            seed: {
                "timings_s": {},
                "curves": {
                    run: eval_curves(path)
                    for run in runs
                    if (path := out / f"seed-{seed}" / run / "metrics.jsonl").is_file()
                },
                "warm_start": warm_start_record(out / f"seed-{seed}" / "sft"),
            }
            for seed in seeds
        }
    else:
        with ThreadPoolExecutor(max_workers=len(seeds) if args.parallel_seeds else 1) as pool:
            results = dict(zip(seeds, pool.map(one, seeds), strict=True))

    from trainer.config import load_config

    cap = load_config("tiny-cpu-demo", [f"data.root={data}", *overrides]).eval.max_samples_per_source
    n = min(TEST_ROWS, cap or TEST_ROWS)
    tables = {seed: seed_table(result["curves"], n) for seed, result in results.items()}
    summary = across_seeds(tables)
    document = {
        "seeds": seeds,
        "eval_samples_per_source": n,
        "variants": variants,
        "across_seeds": summary,
        "per_seed": {
            str(seed): {
                "timings_s": results[seed]["timings_s"],
                "sources": tables[seed],
                "curves": result["curves"],
                "warm_start": result.get("warm_start", {}),
            }
            for seed, result in results.items()
        },
    }
    (out / "summary.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print_report(tables, summary, n)
    for seed, result in sorted(results.items()):
        reached = (result.get("warm_start") or {}).get("reached")
        if reached:
            when = ", ".join(f"{source} at step {step}" for source, step in sorted(reached.items()))
            print(f"warm-start, seed {seed}: target reached by {when}")
        if not result["timings_s"]:
            continue
        stages = ", ".join(f"{k} {v / 60:.1f} min" for k, v in result["timings_s"].items())
        print(f"wall time, seed {seed}: {stages}, {sum(result['timings_s'].values()) / 60:.1f} min in all")
    png = Path(args.png) if args.png else out / "learning_curve.png"
    try:
        plot(
            {seed: result["curves"] for seed, result in results.items()},
            png if png.is_absolute() else ROOT / png,
            f"tiny-cpu-demo, seeds {', '.join(map(str, seeds))}: SFT warm-start, then GRPO vs control "
            "(grey: each seed's start ± 2 SE)",
            {
                seed: {
                    source: (v["start"] - v["threshold"], v["start"] + v["threshold"])
                    for source, runs_of in table.items()
                    if (v := runs_of.get("grpo") or runs_of.get("control"))
                }
                for seed, table in tables.items()
            },
        )
        print(f"plot: {png}")
    except ImportError:
        print("plot: skipped (matplotlib is not installed)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())

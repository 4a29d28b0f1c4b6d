"""Checkpoints copied to S3 on their own thread against copied on the training thread: how long
training is held at each checkpoint, and the time of the whole loop.

Usage: python bench/bench_checkpoint_uploads.py [--mb 256] [--steps 6] [--work 1.0] [--rounds 2]

An S3-compatible server (moto's, from the ``[dev]`` extra) runs in a process of its own on this
machine. A loop of ``--steps`` steps does ``--work`` seconds of torch matrix products a step
(calibrated once, then the same count of products in every run) and saves a checkpoint of
``--mb`` MB after each (``keep_last 2``, staged as a run with ``output_dir: s3://…`` is), then
copies it: through :class:`trainer.checkpoint.uploads.Uploads` (ours, the default of
``python -m trainer train``) or by ``RemoteOutputs.after_checkpoint`` on the loop's thread (the
baseline), the two alternating ``--rounds`` times. It prints the median time the loop waited at
a checkpoint (the save itself excluded) and the loop's time until every copy was done, for
each, and the ratios. Both runs end with the same checkpoints in the bucket, which is checked.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server() -> tuple[subprocess.Popen, str]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return server, endpoint
        except OSError:
            if server.poll() is not None:
                raise SystemExit("the S3 server did not start (is the [dev] extra installed?)") from None
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the S3 server did not open its port in 30 s")


def _work(products: int) -> None:
    import torch

    a = torch.randn(256, 256)
    for _ in range(products):
        a = torch.tanh(a @ a)


def _calibrate(seconds: float) -> int:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        _work(10)
        count += 10
    return count


def _loop(mode: str, args: argparse.Namespace, products: int, options: dict, staging: Path) -> dict:
    import fsspec
    import torch

    from trainer.checkpoint import save_checkpoint
    from trainer.checkpoint.remote import remote_outputs
    from trainer.checkpoint.uploads import Uploads

    uri = f"s3://bench-uploads/{mode}-{time.monotonic_ns()}"
    remote = remote_outputs(uri, None, {"TRIUNE_STAGING_DIR": str(staging)})
    remote.prepare(resume=False)
    uploads = Uploads(remote) if mode == "background" else None
    tensor = torch.randn(args.mb * (1 << 20) // 4)
    (remote.outputs.local / "metrics.jsonl").write_text("")
    waits = []
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        _work(products)
        with (remote.outputs.local / "metrics.jsonl").open("a") as handle:
            handle.write(f'{{"step":{step},"key":"loss","value":0.1}}\n' * 600)
        tensor[0] = step
        checkpoint = save_checkpoint(
            remote.checkpoints.local,
            step,
            {"step": step},
            write_files=lambda folder, t=tensor: torch.save({"weights": t}, folder / "weights.pt"),
            keep_last=2,
        )
        held = time.perf_counter()
        if uploads is not None:
            uploads.submit(checkpoint)
        else:
            remote.after_checkpoint(checkpoint)
        waits.append(time.perf_counter() - held)
    if uploads is not None:
        uploads.close()
    remote.push_outputs()
    total = time.perf_counter() - started
    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    steps = [s for s, _ in remote.checkpoints.remote_steps()]
    assert args.steps in steps, f"{mode}: the last checkpoint is not in the bucket ({steps})"
    assert fs.exists(f"{remote.outputs.root}/metrics.jsonl")
    return {"wait": statistics.median(waits), "total": total, "remote": sorted(steps)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="checkpoint size in MB")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--work", type=float, default=1.0, help="seconds of compute a step")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import fsspec
    import torch

    torch.set_num_threads(1)
    server, endpoint = _start_server()
    options = {"endpoint_url": endpoint, "key": "bench", "secret": "bench"}
    fsspec.config.conf["s3"] = options
    try:
        fsspec.filesystem("s3", skip_instance_cache=True, **options).mkdir("bench-uploads")
        products = _calibrate(args.work)
        results: dict[str, list[dict]] = {"background": [], "blocking": []}
        with tempfile.TemporaryDirectory() as tmp:
            for index in range(args.rounds):
                order = ("background", "blocking") if index % 2 == 0 else ("blocking", "background")
                for mode in order:
                    result = _loop(mode, args, products, options, Path(tmp) / f"{mode}-{index}")
                    results[mode].append(result)
                    print(
                        f"round {index + 1} {mode:10s}: waited {result['wait'] * 1000:8.1f} ms a checkpoint "
                        f"(median), loop {result['total']:6.2f} s, bucket holds steps {result['remote']}",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait(timeout=30)
    ours = {k: statistics.median(r[k] for r in results["background"]) for k in ("wait", "total")}
    base = {k: statistics.median(r[k] for r in results["blocking"]) for k in ("wait", "total")}
    print(
        f"\n{args.steps} steps of {args.work:.1f} s, a {args.mb} MB checkpoint after each, copied to S3 "
        f"(moto on this machine)\n"
        f"background copies: waited {ours['wait'] * 1000:.1f} ms a checkpoint, loop {ours['total']:.2f} s\n"
        f"copies on the training thread: waited {base['wait'] * 1000:.1f} ms, loop {base['total']:.2f} s\n"
        f"ratio (ours / baseline): wait {ours['wait'] / base['wait']:.4f}, "
        f"loop {ours['total'] / base['total']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

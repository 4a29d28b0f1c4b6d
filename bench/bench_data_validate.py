"""Sample validation throughput and peak memory, next to plain pyarrow reads of the same file.

Usage: python bench/bench_data_validate.py [--rows 5000] [--batch-rows 256] [--keep FILE]

A parquet file of synthetic samples with images (all eight task types, a
pool of distinct images repeated with distinct ids) is written once, then
each reader runs in its own process so that peak RSS is measured per reader:

  pyarrow read       pq.ParquetFile.iter_batches over every column (the floor: no Python objects)
  pyarrow to_pylist  the same, converting each batch to Python dicts
  ours, per row      iter_samples + validate_sample on each row dict (image checks: the default)
  ours, no images    validate_file(check_images=False)
  ours               validate_file (image headers and integrity checked: the default), which
                     checks a record batch at a time (trainer.data.columnar.batch_errors)
  ours, decode       validate_file(decode_images=True) (every pixel decoded)

validate_file gives the same verdicts as validate_sample row by row; "invalid"
counts the rows with an error (0 here: every generated row is valid).

Goal: ours at >= 25 % of the floor's speed, with peak memory that does not
grow with the file (run with --rows 5000 and --rows 50000 and compare).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

MODES = (
    "pyarrow read",
    "pyarrow to_pylist",
    "ours, per row",
    "ours, no images",
    "ours",
    "ours, decode images",
)


def _rss_mib() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _distinct_png(png: bytes, index: int) -> bytes:
    """The same picture with a tEXt chunk naming ``index``: distinct bytes, so parquet cannot deduplicate."""
    payload = b"Comment\x00" + str(index).encode()
    chunk = struct.pack(">I", len(payload)) + b"tEXt" + payload
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + payload))
    end = png.rindex(b"IEND") - 4  # IEND chunk: length, type, CRC
    return png[:end] + chunk + png[end:]


def write_file(path: str, rows: int, pool: int, batch_rows: int) -> None:
    """Write ``rows`` samples cycling over ``pool`` generated ones, each with its own id and image bytes."""
    from trainer.data.reader import write_parquet
    from trainer.data.synth import TASKS, generate_sample

    tasks = list(TASKS)
    samples = [generate_sample(tasks[i % len(tasks)], i, seed=0).row for i in range(pool)]

    def stream():
        for i in range(rows):
            row = samples[i % pool]
            image = row["images"][0]
            yield {
                **row,
                "images": [{"bytes": _distinct_png(image["bytes"], i), "path": image["path"]}],
                "extra_info": {**row["extra_info"], "id": f"bench-{i:08d}"},
            }

    write_parquet(stream(), path, row_group_rows=batch_rows)


def _one_pass(mode: str, path: str, batch_rows: int) -> tuple[int, int]:
    import pyarrow.parquet as pq

    from trainer.data.reader import iter_samples
    from trainer.data.schema import validate_sample
    from trainer.data.validate import validate_file

    rows = errors = 0
    if mode == "pyarrow read":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            rows += batch.num_rows
    elif mode == "pyarrow to_pylist":
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows):
            rows += len(batch.to_pylist())
    elif mode == "ours, per row":
        for row in iter_samples(path, batch_rows=batch_rows):
            rows += 1
            errors += bool(validate_sample(row))
    else:
        check_images = mode != "ours, no images"
        decode_images = mode == "ours, decode images"
        report = validate_file(path, check_images=check_images, decode_images=decode_images)
        rows, errors = report.rows, report.invalid_rows
    return rows, errors


def measure(mode: str, path: str, batch_rows: int, repeat: int) -> dict[str, float]:
    """Best of ``repeat`` passes of one reader; peak RSS growth over all of them (this process only)."""
    from trainer.data.schema import validate_sample
    from trainer.data.synth import generate_sample

    # Imports and first-call set-up (math-verify, PIL plugins) are not validation cost.
    validate_sample(generate_sample("math", 10**6, seed=99).row, decode_images=True)
    baseline = _rss_mib()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        rows, errors = _one_pass(mode, path, batch_rows)
        best = min(best, time.perf_counter() - start)
    return {"rows": rows, "errors": errors, "seconds": best, "peak_mib": _rss_mib() - baseline}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5000, help="rows in the generated file (5000)")
    parser.add_argument(
        "--batch-rows",
        type=int,
        default=256,
        help="rows per row group, and per batch of the pyarrow and per-row readers (256;"
        " validate_file sizes its batches from the file)",
    )
    parser.add_argument("--pool", type=int, default=64, help="distinct generated samples cycled through (64)")
    parser.add_argument("--repeat", type=int, default=3, help="passes per reader; the best counts (3)")
    parser.add_argument("--keep", help="write the file here and keep it (default: a temporary file)")
    parser.add_argument("--measure", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.measure:
        print(json.dumps(measure(args.measure, args.file, args.batch_rows, args.repeat)))
        return 0

    with tempfile.TemporaryDirectory() as scratch:
        path = args.keep or os.path.join(scratch, "bench.parquet")
        start = time.perf_counter()
        write_file(path, args.rows, args.pool, args.batch_rows)
        size_mib = os.path.getsize(path) / 2**20
        print(f"file: {args.rows} rows, {size_mib:.1f} MiB, written in {time.perf_counter() - start:.1f} s")
        results = {}
        for mode in MODES:
            command = [sys.executable, __file__, "--measure", mode, "--file", path]
            command += ["--batch-rows", str(args.batch_rows), "--repeat", str(args.repeat)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[mode] = json.loads(out.strip().splitlines()[-1])

    floor = results["pyarrow read"]
    floor_speed = floor["rows"] / floor["seconds"]
    print(f"{'reader':<22}{'rows/s':>12}{'vs floor':>10}{'peak RSS +MiB':>15}{'invalid':>9}")
    for mode, result in results.items():
        speed = result["rows"] / result["seconds"]
        print(
            f"{mode:<22}{speed:>12,.0f}{speed / floor_speed:>9.1%}{result['peak_mib']:>15.1f}"
            f"{int(result['errors']):>9}"
        )
    ours = results["ours"]["rows"] / results["ours"]["seconds"]
    pylist = results["pyarrow to_pylist"]["rows"] / results["pyarrow to_pylist"]["seconds"]
    print(f"ours / pyarrow read = {ours / floor_speed:.1%}   ours / pyarrow to_pylist = {ours / pylist:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The disk fills up under an upload: a clean error, nothing half-written kept, and the upload goes
on where it stopped once there is room. The web server runs with a file-size limit (RLIMIT_FSIZE),
which fails writes past it as a full disk does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.faults.client import call, call_json

pytestmark = pytest.mark.slow

LIMIT = 1 << 20  # bytes any file of the web process may hold


@pytest.fixture
def limited_web(stack):
    stack.stop_web()
    stack.start_web(file_size_limit=LIMIT)
    try:
        yield stack
    finally:
        stack.stop_web()
        stack.start_web()


def put_chunk(stack, token: str, upload: dict, data: bytes, first: int):
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Range": f"bytes {first}-{first + len(data) - 1}/{upload['size']}",
    }
    return call(stack, "PUT", f"/api/v1/uploads/{upload['id']}/", token, data, headers)


def stored_files(stack) -> list[Path]:
    return sorted(p for p in stack.storage.rglob("*") if p.is_file())


def dataset_count(stack, seeded: dict) -> int:
    status, body = call(stack, "GET", f"/api/v1/datasets/?project={seeded['project']}", seeded["user_token"])
    assert status == 200
    return body["count"]


def test_a_chunk_that_fills_the_disk_is_refused_whole_and_sent_again_later(limited_web, seeded):
    stack, token = limited_web, seeded["user_token"]
    payload = os.urandom(LIMIT + LIMIT // 2)
    status, upload = call_json(
        stack, "POST", "/api/v1/uploads/", token,
        {"project": seeded["project"], "filename": "big.parquet", "size": len(payload)},
    )  # fmt: skip
    assert status == 201
    half = LIMIT // 2
    assert put_chunk(stack, token, upload, payload[:half], 0)[0] == 200
    status, body = put_chunk(stack, token, upload, payload[half : 2 * half + 4096], half)
    assert status == 507, body
    assert body["code"] == "insufficient_storage"
    assert "storage space" in body["message"] and str(stack.folder) not in body["message"]
    status, body = call(stack, "GET", f"/api/v1/uploads/{upload['id']}/", token)
    assert body["received"] == half  # nothing of the refused chunk was kept
    (partial,) = [p for p in stored_files(stack) if upload["id"] in str(p)]
    assert partial.stat().st_size == half

    # Room again: the same chunk goes through, and the upload completes.
    stack.stop_web()
    stack.start_web()
    assert put_chunk(stack, token, upload, payload[half:], half)[0] == 200
    status, body = call(stack, "GET", f"/api/v1/uploads/{upload['id']}/", token)
    assert (body["received"], body["status"]) == (len(payload), "complete")
    assert partial.read_bytes() == payload


def noise_rows(folder: Path, name: str, rows: int) -> Path:
    """A train file of ``rows`` math samples whose images are random noise (they do not compress)."""
    import io

    import numpy as np
    from PIL import Image

    from trainer.data.reader import iter_samples, write_parquet
    from trainer.data.synth import generate_dataset

    generate_dataset(
        str(folder / name), tasks=["math"], per_source=rows * 2, image_size=56, test_fraction=0.5
    )
    (train,) = (folder / name).glob("train_*.parquet")
    out = []
    rng = np.random.default_rng(len(name))
    for row in iter_samples(str(train)):
        png = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (448, 448, 3), dtype=np.uint8)).save(png, format="PNG")
        row["images"] = [{"bytes": png.getvalue(), "path": None}]
        out.append(row)
    path = folder / f"train_math_{name}.parquet"
    write_parquet(out[:rows], str(path))
    return path


def chunked_upload(stack, seeded: dict, path: Path, chunk: int = LIMIT // 2) -> str:
    token, data = seeded["user_token"], path.read_bytes()
    status, upload = call_json(
        stack, "POST", "/api/v1/uploads/", token,
        {"project": seeded["project"], "filename": path.name, "size": len(data)},
    )  # fmt: skip
    assert status == 201, upload
    for first in range(0, len(data), chunk):
        status, body = put_chunk(stack, token, upload, data[first : first + chunk], first)
        assert status == 200, body
    return upload["id"]


def create_dataset(stack, seeded: dict, uploads: list[str]):
    body = {"project": seeded["project"], "name": "noise", "uploads": uploads, "test_fraction": 0}
    return call_json(stack, "POST", "/api/v1/datasets/", seeded["user_token"], body)


def test_a_dataset_that_fills_the_disk_as_it_is_stored_leaves_no_version_behind(stack, seeded, tmp_path):
    # Two files of ~1.7 MB, each stored as it arrives; their samples go into one file of ~3.4 MB.
    files = [noise_rows(tmp_path, name, rows=4) for name in ("a", "b")]
    sizes = [p.stat().st_size for p in files]
    limit = max(sizes) + LIMIT // 4
    assert sum(sizes) > limit
    stack.stop_web()
    stack.start_web(file_size_limit=limit)
    try:
        uploads = [chunked_upload(stack, seeded, path) for path in files]
        before_datasets = dataset_count(stack, seeded)
        status, answer = create_dataset(stack, seeded, uploads)
        assert status == 507, answer
        assert answer["code"] == "insufficient_storage" and str(stack.folder) not in answer["message"]
        assert dataset_count(stack, seeded) == before_datasets
        assert not [p for p in stored_files(stack) if "datasets" in p.parts or "staging" in p.parts]
    finally:
        stack.stop_web()
        stack.start_web()
    # With room again, the same uploads make the dataset.
    status, answer = create_dataset(stack, seeded, uploads)
    assert status == 201, answer
    assert answer["version"]["sample_count"] == 8

"""Dataset uploads through the REST API: multipart and chunked, validation, versioning, bad files."""

from __future__ import annotations

import io
import json
import struct
import tarfile
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.db import connection

from control.models import Dataset, DatasetVersion, DataSource
from trainer.data.reader import write_jsonl, write_parquet
from trainer.data.synth import generate_dataset, generate_rows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage(storage_root):
    return storage_root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(str(out), per_source=6, image_size=112, test_fraction=0.34)
    return out


def _files(directory: Path, suffix: str = ".parquet"):
    return sorted(p for p in directory.iterdir() if p.name.endswith(suffix))


def _post(client, project, paths, **fields):
    handles = [open(p, "rb") for p in paths]
    try:
        return client.post(
            "/api/v1/datasets/", {"project": project.pk, "name": "orsta", "files": handles, **fields}
        )
    finally:
        for h in handles:
            h.close()


def _staged_leftovers(storage: Path) -> list[Path]:
    staging = storage / "staging"
    return [p for p in staging.rglob("*")] if staging.exists() else []


def test_orsta_layout_upload_creates_tagged_sources(client_for, user, project, corpus, storage):
    client = client_for(user)
    response = _post(client, project, _files(corpus))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["created"] is True
    assert body["version"]["number"] == 1
    assert body["report"]["valid_rows"] == 48  # 8 sources x 6 samples
    sources = {s.name: s for s in DataSource.objects.filter(project=project)}
    assert len(sources) == 8
    det = sources["synth_detection"]
    assert (det.task_type, det.verifier, det.train_count, det.test_count) == ("detection", "detection", 4, 2)
    assert sources["synth_math"].task_type == "math"
    for split_files in det.files.values():
        for uri in split_files:
            assert Path(uri.removeprefix("file://")).exists()
    assert _staged_leftovers(storage) == []

    tagged = client.patch(f"/api/v1/data-sources/{det.pk}/", {"tags": ["perception", "boxes"]}, format="json")
    assert tagged.status_code == 200
    listed = client.get(f"/api/v1/data-sources/?project={project.pk}&tag=perception").json()
    assert [s["name"] for s in listed["results"]] == ["synth_detection"]


def test_same_bytes_again_return_the_existing_version(client_for, user, project, corpus):
    client = client_for(user)
    first = _post(client, project, _files(corpus))
    again = _post(client, project, _files(corpus))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["created"] is False
    assert again.json()["version"]["id"] == first.json()["version"]["id"]
    assert DatasetVersion.objects.count() == 1


def test_chunked_upload_resumes_and_commits(client_for, user, project, corpus):
    client = client_for(user)
    path = _files(corpus)[0]
    data = path.read_bytes()
    created = client.post(
        "/api/v1/uploads/", {"project": project.pk, "filename": path.name, "size": len(data)}, format="json"
    )
    assert created.status_code == 201
    url = f"/api/v1/uploads/{created.json()['id']}/"
    half = len(data) // 2

    def put(start, end):
        return client.put(
            url,
            data[start:end],
            content_type="application/octet-stream",
            HTTP_CONTENT_RANGE=f"bytes {start}-{end - 1}/{len(data)}",
        )

    assert put(0, half).json()["received"] == half
    # A Content-Range whose numbers are thousands of digits long is malformed, not a crash.
    huge = client.put(
        url,
        data[half:],
        content_type="application/octet-stream",
        HTTP_CONTENT_RANGE=f"bytes {half}-1/{'9' * 5000}",
    )
    assert huge.status_code == 400 and "Content-Range" in huge.json()["extra"]["fields"]
    # A chunk that skips ahead is refused with the offset to resume from.
    skipped = put(half + 10, len(data))
    assert skipped.status_code == 409
    assert f"resume from byte {half}" in skipped.json()["message"]
    assert client.get(url).json()["received"] == half
    assert put(half, len(data)).json()["status"] == "complete"

    committed = client.post(
        "/api/v1/datasets/",
        {"project": project.pk, "name": "chunked", "uploads": [created.json()["id"]]},
        format="json",
    )
    assert committed.status_code == 201, committed.json()
    assert committed.json()["report"]["valid_rows"] > 0


def test_jsonl_with_image_archive(client_for, user, project, tmp_path):
    rows = list(generate_rows("counting", 0, 4, image_size=112))
    write_jsonl(rows, str(tmp_path / "train_counting_my_count_4.jsonl"), images_dir=str(tmp_path))
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for png in (tmp_path / "images").rglob("*.png"):
            zf.write(png, png.relative_to(tmp_path).as_posix())
    response = _post(client_for(user), project, [tmp_path / "train_counting_my_count_4.jsonl", archive])
    assert response.status_code == 201, response.json()
    source = DataSource.objects.get(project=project)
    assert (source.name, source.task_type, source.train_count) == ("synth_counting", "counting", 4)


def _bad_row():
    row = next(generate_rows("math", 0, 1, image_size=112))
    row["reward_model"] = {**row["reward_model"], "format_ratio": 1.5}
    return row


def test_invalid_rows_reject_the_whole_upload_by_default(client_for, user, project, tmp_path, storage):
    rows = [*generate_rows("math", 1, 4, image_size=112), _bad_row()]
    path = tmp_path / "mixed.parquet"
    write_parquet(rows, str(path))
    response = _post(client_for(user), project, [path])
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_samples"
    assert body["message"].startswith(
        "1 of 4 samples are invalid (first: mixed.parquet row 4, reward_model.format_ratio"
    )
    assert body["extra"]["rows"][0]["row"] == 4
    csv_url = f"/api/v1/projects/{project.pk}/upload-reports/{body['extra']['report']['errors_csv']}/"
    csv_response = client_for(user).get(csv_url)
    assert csv_response.status_code == 200
    lines = b"".join(csv_response.streaming_content).decode().splitlines()
    assert lines[0] == "file,row,field,message"
    assert lines[1].startswith("mixed.parquet,4,reward_model.format_ratio,")
    assert Dataset.objects.filter(versions__isnull=False).count() == 0
    assert DatasetVersion.objects.count() == 0
    assert not (storage / "datasets").exists() or not any((storage / "datasets").rglob("*.parquet"))
    assert _staged_leftovers(storage) == []


def test_keep_valid_policy_keeps_the_valid_rows(client_for, user, project, tmp_path):
    rows = [*generate_rows("math", 1, 4, image_size=112), _bad_row()]
    path = tmp_path / "mixed.parquet"
    write_parquet(rows, str(path))
    response = _post(client_for(user), project, [path], policy="keep_valid")
    assert response.status_code == 201
    report = response.json()["report"]
    assert (report["valid_rows"], report["invalid_rows"]) == (3, 1)
    assert (
        DataSource.objects.get(project=project).train_count
        + DataSource.objects.get(project=project).test_count
        == 3
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.parquet", b"PAR1 this is not parquet", "data.parquet: not a readable parquet file"),
        ("data.jsonl", b'{"data_source": "x"\n', "data.jsonl"),
        ("notes.txt", b"hello", "notes.txt: unsupported file type"),
        ("empty.jsonl", b"", "files: 0: The submitted file is empty."),
        ("blank.jsonl", b"\n\n", "the files hold no sample"),
    ],
)
def test_unreadable_files_are_refused_cleanly(
    client_for, user, project, tmp_path, storage, name, content, message
):
    path = tmp_path / name
    path.write_bytes(content)
    response = _post(client_for(user), project, [path])
    assert response.status_code == 400, response.json()
    assert response.json()["message"].startswith(message)
    assert DatasetVersion.objects.count() == 0
    assert _staged_leftovers(storage) == []


def test_truncated_parquet_is_refused(client_for, user, project, corpus, tmp_path):
    data = _files(corpus)[0].read_bytes()
    path = tmp_path / "train_math_synth_math_4.parquet"
    path.write_bytes(data[: len(data) // 2])
    response = _post(client_for(user), project, [path])
    assert response.status_code == 400
    assert "not a readable parquet file" in response.json()["message"]


def test_archive_with_traversal_path_is_refused(client_for, user, project, tmp_path):
    rows = list(generate_rows("counting", 0, 1, image_size=112))
    rows[0]["images"] = ["../../etc/passwd"]
    path = tmp_path / "evil.jsonl"
    path.write_text(__import__("json").dumps({**rows[0]}, default=str) + "\n")
    archive = tmp_path / "images.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../../etc/passwd", b"root:x:0:0")
    archive.write_bytes(buffer.getvalue())
    response = _post(client_for(user), project, [path, archive])
    assert response.status_code == 400
    assert "must stay inside" in response.json()["extra"]["rows"][0]["message"]


def test_upload_needs_write_access_and_membership(client_for, user, other_user, project, corpus):
    outsider = _post(client_for(other_user), project, _files(corpus)[:1])
    assert outsider.status_code == 404
    none = client_for(user).post("/api/v1/datasets/", {"project": project.pk, "name": "x"})
    assert none.status_code == 400
    assert "send either files" in none.json()["message"]


def test_oversized_upload_is_refused(client_for, user, project, settings):
    settings.TRIUNE_MAX_UPLOAD_BYTES = 1000
    response = client_for(user).post(
        "/api/v1/uploads/", {"project": project.pk, "filename": "big.parquet", "size": 1001}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["message"] == "big.parquet is 1001 bytes; the limit is 1000 bytes"


def _jsonl_with_images(tmp_path, image_paths: list[str]) -> Path:
    row = next(generate_rows("counting", 0, 1, image_size=112))
    row["images"] = image_paths
    row["prompt"] = [{"role": "user", "content": "<image>" * len(image_paths) + "How many shapes?"}]
    path = tmp_path / "train_counting_synth_counting_1.jsonl"
    path.write_text(json.dumps(row) + "\n")
    return path


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` pixels: a decompression bomb's signature."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat_data = zlib.compress(b"\x00" * 16)
    idat = (
        struct.pack(">I", len(idat_data))
        + b"IDAT"
        + idat_data
        + struct.pack(">I", zlib.crc32(b"IDAT" + idat_data))
    )
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + idat + iend


def _zip(tmp_path, members: dict[str, bytes]) -> Path:
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return archive


@pytest.mark.parametrize(
    ("image_path", "members", "message"),
    [
        ("/etc/passwd", {"a.png": b"x"}, "must be relative"),
        ("bomb.png", {"bomb.png": b"\x00" * (65 * 1024 * 1024)}, "the limit is"),
        ("huge.png", {"huge.png": _png_header_only(100_000, 100_000)}, "pixels"),
        ("text.png", {"text.png": b"this is not an image at all"}, "not a decodable image"),
        ("missing.png", {"other.png": b"x"}, "not found in archive"),
    ],
    ids=["absolute-path", "archive-bomb", "image-bomb", "not-an-image", "missing"],
)
def test_hostile_archives_and_images_are_refused(
    client_for, user, project, tmp_path, storage, image_path, members, message
):
    data = _jsonl_with_images(tmp_path, [image_path])
    response = _post(client_for(user), project, [data, _zip(tmp_path, members)])
    assert response.status_code == 400, response.json()
    row = response.json()["extra"]["rows"][0]
    assert row["field"].startswith("images")
    assert message in row["message"]
    assert DatasetVersion.objects.count() == 0
    assert _staged_leftovers(storage) == []


def test_symlink_in_tar_is_never_followed(client_for, user, project, tmp_path):
    data = _jsonl_with_images(tmp_path, ["link.png"])
    archive = tmp_path / "images.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("link.png")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    response = _post(client_for(user), project, [data, archive])
    assert response.status_code == 400
    assert "not found in archive" in response.json()["extra"]["rows"][0]["message"]


def test_parquet_with_the_wrong_schema_is_refused(client_for, user, project, tmp_path):
    path = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"data_source": ["x"], "question": ["what?"]}), path)
    response = _post(client_for(user), project, [path])
    assert response.status_code == 400
    assert response.json()["message"].startswith("wrong.parquet: wrong schema")


@pytest.mark.django_db(transaction=True)
def test_two_identical_uploads_at_once_make_one_version(client_for, user, project, corpus):
    files = _files(corpus)[:2]
    clients = [client_for(user), client_for(user)]

    def post(client):
        try:
            return _post(client, project, files)
        finally:
            connection.close()  # each thread's own connection, so the test database can be dropped

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(post, clients))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 201], [r.json() for r in responses]
    assert len({r.json()["version"]["id"] for r in responses}) == 1
    assert DatasetVersion.objects.count() == 1

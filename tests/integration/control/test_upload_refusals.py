"""Refused uploads leave nothing behind and never show a server path; safely convertible parquet types pass.

Every bad file goes through ``POST /api/v1/datasets/`` (multipart) and, for the archive cases,
through the chunked upload route too. A refusal must leave no dataset, no version and no file in
the storage folder (except the CSV of row errors the refusal points to), and no message, row error
or CSV line may name a server path: only the file names the user gave.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from control.models import Dataset, DatasetVersion, DataSource
from trainer.data.reader import ORSTA_SCHEMA
from trainer.data.synth import generate_rows

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def storage(storage_root):
    return storage_root


def _rows(task: str = "math", n: int = 3) -> list[dict]:
    return list(generate_rows(task, 0, n, image_size=64))


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _good_parquet() -> bytes:
    return _parquet_bytes(pa.Table.from_pylist(_rows(), schema=ORSTA_SCHEMA))


def _jsonl_row(image_path: str) -> bytes:
    row = _rows("counting", 1)[0]
    row["images"] = [image_path]
    row["prompt"] = [{"role": "user", "content": "<image>How many shapes?"}]
    return (json.dumps(row) + "\n").encode()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _tar_with_symlink() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tf:
        info = tarfile.TarInfo("link.png")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tf.addfile(info)
    return buffer.getvalue()


def _bad_row_parquet() -> bytes:
    rows = _rows()
    rows[1]["reward_model"] = {**rows[1]["reward_model"], "format_ratio": 1.5}
    return _parquet_bytes(pa.Table.from_pylist(rows, schema=ORSTA_SCHEMA))


def _all_rows_bad_jsonl() -> bytes:
    row = _rows("math", 1)[0]
    row["images"] = []
    row["ability"] = ""
    return (json.dumps(row) + "\n").encode()


def _out_of_range_parquet() -> bytes:
    """A reward_model.format_ratio as a uint64 far out of range: every row is refused."""
    rows = _rows()
    table = pa.Table.from_pylist(rows, schema=ORSTA_SCHEMA)
    reward = table.column("reward_model").combine_chunks()
    fields = [reward.field(i) for i in range(reward.type.num_fields)]
    names = [reward.type.field(i).name for i in range(reward.type.num_fields)]
    fields[names.index("format_ratio")] = pa.array([2**64 - 1] * len(rows), pa.uint64())
    reward = pa.StructArray.from_arrays(fields, names=names)
    return _parquet_bytes(
        table.set_column(table.schema.get_field_index("reward_model"), "reward_model", reward)
    )


def _truncated_parquet() -> bytes:
    data = _good_parquet()
    return data[: len(data) // 2]


# Each case: the files of one upload (name -> bytes), and a fragment of the message (or first row error).
BAD_UPLOADS = {
    "not-parquet": (
        {"data.parquet": b"PAR1 this is not parquet"},
        "data.parquet: not a readable parquet file",
    ),
    "truncated-parquet": (
        {"half.parquet": _truncated_parquet()},
        "half.parquet: not a readable parquet file",
    ),
    "wrong-schema": (
        {"wrong.parquet": _parquet_bytes(pa.table({"data_source": ["x"], "question": ["what?"]}))},
        "wrong.parquet: wrong schema",
    ),
    "ratio-out-of-range": ({"big.parquet": _out_of_range_parquet()}, "big.parquet"),
    "invalid-row": ({"mixed.parquet": _bad_row_parquet()}, "mixed.parquet row 2"),
    "every-row-invalid-keep-valid": ({"bad.jsonl": _all_rows_bad_jsonl()}, "bad.jsonl row 1"),
    "not-json": ({"data.jsonl": b'{"data_source": "x"\n'}, "data.jsonl: not valid JSON"),
    "not-utf8": ({"latin.jsonl": b'{"data_source": "caf\xe9"}\n'}, "latin.jsonl: not valid UTF-8"),
    "not-an-object": ({"list.jsonl": b"[1, 2, 3]\n"}, "list.jsonl"),
    "not-gzip": ({"data.jsonl.gz": b"plain text, not gzip"}, "data.jsonl.gz"),
    "no-sample": ({"blank.jsonl": b"\n\n"}, "the files hold no sample"),
    "unsupported-type": ({"notes.txt": b"hello"}, "notes.txt: unsupported file type"),
    "archive-only": ({"imgs.zip": _zip({"a.png": b"x"})}, "no sample file"),
    "two-archives": (
        {"d.jsonl": _jsonl_row("a.png"), "a.zip": _zip({}), "b.zip": _zip({})},
        "2 image archives",
    ),
    "bad-zip": ({"d.jsonl": _jsonl_row("a.png"), "imgs.zip": b"not a zip at all"}, "archive imgs.zip is not"),
    "bad-member": (
        {"d.jsonl": _jsonl_row("a.png"), "imgs.zip": _zip({"a.png": b"this is not an image"})},
        "not a decodable image",
    ),
    "missing-member": (
        {"d.jsonl": _jsonl_row("a.png"), "imgs.zip": _zip({"b.png": b"x"})},
        "not found in archive imgs.zip",
    ),
    "symlink-member": ({"d.jsonl": _jsonl_row("link.png"), "imgs.tar": _tar_with_symlink()}, "imgs.tar"),
    "gzip-not-tar": (
        {"d.jsonl": _jsonl_row("a.png"), "imgs.tar.gz": gzip.compress(b"not a tar")},
        "archive imgs.tar.gz is not",
    ),
}


def _write(tmp_path: Path, files: dict[str, bytes]) -> list[Path]:
    paths = []
    for name, data in files.items():
        path = tmp_path / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def _post_files(client, project, paths: list[Path], **fields):
    handles = [open(p, "rb") for p in paths]
    try:
        return client.post(
            "/api/v1/datasets/", {"project": project.pk, "name": "refused", "files": handles, **fields}
        )
    finally:
        for h in handles:
            h.close()


def _post_chunked(client, project, paths: list[Path], **fields):
    ids = []
    for path in paths:
        data = path.read_bytes()
        created = client.post(
            "/api/v1/uploads/",
            {"project": project.pk, "filename": path.name, "size": len(data)},
            format="json",
        )
        assert created.status_code == 201, created.json()
        upload_id = created.json()["id"]
        sent = client.put(
            f"/api/v1/uploads/{upload_id}/",
            data,
            content_type="application/octet-stream",
            HTTP_CONTENT_RANGE=f"bytes 0-{len(data) - 1}/{len(data)}",
        )
        assert sent.status_code == 200, sent.json()
        ids.append(upload_id)
    return client.post(
        "/api/v1/datasets/",
        {"project": project.pk, "name": "refused", "uploads": ids, **fields},
        format="json",
    )


def _server_paths(storage: Path) -> list[str]:
    return [str(storage), storage.as_uri(), "/staging/", "/uploads/", "upload-", str(Path.cwd())]


def _assert_no_server_path(text: str, storage: Path) -> None:
    for fragment in _server_paths(storage):
        assert fragment not in text, f"{fragment!r} in {text[:500]!r}"


def _assert_nothing_left(client, project, storage: Path) -> None:
    assert Dataset.objects.count() == 0
    assert DatasetVersion.objects.count() == 0
    assert DataSource.objects.count() == 0
    listed = client.get(f"/api/v1/datasets/?project={project.pk}").json()
    assert listed["results"] == []
    for folder in ("datasets", "staging"):
        left = (
            [p for p in (storage / folder).rglob("*") if p.is_file()] if (storage / folder).exists() else []
        )
        assert left == [], left


def _check_refusal(client, project, storage, response, fragment: str) -> None:
    assert response.status_code == 400, response.content[:500]
    body = response.json()
    text = json.dumps(body)
    assert fragment in body["message"] or any(fragment in r["message"] for r in body["extra"].get("rows", []))
    _assert_no_server_path(text, storage)
    report = body["extra"].get("report", {}).get("errors_csv")
    if report:
        csv = client.get(f"/api/v1/projects/{project.pk}/upload-reports/{report}/")
        _assert_no_server_path(b"".join(csv.streaming_content).decode(), storage)
    _assert_nothing_left(client, project, storage)


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_a_refused_upload_leaves_nothing_and_names_only_the_users_files(
    client_for, user, project, tmp_path, storage, case
):
    files, fragment = BAD_UPLOADS[case]
    client = client_for(user)
    policy = "keep_valid" if case.endswith("keep-valid") else "reject"
    response = _post_files(client, project, _write(tmp_path, files), policy=policy)
    _check_refusal(client, project, storage, response, fragment)


@pytest.mark.parametrize("case", ["bad-zip", "bad-member", "missing-member", "not-parquet", "gzip-not-tar"])
def test_a_refused_chunked_upload_leaves_nothing_and_names_only_the_users_files(
    client_for, user, project, tmp_path, storage, case
):
    files, fragment = BAD_UPLOADS[case]
    client = client_for(user)
    response = _post_chunked(client, project, _write(tmp_path, files))
    _check_refusal(client, project, storage, response, fragment)


def test_a_refused_version_of_an_existing_dataset_leaves_it_as_it_was(
    client_for, user, project, tmp_path, storage
):
    client = client_for(user)
    good = tmp_path / "good.parquet"
    good.write_bytes(_good_parquet())
    assert _post_files(client, project, [good]).status_code == 201
    bad = _write(tmp_path, BAD_UPLOADS["bad-member"][0])
    assert _post_files(client, project, bad).status_code == 400
    assert Dataset.objects.count() == 1
    assert list(DatasetVersion.objects.values_list("number", flat=True)) == [1]


def _typed(rows: list[dict], column: str, field: str | None, arrow_type: pa.DataType) -> pa.Table:
    """``rows`` as a table whose ``column`` (or its struct ``field``) has ``arrow_type``."""
    table = pa.Table.from_pylist(rows)
    index = table.schema.get_field_index(column)
    values = table.column(column).combine_chunks()
    if field is None:
        return table.set_column(index, column, values.cast(arrow_type))
    names = [values.type.field(i).name for i in range(values.type.num_fields)]
    children = [values.field(i) for i in range(values.type.num_fields)]
    children[names.index(field)] = children[names.index(field)].cast(arrow_type)
    return table.set_column(index, column, pa.StructArray.from_arrays(children, names=names))


def _null_paths() -> pa.Table:
    rows = _rows("counting")
    for row in rows:
        row["images"] = [{"bytes": image["bytes"], "path": None} for image in row["images"]]
    table = pa.Table.from_pylist(rows)
    assert table.schema.field("images").type.value_type.field("path").type == pa.null()
    return table


def _int_ratio(arrow_type: pa.DataType) -> pa.Table:
    rows = _rows()
    for row in rows:
        row["reward_model"] = {**row["reward_model"], "format_ratio": 1}
    return _typed(rows, "reward_model", "format_ratio", arrow_type)


CONVERTIBLE = {
    "null-image-path": _null_paths,
    "int32-ratio": lambda: _int_ratio(pa.int32()),
    "int64-ratio": lambda: _int_ratio(pa.int64()),
    "large-string": lambda: _typed(_rows(), "data_source", None, pa.large_string()),
    "large-string-answer": lambda: _typed(_rows(), "reward_model", "ground_truth", pa.large_string()),
    "dictionary-string": lambda: _typed(_rows(), "ability", None, pa.dictionary(pa.int32(), pa.string())),
    "large-list-prompt": lambda: _typed(
        _rows(), "prompt", None, pa.large_list(pa.struct([("content", pa.string()), ("role", pa.string())]))
    ),
}


@pytest.mark.parametrize("case", list(CONVERTIBLE))
def test_columns_whose_type_converts_safely_are_accepted(client_for, user, project, tmp_path, case):
    path = tmp_path / "train_math_typed_3.parquet"
    path.write_bytes(_parquet_bytes(CONVERTIBLE[case]()))
    response = _post_files(client_for(user), project, [path])
    assert response.status_code == 201, response.json()
    assert response.json()["report"]["valid_rows"] == 3
    assert response.json()["report"]["invalid_rows"] == 0


@pytest.mark.parametrize(
    "filename",
    ["../../etc/passwd.jsonl", "a\x00b.jsonl", "ü" * 300 + ".parquet", "....", "C:\\evil\\x.jsonl", " "],
)
def test_hostile_file_names_are_refused_or_sanitised_without_a_server_error(
    client_for, user, project, storage, filename
):
    client = client_for(user)
    upload = io.BytesIO(b'{"data_source": "x"}\n')
    upload.name = filename
    response = client.post("/api/v1/datasets/", {"project": project.pk, "name": "hostile", "files": [upload]})
    assert response.status_code == 400, response.content[:300]
    _assert_no_server_path(response.content.decode(), storage)
    created = client.post(
        "/api/v1/uploads/", {"project": project.pk, "filename": filename, "size": 10}, format="json"
    )
    assert created.status_code in (201, 400), created.content[:300]
    _assert_no_server_path(created.content.decode(), storage)
    assert Dataset.objects.count() == 0

"""Batch validation: the same verdicts as validate_sample row by row, on every kind of row and layout."""

from __future__ import annotations

import random
import struct
import zlib

import numpy as np
import pyarrow as pa
import pytest

from trainer.data.columnar import batch_errors
from trainer.data.image_headers import HeaderError, png_size, png_sizes
from trainer.data.reader import ORSTA_SCHEMA, batch_to_rows
from trainer.data.schema import validate_sample

from .factories import make_row, png_bytes, png_claiming_size


def _per_row(batch: pa.RecordBatch, **options) -> dict[int, list]:
    """What validate_sample says of each row iter_samples would yield for ``batch``."""
    verdicts = {}
    for row, sample in enumerate(batch_to_rows(batch)):
        errors = validate_sample(sample, **options)
        if errors:
            verdicts[row] = errors
    return verdicts


def _assert_same(batch: pa.RecordBatch, **options) -> dict[int, list]:
    ours = batch_errors(batch, **options)
    assert ours == _per_row(batch, **options)
    return ours


def _orsta_batch(rows: list[dict]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(rows, schema=ORSTA_SCHEMA)


def _inferred_batch(rows: list[dict]) -> pa.RecordBatch:
    """Column types inferred from the values (how a file written by another tool may look)."""
    return pa.Table.from_pylist(rows).combine_chunks().to_batches()[0]


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _with_text(png: bytes, text: bytes) -> bytes:
    end = png.rindex(b"IEND") - 4
    return png[:end] + _chunk(b"tEXt", text) + png[end:]


def _flip(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x10]) + data[position + 1 :]


GOOD = png_bytes()
# Rows that the ORSTA layout can hold, each with what is wrong with it (the verdicts come from
# validate_sample; the test is that the batch gives the same ones).
ORSTA_ROWS = {
    "valid": {},
    "no data_source": {"data_source": None},
    "blank data_source": {"data_source": "   "},
    "long data_source": {"data_source": "x" * 201},
    "data_source with a newline": {"data_source": "a\nb"},
    "data_source with DEL": {"data_source": "a\x7fb"},
    "unicode spaces only": {"ability": "\u2003\u00a0"},
    "long ability": {"ability": "é" * 201},
    "no images": {"images": None},
    "empty image list, no marker": {"images": [], "prompt": [{"role": "user", "content": "hi"}]},
    "empty image list, a marker": {"images": []},
    "65 images": {"images": [{"bytes": GOOD, "path": "a"}] * 65},
    "null image": {"images": [None]},
    "image path only": {"images": [{"bytes": None, "path": "a.png"}]},
    "image with neither": {"images": [{"bytes": None, "path": None}]},
    "empty bytes": {"images": [{"bytes": b"", "path": "a.png"}]},
    "not an image": {"images": [{"bytes": b"hello", "path": "a.png"}]},
    "bomb": {"images": [{"bytes": png_claiming_size(7000, 7000), "path": "a.png"}]},
    "too wide": {"images": [{"bytes": png_bytes(201, 1), "path": "a.png"}]},
    "exactly 200 wide": {"images": [{"bytes": png_bytes(200, 1), "path": "a.png"}]},
    "truncated png": {"images": [{"bytes": GOOD[:-5], "path": "a.png"}]},
    "bad crc": {"images": [{"bytes": _flip(GOOD, 40), "path": "a.png"}]},
    "png with text": {"images": [{"bytes": _with_text(GOOD, b"Comment\x00hello"), "path": "a.png"}]},
    "two images, second broken": {
        "images": [{"bytes": GOOD, "path": "a"}, {"bytes": b"GIF89a", "path": "b"}],
        "prompt": [{"role": "user", "content": "<image><image>compare"}],
    },
    "no prompt": {"prompt": None},
    "empty prompt": {"prompt": []},
    "null message": {"prompt": [None, {"role": "user", "content": "<image>"}]},
    "bad role": {"prompt": [{"role": "robot", "content": "<image>hi"}]},
    "null role": {"prompt": [{"role": None, "content": "<image>hi"}]},
    "no user": {"prompt": [{"role": "system", "content": "<image>hi"}]},
    "null content": {"prompt": [{"role": "user", "content": None}]},
    "NUL in content": {"prompt": [{"role": "user", "content": "<image>a\x00b"}]},
    "two markers": {"prompt": [{"role": "user", "content": "<image><image>"}]},
    "marker split over messages": {
        "prompt": [{"role": "system", "content": "<ima"}, {"role": "user", "content": "ge>x"}],
    },
    "marker-like text": {"prompt": [{"role": "user", "content": "<image <imag <image>> <<image>"}]},
    "markers in two messages": {
        "images": [{"bytes": GOOD, "path": "a"}, {"bytes": GOOD, "path": "b"}],
        "prompt": [{"role": "system", "content": "<image>"}, {"role": "user", "content": "x<image>"}],
    },
    "long prompt": {"prompt": [{"role": "user", "content": "<image>" + "z" * 100_000}]},
    "long prompt in bytes only": {"prompt": [{"role": "user", "content": "<image>" + "é" * 60_000}]},
    "no ability": {"ability": None},
    "no reward_model": {"reward_model": None},
    "empty reward_model": {"reward_model": {}},
    "unknown verifier": {"reward_model": {"verifier": "nope", "ground_truth": "x"}},
    "ratio out of range": {
        "reward_model": {"verifier": "mathverify", "ground_truth": "\\boxed{1}", "format_ratio": 7.0}
    },
    "ground truth that does not parse": {
        "reward_model": {"verifier": "mathverify", "ground_truth": "\\boxed{"}
    },
    "detection": {
        "ability": "cv_detection",
        "reward_model": {
            "verifier": "detection",
            "ground_truth": "<answer>[{'bbox_2d': [1, 2, 3, 4], 'label': 'a'}]</answer>",
            "verifier_parm": {
                "det_verifier_normalized": False,
                "det_reward_ratio": {"iou_max_label_first": 1.0},
            },
        },
    },
    "detection off the scale": {
        "reward_model": {
            "verifier": "detection",
            "ground_truth": "<answer>[{'bbox_2d': [1, 2, 3, 4000], 'label': 'a'}]</answer>",
        }
    },
    "null extra_info": {"extra_info": None},
    "long id": {"extra_info": {"id": "i" * 1001}},
    "long id in bytes only": {"extra_info": {"id": "é" * 600}},
    "NUL in image_path": {"extra_info": {"image_path": "a\x00"}},
}


@pytest.mark.parametrize("name", ORSTA_ROWS)
def test_each_kind_of_row_alone_and_among_valid_ones(name):
    row = make_row(**ORSTA_ROWS[name])
    _assert_same(_orsta_batch([row]))
    mixed = _assert_same(_orsta_batch([make_row(), row, make_row(), row]))
    assert set(mixed) <= {1, 3}


def test_a_valid_batch_has_no_errors_and_an_invalid_row_is_found():
    rows = [make_row() for _ in range(5)]
    assert batch_errors(_orsta_batch(rows)) == {}
    rows[3] = make_row(ability="")
    assert batch_errors(_orsta_batch(rows)) == {3: validate_sample(rows[3])}


def test_only_rows_a_column_check_cannot_clear_get_the_row_check(monkeypatch):
    from trainer.data import columnar

    checked = []
    monkeypatch.setattr(columnar, "validate_sample", lambda row, **_: checked.append(row) or [])
    fast = ["valid", "detection", "not an image", "bad crc", "bomb", "ratio out of range", "png with text"]
    rows = [make_row(**ORSTA_ROWS[name]) for name in fast]
    errors = batch_errors(_orsta_batch(rows))
    assert checked == []
    assert sorted(errors) == [2, 3, 4, 5]  # found by the image checks and the reward_model verdict
    batch_errors(_orsta_batch([make_row(), make_row(ability="")]))
    assert [row["ability"] for row in checked] == [""]


@pytest.mark.parametrize("seed", range(4))
def test_random_batches_equal_the_row_checks(seed):
    rng = random.Random(seed)
    names = list(ORSTA_ROWS)
    rows = [make_row(**ORSTA_ROWS[rng.choice(names)]) for _ in range(60)]
    batch = _orsta_batch(rows)
    for options in ({}, {"check_images": False}, {"max_image_pixels": 500}):
        _assert_same(batch, **options)
    # a slice starts inside every buffer: offsets must be read from there
    _assert_same(batch.slice(7, 40))
    _assert_same(batch.slice(59, 1))


def test_decode_images_equals_the_row_checks():
    rows = [make_row(**ORSTA_ROWS[name]) for name in ("valid", "bad crc", "not an image", "truncated png")]
    _assert_same(_orsta_batch(rows), decode_images=True)


def test_path_images_go_to_the_resolver():
    rows = [make_row(), make_row(images=[{"bytes": None, "path": "images/a.png"}])]
    seen = []

    def resolve(path: str) -> bytes:
        seen.append(path)
        return GOOD

    assert _assert_same(_orsta_batch(rows), resolve_image=resolve) == {}
    assert seen == ["images/a.png", "images/a.png"]  # once by batch_errors, once by the row check


@pytest.mark.parametrize(
    "overrides",
    [
        {"data_source": 7},
        {"ability": ["math"]},
        {"images": ["images/a.png"]},
        {"images": "a.png"},
        {"prompt": "What is 2 + 2?"},
        {"prompt": ["<image>hi"]},
        {"prompt": [{"role": "user", "content": 5}]},
        {"prompt": [{"role": "user", "content": "<image>", "name": "x"}]},
        {"reward_model": "\\boxed{4}"},
        {"reward_model": {"verifier": "mathverify", "ground_truth": "\\boxed{4}", "format_ratio": True}},
        {"reward_model": {"verifier": "mathverify", "ground_truth": "\\boxed{4}", "style": [1, 2]}},
        {"reward_model": {"verifier": "mathverify", "ground_truth": "\\boxed{4}", "accuracy_ratio": 1}},
        {"extra_info": "id-1"},
        {"extra_info": {"id": 5}},
        {"extra_info": {"id": "x", "other": {"deep": None}}},
        {"images": [7, 8]},
        {"images": [[GOOD]]},
        {"images": [{"bytes": GOOD}]},
        {"images": [{"path": "a.png"}]},
        {"note": "a column outside the schema"},
    ],
)
def test_other_layouts_equal_the_row_checks(overrides):
    row = make_row(**overrides)
    for options in ({}, {"check_images": False}):
        _assert_same(_inferred_batch([row]), **options)
        _assert_same(_inferred_batch([row, row]).slice(1), **options)


def test_large_types_equal_the_row_checks():
    rows = [make_row(**ORSTA_ROWS[name]) for name in ORSTA_ROWS]
    table = pa.Table.from_pylist(rows, schema=ORSTA_SCHEMA)

    def large(t: pa.DataType) -> pa.DataType:
        if pa.types.is_string(t):
            return pa.large_string()
        if pa.types.is_binary(t):
            return pa.large_binary()
        if pa.types.is_list(t):
            return pa.large_list(large(t.value_type))
        if pa.types.is_struct(t):
            return pa.struct([(f.name, large(f.type)) for f in t])
        return t

    schema = pa.schema([(f.name, large(f.type)) for f in ORSTA_SCHEMA])
    batch = table.cast(schema).combine_chunks().to_batches()[0]
    _assert_same(batch)
    _assert_same(batch.slice(3))


def test_missing_and_null_columns():
    row = make_row()
    del row["extra_info"]
    _assert_same(_inferred_batch([row, row]))
    del row["ability"]
    _assert_same(_inferred_batch([row]))
    nulls = pa.RecordBatch.from_pydict({name: pa.nulls(2) for name in ORSTA_SCHEMA.names})
    _assert_same(nulls)


def test_null_rows_that_cover_items():
    # Arrow lets a null list row span child items; they belong to no row.
    # The hidden items are broken: read in place of the next row's, they would fail it.
    hidden = make_row(
        prompt=[{"role": "robot", "content": "x"}, {"role": "user", "content": "<image>"}],
        images=[{"bytes": b"broken", "path": "a.png"}, {"bytes": b"", "path": "b.png"}],
    )
    batch = _orsta_batch([make_row(), hidden, make_row(), make_row()])
    for name in ("prompt", "images"):
        column = batch.column(name)
        mask = pa.array([False, True, False, False])
        nulled = pa.ListArray.from_arrays(column.offsets, column.values, mask=mask)
        patched = batch.set_column(batch.schema.get_field_index(name), name, nulled)
        assert len(patched.column(name).flatten()) < len(patched.column(name).values)
        assert _assert_same(patched).keys() == {1}  # "is required", and nothing else anywhere
        _assert_same(patched.slice(1))


def test_a_string_that_is_not_utf8_fails_as_reading_rows_does():
    # parquet readers accept such bytes in a string column; turning them into str fails
    batch = _orsta_batch([make_row(), make_row()])
    messages = batch.column("prompt").values
    content = pa.array([b"<image>ok", b"<image>bad \xff"], pa.binary()).view(pa.string())
    role = messages.field("role")
    fixed = pa.StructArray.from_arrays([content, role], names=["content", "role"])
    prompt = pa.ListArray.from_arrays(batch.column("prompt").offsets, fixed)
    patched = batch.set_column(batch.schema.get_field_index("prompt"), "prompt", prompt)
    with pytest.raises(UnicodeDecodeError) as theirs:
        batch_to_rows(patched)
    with pytest.raises(UnicodeDecodeError) as ours:
        batch_errors(patched)
    assert str(ours.value) == str(theirs.value)


def test_empty_batch():
    assert batch_errors(_orsta_batch([])) == {}


def test_reward_model_verdicts_are_shared_by_equal_content(monkeypatch):
    rewards = pytest.importorskip("trainer.rewards")
    calls = []
    real = rewards.validate_reward_model

    def counting(reward_model):
        calls.append(reward_model["ground_truth"])
        return real(reward_model)

    monkeypatch.setattr(rewards, "validate_reward_model", counting)
    truth = f"\\boxed{{{random.randrange(10**12)}}}"  # not seen by any earlier test
    row = make_row()
    row["reward_model"] = {**row["reward_model"], "ground_truth": truth}
    batch = _orsta_batch([row] * 50)
    assert batch_errors(batch) == {}
    assert batch_errors(batch) == {}
    assert calls == [truth]


# ------------------------------------------------------------------------------ png_sizes


def _png_cases() -> list[bytes]:
    rng = random.Random(5)
    base = [
        png_bytes(3, 2),
        png_bytes(17, 9, mode="P", color=1),
        png_bytes(5, 5, mode="LA", color=(1, 2)),
        _with_text(png_bytes(4, 4), b"Comment\x00x"),
        png_bytes(40, 40, mode="L", color=100),
    ]
    cases = list(base)
    for data in base:
        cases += [data[:cut] for cut in range(0, len(data), 3)]  # every truncation
        cases += [_flip(data, rng.randrange(len(data))) for _ in range(25)]
        cases.append(data + b"trailing bytes after IEND")
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 0))
    idat = _chunk(b"IDAT", zlib.compress(b"\x00" * 20))
    iend = _chunk(b"IEND", b"")
    sig = b"\x89PNG\r\n\x1a\n"
    cases += [
        sig + ihdr + idat + idat + iend,  # two IDATs
        sig + ihdr + iend,  # no IDAT
        sig + idat + ihdr + iend,  # IDAT first
        sig + ihdr + idat + ihdr + iend,  # a second IHDR is ignored
        sig + ihdr + idat,  # no IEND
        sig + ihdr + _chunk(b"tEXt", b"a") * 40 + idat + iend,  # more chunks than one pass walks
        sig + _chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 3, 2, 0, 0, 0)) + idat + iend,  # bad depth
        sig + _chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 2, 8, 2, 0, 0, 2)) + idat + iend,  # interlace 2
        sig + _chunk(b"IHDR", struct.pack(">IIBBBBBB", 3, 2, 8, 2, 0, 0, 0, 0)) + idat + iend,  # 14 bytes
        sig + struct.pack(">I", 2**31) + b"IHDR",  # a length past the end
        b"\xff\xd8\xff\xe0 a JPEG is not a PNG",
        b"",
    ]
    return cases


def test_png_sizes_equals_png_size_on_each_file():
    cases = _png_cases()
    data = b"".join(cases)
    ends = np.cumsum([len(c) for c in cases])
    passed, width, height = png_sizes(np.frombuffer(data, np.uint8), ends - [len(c) for c in cases], ends)
    assert passed.sum() >= 8  # the five files, one with trailing bytes, two IDATs, a second IHDR
    for k, case in enumerate(cases):
        try:
            expected = png_size(case)
        except HeaderError:
            expected = None
        if passed[k]:
            assert (int(width[k]), int(height[k])) == expected, k
        else:  # left to png_size: either invalid or more chunks than one pass walks
            assert expected is None or case.count(b"tEXt") > 30, k


def test_png_sizes_of_nothing():
    passed, _, _ = png_sizes(np.zeros(0, np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert passed.size == 0

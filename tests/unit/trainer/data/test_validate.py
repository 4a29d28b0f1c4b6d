"""Whole-file validation: row errors with row numbers, and per-source summaries."""

from __future__ import annotations

import json

import fsspec
import pytest

from trainer.data.reader import DataFormatError, iter_samples, write_jsonl, write_parquet
from trainer.data.schema import task_type, validate_sample
from trainer.data.validate import FileReport, RowError, SourceSummary, validate_file

from .factories import make_row, png_bytes


def _detection_row(source: str = "shapes") -> dict:
    answer = "[{'bbox_2d': [10, 20, 300, 400], 'label': 'dog'}]"
    return make_row(
        data_source=source,
        ability="cv_detection",
        reward_model={
            "answer": answer,
            "ground_truth": f"<answer>\n{answer}\n</answer>",
            "verifier": "detection",
        },
    )


def test_valid_file_summary(memory_root):
    rows = [make_row(), make_row(), _detection_row(), make_row(data_source="ocr_words", ability="ocr")]
    write_parquet(rows, f"{memory_root}/a.parquet")
    report = validate_file(f"{memory_root}/a.parquet")
    assert report.ok and report.rows == 4 and report.invalid_rows == 0
    assert report.sources == {
        "mm_math": SourceSummary("mm_math", "math", "mathverify", 2),
        "shapes": SourceSummary("shapes", "detection", "detection", 1),
        "ocr_words": SourceSummary("ocr_words", "ocr", "mathverify", 1),
    }


def test_errors_name_row_and_field(memory_root):
    rows = [
        make_row(),
        make_row(data_source="x" * 10_000),
        make_row(images=[{"bytes": b"not an image", "path": "a.png"}], ability=""),
        make_row(),
    ]
    write_parquet(rows, f"{memory_root}/a.parquet")
    report = validate_file(f"{memory_root}/a.parquet")
    assert not report.ok
    assert report.rows == 4 and report.invalid_rows == 2 and report.error_count == 3
    assert [str(e) for e in report.errors] == [
        "row 2, data_source: is 10000 characters long; the limit is 200",
        "row 3, images[0]: not a decodable image; use PNG, JPEG, WebP, GIF, BMP or TIFF",
        "row 3, ability: must be a non-empty string",
    ]
    # invalid rows are not counted in their source
    assert report.sources["mm_math"].count == 2


def test_max_errors_keeps_the_first_and_counts_all(memory_root):
    write_parquet([make_row(ability="")] * 5, f"{memory_root}/a.parquet")
    report = validate_file(f"{memory_root}/a.parquet", max_errors=2)
    assert report.error_count == 5
    assert report.errors == [
        RowError(1, "ability", "must be a non-empty string"),
        RowError(2, "ability", "must be a non-empty string"),
    ]


def test_one_source_one_verifier(memory_root):
    write_parquet([_detection_row("mixed"), make_row(data_source="mixed")], f"{memory_root}/a.parquet")
    report = validate_file(f"{memory_root}/a.parquet")
    assert [str(e) for e in report.errors] == [
        "row 2, reward_model.verifier: source 'mixed' uses verifier 'detection' in earlier rows,"
        " 'mathverify' here; give each verifier its own data_source"
    ]
    assert report.sources["mixed"].count == 1


def test_jsonl_with_an_archive_of_images(memory_root):
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("images/a.png", png_bytes())
    fsspec.filesystem("memory").pipe(f"{memory_root}/images.zip", buffer.getvalue())
    lines = [make_row(images=["images/a.png"]), make_row(images=["images/missing.png"])]
    fsspec.filesystem("memory").pipe(
        f"{memory_root}/a.jsonl", "".join(json.dumps(r) + "\n" for r in lines).encode()
    )
    report = validate_file(f"{memory_root}/a.jsonl", images_root=f"{memory_root}/images.zip")
    assert [str(e) for e in report.errors] == [
        f"row 2, images[0]: cannot read image 'images/missing.png': image 'images/missing.png' not found in"
        f" archive {memory_root}/images.zip"
    ]


def test_jsonl_without_images_root(memory_root):
    write_jsonl([make_row()], f"{memory_root}/a.jsonl", images_dir=memory_root)
    report = validate_file(f"{memory_root}/a.jsonl")
    assert [str(e) for e in report.errors] == [
        "row 1, images[0]: image path 'images/a.png' given but no image archive to read it from"
    ]
    assert validate_file(f"{memory_root}/a.jsonl", images_root=memory_root).ok


def test_unreadable_file_raises(memory_root):
    fsspec.filesystem("memory").pipe(f"{memory_root}/a.jsonl", b'{"a": 1}\n{oops\n')
    with pytest.raises(DataFormatError, match=r"a\.jsonl, line 2: not valid JSON"):
        validate_file(f"{memory_root}/a.jsonl")


def test_max_errors_must_not_be_negative():
    with pytest.raises(ValueError, match="^max_errors must be >= 0, got -1$"):
        validate_file("a.parquet", max_errors=-1)


def _mixed_rows(seed: int) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(300):
        kind = rng.random()
        if kind < 0.1:
            rows.append(make_row(ability=rng.choice(["", "x" * 300])))
        elif kind < 0.2:
            rows.append(make_row(images=[{"bytes": png_bytes()[: rng.randrange(60)], "path": "a.png"}]))
        elif kind < 0.3:
            rows.append(_detection_row(rng.choice(["shapes", "mm_math"])))  # mm_math: a verifier clash
        elif kind < 0.35:
            rows.append(make_row(prompt=[{"role": "user", "content": "no marker"}]))
        else:
            rows.append(
                make_row(data_source=rng.choice(["mm_math", "geo", "ocr_words"]), extra_info={"id": f"{i}"})
            )
    return rows


def _row_by_row_report(uri: str, max_errors: int) -> FileReport:
    """The report as the file was read before batches: validate_sample on each row, in order."""
    report = FileReport()
    for number, sample in enumerate(iter_samples(uri), start=1):
        report.rows = number
        errors = validate_sample(sample)
        for error in errors:
            report.error_count += 1
            if len(report.errors) < max_errors:
                report.errors.append(RowError(number, error.field, error.message))
        if errors:
            report.invalid_rows += 1
            continue
        name, verifier = sample["data_source"], sample["reward_model"]["verifier"]
        summary = report.sources.get(name)
        if summary is None:
            summary = report.sources[name] = SourceSummary(name, task_type(sample), verifier)
        elif summary.verifier != verifier:
            report.error_count += 1
            if len(report.errors) < max_errors:
                message = (
                    f"source {name!r} uses verifier {summary.verifier!r} in earlier rows, {verifier!r} here;"
                    " give each verifier its own data_source"
                )
                report.errors.append(RowError(number, "reward_model.verifier", message))
            report.invalid_rows += 1
            continue
        summary.count += 1
    return report


@pytest.mark.parametrize(("seed", "batch_rows"), [(0, 2048), (1, 13), (2, 3)])
def test_batch_checks_give_the_report_of_the_row_checks(memory_root, tmp_path, monkeypatch, seed, batch_rows):
    from trainer.data import reader

    monkeypatch.setattr(reader, "MIN_BATCH_ROWS", 1)
    monkeypatch.setattr(reader, "MAX_BATCH_ROWS", batch_rows)  # sources and clashes across batches
    rows = _mixed_rows(seed)
    for uri in (f"{memory_root}/a.parquet", str(tmp_path / "a.parquet")):
        write_parquet(rows, uri, row_group_rows=37)
        for max_errors in (0, 20, 1000):
            ours = validate_file(uri, max_errors=max_errors)
            assert ours == _row_by_row_report(uri, max_errors)
        assert ours.invalid_rows > 0 and ours.error_count > 20
        assert any(e.field == "reward_model.verifier" for e in ours.errors)
